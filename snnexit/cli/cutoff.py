"""``snnexit cutoff-train``: train an SNN directly (BPTT) or fine-tune a converted one, with the
SNNCutoff cutoff regulariser (``--reg-weight``), and evaluate every exit policy on its traces.

Default: one network (traces ``trace_val``/``trace_test`` usable by every policy and by the
stages that read traces, ``results.json``, ``report.md``). ``--table``: the with/without-regulariser
table (``table.json``, ``table.md``). The experiments are :mod:`snnexit.experiments.cutoff`.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace

from snnexit.cli.common import add_device, non_negative_int, positive_int, progress_log
from snnexit.errors import SnnexitError
from snnexit.experiments.cutoff import CutoffSettings, cutoff_table, single_run
from snnexit.io import check_output_folder
from snnexit.report.cutoff import markdown_table
from snnexit.runs.artifacts import TRACE_FILES
from snnexit.runs.paths import check_cache_folder, check_files_in

DESCRIPTION = ("Train an SNN directly (BPTT) or fine-tune a converted one, with the SNNCutoff cutoff regulariser "
               "(--reg-weight), and evaluate every exit policy on its traces.")


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def register(sub) -> None:
    d = CutoffSettings()
    p = sub.add_parser("cutoff-train", help="direct SNN training / converted fine-tuning with the cutoff regulariser",
                       description=DESCRIPTION + " Event data (event_mnist, cifar10_dvs with "
                       "--data-dir, ...) is trained and run one frame per step; --init converted needs static "
                       "images (for converting on event frames use `snnexit run`).")
    p.add_argument("--dataset", default=d.dataset, help=f"data set (default {d.dataset})")
    p.add_argument("--model", default=d.model)
    p.add_argument("--width", type=positive_int, default=d.width)
    p.add_argument("--init", choices=("scratch", "converted"), default=d.init,
                   help="train from scratch (direct) or fine-tune a QCFS-converted SNN")
    p.add_argument("--neuron", default=d.neuron, help="if or lif (default lif)")
    p.add_argument("--reset", default=d.reset, help="soft or hard (default soft)")
    p.add_argument("--tau", type=float, default=d.tau, help="LIF time constant in steps")
    p.add_argument("--surrogate", default=d.surrogate, help="triangle, sigmoid or atan")
    p.add_argument("--T", type=positive_int, default=None, help="steps (default: all frames; 8 for static data)")
    p.add_argument("--epochs", type=non_negative_int, default=d.epochs,
                   help="training epochs (--table: shared epochs without the regulariser)")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=d.finetune_epochs,
                   help="--table: epochs per arm; --init converted: fine-tuning epochs")
    p.add_argument("--loss", default=d.loss, help="tet or mean (default tet)")
    p.add_argument("--reg-weight", type=_float_list, default=None,
                   help="cutoff regulariser weight a (default 0; --table: comma-separated weights, default 0.1)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--finetune-lr", type=float, default=d.finetune_lr)
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--ann-epochs", type=non_negative_int, default=d.ann_epochs, help="--init converted: ANN epochs")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--table", action="store_true", help="the with/without-regulariser table")
    p.add_argument("--out", default="runs/cutoff", help="output folder (default runs/cutoff)")
    p.add_argument("--cache-dir", default=None, help="where trained ANNs and event frames are cached")
    p.add_argument("--data-dir", default=None, help="local folder of a real data set (cifar10_dvs, dvs_gesture, "
                   "ncaltech101, nmnist, cifar10, ...)")
    p.add_argument("--download", action="store_true", help="download the data set (checksummed, resumable) into "
                   "--data-dir or the cache unless it is there; SNNEXIT_DATA_MIRROR names a mirror")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    add_device(p)
    p.set_defaults(func=main)


def main(args) -> int:
    weights = args.reg_weight
    if weights is not None and not args.table and len(weights) != 1:
        raise SnnexitError("--reg-weight takes one number without --table")
    for w in weights or []:  # before --table drops the zeros
        if not (math.isfinite(w) and w >= 0):
            raise SnnexitError(f"--reg-weight: regulariser weights must be finite numbers >= 0, got {w}")
    settings = CutoffSettings(
        dataset=args.dataset, model=args.model, width=args.width, init=args.init, neuron=args.neuron,
        reset=args.reset, tau=args.tau, surrogate=args.surrogate, T=args.T, epochs=args.epochs,
        finetune_epochs=args.finetune_epochs, loss=args.loss, lr=args.lr, finetune_lr=args.finetune_lr,
        batch_size=args.batch_size, ann_epochs=args.ann_epochs, seed=args.seed, device=args.device,
        cache_dir=args.cache_dir, data_dir=args.data_dir, download=args.download,
        progress=args.progress and sys.stderr.isatty() and not getattr(args, "quiet", False))
    if args.table:
        settings = replace(settings, table_reg_weights=[w for w in (weights or [0.1]) if w > 0] or [0.1])
    else:
        settings = replace(settings, reg_weight=(weights or [0.0])[0])
    settings.validate()  # before any data is loaded or trained: the settings, the device, the model's size,
    check_cache_folder(args.cache_dir)  # the cache, the output folder and the files it gets
    files = ("table.json", "table.md") if args.table else ("results.json", "report.md", *TRACE_FILES)
    out = check_files_in(check_output_folder(args.out, "output folder (--out)"), files)
    log = progress_log(args)
    if args.table:
        result = cutoff_table(settings, out, log)
        print(markdown_table(result["rows"]))
        print(f"\nWrote {out}/table.json and table.md.")
    else:
        result = single_run(settings, out, log)
        print(markdown_table([result["summary"]]))
        print(f"\nWrote {out}/results.json, report.md and the traces.")
    return 0
