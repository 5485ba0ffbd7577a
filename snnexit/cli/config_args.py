"""Command-line flags for the run settings: a flag for every config key, overriding ``--config FILE``."""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from dataclasses import fields

from snnexit.convert.fixes.base import DEFAULT_FIX, FIXABLE_CONVERTERS, NO_FIX
from snnexit.runs.config_file import run_fields
from snnexit.runs.resolve import resolve_settings
from snnexit.runs.settings import SECTIONS, RunConfig, Settings


_DEFAULT_FIX_TEXT = (f"{DEFAULT_FIX} for {', '.join(FIXABLE_CONVERTERS)}, none for the others" if DEFAULT_FIX != NO_FIX
                     else "none")

# Flags for RunConfig fields: dest -> (option strings, help). Fields not listed (added later)
# get ``--field-name``, typed from the dataclass.
_FLAGS = {
    "dataset": (["--dataset"], "data set"),
    "model": (["--model"], "model"),
    "T": (["--T"], "simulation time steps"),
    "epochs": (["--epochs"], "training epochs"),
    "seed": (["--seed"], "seed for split, init and training"),
    "out": (["--out"], "run folder: each stage reads the previous stage's files there and writes its own"),
    "levels": (["--L", "--levels"], "QCFS quantization levels"),
    "converter": (["--converter"], "ANN-to-SNN converter"),
    "conversion_fix": (["--conversion-fix"], "correction of the converted SNN fitted on training inputs (qcfs, max "
                       "and robust conversions): none, step_bias (an input current per step and channel, FTBC), "
                       "mean_bias (a constant one, Li et al. 2021); default: " + _DEFAULT_FIX_TEXT),
    "conversion_fix_inputs": (["--conversion-fix-inputs"], "training inputs the conversion fix is fitted on"),
    "ann_event_input": (["--ann-event-input"], "event data: what the ANN trains on, prefix_means (the mean of the first "
                        "k frames, k random: what the SNN has integrated after k steps) or mean_frame"),
    "width": (["--width"], "model width (default: the model's own)"),
    "lr": (["--lr"], "learning rate"),
    "batch_size": (["--batch-size"], "training batch size"),
    "cache_dir": (["--cache-dir"], "where trained ANNs are cached (default ~/.cache/snnexit or $SNNEXIT_CACHE)"),
    "data_dir": (["--data-dir"], "local folder of a real data set"),
    "download": (["--download"], "download of the data set (checksummed, resumable) into --data-dir or the cache "
                 "unless it is there; SNNEXIT_DATA_MIRROR names a mirror"),
    "device": (["--device"], "torch device: cpu, cuda, cuda:1, ..."),
    "init_threshold": (["--init-threshold"], "QCFS threshold lam at initialisation"),
    "quantizer": (["--quantizer"], "the ANN's activation: qcfs, lsq, relu or clip"),
    "bits": (["--bits"], "LSQ bit width b"),
    "nir": (["--nir"], "a NIR graph file: run this network (read as --semantics says) instead of training and "
                       "converting one"),
    "semantics": (["--semantics"], "how the NIR file's neurons are read: nir, snnexit, snntorch, sinabs, norse, "
                                   "spikingjelly (the library that wrote it; default snnexit)"),
    "dt": (["--dt"], "seconds per step for the NIR file's time constants (default: the reader's own)"),
}
_STAGE_FLAGS = {
    # option, section, key, type, help
    "trace": [("--trace-batch-size", "trace", "batch_size", int, "inputs simulated at once")],
    "fit": [("--policy", "fit", "policy", str, "the exit policy fitted on validation, any registered name "
             "(default dynamic_confidence)"),
            ("--target", "fit", "target", str, "how the threshold is chosen: no_loss, max_drop, max_steps, risk"),
            ("--threshold", "fit", "threshold", float, "a fixed threshold of the policy's score (skips the choice)"),
            ("--temperature", "fit", "temperature", float, "T_cal (default: the ANN's fitted temperature)"),
            ("--eps", "fit", "eps", float, "allowed accuracy drop (target max_drop) or risk (target risk)"),
            ("--max-steps", "fit", "max_steps", float, "mean-steps budget (target max_steps)"),
            ("--delta", "fit", "delta", float, "failure probability of the risk guarantee (target risk)")],
    "certify": [("--certify-eps", "certify", "eps", float,
                 "disagreement rate with fixed T to certify (default: the smallest the calibration pool can)"),
                ("--certify-delta", "certify", "delta", float, "failure probability of the certificate (default 0.05)"),
                ("--certify-policies", "certify", "policies", str, "candidate policies, comma-separated, or 'all'"),
                ("--calibration-inputs", "certify", "calibration_inputs", str,
                 "a .npy of unlabelled inputs (N, ...) drawn like deployment inputs (never training inputs); "
                 "they join the certifying half of the validation split")],
}


