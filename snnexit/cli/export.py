"""``snnexit export --format nir``: write a converted SNN as a NIR graph.

``--in`` is a run folder written by ``snnexit run`` (its ``results.json`` names the settings; the
trained ANN comes from the cache), or an ANN checkpoint (``ann-*.safetensors`` from the cache)
together with ``--dataset``/``--model``/``--L``/``--width`` describing its architecture.
"""

from __future__ import annotations

import sys
from pathlib import Path

from snnexit.cli.common import is_exit_rule, path_arg, positive_int
from snnexit.errors import SnnexitError
from snnexit.exit import check_rule_fits, describe_exit_rule, load_exit_rule
from snnexit.io import check_output_file, write_text
from snnexit.nir import export_nir
from snnexit.nir.variants import calibrate_threshold_scale
from snnexit.runs.artifacts import CERTIFIED_FILE, RESULTS_FILE
from snnexit.runs.exportable import exportable_snn
from snnexit.runs.paths import check_cache_folder
from snnexit.runs.settings import MAX_T, RunConfig, check_positive, check_range

FORMATS = ("nir",)
MAX_THRESHOLD_SCALE = 1e6


def register(sub) -> None:
    p = sub.add_parser("export", help="export a converted SNN (NIR)",
                       description="Convert the trained ANN of a run (or an ANN checkpoint) to an SNN and export it. "
                                   "NIR's IF neuron resets hard and starts from 0; the exact QCFS semantics (soft reset, "
                                   "v(0) = theta/2, fire on >=) are kept in node metadata that snnexit's importer reads.")
    p.add_argument("--format", default="nir", choices=FORMATS, help="export format (default nir)")
    p.add_argument("--in", dest="source", required=True, type=path_arg, metavar="RUN_OR_MODEL",
                   help="a run folder (with results.json) or an ANN checkpoint (.safetensors)")
    p.add_argument("--out", required=True, type=path_arg, metavar="FILE", help="the file to write (e.g. model.nir)")
    p.add_argument("--dataset", default=None, help="with a checkpoint: its data set (gives the input shape)")
    p.add_argument("--model", default=None, help="with a checkpoint: its model name")
    p.add_argument("--L", dest="levels", type=positive_int, default=None, help="with a checkpoint: QCFS levels")
    p.add_argument("--width", type=positive_int, default=None, help="with a checkpoint: model width")
    p.add_argument("--data-dir", default=None, type=path_arg, help="with a checkpoint: local folder of a real data set")
    p.add_argument("--cache-dir", default=None, type=path_arg, help="ANN cache (default: the run's own, else ~/.cache/snnexit)")
    p.add_argument("--variant", choices=("exact", "hard-reset", "subtract"), default="exact",
                   help="exact (default): IF + Scale with the QCFS semantics in metadata, read exactly by snnexit; "
                        "hard-reset: hard reset, v(0) = 0, binary spikes, thresholds scaled for hard reset: what "
                        "SpikingJelly runs as written; subtract: reset by subtraction, v(0) = 0, binary spikes: what "
                        "snnTorch and Sinabs read (IF with r = 1); both at some cost in accuracy")
    p.add_argument("--pooling", choices=("avg", "sum"), default="avg",
                   help="avg (default): AvgPool2d nodes; sum: SumPool2d with 1/area folded into the next layer "
                        "(Sinabs and Norse have no AvgPool2d)")
    p.add_argument("--threshold-scale", default=None, metavar="K",
                   help="hard-reset, subtract only: firing threshold = K * theta; auto (default) picks K on the "
                        "validation split")
    p.add_argument("--T", type=positive_int, default=None,
                   help="hard-reset, subtract with --threshold-scale auto only: steps to calibrate over (default: the "
                        "run's T)")
    p.add_argument("--policy", default=None, type=path_arg, metavar="RULE",
                   help="also write the exit rule to deploy with the graph, to <out without suffix>.exit.json: "
                        "certified (the run folder's certified.json) or a policy.json / certified.json file")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --out that is one of the inputs, or a file that is no NIR graph (default: refuse)")
    p.set_defaults(func=main)


