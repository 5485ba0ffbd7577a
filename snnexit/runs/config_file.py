"""Run settings from TOML files (or the JSON saved beside results), checked key by key.

A config file holds the fields of :class:`snnexit.runs.settings.RunConfig` at the top level and
per-stage settings in tables::

    dataset = "digits"
    model = "vgg_small"
    T = 16
    epochs = 3

    [trace]
    batch_size = 250      # inputs simulated at once

    [fit]
    policy = "dynamic_confidence"   # any registered exit policy
    target = "no_loss"    # how its threshold is picked
    # threshold = 0.99    # or a fixed threshold (no fitting)
    [fit.options]         # the policy's own parameters, e.g. k = 3 for topk

    [certify]
    delta = 0.05          # the certified exit: disagreement with fixed T <= eps with prob. >= 1 - delta
    # eps = 0.01          # default: the smallest the calibration pool can certify

Precedence: command-line overrides > config file > defaults. An unknown key, a value of the
wrong type or a bad value is a :class:`SnnexitError` naming the key (and, for unknown keys,
listing the known ones). The resolved config is saved as JSON beside every result
(``config.<stage>.json``) and can be passed back with ``--config``.
"""

from __future__ import annotations

import json
import tomllib
import types
import typing
from dataclasses import fields
from pathlib import Path

from snnexit.data import DATASETS, default_frames
from snnexit.errors import SnnexitError
from snnexit.environment import user_path
from snnexit.io import loads_json, read_json_file, write_json
from snnexit.runs.settings import SECTIONS, RunConfig, Settings

CONFIG_FORMAT, CONFIG_VERSION = "snnexit-config", 1
HEADER = ("format", "version", "stage", "sequence")  # of a config saved beside results; not settings
# the settings that name files or folders: ``~`` is expanded and the names are checked
PATH_KEYS = {"out": "run folder (out)", "cache_dir": "cache folder (cache_dir)", "data_dir": "data folder (data_dir)",
             "nir": "NIR graph (nir)", ("certify", "calibration_inputs"): "calibration inputs (calibration_inputs)"}


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
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if not isinstance(key, str) or key not in hints:
            known = ", ".join(prefix + n for n in names)
            raise SnnexitError(f"unknown config key {prefix + str(key)!r}. Known: {known}")
        kwargs[key] = _coerce(prefix + key, value, hints[key])
    return cls(**kwargs)


def flatten(values: dict) -> dict:
    """A config mapping in the file layout as ``{key: value}``, ``section.key`` for a stage's table."""
    flat = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update({f"{key}.{name}": inner for name, inner in value.items()})
        elif key not in HEADER:
            flat[key] = value
    return flat


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
        values = {k: v for k, v in values.items() if k not in HEADER}
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
    """The raw mapping of a TOML (or a saved JSON) config file (``~`` expanded in ``path``)."""
    path = Path(user_path(path, "config file"))
    if not path.is_file():
        raise SnnexitError(f"config file {path}: no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SnnexitError(f"config file {path}: cannot read it as UTF-8 text ({exc})") from None
    if path.suffix.lower() == ".json":
        return loads_json(text, f"config file {path}")
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        reason = "nested too deeply to read" if isinstance(exc, RecursionError) else exc
        raise SnnexitError(f"config file {path}: invalid TOML ({reason})") from None


def load_config(path: str | Path | None = None, overrides: dict | None = None, validate: bool = True) -> Settings:
    """Defaults, then the file at ``path`` (TOML, or JSON as saved beside results), then
    ``overrides`` (a mapping in the same layout; ``None`` values are ignored)."""
    values = read_config_file(path) if path is not None else {}
    source = f"config file {path}" if path is not None else "config"
    if not isinstance(values, dict):
        raise SnnexitError(f"{source}: a config must be a table of keys, got {_describe(values)}")
    return settings_from_values(_merge(values, overrides or {}), source, validate)


def settings_from_values(values: dict, source: str = "config", validate: bool = True) -> Settings:
    """:class:`Settings` from a merged mapping in the file layout: event-data defaults, paths with
    ``~`` expanded and their names checked, every key checked, then (``validate``) every value."""
    values = dict(values)
    _event_defaults(values)
    _expand_paths(values)
    settings = settings_from_dict(values, source)
    if validate:
        settings.validate()
    return settings


def _expand_paths(values: dict) -> None:
    """``~`` expanded in the values of :data:`PATH_KEYS` (strings only: a wrong type is refused
    later, naming the key), each checked to be a name the system can take."""
    for key, what in PATH_KEYS.items():
        table, name = key if isinstance(key, tuple) else (None, key)
        if table is None:
            where = values
        elif isinstance(values.get(table), dict):
            where = values[table] = dict(values[table])  # a copy: the caller's table stays as given
        else:
            continue
        if isinstance(where.get(name), str) and where[name].strip():
            where[name] = user_path(where[name], what)


def _merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` on top, table by table (``None`` values are ignored)."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# QCFS threshold at init for event data: with lam = 1 the vgg_small ANN on event_mnist's mean
# frames stayed at 20% test accuracy after 10 epochs (its activations died); lam = 4 reached
# 80% after 3 (ReLU: 89%).
EVENT_INIT_THRESHOLD = 4.0


def _event_defaults(values: dict) -> None:
    """Defaults of event data where the file and the command line give none: T = the
    recordings' frame count (the converted SNN sees one frame per step), not the static 32;
    the QCFS threshold starts at :data:`EVENT_INIT_THRESHOLD`."""
    dataset = values.get("dataset", RunConfig.dataset)
    if not (isinstance(dataset, str) and dataset in DATASETS):
        return
    frames = default_frames(dataset)
    if frames is not None:
        values.setdefault("T", frames)
        values.setdefault("init_threshold", EVENT_INIT_THRESHOLD)


def save_config(path: str | Path, settings: Settings, stage: str, sequence: int | None = None) -> None:
    """Write the resolved config atomically as JSON (loadable again with ``--config``); ``sequence``
    orders the configs of one run folder (the newest holds the folder's settings)."""
    header = {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, "stage": stage}
    if sequence is not None:
        header["sequence"] = sequence
    write_json(path, {**header, **settings.to_dict()})


def _saved_configs(folder: Path) -> list[tuple[tuple, Path, dict]]:
    """The configs saved in the run folder ``folder`` (``config.<command>.json`` in this format),
    each with its order key: its sequence number, then its modification time."""
    found = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("config.*.json")):
        values = read_json_file(path, "run folder config")  # a corrupt or 100k-deep file: one line, named
        if not (isinstance(values, dict) and values.get("format") == CONFIG_FORMAT):
            continue  # not a config this module saved
        sequence = values.get("sequence")
        sequence = sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else 0
        found.append(((sequence, path.stat().st_mtime_ns), path, values))
    return found


def newest_saved_config(folder: str | Path) -> tuple[dict, Path] | None:
    """``(values, path)`` of the config saved last in the run folder ``folder`` (the file layout,
    header removed), or None when it holds none. Every command that writes a run folder saves its
    resolved settings, the folder's own included, so the newest holds the folder's settings."""
    found = _saved_configs(Path(folder))
    if not found:
        return None
    _, path, values = max(found, key=lambda item: item[0])
    return {k: v for k, v in values.items() if k not in HEADER}, path


def next_sequence(folder: str | Path) -> int:
    """The sequence number of the next config saved in ``folder``."""
    return 1 + max((order[0] for order, _, _ in _saved_configs(Path(folder))), default=0)
