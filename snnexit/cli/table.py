"""``snnexit table``: the paper's Table 1 grid (:mod:`snnexit.experiments.table1`), default
{mnist5k, digits} x {vgg_small, resnet20} x {qcfs, qffs}. Epochs and T are stated in every row:
the defaults are a CI-scale budget (minutes), not the paper's 300 epochs.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from snnexit.cli.common import add_device, path_arg, positive_int, progress_log
from snnexit.convert import CONVERTERS
from snnexit.data import DATASETS, default_frames
from snnexit.errors import SnnexitError
from snnexit.experiments.table1 import DEFAULT_EPOCHS, DEFAULT_T, run_grid
from snnexit.io import check_output_folder, write_json, write_text
from snnexit.report.tables import grid_markdown, grid_verdict
from snnexit.runs.ownership import check_replaceable, mark_folder
from snnexit.runs.paths import check_cache_folder, check_files_in
from snnexit.runs.settings import MAX_T, RunConfig, check_range


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
    p.add_argument("--T-qcfs", type=positive_int, default=None, help=f"T of the qcfs cells (default {DEFAULT_T['qcfs']})")
    p.add_argument("--T-qffs", type=positive_int, default=None, help=f"T of the qffs cells (default {DEFAULT_T['qffs']})")
    p.add_argument("--width", type=positive_int, default=None, help="model width (default: each model's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (1 is much faster on a machine shared with other jobs)")
    p.add_argument("--out", type=path_arg, default="runs/table", help="output folder (default runs/table)")
    p.add_argument("--cache-dir", type=path_arg, default=None, help="where trained ANNs are cached")
    p.add_argument("--overwrite", action="store_true",
                   help="replace table.md/json in an --out that snnexit did not write (default: refuse)")
    add_device(p)
    p.set_defaults(func=main)


MAX_THREADS = 1024
OUT_FILES = ("table.md", "table.json")


def check_args(args) -> Path:
    """Every cell's settings, the device, the cache and the output folder, before any training;
    returns the output folder."""
    for name in args.converters:
        if name not in ("qcfs", "qffs"):
            raise SnnexitError(f"snnexit table compares the LSQ converters qcfs and qffs, got {name!r}")
    if args.threads is not None:
        check_range("--threads", args.threads, 1, MAX_THREADS)
    for converter in ("qcfs", "qffs"):
        flag, given = f"--T-{converter}", getattr(args, f"T_{converter}")
        if given is not None:
            check_range(flag, given, 1, MAX_T)
            if converter not in args.converters:
                raise SnnexitError(f"{flag} does nothing without {converter} in --converters (the grid has "
                                   f"{' and '.join(dict.fromkeys(args.converters))} cells); drop it, or add {converter}")
    for dataset in dict.fromkeys(args.datasets):
        check_event_cells(args, dataset)
        for model in dict.fromkeys(args.models):
            for converter in dict.fromkeys(args.converters):
                T = steps(args, converter)
                RunConfig(dataset=dataset, model=model, converter=converter, quantizer="lsq", bits=args.bits,
                          epochs=args.epochs or DEFAULT_EPOCHS.get(dataset, 15), T=T, width=args.width,
                          seed=args.seed, device=args.device, cache_dir=args.cache_dir).validate()
    check_cache_folder(args.cache_dir)
    out = check_files_in(check_output_folder(args.out, "output folder (--out)"), OUT_FILES)
    check_replaceable(out, OUT_FILES, "table", args.overwrite)
    return out


def steps(args, converter: str) -> int:
    """T of the ``converter`` cells: its flag, else the default."""
    given = getattr(args, f"T_{converter}")
    return DEFAULT_T[converter] if given is None else given


def check_event_cells(args, dataset: str) -> None:
    """Event data (``(T, 2, H, W)`` frames) in the grid: each converter must run frames, and T must
    not exceed the frames (the converted SNN sees one per step); said with this command's flags."""
    DATASETS.get(dataset)  # an unknown name lists the known ones
    frames = default_frames(dataset)
    if frames is None:
        return
    for converter in dict.fromkeys(args.converters):
        if not getattr(CONVERTERS.get(converter), "temporal", True):
            raise SnnexitError(f"{dataset} is event data and the {converter} converter cannot run its frames (it "
                               f"delivers one static input); pass --converters qcfs, or leave {dataset} out of "
                               f"--datasets")
    for converter in dict.fromkeys(args.converters):
        if steps(args, converter) > frames:
            raise SnnexitError(f"T = {steps(args, converter)} of the {converter} cells exceeds the {frames} frames of "
                               f"{dataset} (the converted SNN sees one frame per step); pass --T-{converter} {frames} "
                               f"or fewer")


def main(args) -> int:
    out = check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    epochs = {d: args.epochs for d in args.datasets} if args.epochs else None
    started = time.perf_counter()
    mark_folder(out, "table", OUT_FILES)
    cells = run_grid(args.datasets, args.models, args.converters, bits=args.bits, epochs=epochs,
                     T={c: steps(args, c) for c in ("qcfs", "qffs")}, width=args.width, seed=args.seed,
                     device=args.device, cache_dir=args.cache_dir, log=progress_log(args))
    text = grid_markdown(cells, args.bits)
    write_text(Path(out) / "table.md", text)
    write_json(Path(out) / "table.json", {"cells": cells, "bits": args.bits, "seconds": time.perf_counter() - started,
                                          "verdicts": [grid_verdict(c) for c in cells]})
    print(text)
    print(f"Wrote {out}/table.md and table.json.")
    return 0