def rule_files(args) -> tuple[Path, Path] | None:
    """``(the rule file to read, the rule file to write)`` of ``--policy`` (None without it)."""
    if args.policy is None:
        return None
    if args.policy == "certified":
        if not Path(args.source).is_dir():
            raise SnnexitError("--policy certified reads the certified.json of a run folder; --in is a checkpoint: "
                               "pass the path of a certified.json or policy.json instead")
        source = Path(args.source) / CERTIFIED_FILE
        if not source.is_file():
            raise SnnexitError(f"{source}: no such file; run `snnexit evaluate` on {args.source} first")
    else:
        source = Path(args.policy)
        if not source.is_file():
            raise SnnexitError(f"--policy {args.policy}: no such file (give certified, or a policy.json / "
                               f"certified.json file)")
    target = Path(args.out).with_suffix(".exit.json")
    if target.resolve() in (source.resolve(), Path(args.out).resolve()):
        raise SnnexitError(f"{target}: the exit rule would overwrite its own source or --out; choose another --out")
    if target.exists() and not args.overwrite and not is_exit_rule(target):
        raise SnnexitError(f"{target} exists and holds no exit rule: the exit rule would replace it; pass "
                           f"--overwrite to replace it, or choose another --out")
    return source, check_output_file(target, "exit-rule file")


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # how every NIR file (HDF5) begins


def check_not_replacing(args) -> None:
    """Refuse an ``--out`` that is one of the command's inputs (the checkpoint of ``--in``, the run's
    results.json or cached ANN, the ``--policy`` file) or an existing file that is no NIR graph,
    unless ``--overwrite``: the input would be lost."""
    if args.overwrite:
        return
    out = Path(args.out).resolve()
    source = Path(args.source)
    inputs = [source] if source.is_file() else [source / RESULTS_FILE, source / CERTIFIED_FILE]
    if args.policy not in (None, "certified"):
        inputs.append(Path(args.policy))
    for path in inputs:
        if path.exists() and path.resolve() == out:
            raise SnnexitError(f"--out {args.out} is an input of this export ({path}): the export would replace it; "
                               f"choose another --out (or pass --overwrite)")
    if out.is_file():
        with open(out, "rb") as f:
            if f.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                raise SnnexitError(f"--out {args.out} exists and is no NIR graph: the export would replace it; "
                                   f"choose another --out (or pass --overwrite)")


def check_variant_flags(args) -> None:
    """Refuse the flags the chosen variant does not read: they would be ignored."""
    if args.variant == "exact":
        for flag, value in (("--threshold-scale", args.threshold_scale), ("--T", args.T)):
            if value is not None:
                raise SnnexitError(f"{flag} does nothing with --variant exact (the exact graph keeps the thresholds "
                                   f"and needs no calibration); drop it, or pass --variant hard-reset or subtract")
    elif args.T is not None and args.threshold_scale not in (None, "auto"):
        raise SnnexitError(f"--T does nothing with --threshold-scale {args.threshold_scale} (T is the length of the "
                           f"calibration that --threshold-scale auto runs); drop one of them")


def load_snn(args):
    """The converted SNN of ``--in`` (a run folder, or a checkpoint described by the flags)."""
    checkpoint = checkpoint_config(args) if args.dataset is not None and args.model is not None else None
    return exportable_snn(args.source, checkpoint, args.cache_dir)


def _given_scale(text: str) -> float | None:
    """``--threshold-scale`` as a number (None: ``auto``, the default), checked."""
    if text is None or text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise SnnexitError(f"--threshold-scale must be a number or auto, got {text!r}") from None
    check_positive("--threshold-scale", value, MAX_THRESHOLD_SCALE, " (times theta)")
    return value


