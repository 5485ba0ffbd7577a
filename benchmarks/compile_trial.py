"""A torch.compile trial: is a compiled step faster, and does it keep every output bit?

One workload's trained SNN (default: ``default``, vgg_small on MNIST-5k), converted as the speed
race converts it. Per batch size: the network's body compiled with ``torch.compile`` (inductor,
``dynamic=False``) against eager, running the T steps of ``SpikingNetwork.step``, and the dense
floor's ANN (T passes) compiled against eager; medians of interleaved repeats (ratios only on a
shared machine), the compile time (first call), and whether the accumulated outputs of every step
and the spikes per layer are bit-equal to eager's.

Usage: python benchmarks/compile_trial.py [--workload default] [--batch-sizes 1 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnexit.data import load_dataset  # noqa: E402
from snnexit.experiments.floor import dense_twin  # noqa: E402
from snnexit.experiments.numerics import interleaved_medians  # noqa: E402
from snnexit.experiments.race import run_steps  # noqa: E402
from snnexit.experiments.workloads import WORKLOADS, workload  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.runs.network import trained_snn  # noqa: E402
from snnexit.runtime.threads import LoadMeter, num_threads  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="default", choices=WORKLOADS.names())
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compile_trial.json"))
    args = ap.parse_args()
    w = workload(args.workload)
    config = w.config(device="cpu", conversion_fix="none")
    data = load_dataset(config.dataset, config.seed)
    snn, _ = trained_snn(config, data, log=lambda m: print(m, file=sys.stderr))
    snn.eval()
    eager_body, twin = snn.body, dense_twin(snn)
    load = LoadMeter(probe_s=1.0)
    load_before = load.other_busy()
    cells = []
    for bs in args.batch_sizes:
        x = data.test.x[:bs]
        frame = x[:, 0] if data.temporal else x
        with num_threads(args.threads), torch.no_grad():
            compiled_body = torch.compile(eager_body, dynamic=False)
            compiled_twin = torch.compile(twin, dynamic=False)

            def steps(body, spikes=None):
                snn.body = body
                try:
                    return run_steps(snn, x, w.T, data.temporal, spikes)
                finally:
                    snn.body = eager_body

            started = time.perf_counter()
            compiled_spikes: list = []
            compiled_out = steps(compiled_body, compiled_spikes)
            compile_step = time.perf_counter() - started
            eager_spikes: list = []
            eager_out = steps(eager_body, eager_spikes)
            started = time.perf_counter()
            compiled_ann = compiled_twin(frame)
            compile_ann = time.perf_counter() - started
            eager_ann = twin(frame)
            timing = interleaved_medians({
                "step_eager": lambda: steps(eager_body), "step_compiled": lambda: steps(compiled_body),
                "ann_eager": lambda: [twin(frame) for _ in range(w.T)],
                "ann_compiled": lambda: [compiled_twin(frame) for _ in range(w.T)]}, args.repeats)
        med = timing["median_seconds"]
        cell = {"batch_size": bs, "compile_seconds": {"step": compile_step, "ann": compile_ann},
                "median_seconds": med, "all_seconds": timing["all_seconds"],
                "speedup": {"step": med["step_eager"] / med["step_compiled"],
                            "ann": med["ann_eager"] / med["ann_compiled"]},
                "step_outputs_bit_equal": bool(torch.equal(compiled_out, eager_out)),
                "step_spikes_equal": compiled_spikes == eager_spikes,
                "step_max_abs_difference": float((compiled_out - eager_out).abs().max()),
                "ann_bit_equal": bool(torch.equal(compiled_ann, eager_ann)),
                "ann_max_abs_difference": float((compiled_ann - eager_ann).abs().max()),
                "other_processes_busy_cores": load.other_busy()}
        print(cell, file=sys.stderr, flush=True)
        cells.append(cell)
    write_json(args.out, {"benchmark": "compile_trial",
                          "command": "python benchmarks/compile_trial.py " + " ".join(sys.argv[1:]),
                          "workload": w.name, "T": w.T, "threads": args.threads, "torch": torch.__version__,
                          "other_processes_busy_cores": load_before, "load_average": list(os.getloadavg()),
                          "cells": cells})
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
