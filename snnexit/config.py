"""Run configurations from TOML files plus command-line overrides.

A config file holds the fields of :class:`snnexit.pipeline.RunConfig` at the top level and
per-stage settings in tables::

    dataset = "digits"
    model = "vgg_small"
    T = 16
    epochs = 3

    [trace]
    batch_size = 250      # inputs simulated at once

    [fit]
    target = "no_loss"    # how Dynamic Confidence picks its threshold
    # threshold = 0.99    # or a fixed threshold (no fitting)

    [certify]
    delta = 0.05          # the certified exit: disagreement with fixed T <= eps with prob. >= 1 - delta
    # eps = 0.01          # default: the smallest the calibration pool can certify

Precedence: command-line overrides > config file > defaults. An unknown key, a value of the
wrong type or a bad value is a :class:`SnnexitError` naming the key (and, for unknown keys,
listing the known ones). The resolved config is saved as JSON beside every result
(``config.<stage>.json``) and can be passed back with ``--config``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from snnexit.errors import SnnexitError
from snnexit.io import write_json
from snnexit.pipeline import CertifySettings, RunConfig

CONFIG_FORMAT, CONFIG_VERSION = "snnexit-config", 1


@dataclass
class TraceSettings:
    batch_size: int = 250  # inputs simulated at once: memory against speed


@dataclass
class FitSettings:
    """Dynamic Confidence's settings (keyword arguments of :class:`snnexit.exit.DynamicConfidence`)."""

    target: str = "no_loss"  # how the threshold is chosen on the validation trace
    threshold: float | None = None  # a fixed threshold tau: skip the choice
    temperature: float | None = None  # T_cal; None: the ANN's fitted temperature (trace meta)
    eps: float | None = None  # allowed accuracy drop (max_drop) or risk (risk)
    max_steps: float | None = None  # mean-steps budget (max_steps)
    delta: float | None = None  # failure probability of the risk guarantee (risk)


SECTIONS: dict[str, type] = {"trace": TraceSettings, "fit": FitSettings, "certify": CertifySettings}


@dataclass
class Settings:
    """Everything a stage needs: the run config and every stage's settings."""

    run: RunConfig = field(default_factory=RunConfig)
    trace: TraceSettings = field(default_factory=TraceSettings)
    fit: FitSettings = field(default_factory=FitSettings)
    certify: CertifySettings = field(default_factory=CertifySettings)

    def to_dict(self) -> dict:
        """JSON-able, in the file layout (run fields on top, a table per stage)."""
        out = asdict(self.run)
        for name in SECTIONS:
            out[name] = asdict(getattr(self, name))
        return out

    def validate(self) -> None:
        self.run.validate()
        _check_run_values(self.run)
        if self.trace.batch_size < 1:
            raise SnnexitError(f"config key 'trace.batch_size' must be >= 1, got {self.trace.batch_size}")
        from snnexit.exit import DynamicConfidence

        for key, value in asdict(self.fit).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise SnnexitError(f"config key 'fit.{key}' must be a finite number, got {value}")
        try:
            DynamicConfidence(**asdict(self.fit)).check_settings()
        except SnnexitError as exc:
            raise SnnexitError(f"config table [fit]: {exc}") from None
        try:
            self.certify.validate()
        except SnnexitError as exc:
            raise SnnexitError(f"config table [certify]: {exc}") from None


def _check_run_values(config: RunConfig) -> None:
    """Range checks that ``RunConfig.validate`` leaves out (names and T it checks itself)."""
    checks = {
        "batch_size": (lambda v: v >= 1, "must be >= 1"),
        "lr": (lambda v: math.isfinite(v) and v > 0, "must be a positive number"),
        "init_threshold": (lambda v: math.isfinite(v) and v > 0, "must be a positive number"),
        "width": (lambda v: v is None or v >= 1, "must be >= 1"),
    }
    for key, (ok, what) in checks.items():
        if hasattr(config, key) and not ok(getattr(config, key)):
            raise SnnexitError(f"config key {key!r} {what}, got {getattr(config, key)!r}")


