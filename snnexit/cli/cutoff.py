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
from dataclasses import fields, replace

from snnexit.cli.common import add_device, non_negative_int, path_arg, positive_int, progress_log
from snnexit.errors import SnnexitError
from snnexit.experiments.cutoff import CutoffSettings, cutoff_table, single_run
from snnexit.io import check_output_folder
from snnexit.report.cutoff import markdown_table
from snnexit.runs.artifacts import TRACE_FILES
from snnexit.runs.ownership import check_replaceable, mark_folder
from snnexit.runs.paths import check_cache_folder, check_files_in

DESCRIPTION = ("Train an SNN directly (BPTT) or fine-tune a converted one, with the SNNCutoff cutoff regulariser "
               "(--reg-weight), and evaluate every exit policy on its traces.")


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


# the settings each mode reads (a flag given for another is refused: it would do nothing)
READ_BY = {
    ("scratch", False): {"epochs", "lr", "neuron", "reset", "tau"},
    ("converted", False): {"ann_epochs", "finetune_epochs", "finetune_lr"},
    ("scratch", True): {"epochs", "finetune_epochs", "lr", "finetune_lr", "neuron", "reset", "tau"},
    ("converted", True): {"ann_epochs", "epochs", "finetune_epochs", "lr", "finetune_lr"},
}
FLAG = {"epochs": "--epochs", "lr": "--lr", "neuron": "--neuron", "reset": "--reset", "tau": "--tau",
        "ann_epochs": "--ann-epochs", "finetune_epochs": "--finetune-epochs", "finetune_lr": "--finetune-lr"}


def register(sub) -> None:
    d = CutoffSettings()
    p = sub.add_parser("cutoff-train", help="direct SNN training / converted fine-tuning with the cutoff regulariser",
                       description=DESCRIPTION + " Event data (event_mnist, cifar10_dvs with "
                       "--data-dir, ...) is trained and run one frame per step; --init converted needs static "
                       "images (for converting on event frames use `snnexit run`). A flag the chosen mode does not "
                       "read (--tau with --neuron if, --ann-epochs from scratch, ...) is refused.")
    unset = argparse.SUPPRESS  # the settings' defaults are CutoffSettings'; a flag given is known as given
    p.add_argument("--dataset", default=unset, help=f"data set (default {d.dataset})")
    p.add_argument("--model", default=unset, help=f"model (default {d.model})")
    p.add_argument("--width", type=positive_int, default=unset, help=f"model width (default {d.width})")
    p.add_argument("--init", choices=("scratch", "converted"), default=unset,
                   help="train from scratch (direct, the default) or fine-tune a QCFS-converted SNN")
    p.add_argument("--neuron", default=unset, help=f"--init scratch: if or lif (default {d.neuron})")
    p.add_argument("--reset", default=unset, help=f"--init scratch: soft or hard (default {d.reset})")
    p.add_argument("--tau", type=float, default=unset, help=f"LIF time constant in steps (default {d.tau:g})")
    p.add_argument("--surrogate", default=unset, help=f"triangle, sigmoid or atan (default {d.surrogate})")
    p.add_argument("--T", type=positive_int, default=unset, help="steps (default: all frames; 8 for static data)")
    p.add_argument("--epochs", type=non_negative_int, default=unset,
                   help=f"--init scratch: training epochs; --table: shared epochs without the regulariser "
                        f"(default {d.epochs})")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=unset,
                   help=f"--table: epochs per arm; --init converted: fine-tuning epochs (default {d.finetune_epochs})")
    p.add_argument("--loss", default=unset, help=f"tet or mean (default {d.loss})")
    p.add_argument("--reg-weight", type=_float_list, default=None,
                   help="cutoff regulariser weight a (default 0; --table: comma-separated weights, default 0.1)")
    p.add_argument("--lr", type=float, default=unset, help=f"learning rate of training from scratch and of the "
                   f"shared epochs (default {d.lr:g})")
    p.add_argument("--finetune-lr", type=float, default=unset,
                   help=f"learning rate of fine-tuning (--init converted, --table arms; default {d.finetune_lr:g})")
    p.add_argument("--batch-size", type=positive_int, default=unset, help=f"default {d.batch_size}")
    p.add_argument("--ann-epochs", type=non_negative_int, default=unset,
                   help=f"--init converted: ANN epochs (default {d.ann_epochs})")
    p.add_argument("--seed", type=int, default=unset)
    p.add_argument("--table", action="store_true", help="the with/without-regulariser table")
    p.add_argument("--out", type=path_arg, default="runs/cutoff", help="output folder (default runs/cutoff)")
    p.add_argument("--cache-dir", type=path_arg, default=None, help="where trained ANNs and event frames are cached")
    p.add_argument("--data-dir", type=path_arg, default=None, help="local folder of a real data set (cifar10_dvs, "
                   "dvs_gesture, ncaltech101, nmnist, cifar10, ...)")
    p.add_argument("--download", action="store_true", help="download the data set (checksummed, resumable) into "
                   "--data-dir or the cache unless it is there; SNNEXIT_DATA_MIRROR names a mirror")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files in an --out that snnexit did not write (default: refuse)")
    add_device(p)
    p.set_defaults(func=main)


