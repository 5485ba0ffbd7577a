"""The speed race: one converted network, the same inputs, snnexit against SpikingJelly 2.0 and the dense floor.

SpikingJelly runs an exact copy of the network: every snnexit ``IFNeuron`` becomes
``IFNode(v_threshold=theta, v_reset=None)`` followed by a multiplication by theta (a QCFS spike
carries theta), with ``v`` set to theta/2 after every reset; every other module is the same
object. The simulators, each running T steps (fixed T) on the same batch:

* ``snnexit``: ``SpikingNetwork.step`` one step at a time (what the step engine runs);
* ``snnexit_chunked``: ``SpikingNetwork.step_chunk`` over the chunk plan and thread count that
  ``ChunkedEngine`` chooses for fixed T at this batch size (capped at the race's threads);
* ``sj_single``: SpikingJelly single-step mode, one step at a time;
* ``sj_multi``: SpikingJelly multi-step mode (``SeqToANNContainer`` around every stateless
  module, ``step_mode='m'`` neurons): all T steps layer by layer in one call (skipped where its
  T x n activations would pass the memory budget). SpikingJelly 2.0 has no backend argument: its
  multi-step IF picks its kernel by device (a loop of torch ops on CPU; its Triton or native
  CUDA kernel on a GPU), so on CUDA this is its fused kernel;
* ``floor_steps`` / ``floor_chunked``: the dense floor (:mod:`snnexit.experiments.floor`).

Before timing, every simulator's accumulated outputs ``Y[t]`` and spike counts per layer are
compared with the step-by-step run's; timing is the median of interleaved repeats (the
simulators take turns in a rotating order), reported as ratios.
"""

from __future__ import annotations

import copy
import os
import statistics
import time

import torch
from torch import nn

from snnexit.exit import FixedT
from snnexit.experiments.floor import DenseFloor
from snnexit.neurons.modules import IFNeuron, SpikingNeuron
from snnexit.runtime.chunked import ChunkedEngine
from snnexit.runtime.threads import LoadMeter, num_threads
from snnexit.simulate.network import SpikingNetwork
from snnexit.simulate.stepper import chunk_frames


