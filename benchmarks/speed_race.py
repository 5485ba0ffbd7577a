"""Speed race: a trained network at the size users run, snnexit against SpikingJelly 2.0 and the dense floor.

The network is a workload's (``snnexit.experiments.workloads``: ``default`` vgg_small on 1 x 28 x 28
MNIST-5k, ``vgg16`` and ``resnet20`` on MNIST-5k resized to 3 x 32 x 32, ``event_cnn`` vgg_small on
2 x 34 x 34 event frames), trained once and cached like ``snnexit run``'s, converted to soft-reset IF
neurons without a conversion fix (SpikingJelly's IF node runs the plain converted network). Every
cell (batch size x thread count x memory layout) races snnexit's step-by-step and chunked simulation, SpikingJelly's single- and multi-step modes and the dense floor (the same
layers as an ANN) on the same inputs for T steps, after checking that every simulator computes
the same outputs and spikes (``snnexit.experiments.race``). One JSON per run.

Usage: python benchmarks/speed_race.py [--workload vgg16] [--batch-sizes 1 16 256] [--threads 1 all]
       [--repeats 3] [--layouts channels_last] [--device cpu] [--busy] [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnexit.data import load_dataset  # noqa: E402
from snnexit.experiments.bench import competing_process  # noqa: E402
from snnexit.experiments.race import race  # noqa: E402
from snnexit.experiments.workloads import WORKLOADS, workload  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.runs.network import trained_snn  # noqa: E402
from snnexit.runtime.threads import LoadMeter  # noqa: E402


def thread_count(value: str) -> int:
    return (os.cpu_count() or 1) if value == "all" else int(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="default", choices=WORKLOADS.names())
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 256])
    ap.add_argument("--threads", nargs="+", default=["1", "all"], help="torch thread counts to race with (or 'all')")
    ap.add_argument("--T", type=int, default=None, help="steps (default: the workload's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--layouts", nargs="+", choices=["channels_last", "contiguous"], default=["channels_last"],
                    help="memory layouts to race in (every simulator uses the same)")
    ap.add_argument("--memory-budget-gb", type=float, default=4.0,
                    help="skip SpikingJelly's multi-step mode where its T x batch activations need more")
    ap.add_argument("--busy", action="store_true", help="a competing process spins on one core during every race")
    ap.add_argument("--out", default=None, help="JSON output (default benchmarks/results/speed_race_<workload>.json)")
    args = ap.parse_args()
    w = workload(args.workload)
    T = args.T or w.T
    out = args.out or str(ROOT / "benchmarks" / "results" / f"speed_race_{w.name}{'_busy' if args.busy else ''}.json")
    # without a conversion fix: SpikingJelly's IF node runs the plain converted network
    config = w.config(device=args.device, conversion_fix="none")
    data = load_dataset(config.dataset, config.seed)
    snn, calibration = trained_snn(config, data, log=lambda m: print(m, file=sys.stderr))
    snn = snn.to(args.device).eval()
    load_before = LoadMeter(probe_s=1.0).other_busy()  # cores other processes kept busy (not ours)
    print(f"{w.name}: other processes keep {load_before:.2f} cores busy; load average {os.getloadavg()}",
          file=sys.stderr)
    results = []
    with competing_process(args.busy):
        for bs, threads, layout in itertools.product(args.batch_sizes, args.threads, args.layouts):
            x = data.test.x[:bs]
            r = race(snn, x, T, args.repeats, args.device, layout == "channels_last", data.temporal,
                     thread_count(threads), args.memory_budget_gb * 2 ** 30)
            r["busy"] = args.busy
            results.append(r)
            med, floor = r["median_seconds"], min(r["median_seconds"]["floor_steps"], r["median_seconds"]["floor_chunked"])
            ok = all(c["spikes_identical"] and c["predictions_identical"] for c in r["identical"].values())
            print(f"batch {bs:4d}, {r['threads']} threads, {layout}: step {med['snnexit']:.3g} s, chunked "
                  f"{med['snnexit_chunked']:.3g} s (plan {r['chunk_plan']}, {r['chunked_threads']} threads), "
                  f"SJ single {med.get('sj_single', float('nan')):.3g} s, multi {med.get('sj_multi', float('nan')):.3g} s, "
                  f"floor {floor:.3g} s; spikes and answers identical: {ok}", file=sys.stderr)
    write_json(out, {
        "benchmark": "speed_race",
        "command": "python benchmarks/speed_race.py " + " ".join(sys.argv[1:]),
        "workload": {"name": w.name, "about": w.about, "dataset": config.dataset, "model": config.model, "T": T,
                     "input_shape": list(data.test.x.shape[1:]), "temporal": data.temporal,
                     "ann_test_acc": calibration["test_acc"]},
        "busy": args.busy, "other_processes_busy_cores": load_before, "load_average": list(os.getloadavg()),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "device": args.device,
                    "cpu_count": os.cpu_count(), "processor": platform.processor()},
        "results": results,
    })
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
