"""Speed race: the same converted network, the same inputs, snnexit against SpikingJelly 2.0.

The network is the default MNIST-5k QCFS model of the built-in pipeline (trained once and
cached), converted to soft-reset IF neurons. SpikingJelly runs an exact copy of it: every
snnexit ``IFNeuron`` becomes ``IFNode(v_threshold=theta, v_reset=None)`` followed by a
multiplication by theta (a QCFS spike carries theta), with ``v`` set to theta/2 after every
reset; every other module is the same object. Three simulators run T steps on the same batch:

* ``snnexit``: ``SpikingNetwork.step`` one step at a time (what the step engine uses);
* ``snnexit_chunked``: ``SpikingNetwork.step_chunk`` over the chunk plan and with the thread count
  that ``ChunkedEngine`` chooses for fixed T at this batch size (chunks of k steps layer by layer,
  capped by its memory budget; one thread where that is measured faster or the machine is busy);
* ``sj_single``: SpikingJelly single-step mode, one step at a time;
* ``sj_multi``: SpikingJelly multi-step mode (``SeqToANNContainer`` around every stateless
  module, ``step_mode='m'`` neurons): all T steps layer by layer in one call.

Each race runs in one memory layout shared by all three (channels-last, as
``SpikingNetwork.optimize()`` sets it, and PyTorch's default contiguous one), since the layout
changes a convolution's summation order. Before timing, the outputs are compared: the accumulated outputs ``Y[t]`` for every t and the
spike counts per layer must be identical (bit for bit) for the race to count. Timing: medians of
interleaved repeats (the simulators take turns, in a rotating order), reported as ratios
``time(SpikingJelly) / time(snnexit)`` (> 1: snnexit is faster), per batch size.

``--busy`` runs every race with a competing process spinning on one core (an edge device running
other work). SpikingJelly and ``snnexit`` keep torch's thread setting; ``snnexit_chunked`` picks
its own, which is part of what is measured.

Usage: python benchmarks/speed_race.py [--batch-sizes 1 256] [--T 32] [--repeats 7]
       [--threads 1] [--device cpu] [--busy] [--out benchmarks/results/speed_race.json]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnexit.neurons.modules import IFNeuron, SpikingNeuron  # noqa: E402
from snnexit.data import load_dataset  # noqa: E402
from snnexit.experiments.bench import competing_process  # noqa: E402
from snnexit.runs.network import trained_snn  # noqa: E402
from snnexit.runs.settings import RunConfig  # noqa: E402
from snnexit.simulate.network import SpikingNetwork  # noqa: E402
from snnexit.runtime.threads import LoadMeter  # noqa: E402


def default_network(device: str = "cpu", log=print):
    """The cached default model of ``snnexit run`` without a conversion fix (SpikingJelly's IF node runs the plain
    converted network): (snn, data, temperature)."""
    config = RunConfig(device=device, progress=False, conversion_fix="none")
    data = load_dataset(config.dataset, config.seed)
    snn, calibration = trained_snn(config, data, log=log)
    return snn.to(device).eval(), data, calibration["temperature"]


class Scale(nn.Module):
    """A QCFS spike carries amplitude theta: ``s * theta``, the same multiplication as snnexit."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.register_buffer("theta", theta.detach().clone())

    def forward(self, s):
        return s * self.theta


class SJNetwork:
    """A SpikingJelly copy of a snnexit network (single- or multi-step mode)."""

    def __init__(self, snn: SpikingNetwork, step_mode: str):
        from spikingjelly.activation_based import layer, neuron

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
                    raise SystemExit(f"the race supports IF networks only, found {type(child).__name__}")
                elif any(True for _ in child.children()):
                    swap(child)
                elif step_mode == "m":
                    setattr(parent, name, layer.SeqToANNContainer(child))

        swap(body)
        self.body = body.eval()

    def reset(self):
        from spikingjelly.activation_based import functional

        functional.reset_net(self.body)
        for node, theta in self.nodes:
            node.v = 0.5 * theta  # QCFS: v(0) = theta / 2 (SpikingJelly starts soft-reset IF at 0)

    @torch.no_grad()
    def run(self, x: torch.Tensor, T: int) -> torch.Tensor:
        """Accumulated outputs (T, N, C)."""
        self.reset()
        if self.step_mode == "m":
            y = self.body(x.unsqueeze(0).expand(T, *x.shape))  # (T, N, C)
            acc, outs = y[0].clone(), [y[0].clone()]
            for t in range(1, T):  # accumulate in the same order as the step-by-step runs
                acc = acc + y[t]
                outs.append(acc)
            return torch.stack(outs)
        acc, outs = None, []
        for _ in range(T):
            y = self.body(x)
            acc = y.clone() if acc is None else acc + y
            outs.append(acc)
        return torch.stack(outs)