# ---- type checking ------------------------------------------------------------------
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _type_name(tp) -> str:
    if tp is type(None):
        return "left out"
    if isinstance(tp, type):
        return {"int": "an integer", "float": "a number", "str": "a string", "bool": "a boolean (true/false)",
                "dict": "a table", "list": "an array"}.get(tp.__name__, tp.__name__)
    return str(tp).replace("typing.", "")


def _coerce(key: str, value, tp):
    """``value`` as type ``tp`` or a SnnexitError naming ``key``; ints pass as floats, never bools
    as numbers."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(key, value, option)
            except SnnexitError:
                continue
        want = " or ".join(_type_name(o) for o in options)
        raise SnnexitError(f"config key {key!r} must be {want}, got {_describe(value)}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise SnnexitError(f"config key {key!r} must be one of {list(typing.get_args(tp))}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise SnnexitError(f"config key {key!r} must be an array, got {_describe(value)}")
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        items = [_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)] if args else list(value)
        return origin(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise SnnexitError(f"config key {key!r} must be a table, got {_describe(value)}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    elif tp is typing.Any:
        return value
    raise SnnexitError(f"config key {key!r} must be {_type_name(tp)}, got {_describe(value)}")


def _describe(value) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _build(cls, values: dict, prefix: str = ""):
    hints = _hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if not isinstance(key, str) or key not in hints:
            known = ", ".join(prefix + n for n in names)
            raise SnnexitError(f"unknown config key {prefix + str(key)!r}. Known: {known}")
        kwargs[key] = _coerce(prefix + key, value, hints[key])
    return cls(**kwargs)


def run_fields() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def settings_from_dict(values: dict, source: str = "config") -> Settings:
    """Check a config mapping (the file layout) and build :class:`Settings`; not yet validated."""
    where = "" if source == "config" else f"{source}: "
    if not isinstance(values, dict):
        raise SnnexitError(f"{where}a config must be a table of keys, got {_describe(values)}")
    if values.get("format") == CONFIG_FORMAT:  # a config saved beside results: drop its header
        if values.get("version") != CONFIG_VERSION:
            raise SnnexitError(f"{where}saved config version {values.get('version')!r} is not supported "
                               f"(expected {CONFIG_VERSION})")
        values = {k: v for k, v in values.items() if k not in ("format", "version", "stage")}
    known = run_fields() + list(SECTIONS)
    run_values, sections = {}, {}
    for key, value in values.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise SnnexitError(f"{where}config key {key!r} must be a table ([{key}]), got {_describe(value)}")
            sections[key] = value
        elif key in run_fields():
            run_values[key] = value
        else:
            raise SnnexitError(f"{where}unknown config key {str(key)!r}. Known: {', '.join(known)}")
    try:
        run = _build(RunConfig, run_values)
        parts = {name: _build(cls, sections.get(name, {}), f"{name}.") for name, cls in SECTIONS.items()}
    except SnnexitError as exc:
        raise SnnexitError(f"{where}{exc}") from None
    return Settings(run=run, **parts)


def read_config_file(path: str | Path) -> dict:
    """The raw mapping of a TOML (or a saved JSON) config file."""
    path = Path(path)
    if not path.is_file():
        raise SnnexitError(f"config file {path}: no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SnnexitError(f"config file {path}: cannot read it as UTF-8 text ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise SnnexitError(f"config file {path}: invalid JSON ({exc})") from None
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise SnnexitError(f"config file {path}: invalid TOML ({exc})") from None


def load_config(path: str | Path | None = None, overrides: dict | None = None, validate: bool = True) -> Settings:
    """Defaults, then the file at ``path`` (TOML, or JSON as saved beside results), then
    ``overrides`` (a mapping in the same layout; ``None`` values are ignored)."""
    values = read_config_file(path) if path is not None else {}
    source = f"config file {path}" if path is not None else "config"
    if not isinstance(values, dict):
        raise SnnexitError(f"{source}: a config must be a table of keys, got {_describe(values)}")
    merged = dict(values)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **{k: v for k, v in value.items() if v is not None}}
        else:
            merged[key] = value
    _event_defaults(merged)
    settings = settings_from_dict(merged, source)
    if validate:
        settings.validate()
    return settings


# QCFS threshold at init for event data: with lam = 1 the vgg_small ANN on event_mnist's mean
# frames stayed at 20% test accuracy after 10 epochs (its activations died); lam = 4 reached
# 80% after 3 (ReLU: 89%).
EVENT_INIT_THRESHOLD = 4.0


def _event_defaults(values: dict) -> None:
    """Defaults of event data where the file and the command line give none: T = the
    recordings' frame count (the converted SNN sees one frame per step), not the static 32;
    the QCFS threshold starts at :data:`EVENT_INIT_THRESHOLD`."""
    from snnexit.data import DATASETS, default_frames

    dataset = values.get("dataset", RunConfig.dataset)
    if not (isinstance(dataset, str) and dataset in DATASETS):
        return
    frames = default_frames(dataset)
    if frames is not None:
        values.setdefault("T", frames)
        values.setdefault("init_threshold", EVENT_INIT_THRESHOLD)


def save_config(path: str | Path, settings: Settings, stage: str) -> None:
    """Write the resolved config atomically as JSON (loadable again with ``--config``)."""
    write_json(path, {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, "stage": stage, **settings.to_dict()})


# ---- command-line flags -----------------------------------------------------------------
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
    "width": (["--width"], "model width (default: the model's own)"),
    "lr": (["--lr"], "learning rate"),
    "batch_size": (["--batch-size"], "training batch size"),
    "cache_dir": (["--cache-dir"], "where trained ANNs are cached (default ~/.cache/snnexit or $SNNEXIT_CACHE)"),
    "data_dir": (["--data-dir"], "local folder of a real data set"),
    "device": (["--device"], "torch device: cpu, cuda, cuda:1, ..."),
    "init_threshold": (["--init-threshold"], "QCFS threshold lam at initialisation"),
    "quantizer": (["--quantizer"], "the ANN's activation: qcfs, lsq, relu or clip"),
    "bits": (["--bits"], "LSQ bit width b"),
}
_STAGE_FLAGS = {
    # option, section, key, type, help
    "trace": [("--trace-batch-size", "trace", "batch_size", int, "inputs simulated at once")],
    "fit": [("--target", "fit", "target", str, "how the threshold is chosen: no_loss, max_drop, max_steps, risk"),
            ("--threshold", "fit", "threshold", float, "a fixed Dynamic Confidence threshold (skips the choice)"),
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


def add_config_arguments(parser: argparse.ArgumentParser, stages: tuple[str, ...] = ()) -> None:
    """Add ``--config FILE`` and a flag for every RunConfig field that the parser lacks
    (plus the flags of ``stages``); then make every config flag default to "not given", so
    that only flags on the command line override the file. Call it last in ``register``."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML config file (command-line flags override it)")
    have = {a.dest for a in parser._actions}
    defaults = RunConfig()
    hints = _hints(RunConfig)
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
                out.setdefault(section, {})[name] = value
    return out


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Resolve ``--config FILE`` plus the flags on the command line; progress bars only on a tty."""
    settings = load_config(getattr(args, "config", None), overrides_from_args(args))
    settings.run.progress = bool(settings.run.progress and sys.stderr.isatty())
    return settings


__all__ = ["CertifySettings", "FitSettings", "SECTIONS", "Settings", "TraceSettings", "add_config_arguments", "load_config",
           "overrides_from_args", "read_config_file", "save_config", "settings_from_args", "settings_from_dict"]