def check_read(given: dict, init: str, table: bool, neuron: str) -> None:
    """Refuse a setting given that this mode does not read, and a run that would train nothing."""
    reads = READ_BY[(init, table)]
    mode = f"--init {init}" + (" --table" if table else "")
    for key, flag in FLAG.items():
        if key in given and key not in reads:
            raise SnnexitError(f"{flag} does nothing with {mode}; drop it (see `snnexit cutoff-train --help`)")
    if "tau" in given and neuron != "lif":
        raise SnnexitError(f"--tau does nothing with --neuron {neuron} (only LIF neurons leak); drop it, or pass "
                           f"--neuron lif")
    if init == "scratch" and not table and given.get("epochs", 1) == 0:
        raise SnnexitError("--epochs 0 with --init scratch trains nothing: the network would keep its random "
                           "weights; give --epochs 1 or more")
    if init == "scratch" and table and given.get("epochs", 1) == 0 and given.get("finetune_epochs", 1) == 0:
        raise SnnexitError("--epochs 0 and --finetune-epochs 0 with --table train nothing; give one of them >= 1")


def main(args) -> int:
    weights = args.reg_weight
    if weights is not None and not args.table and len(weights) != 1:
        raise SnnexitError("--reg-weight takes one number without --table")
    for w in weights or []:  # before --table drops the zeros
        if not (math.isfinite(w) and w >= 0):
            raise SnnexitError(f"--reg-weight: regulariser weights must be finite numbers >= 0, got {w}")
    names = {f.name for f in fields(CutoffSettings)}
    given = {k: v for k, v in vars(args).items() if k in names and k not in ("cache_dir", "data_dir", "download", "reg_weight",
                                                                              "progress", "device")}
    settings = CutoffSettings(**given, device=args.device, cache_dir=args.cache_dir, data_dir=args.data_dir,
                              download=args.download,
                              progress=args.progress and sys.stderr.isatty() and not getattr(args, "quiet", False))
    if args.table:
        settings = replace(settings, table_reg_weights=[w for w in (weights or [0.1]) if w > 0] or [0.1])
    else:
        settings = replace(settings, reg_weight=(weights or [0.0])[0])
    settings.validate()  # before any data is loaded or trained: the settings, the device, the model's size,
    check_read(given, settings.init, args.table, settings.neuron)
    check_cache_folder(args.cache_dir)  # the cache, the output folder and the files it gets
    files = ("table.json", "table.md") if args.table else ("results.json", "report.md", *TRACE_FILES)
    out = check_files_in(check_output_folder(args.out, "output folder (--out)"), files)
    check_replaceable(out, files, "cutoff-train", args.overwrite)
    mark_folder(out, "cutoff-train", files)
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
