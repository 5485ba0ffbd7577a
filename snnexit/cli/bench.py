"""``snnexit bench``: wall-clock time of fixed T against early exit (the paper's Table 2);
the measurements are :mod:`snnexit.experiments.bench`."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from snnexit.cli.common import add_device, path_arg, positive_int, progress_log
from snnexit.environment import user_path
from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES
from snnexit.experiments.bench import CERTIFIED, BenchSettings, bench
from snnexit.io import check_output_file, write_json
from snnexit.names import listed
from snnexit.runs.paths import check_cache_folder


def register(sub) -> None:
    p = sub.add_parser("bench", help="wall-clock time of fixed T vs early exit (latency at batch 1, throughput)",
                       description="Time the early-exit runtime against fixed T on the pipeline's network "
                                   "(paper Table 2 format) and write JSON.")
    p.add_argument("--workload", default=None,
                   help=f"the network to time: {listed('workload')}: default (vgg_small, MNIST-5k 1x28x28), vgg16 and "
                        "resnet20 (MNIST-5k resized to 3x32x32), event_cnn (vgg_small on 2x34x34 event frames); "
                        "--dataset, --model, --T and --epochs override its settings")
    p.add_argument("--dataset", default=None, help=f"data set: {listed('dataset')} (default: the workload's)")
    p.add_argument("--model", default=None, help=f"model: {listed('model')} (default: the workload's)")
    p.add_argument("--T", type=positive_int, default=None, help="time steps of the fixed-T baseline (default: the "
                                                                "workload's, 32 for the default)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs of the (cached) ANN (default: the workload's, the same as snnexit run for the "
                        "default, so its cache is reused)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policy", default="dynamic_confidence",
                   help=f"exit policy: a registered name, {listed('policy')} (fitted on the validation trace), "
                        "certified (the network's certified exit, as snnexit run makes it) or a policy.json / "
                        "certified.json file")
    p.add_argument("--latency-inputs", type=positive_int, default=200, help="test inputs timed at batch size 1")
    p.add_argument("--batch-size", type=positive_int, default=256, help="batch size of the throughput run")
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=None,
                   help="throughput batch sizes, one run each (default: --batch-size)")
    p.add_argument("--throughput-inputs", type=positive_int, default=None,
                   help="test inputs of the throughput run (default: the whole test split)")
    p.add_argument("--check-inputs", type=positive_int, default=None,
                   help="test inputs on which both runtimes' decisions are checked against the offline policy before "
                        "timing (default: the whole test split; fewer make a large network cheaper to bench)")
    p.add_argument("--repeats", type=positive_int, default=5, help="interleaved repeats (medians are reported)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice; the chunked engine chooses its own, never more)")
    p.add_argument("--thread-counts", type=thread_count, nargs="+", default=None,
                   help="one row per thread count ('all': every core), e.g. --thread-counts 1 all (default: --threads)")
    p.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                   help="time the dense floor (the same layers as an ANN) beside the engines (default: on)")
    p.add_argument("--busy", action=argparse.BooleanOptionalAction, default=True,
                   help="also time with a competing process spinning on one core (default: on)")
    p.add_argument("--busy-inputs", type=positive_int, default=20,
                   help="test inputs timed at batch size 1 (and batches of the throughput run) when busy")
    p.add_argument("--energy", default="fp32", help="energy per operation: fp32, fp16, int8 (45 nm) or MAC_PJ,AC_PJ")
    p.add_argument("--devices", nargs="+", default=None,
                   help="devices to time (default: cpu, and cuda when available)")
    p.add_argument("--out", type=path_arg, default="benchmarks/results/bench.json", help="JSON output file")
    p.add_argument("--cache-dir", type=path_arg, default=None, help="where trained ANNs are cached")
    add_device(p)  # the device that traces and fits (the timed devices are --devices)
    p.set_defaults(func=main)


def thread_count(text: str) -> int:
    """A thread count, or ``all`` (every core of this machine)."""
    return (os.cpu_count() or 1) if text == "all" else positive_int(text)


def main(args) -> int:
    if args.policy not in POLICIES and args.policy != CERTIFIED:  # a policy.json / certified.json file
        args.policy = user_path(args.policy, "--policy")
        if Path(args.policy).exists() and Path(args.policy).resolve() == Path(args.out).resolve():
            raise SnnexitError(f"--out {args.out} is the --policy file: the timings would replace the exit rule; "
                               f"choose another --out")
    settings = BenchSettings(**{f.name: getattr(args, f.name) for f in fields(BenchSettings) if f.name != "command"},
                             command="snnexit bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "")
    settings.validate()  # before any training or timing: the settings, the devices,
    check_cache_folder(args.cache_dir)  # the cache
    check_output_file(args.out, "output file (--out)")  # and the JSON file
    results = bench(settings, log=progress_log(args))  # stderr, stamped; --quiet: none
    write_json(args.out, results)
    print(results["table2"])
    print(f"Wrote {args.out}")
    return 0