class Scale(nn.Module):
    """A QCFS spike carries amplitude theta: ``s * theta``, the same multiplication as snnexit."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.register_buffer("theta", theta.detach().clone())

    def forward(self, s):
        return s * self.theta


class SJNetwork:
    """A SpikingJelly copy of a snnexit IF network (single- or multi-step mode)."""

    def __init__(self, snn: SpikingNetwork, step_mode: str):
        from spikingjelly.activation_based import layer, neuron  # optional: imported when a race runs it

        self.step_mode = step_mode
        body = copy.deepcopy(snn.body)
        self.nodes: list[tuple[nn.Module, float]] = []

        def swap(parent: nn.Module):
            for name, child in list(parent.named_children()):
                if isinstance(child, IFNeuron):
                    theta = float(child.threshold)
                    node = neuron.IFNode(v_threshold=theta, v_reset=None, step_mode=step_mode)
                    self.nodes.append((node, theta))
                    setattr(parent, name, nn.Sequential(node, Scale(child.threshold)))
                elif isinstance(child, SpikingNeuron):
                    raise ValueError(f"the race supports IF networks only, found {type(child).__name__}")
                elif any(True for _ in child.children()):
                    swap(child)
                elif step_mode == "m":
                    setattr(parent, name, layer.SeqToANNContainer(child))

        swap(body)
        self.body = body.eval()

    def reset(self):
        from spikingjelly.activation_based import functional  # optional: imported when a race runs it

        functional.reset_net(self.body)
        for node, theta in self.nodes:
            node.v = 0.5 * theta  # QCFS: v(0) = theta / 2 (SpikingJelly starts soft-reset IF at 0)

    @torch.no_grad()
    def run(self, x: torch.Tensor, T: int, temporal: bool = False) -> torch.Tensor:
        """Accumulated outputs (T, N, C)."""
        self.reset()
        if self.step_mode == "m":
            seq = x[:, :T].transpose(0, 1) if temporal else x.unsqueeze(0).expand(T, *x.shape)
            y = self.body(seq.contiguous() if temporal else seq)  # (T, N, C)
            return _accumulate(y)
        acc, outs = None, []
        for t in range(T):
            y = self.body(x[:, t] if temporal else x)
            acc = y.clone() if acc is None else acc + y
            outs.append(acc)
        return torch.stack(outs)


def _accumulate(y: torch.Tensor) -> torch.Tensor:
    """Running sums over steps in the order the step-by-step runs add (``cumsum`` may sum otherwise)."""
    acc, outs = y[0].clone(), [y[0].clone()]
    for t in range(1, y.shape[0]):
        acc = acc + y[t]
        outs.append(acc)
    return torch.stack(outs)


@torch.no_grad()
def run_steps(snn: SpikingNetwork, x: torch.Tensor, T: int, temporal: bool = False, spikes: list | None = None):
    """Accumulated outputs (T, N, C) of snnexit's step-by-step simulation (``spikes``: gets the
    spikes per layer, summed over inputs and steps)."""
    snn.reset()
    acc, outs, total = None, [], None
    for t in range(T):
        y = snn.step(x[:, t] if temporal else x)
        acc = y.clone() if acc is None else acc + y
        outs.append(acc)
        if spikes is not None:
            s = snn.spike_counts().double().sum(0)
            total = s if total is None else total + s
    snn.reset()
    if spikes is not None:
        spikes.extend(total.tolist())
    return torch.stack(outs)


@torch.no_grad()
def run_chunks(snn: SpikingNetwork, x: torch.Tensor, T: int, plan: tuple[int, ...], temporal: bool = False,
               spikes: list | None = None):
    """Accumulated outputs (T, N, C) of snnexit's chunked simulation with chunk lengths ``plan``."""
    snn.reset()
    acc, outs, done, total = None, [], 0, None
    for k in plan:
        k = min(k, T - done)
        y = snn.step_chunk(chunk_frames(x, done, k, temporal))  # (k, N, C)
        for j in range(k):
            acc = y[j].clone() if acc is None else acc + y[j]
            outs.append(acc)
        if spikes is not None:
            s = snn.chunk_spike_counts().double().sum((0, 1))
            total = s if total is None else total + s
        done += k
        if done >= T:
            break
    snn.reset()
    if spikes is not None:
        spikes.extend(total.tolist())
    return torch.stack(outs)


def chunk_plan(snn: SpikingNetwork, x: torch.Tensor, T: int, temporal: bool, threads) -> tuple[tuple[int, ...], int]:
    """The chunk plan and thread count ``ChunkedEngine`` picks for a fixed-T run of ``x``."""
    engine = ChunkedEngine(snn, FixedT(), T, x.device, exit_steps=torch.full((1,), T), count_spikes=False,
                           threads="auto" if threads != 1 else 1, max_threads=threads)  # never more than the race's
    result = engine.run(x, temporal=temporal)
    return result.schedule, result.threads


def sj_spike_hooks(net: SJNetwork, totals: list):
    """Count spikes per layer on SpikingJelly's nodes (float64 sums: exact past 2**24)."""
    totals.extend([0.0] * len(net.nodes))
    return [node.register_forward_hook(lambda m, i, o, k=k: totals.__setitem__(k, totals[k] + float(o.double().sum())))
            for k, (node, _) in enumerate(net.nodes)]


