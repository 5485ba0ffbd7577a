"""``snnexit table``: the Dynamic Confidence paper's Table 1 on the data we have.

The grid {datasets} x {models} x {converters} (default {mnist5k, digits} x {vgg_small,
resnet20} x {qcfs, qffs}). As in the paper, both converters share one ANN per data set and
model, with 2-bit LSQ activations in all hidden layers (an LSQ activation is QCFS with
L = 2**b - 1 and lam = s * L, so the qcfs converter takes it as is). Each cell: train the ANN
(or reuse the cache), fit the temperature, convert, trace validation and test, fit Dynamic
Confidence on validation, report on test with the oracle beside it. Epochs and T are stated in
every row: the defaults are a CI-scale budget (minutes), not the paper's 300 epochs.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from snnexit.cli.common import add_device, positive_int, progress_log
from snnexit.errors import SnnexitError
from snnexit.io import write_json, write_text
from snnexit.pipeline import RunConfig, calibrate, check_writable, evaluate_policies, trace_splits, trained_ann
from snnexit.report.tables import GRID_HEADER, grid_rows, grid_verdict

# Training epochs per data set: a few minutes for the whole grid on 2 CPU cores.
DEFAULT_EPOCHS = {"mnist5k": 4, "digits": 20}
DEFAULT_T = {"qcfs": 32, "qffs": 16}  # QFFS settles within a few steps of 2**b - 1; QCFS needs longer


def run_grid(datasets, models, converters, *, bits: int = 2, epochs: dict | None = None, T: dict | None = None,
             width: int | None = None, seed: int = 0, device: str = "cpu", cache_dir: str | None = None,
             log=print) -> list[dict]:
    """Every cell of the grid as ``{dataset, model, converter, epochs, width, seconds, results}``."""
    epochs = {**DEFAULT_EPOCHS, **(epochs or {})}
    T = {**DEFAULT_T, **(T or {})}
    from snnexit.data import load_dataset

    cells = []
    for dataset in datasets:
        data = load_dataset(dataset, seed)
        for model in models:
            base = RunConfig(dataset=dataset, model=model, quantizer="lsq", bits=bits, epochs=epochs.get(dataset, 15),
                             width=width, seed=seed, device=device, cache_dir=cache_dir, progress=False)
            started = time.perf_counter()
            ann = trained_ann(base, data, log)
            cal = calibrate(ann, data, device)
            ann_seconds = time.perf_counter() - started
            for converter in converters:
                started = time.perf_counter()
                config = replace(base, converter=converter, T=T.get(converter, 32))
                config.validate()
                val, test = trace_splits(ann, data, config, cal["temperature"])
                policies, _ = evaluate_policies(val, test)
                results = {"ann": {"test_acc": cal["test_acc"], "val_acc": cal["val_acc"]},
                           "calibration": {"temperature": cal["temperature"]},
                           "snn": {"T": config.T, "alpha": test.meta.get("alpha"),
                                   "test_acc_per_step": test.accuracy_per_step().tolist()},
                           "policies": policies}
                cell = {"dataset": dataset, "model": model, "converter": converter, "epochs": config.epochs,
                        "width": width, "bits": bits, "ann_seconds": ann_seconds,
                        "seconds": time.perf_counter() - started, "results": results}
                log(f"{dataset} / {model} / {converter}: ANN {100 * cal['test_acc']:.2f}%, fixed T={config.T} "
                    f"{100 * policies['fixed']['test_acc']:.2f}%, DC {100 * policies['dynamic_confidence']['test_acc']:.2f}% "
                    f"at {policies['dynamic_confidence']['mean_steps']:.2f} steps")
                cells.append(cell)
    return cells


def grid_markdown(cells: list[dict], bits: int) -> str:
    lines = ["# Dynamic Confidence on QCFS and QFFS (the paper's Table 1 format)", "",
             f"ANNs: {bits}-bit LSQ activations in every hidden layer, full-precision weights and output layer, "
             "one ANN per data set and model shared by both converters. Epochs are this run's (a CI-scale budget, "
             "far from converged training); T is the fixed-T baseline and the trace length. Accuracies are on the "
             "held-out test split; Dynamic Confidence's threshold is the no-loss one on the validation split.", "",
             GRID_HEADER]
    for cell in cells:
        lines += grid_rows(cell)
    lines += ["", "## Target: >= 40% of the steps saved at no test-accuracy loss", ""]
    lines += [f"- {grid_verdict(cell)}" for cell in cells]
    return "\n".join(lines) + "\n"


def register(sub) -> None:
    p = sub.add_parser("table", help="the paper's Table 1 grid: data sets x models x {qcfs, qffs}",
                       description="Train (or reuse) one 2-bit LSQ ANN per data set and model, convert it with each "
                                   "converter, fit Dynamic Confidence on validation and write table.md + table.json.")
    p.add_argument("--datasets", nargs="+", default=["mnist5k", "digits"])
    p.add_argument("--models", nargs="+", default=["vgg_small", "resnet20"])
    p.add_argument("--converters", nargs="+", default=["qcfs", "qffs"])
    p.add_argument("--bits", type=positive_int, default=2, help="LSQ bit width b (default 2)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"training epochs for every data set (default {DEFAULT_EPOCHS})")
    p.add_argument("--T-qcfs", type=positive_int, default=DEFAULT_T["qcfs"], help="T of the qcfs cells")
    p.add_argument("--T-qffs", type=positive_int, default=DEFAULT_T["qffs"], help="T of the qffs cells")
    p.add_argument("--width", type=positive_int, default=None, help="model width (default: each model's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (1 is much faster on a machine shared with other jobs)")
    p.add_argument("--out", default="runs/table", help="output folder (default runs/table)")
    p.add_argument("--cache-dir", default=None, help="where trained ANNs are cached")
    add_device(p)
    p.set_defaults(func=main)


def main(args) -> int:
    out = check_writable(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.converters:
        if name not in ("qcfs", "qffs"):
            raise SnnexitError(f"snnexit table compares the LSQ converters qcfs and qffs, got {name!r}")
    epochs = {d: args.epochs for d in args.datasets} if args.epochs else None
    started = time.perf_counter()
    cells = run_grid(args.datasets, args.models, args.converters, bits=args.bits, epochs=epochs,
                     T={"qcfs": args.T_qcfs, "qffs": args.T_qffs}, width=args.width, seed=args.seed,
                     device=args.device, cache_dir=args.cache_dir, log=progress_log(args))
    text = grid_markdown(cells, args.bits)
    write_text(Path(out) / "table.md", text)
    write_json(Path(out) / "table.json", {"cells": cells, "bits": args.bits, "seconds": time.perf_counter() - started,
                                          "verdicts": [grid_verdict(c) for c in cells]})
    print(text)
    print(f"Wrote {out}/table.md and table.json.")
    return 0