@torch.no_grad()
def run_snnexit(snn: SpikingNetwork, x: torch.Tensor, T: int) -> torch.Tensor:
    """Accumulated outputs (T, N, C) from snnexit's step-by-step simulation."""
    snn.reset()
    acc, outs = None, []
    for _ in range(T):
        y = snn.step(x)
        acc = y.clone() if acc is None else acc + y
        outs.append(acc)
    snn.reset()
    return torch.stack(outs)


@torch.no_grad()
def run_chunked(snn: SpikingNetwork, x: torch.Tensor, T: int, plan: tuple[int, ...]) -> torch.Tensor:
    """Accumulated outputs (T, N, C) from snnexit's chunked simulation with chunk lengths ``plan``."""
    snn.reset()
    acc, outs, done = None, [], 0
    for k in plan:
        k = min(k, T - done)
        y = snn.step_chunk(x.unsqueeze(0).expand(k, *x.shape))  # (k, N, C)
        for j in range(k):
            acc = y[j].clone() if acc is None else acc + y[j]
            outs.append(acc)
        done += k
        if done >= T:
            break
    snn.reset()
    return torch.stack(outs)


def chunk_plan(snn: SpikingNetwork, x: torch.Tensor, T: int) -> tuple[tuple[int, ...], int]:
    """The chunk plan and thread count ``ChunkedEngine`` picks for a fixed-T run of ``x``."""
    from snnexit.exit import FixedT
    from snnexit.runtime.chunked import ChunkedEngine

    result = ChunkedEngine(snn, FixedT(), T, x.device, exit_steps=torch.full((1,), T), count_spikes=False).run(x)
    return result.schedule, result.threads


def spike_totals_sj(net: SJNetwork, x: torch.Tensor, T: int) -> list[float]:
    """Spikes per layer over T steps, counted with hooks on SpikingJelly's nodes."""
    totals = [0.0] * len(net.nodes)
    # float64 sums: a layer's total over 256 inputs x 32 steps passes 2**24, where float32 stops counting exactly
    handles = [node.register_forward_hook(lambda m, i, o, k=k: totals.__setitem__(k, totals[k] + float(o.double().sum())))
               for k, (node, _) in enumerate(net.nodes)]
    try:
        net.run(x, T)
    finally:
        for h in handles:
            h.remove()
    return totals


@torch.no_grad()
def chunk_spike_totals(snn: SpikingNetwork, x: torch.Tensor, T: int, plan: tuple[int, ...]) -> list[float]:
    snn.reset()
    totals, done = None, 0
    for k in plan:
        k = min(k, T - done)
        snn.step_chunk(x.unsqueeze(0).expand(k, *x.shape))
        s = snn.chunk_spike_counts().double().sum((0, 1))
        totals = s if totals is None else totals + s
        done += k
        if done >= T:
            break
    snn.reset()
    return totals.tolist()


