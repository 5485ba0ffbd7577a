"""Numerics of a step: subnormal floats, where the time goes per layer, flushing and memory layout.

For each workload (``snnexit.experiments.workloads``: trained networks, their ANN cached like
``snnexit run``'s, converted as the speed race converts them) and for ``vgg16_untrained`` (the
same VGG-16, freshly initialised and converted without training: the reproduction in issue 23):

* ``census``: subnormal floats in the weights, per spiking layer in the input currents, membrane
  potentials and outputs over T steps on ``--census-inputs`` test inputs, and per layer in the
  dense floor's ANN forward on the same inputs (:func:`snnexit.experiments.numerics.census`);
* per batch size (``--batch-sizes``), on ``--threads`` torch threads, in each memory layout
  (``--layouts``: the engines' default ``contiguous``, and ``channels_last`` of
  ``SpikingNetwork.optimize``):

  - ``profiles``: one fixed-T run of the step engine (``EarlyExitEngine``) and one of the chunked
    engine (``ChunkedEngine``, the plan and threads it picks at this batch size) under
    ``torch.profiler``: top operators and each leaf module's share of the time (summaries only);
  - ``bit_equal``: whether the step engine's and the chunked engine's arithmetic (their traces,
    ``record_trace`` with and without the chunk plan: accumulated outputs of every step and spikes
    per layer) and the floor's ANN outputs are bit-equal with flushing on and off, and between the
    layouts;
  - ``median_seconds``: medians of ``--repeats`` interleaved repeats of the step engine, the chunked
    engine and the dense floor (T passes, and chunked passes), each with flushing off and on
    (``torch.set_flush_denormal``) in each layout, and the ratios ``flush_speedup`` (off / on) and
    ``channels_last_speedup`` (contiguous / channels-last, flushing off).

Timing on a shared machine: ratios only; the cores other processes kept busy are written beside
every cell (``other_processes_busy_cores``). ``torch.set_flush_denormal`` sets the calling
thread's flags only (``flushed_share_by_threads`` in the JSON: the share of a parallel product
it flushes), so flushing is timed as torch offers it.

Usage: python benchmarks/numerics.py [--workloads default resnet20 event_cnn vgg16 vgg16_untrained]
       [--batch-sizes 1 16] [--repeats 3] [--threads 1] [--census-inputs 256] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnexit.data import load_dataset  # noqa: E402
from snnexit.exit import FixedT  # noqa: E402
from snnexit.experiments.floor import DenseFloor  # noqa: E402
from snnexit.experiments.numerics import census, interleaved_medians, profile_summary  # noqa: E402
from snnexit.experiments.race import chunk_plan  # noqa: E402
from snnexit.experiments.workloads import WORKLOADS, workload  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.runs.ann import ann_view, build_ann  # noqa: E402
from snnexit.runs.network import converted, trained_snn  # noqa: E402
from snnexit.runtime.chunked import ChunkedEngine  # noqa: E402
from snnexit.runtime.engine import EarlyExitEngine  # noqa: E402
from snnexit.runtime.threads import LoadMeter, num_threads  # noqa: E402
from snnexit.simulate import record_trace  # noqa: E402
from snnexit.simulate.subnormals import flush_denormal, flush_denormal_active, flushed_share  # noqa: E402

UNTRAINED = "vgg16_untrained"
PATHS = ("step", "chunked", "floor_steps", "floor_chunked")


def network(name: str, device: str, log) -> tuple:
    """``(snn, data, T, about, ann_test_acc)`` of a workload (trained), or of ``vgg16_untrained``."""
    w = workload("vgg16" if name == UNTRAINED else name)
    config = w.config(device=device, conversion_fix="none")  # as the speed race converts
    data = load_dataset(config.dataset, config.seed)
    if name == UNTRAINED:
        ann = build_ann(config, ann_view(data)).eval()  # seeded by the run's seed, never trained
        return (converted(ann, config.converter, data).to(device).eval(), data, w.T,
                "VGG-16 on MNIST-5k resized to 3 x 32 x 32, freshly initialised, not trained", None)
    snn, calibration = trained_snn(config, data, log=log)
    return snn.to(device).eval(), data, w.T, w.about, calibration["test_acc"]


class Layout:
    """One memory layout of the network: its copy, engines (fixed T), floor and chunk plan."""

    def __init__(self, snn, x, T: int, temporal: bool, channels_last: bool, threads: int, device: str):
        self.snn = copy.deepcopy(snn).optimize(channels_last)
        self.x, self.T, self.temporal = x, T, temporal
        self.plan, self.chunk_threads = chunk_plan(self.snn, x, T, temporal, threads)
        self.step_engine = EarlyExitEngine(self.snn, FixedT(), T, device)
        self.chunked_engine = ChunkedEngine(self.snn, FixedT(), T, device, chunks=list(self.plan),
                                            threads=self.chunk_threads)
        self.floor = DenseFloor(self.snn, T, temporal, channels_last)
        self.floor_k = self.floor.chunk(x)

    def runs(self) -> dict:
        x, temporal = self.x, self.temporal
        return {"step": lambda: self.step_engine.run(x, temporal=temporal),
                "chunked": lambda: self.chunked_engine.run(x, temporal=temporal),
                "floor_steps": lambda: self.floor.steps(x),
                "floor_chunked": lambda: self.floor.chunked(x, self.floor_k)}

    @torch.no_grad()
    def arithmetic(self) -> dict:
        """What must stay bit-equal: both engines' traces (outputs of every step, spikes) and the ANN's outputs."""
        batch = [(self.x, None)]
        step = record_trace(self.snn, batch, self.T, temporal=self.temporal)
        chunked = record_trace(self.snn, batch, self.T, temporal=self.temporal, chunks=list(self.plan))
        frames = [self.x[:, t] for t in range(self.T)] if self.temporal else [self.x]
        ann = torch.stack([self.floor.twin(self.floor._layout(f)) for f in frames])
        return {"step": (step.outputs, step.spikes), "chunked": (chunked.outputs, chunked.spikes), "ann": (ann,)}


def same(a: dict, b: dict) -> dict:
    return {path: all(torch.equal(u, v) for u, v in zip(a[path], b[path])) for path in a}


def cell(snn, x, T: int, temporal: bool, layouts: list[str], threads: int, repeats: int, device: str) -> dict:
    """Profiles, bit-equality and interleaved timings of one batch (see the module doc)."""
    with num_threads(threads):
        nets = {name: Layout(snn, x, T, temporal, name == "channels_last", threads, device) for name in layouts}
        profiles, outputs = {}, {}
        for name, net in nets.items():
            runs = net.runs()
            for path in ("step", "chunked"):
                runs[path]()  # warm-up (the engine's first run probes its input shape)
            profiles[name] = {path: profile_summary(runs[path], net.snn.body) for path in ("step", "chunked")}
            for flush in (False, True):
                with flush_denormal(flush):
                    outputs[(name, flush)] = net.arithmetic()
        bit_equal = {"flush_on_vs_off": {name: same(outputs[(name, False)], outputs[(name, True)]) for name in nets}}
        if len(nets) > 1:
            first, *rest = list(nets)
            bit_equal["layouts"] = {f"{first}_vs_{other}": same(outputs[(first, False)], outputs[(other, False)])
                                    for other in rest}
        timed = {f"{path}|{name}|{'flush' if flush else 'no_flush'}": net.runs()[path]
                 for name, net in nets.items() for path in PATHS for flush in (False, True)}
        load = LoadMeter(probe_s=0.5)
        load.other_busy()
        with flush_denormal(False):  # the caller's setting comes back after the timing
            timing = interleaved_medians(timed, repeats,
                                         setup=lambda key: torch.set_flush_denormal(key.endswith("|flush")))
        busy = load.other_busy()
    med = timing["median_seconds"]
    flush_speedup = {path: {name: med[f"{path}|{name}|no_flush"] / med[f"{path}|{name}|flush"] for name in nets}
                     for path in PATHS}
    layout_speedup = ({path: med[f"{path}|contiguous|no_flush"] / med[f"{path}|channels_last|no_flush"]
                       for path in PATHS} if {"contiguous", "channels_last"} <= set(nets) else None)
    return {"batch_size": int(x.shape[0]), "threads": threads,
            "chunk_plan": {name: list(net.plan) for name, net in nets.items()},
            "chunked_threads": {name: net.chunk_threads for name, net in nets.items()},
            "profiles": profiles, "bit_equal": bit_equal,
            "median_seconds": med, "all_seconds": timing["all_seconds"],
            "flush_speedup": flush_speedup, "channels_last_speedup": layout_speedup,
            "other_processes_busy_cores": busy, "load_average": list(os.getloadavg())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=["default", "resnet20", "event_cnn", "vgg16", UNTRAINED],
                    choices=[*WORKLOADS.names(), UNTRAINED])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the profiles and timings")
    ap.add_argument("--layouts", nargs="+", choices=["contiguous", "channels_last"],
                    default=["contiguous", "channels_last"])
    ap.add_argument("--census-inputs", type=int, default=256, help="test inputs the subnormal census runs on")
    ap.add_argument("--T", type=int, default=None, help="steps (default: each workload's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "numerics.json"))
    args = ap.parse_args()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if flush_denormal_active():
        log("note: this process already flushes subnormals; the census reads bits, the timings set it either way")
    started = time.perf_counter()
    load_before = LoadMeter(probe_s=1.0).other_busy()
    log(f"other processes keep {load_before:.2f} cores busy; load average {os.getloadavg()}")
    results = {}
    for name in args.workloads:
        snn, data, T, about, acc = network(name, args.device, log)
        T = args.T or T
        t0 = time.perf_counter()
        with num_threads(args.threads), flush_denormal(False):
            found = census(snn, data.test.x[:args.census_inputs].to(args.device), T, data.temporal)
        log(f"{name}: subnormals in weights {found['weights']['subnormal']}, spiking layers {found['snn']['total']}, "
            f"ANN {found['ann']['total']} ({time.perf_counter() - t0:.0f} s)")
        cells = []
        for bs in args.batch_sizes:
            t0 = time.perf_counter()
            c = cell(snn, data.test.x[:bs].to(args.device), T, data.temporal, args.layouts, args.threads,
                     args.repeats, args.device)
            cells.append(c)
            log(f"{name} batch {bs}: flush speedup {c['flush_speedup']}, channels-last speedup "
                f"{c['channels_last_speedup']}, bit-equal {c['bit_equal']} ({time.perf_counter() - t0:.0f} s)")
        results[name] = {"about": about, "dataset": data.name, "T": T, "input_shape": list(data.test.x.shape[1:]),
                         "temporal": data.temporal, "ann_test_acc": acc, "census": found, "cells": cells}
    write_json(args.out, {
        "benchmark": "numerics",
        "command": "python benchmarks/numerics.py " + " ".join(sys.argv[1:]),
        "other_processes_busy_cores": load_before, "load_average": list(os.getloadavg()),
        "flushed_share_by_threads": {str(n): flushed_share(n) for n in sorted({1, os.cpu_count() or 1})},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "device": args.device,
                    "cpu_count": os.cpu_count(), "processor": platform.processor()},
        "workloads": results, "seconds": time.perf_counter() - started,
    })
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
