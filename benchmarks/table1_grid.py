"""The paper's Table 1 grid on our data, and the issue's two targets.

Runs {mnist5k, digits} x {vgg_small, resnet20} x {qcfs, qffs} (one 2-bit LSQ ANN per data set
and model, shared by both converters, as in the paper) with a fresh ANN cache, and checks:

* QFFS reaches its fixed-T accuracy within 2**b - 1 + 2 steps on MNIST-5k;
* Dynamic Confidence saves >= 40% of the steps at no test-accuracy loss in every cell (and says
  where not and why).

Usage: python benchmarks/table1_grid.py [--epochs-mnist 4] [--epochs-digits 20] [--threads 1]
       [--out benchmarks/results/table1_grid.json]
Writes the JSON and, beside it, table1_grid.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnexit.experiments.table1 import run_grid  # noqa: E402
from snnexit.report.tables import grid_markdown  # noqa: E402
from snnexit.io import write_json, write_text  # noqa: E402
from snnexit.report.tables import grid_verdict  # noqa: E402


def first_step_reaching(acc_per_step: list[float], target: float) -> int | None:
    """1-based first step whose accuracy is at least ``target``."""
    return next((t + 1 for t, a in enumerate(acc_per_step) if a >= target - 1e-12), None)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs-mnist", type=int, default=4)
    p.add_argument("--epochs-digits", type=int, default=20)
    p.add_argument("--bits", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared machine)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "table1_grid.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        cells = run_grid(["mnist5k", "digits"], ["vgg_small", "resnet20"], ["qcfs", "qffs"], bits=args.bits,
                         epochs={"mnist5k": args.epochs_mnist, "digits": args.epochs_digits}, cache_dir=cache,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
    seconds = time.perf_counter() - started
    bound = 2 ** args.bits - 1 + 2
    qffs_speed = []
    for c in cells:
        if c["converter"] != "qffs" or c["dataset"] != "mnist5k":
            continue
        acc = c["results"]["snn"]["test_acc_per_step"]
        step = first_step_reaching(acc, acc[-1])
        qffs_speed.append({"model": c["model"], "fixed_T_acc": acc[-1], "first_step_at_fixed_T_acc": step,
                           "bound": bound, "met": step is not None and step <= bound})
    dc = []
    for c in cells:
        pol = c["results"]["policies"]
        loss = pol["fixed"]["test_acc"] - pol["dynamic_confidence"]["test_acc"]
        dc.append({"cell": f"{c['dataset']}/{c['model']}/{c['converter']}", "saving": pol["dynamic_confidence"]["saving"],
                   "test_acc_change": -loss, "oracle_saving": pol["oracle"]["saving"],
                   "met": loss <= 1e-12 and pol["dynamic_confidence"]["saving"] >= 0.40,
                   "verdict": grid_verdict(c)})
    result = {"command": " ".join(sys.argv), "machine": platform.platform(), "torch_threads": args.threads,
              "seconds": seconds, "epochs": {"mnist5k": args.epochs_mnist, "digits": args.epochs_digits},
              "targets": {"qffs_reaches_fixed_T_within_2^b+1_steps_on_mnist5k": qffs_speed,
                          "dc_saves_40pct_at_no_test_loss": dc},
              "cells": cells}
    write_json(args.out, result)
    write_text(Path(args.out).with_suffix(".md"), grid_markdown(cells, args.bits))
    print(grid_markdown(cells, args.bits))
    for q in qffs_speed:
        print(f"QFFS {q['model']}: fixed-T accuracy {100 * q['fixed_T_acc']:.2f}% first reached at step "
              f"{q['first_step_at_fixed_T_acc']} (bound {bound}): {'met' if q['met'] else 'MISSED'}")
    print(f"DC target met in {sum(d['met'] for d in dc)}/{len(dc)} cells; grid took {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