def spike_totals_snnexit(snn: SpikingNetwork, x: torch.Tensor, T: int) -> list[float]:
    from snnexit.simulate import simulate_batch

    _, S = simulate_batch(snn, x, T)
    return S.double().sum((0, 1)).tolist()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def race(snn, x: torch.Tensor, T: int, repeats: int, device: str, channels_last: bool) -> dict:
    """One race in one memory layout, the same for all three: channels-last changes the order
    in which a convolution sums, and a neuron whose potential sits within rounding of its
    threshold then fires one step earlier or later, so outputs compare bit for bit only
    within one layout."""
    snn = copy.deepcopy(snn).optimize(channels_last)
    sj_single, sj_multi = SJNetwork(snn, "s"), SJNetwork(snn, "m")
    sj_single.body.to(device), sj_multi.body.to(device)
    x_sj = x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x
    plan, threads = chunk_plan(snn, x, T)
    from snnexit.runtime.threads import num_threads

    def chunked():
        with num_threads(threads):
            return run_chunked(snn, x, T, plan)

    sims = {"snnexit": lambda: run_snnexit(snn, x, T), "snnexit_chunked": chunked}
    sims["sj_single"] = lambda: sj_single.run(x_sj, T)
    sims["sj_multi"] = lambda: sj_multi.run(x_sj, T)

    ours = run_snnexit(snn, x, T)
    check = {}
    ref_spikes = spike_totals_snnexit(snn, x, T)
    mine = chunked()
    check["snnexit_chunked"] = {"outputs_identical": bool(torch.equal(ours, mine)),
                                "max_abs_diff": float((ours - mine).abs().max()),
                                "predictions_identical": bool(torch.equal(ours.argmax(-1), mine.argmax(-1))),
                                "spikes_identical": True}  # set below
    for name, net in (("sj_single", sj_single), ("sj_multi", sj_multi)):
        theirs = sims[name]()
        check[name] = {
            "outputs_identical": bool(torch.equal(ours, theirs)),
            "max_abs_diff": float((ours - theirs).abs().max()),
            "predictions_identical": bool(torch.equal(ours.argmax(-1), theirs.argmax(-1))),
            "spikes_identical": spike_totals_sj(net, x_sj, T) == ref_spikes,
        }
    for fn in sims.values():  # warm-up
        fn()
    times = {name: [] for name in sims}
    names = list(sims)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
        for name in order:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(timed(lambda: (sims[name](), torch.cuda.synchronize() if device.startswith("cuda")
                                               else None)))
    med = {name: statistics.median(v) for name, v in times.items()}
    n = x.shape[0]
    check["snnexit_chunked"]["spikes_identical"] = chunk_spike_totals(snn, x, T, plan) == ref_spikes
    return {
        "batch_size": n,
        "chunk_plan": list(plan),
        "chunked_threads": threads,
        "torch_threads": torch.get_num_threads(),
        "T": T,
        "layout": "channels_last" if channels_last else "contiguous",
        "identical": check,
        "median_seconds": med,
        "all_seconds": times,
        "steps_per_second": {name: n * T / s for name, s in med.items()},
        "speedup_vs": {name: med[name] / med["snnexit"] for name in med if name != "snnexit"},
        "chunked_speedup_vs": {name: med[name] / med["snnexit_chunked"] for name in med if name != "snnexit_chunked"},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    ap.add_argument("--T", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: leave torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--layouts", nargs="+", choices=["channels_last", "contiguous"],
                    default=["channels_last", "contiguous"], help="memory layouts to race in (all three use the same)")
    ap.add_argument("--busy", action="store_true", help="a competing process spins on one core during every race")
    ap.add_argument("--out", default=None, help="JSON output (default benchmarks/results/speed_race[_busy].json)")
    args = ap.parse_args()
    if args.out is None:
        args.out = str(ROOT / "benchmarks" / "results" / f"speed_race{'_busy' if args.busy else ''}.json")
    if args.threads:
        torch.set_num_threads(args.threads)
    snn, data, _ = default_network(args.device, log=lambda m: print(m, file=sys.stderr))
    load_before = LoadMeter(probe_s=1.0).other_busy()  # cores other processes kept busy (not ours)
    print(f"other processes keep {load_before:.2f} cores busy", file=sys.stderr)

    results = []
    with competing_process(args.busy):
        for bs, channels_last in itertools.product(args.batch_sizes, args.layouts):
            x = data.test.x[:bs].to(args.device)
            r = race(snn, x, args.T, args.repeats, args.device, channels_last == "channels_last")
            r["busy"] = args.busy
            results.append(r)
            ok = {name: c["outputs_identical"] and c["spikes_identical"] for name, c in r["identical"].items()}
            c = r["chunked_speedup_vs"]
            print(f"batch {bs:4d} {r['layout']:13s}{' busy' if args.busy else ''}: step {1e3 * r['median_seconds']['snnexit']:.1f} ms, "
                  f"chunked {1e3 * r['median_seconds']['snnexit_chunked']:.1f} ms for T={args.T} (plan {r['chunk_plan']}, "
                  f"{r['chunked_threads']} threads); chunked vs SJ single-step {c['sj_single']:.2f}x, multi-step "
                  f"{c['sj_multi']:.2f}x; step vs SJ single {r['speedup_vs']['sj_single']:.2f}x, multi "
                  f"{r['speedup_vs']['sj_multi']:.2f}x; identical: {ok}")
    from snnexit.io import write_json

    write_json(args.out, {
        "benchmark": "speed_race",
        "command": "python benchmarks/speed_race.py " + " ".join(sys.argv[1:]),
        "busy": args.busy,
        "other_processes_busy_cores": load_before,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "device": args.device,
                    "cpu_count": __import__("os").cpu_count()},
        "results": results,
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
