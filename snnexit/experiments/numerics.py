"""Where a step's time goes, and whether subnormal floats or the memory layout make it slow.

Used by ``benchmarks/numerics.py``; three measurements on one network:

* :func:`census`: subnormal floats in the weights, per spiking layer in the input currents,
  membrane potentials and outputs of every step (step-by-step simulation of the inputs for T
  steps), and in every layer's output of the dense floor's ANN forward
  (:mod:`snnexit.experiments.floor`) on the same inputs;
* :func:`profile_summary`: one run under ``torch.profiler``, summarised as the top operators by
  their own time and the share of the run's time spent in each leaf module (every leaf module's
  forward is wrapped in a profiler range named after it; what lies outside any range is Python
  between layers, accumulation and the exit policy). No raw trace is kept;
* :func:`interleaved_medians`: medians of repeats in which every (condition, path) pair takes its
  turn in a rotating order, so slow drift of a shared machine's load falls on all of them alike.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from snnexit.experiments.floor import dense_twin
from snnexit.simulate.network import SpikingNetwork
from snnexit.simulate.subnormals import SubnormalCensus, module_census, weight_census


@torch.no_grad()
def census(snn: SpikingNetwork, x: torch.Tensor, T: int, temporal: bool = False, batch_size: int = 64) -> dict:
    """Subnormal counts of ``snn`` on inputs ``x`` over ``T`` steps (see the module doc):
    ``{"weights", "snn": {"per_layer", "total"}, "ann": {"per_module", "total"}, "inputs", "T"}``."""
    snn.eval()
    twin = dense_twin(snn)
    ann: dict = {"per_module": defaultdict(lambda: defaultdict(int)), "total": defaultdict(int)}
    with SubnormalCensus(snn) as spiking:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            snn.reset()
            for t in range(T):
                snn.step(xb[:, t] if temporal else xb)
            snn.reset()
            frames = [xb[:, t] for t in range(T)] if temporal else [xb]  # the floor's ANN sees every frame
            for frame in frames:
                found = module_census(twin, frame)
                for name, counts in found["per_module"].items():
                    for k, v in counts.items():
                        ann["per_module"][name][k] += v
                for k, v in found["total"].items():
                    ann["total"][k] += v
    return {"weights": weight_census(snn), "snn": spiking.summary(),
            "ann": {"per_module": {n: dict(c) for n, c in ann["per_module"].items()}, "total": dict(ann["total"])},
            "inputs": int(x.shape[0]), "T": int(T)}


class _ModuleRanges:
    """A profiler range around every leaf module's forward, named ``module::<path> (<Type>)``."""

    PREFIX = "module::"

    def __init__(self, root: nn.Module):
        self.root, self._handles, self._open = root, [], []

    def __enter__(self):
        for name, m in self.root.named_modules():
            if name and not any(True for _ in m.children()):
                label = f"{self.PREFIX}{name} ({type(m).__name__})"
                self._handles.append(m.register_forward_pre_hook(lambda mod, args, label=label: self._enter(label)))
                self._handles.append(m.register_forward_hook(lambda mod, args, out: self._exit()))
        return self

    def _enter(self, label: str) -> None:
        rf = record_function(label)
        rf.__enter__()
        self._open.append(rf)

    def _exit(self) -> None:
        self._open.pop().__exit__(None, None, None)

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()


def profile_summary(run: Callable[[], object], root: nn.Module, top: int = 8, top_modules: int = 12) -> dict:
    """Profile one call of ``run`` (which runs ``root``'s modules), summarised:

    * ``seconds``: its wall-clock time under the profiler (ranges and hooks add a little);
    * ``top_ops``: the ``top`` operators by own CPU time: name, calls, seconds, share of the run;
    * ``modules``: the ``top_modules`` leaf modules by inclusive CPU time (seconds, share);
    * ``by_type``: the same summed per module type (Conv2d, IFNeuron, ...), and
      ``outside_modules_share``: the run's share spent outside every module."""
    with _ModuleRanges(root), profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
    events = prof.key_averages()
    wall_us = seconds * 1e6
    ops = [e for e in events if not e.key.startswith(_ModuleRanges.PREFIX)]
    ops.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    modules = {e.key[len(_ModuleRanges.PREFIX):]: e.cpu_time_total for e in events
               if e.key.startswith(_ModuleRanges.PREFIX)}
    by_type: dict[str, float] = defaultdict(float)
    for label, us in modules.items():
        by_type[label.rsplit(" (", 1)[1].rstrip(")")] += us
    in_modules = sum(modules.values())
    return {
        "seconds": seconds,
        "top_ops": [{"op": e.key, "calls": e.count, "seconds": e.self_cpu_time_total / 1e6,
                     "share": e.self_cpu_time_total / wall_us} for e in ops[:top]],
        "modules": [{"module": label, "seconds": us / 1e6, "share": us / wall_us}
                    for label, us in sorted(modules.items(), key=lambda kv: kv[1], reverse=True)[:top_modules]],
        "by_type": {t: us / wall_us for t, us in sorted(by_type.items(), key=lambda kv: kv[1], reverse=True)},
        "outside_modules_share": max(0.0, 1.0 - in_modules / wall_us),
    }


def interleaved_medians(runs: dict[str, Callable[[], object]], repeats: int,
                        setup: Callable[[str], object] | None = None) -> dict:
    """Median seconds of each of ``runs`` over ``repeats`` rounds; round r starts at the r-th run and
    goes round in order (every run goes first once every len(runs) rounds). ``setup(name)``, if
    given, runs untimed before each run (it switches a condition on or off). Returns
    ``{"median_seconds": {name: s}, "all_seconds": {name: [s, ...]}}``."""
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if setup is not None:
                setup(name)
            started = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - started)
    return {"median_seconds": {n: statistics.median(v) for n, v in times.items()}, "all_seconds": times}