def check_args(args) -> Path:
    """Every flag, the output file and the cache, before the SNN is built; returns the output file."""
    _given_scale(args.threshold_scale)
    check_variant_flags(args)
    if args.T is not None:
        check_range("--T", args.T, 1, MAX_T)
    if not str(args.source).strip():
        raise SnnexitError("--in is empty; give a run folder or an ANN checkpoint")
    if not Path(args.source).exists():
        raise SnnexitError(f"{args.source}: no such run folder or checkpoint")
    given = [flag for flag, value in (("--dataset", args.dataset), ("--model", args.model), ("--L", args.levels),
                                      ("--width", args.width), ("--data-dir", args.data_dir)) if value is not None]
    if Path(args.source).is_dir() and given:
        raise SnnexitError(f"{', '.join(given)}: for a checkpoint; the run folder {args.source} names its own settings "
                           f"(results.json)")
    if args.dataset is not None and args.model is not None:
        checkpoint_config(args).validate()
    if args.cache_dir is not None:
        check_cache_folder(args.cache_dir)
    out = check_output_file(args.out, "output file (--out)")
    check_not_replacing(args)
    return out


def checkpoint_config(args) -> RunConfig:
    config = RunConfig(dataset=args.dataset, model=args.model, width=args.width, data_dir=args.data_dir)
    if args.levels is not None:
        config.levels = args.levels
    return config


def _threshold_scale(args, snn, data, variant: str) -> tuple[float, dict | None]:
    """``--threshold-scale``: a number, or ``auto``: the best on the validation split."""
    given = _given_scale(args.threshold_scale)
    if given is not None:
        return given, None
    T = args.T or int(snn.meta.get("T") or 32)
    if data.temporal:
        T = min(T, data.val.x.shape[1])
    return calibrate_threshold_scale(snn, data.val.batches(250), T, temporal=data.temporal, variant=variant)


def main(args) -> int:
    out = check_args(args)
    rule_paths = rule_files(args)
    rule = None
    if rule_paths is not None:
        rule, extra = load_exit_rule(rule_paths[0])  # a bad file fails before the SNN is built
    snn, data = load_snn(args)
    if rule is not None:
        check_rule_fits(rule, int(snn.meta["T"]), snn.meta.get("network"), str(rule_paths[0]), extra)
    variant = args.variant.replace("-", "_")
    k, scores = _threshold_scale(args, snn, data, variant) if variant != "exact" else (1.0, None)
    try:
        graph = export_nir(snn, out, variant=variant, threshold_scale=k, pooling=args.pooling)
    except PermissionError as exc:
        raise SnnexitError(f"cannot write {out}: {exc.strerror or exc}") from None
    spiking = sum(1 for n in graph.nodes.values() if type(n).__name__ == "IF")
    print(f"Wrote {out}: NIR graph with {len(graph.nodes)} nodes ({spiking} IF layers), input shape "
          f"{tuple(snn.meta['input_shape'])}.", file=sys.stdout)
    if variant != "exact":
        chosen = ("chosen on the validation split (mean accuracy over steps: "
                  + ", ".join(f"{s:g}: {v:.4f}" for s, v in scores.items()) + ")") if scores else "given"
        what = ("hard-reset: hard reset to 0" if variant == "hard_reset" else "subtract: reset by subtracting the threshold")
        readers = "SpikingJelly's import_from_nir" if variant == "hard_reset" else "snnTorch's import_nir, Sinabs's from_nir"
        print(f"Variant {what}, v(0) = 0, binary spikes; thresholds {k:g} * theta, {chosen}. Other NIR readers "
              f"({readers}) run it as written.", file=sys.stdout)
    else:
        print("Note: NIR's IF resets hard and starts from v = 0; snnexit's exact semantics (soft reset, v(0) = theta/2, "
              "fire on >=) are in each IF node's metadata (snnexit.nir.import_nir reads them). Other readers "
              "(SpikingJelly) cannot run it as meant: export --variant hard-reset for them.", file=sys.stdout)
    if rule is not None:
        write_text(rule_paths[1], rule_paths[0].read_text())
        print(f"Wrote {rule_paths[1]}: the exit rule ({describe_exit_rule(rule, snn.meta)})", file=sys.stdout)
    return 0