MATCHING_FLOOR = {"snnexit": "floor_steps", "sj_single": "floor_steps", "snnexit_chunked": "floor_chunked",
                  "sj_multi": "floor_chunked"}


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def race(snn: SpikingNetwork, x: torch.Tensor, T: int, repeats: int, device: str = "cpu", channels_last: bool = True,
         temporal: bool = False, threads: int | None = None, memory_budget: float = 4 * 2 ** 30,
         sj: bool = True) -> dict:
    """One cell: every simulator on batch ``x`` for T steps, in one memory layout (the same for all:
    channels-last changes a convolution's summation order), with ``threads`` torch threads."""
    snn = copy.deepcopy(snn).to(device).optimize(channels_last)
    x = x.to(device)
    layout = (lambda t: t.contiguous(memory_format=torch.channels_last)) if channels_last else (lambda t: t)
    x_sj = layout(x) if x.dim() == 4 else x
    n = x.shape[0]
    with num_threads(threads):
        plan, chunk_threads = chunk_plan(snn, x, T, temporal, threads)
    floor = DenseFloor(snn, T, temporal, channels_last)
    floor_k = floor.chunk(x)
    largest = max(snn.neurons_per_layer(), default=1)
    multi_bytes = 4 * T * n * largest * x.element_size()  # ~4 live (T, n, layer) tensors in multi-step mode

    def chunked(spikes=None):
        with num_threads(chunk_threads):
            return run_chunks(snn, x, T, plan, temporal, spikes)

    sims = {"snnexit": lambda spikes=None: run_steps(snn, x, T, temporal, spikes), "snnexit_chunked": chunked}
    skipped, nets = {}, {}
    if sj:
        nets["sj_single"] = SJNetwork(snn, "s")
        if multi_bytes <= memory_budget:
            nets["sj_multi"] = SJNetwork(snn, "m")
        else:
            skipped["sj_multi"] = f"its T x n activations need about {multi_bytes / 2 ** 30:.1f} GiB"
    for name, net in nets.items():
        net.body.to(device)
        sims[name] = lambda spikes=None, net=net: net.run(x_sj, T, temporal)
    sims["floor_steps"] = lambda spikes=None: floor.steps(x)
    sims["floor_chunked"] = lambda spikes=None: floor.chunked(x, floor_k)

    with num_threads(threads):
        reference_spikes: list = []
        ours = run_steps(snn, x, T, temporal, reference_spikes)  # the reference (and a warm-up)
        check = {}
        for name in [s for s in sims if not s.startswith("floor")] + ["floor_steps", "floor_chunked"]:
            counted: list = []
            handles = sj_spike_hooks(nets[name], counted) if name in nets else []
            try:
                got = sims[name](counted if name.startswith("snnexit") else None)  # the check run warms up
            finally:
                for h in handles:
                    h.remove()
            if name == "snnexit" or name.startswith("floor"):
                continue
            check[name] = {"outputs_identical": bool(torch.equal(ours, got)),
                           "max_abs_diff": float((ours - got).abs().max()),
                           "predictions_identical": bool(torch.equal(ours.argmax(-1), got.argmax(-1))),
                           "spikes_identical": counted == reference_spikes}
        times = {name: [] for name in sims}
        names = list(sims)
        load = LoadMeter(probe_s=0.5)
        load.other_busy()
        for r in range(repeats):
            order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
            for name in order:
                _sync(device)
                started = time.perf_counter()
                sims[name]()
                _sync(device)
                times[name].append(time.perf_counter() - started)
        others = load.other_busy()
    med = {name: statistics.median(v) for name, v in times.items()}
    floor_best = min(med["floor_steps"], med["floor_chunked"])
    return {
        "batch_size": n, "T": T, "threads": threads or torch.get_num_threads(), "chunk_plan": list(plan),
        "chunked_threads": chunk_threads, "layout": "channels_last" if channels_last else "contiguous",
        "floor_chunk": floor_k, "identical": check, "skipped": skipped,
        "median_seconds": med, "all_seconds": times,
        "seconds_per_input_step": {name: s / (n * T) for name, s in med.items()},
        "speedup_vs": {name: med[name] / med["snnexit"] for name in med if name != "snnexit"},
        "chunked_speedup_vs": {name: med[name] / med["snnexit_chunked"] for name in med if name != "snnexit_chunked"},
        # how far each simulator is from the dense arithmetic of its kind (1.0: at the limit): step by step
        # against T passes of the layers, several steps per layer call against the chunked passes
        "over_floor": {name: med[name] / med[floor] for name, floor in MATCHING_FLOOR.items() if name in med},
        "over_best_floor": {name: med[name] / floor_best for name in med},
        "other_processes_busy_cores": others, "load_average": list(os.getloadavg()),
    }