def _parse_as(tp):
    """An argparse ``type`` for a field of type ``tp`` (None for switches and tables)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = inner[0] if len(inner) == 1 else str
    if tp not in (int, float, str):
        return None
    what = {int: "an integer", float: "a number", str: "a string"}[tp]

    def parse(text: str):
        try:
            return tp(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    parse.__name__ = what
    return parse


def _policy_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--policy-option``: the value as JSON (a number, true/false, a quoted
    string), else as the text itself."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a parameter name, got {text!r}")
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to read: the text itself
        parsed = value
    return key.strip(), parsed


def add_config_arguments(parser: argparse.ArgumentParser, stages: tuple[str, ...] = ()) -> None:
    """Add ``--config FILE`` and a flag for every RunConfig field that the parser lacks
    (plus the flags of ``stages``); then make every config flag default to "not given", so
    that only flags on the command line override the file. Call it last in ``register``."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML config file (command-line flags override it)")
    have = {a.dest for a in parser._actions}
    defaults = RunConfig()
    hints = typing.get_type_hints(RunConfig)
    for f in fields(RunConfig):
        if f.name in have or f.name == "extra":
            continue
        default = getattr(defaults, f.name)
        names, text = _FLAGS.get(f.name, ([f"--{f.name.replace('_', '-')}"], f.name.replace("_", " ")))
        if hints[f.name] is bool:
            if default:
                parser.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name, action="store_false",
                                    help=f"turn off {text}")
            else:
                parser.add_argument(*names, dest=f.name, action="store_true", help=f"turn on {text}")
            continue
        parse = _parse_as(hints[f.name])
        if parse is not None:
            shown = text if "default" in text else f"{text} (default {default})"
            parser.add_argument(*names, dest=f.name, type=parse, help=shown)
    for stage in stages:
        for option, section, key, tp, text in _STAGE_FLAGS.get(stage, []):
            parser.add_argument(option, dest=f"{section}.{key}", metavar=key.upper(), type=_parse_as(tp), help=text)
        if stage == "fit":
            parser.add_argument("--policy-option", dest="fit.options", metavar="KEY=VALUE", action="append",
                                type=_policy_option, help="a parameter of the policy, e.g. k=3 for topk (repeatable; "
                                "values are read as JSON: 3, 0.5, true, \"text\", else as text)")
    for action in parser._actions:
        if action.dest in run_fields() or "." in action.dest:
            action.default = argparse.SUPPRESS


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The config values given on the command line, in the file layout."""
    out: dict = {}
    for key, value in vars(args).items():
        if key in run_fields():
            out[key] = value
        elif "." in key:
            section, name = key.split(".", 1)
            if section in SECTIONS:
                out.setdefault(section, {})[name] = dict(value) if name == "options" else value
    return out


def flag_names() -> dict[str, str]:
    """Setting -> the flag that gives it (``{"dataset": "--dataset", "fit.options": "--policy-option"}``)."""
    names = {dest: options[0] for dest, (options, _) in _FLAGS.items()}
    names.update({f"{section}.{key}": option for flags in _STAGE_FLAGS.values() for option, section, key, _, _ in flags})
    names["fit.options"] = "--policy-option"
    return names


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Resolve the command's settings (:func:`snnexit.runs.resolve.resolve_settings`: defaults, a
    stage's run folder, ``--config FILE``, the flags on the command line); progress bars only on a tty."""
    settings = resolve_settings(args.command, getattr(args, "config", None), overrides_from_args(args),
                                flag_names())
    settings.run.progress = bool(settings.run.progress and sys.stderr.isatty())
    return settings
