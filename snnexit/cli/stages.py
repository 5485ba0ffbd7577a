"""The main job one stage at a time: ``train``, ``convert``, ``trace``, ``fit``, ``evaluate``, ``report``.

Every stage takes ``--config FILE`` plus command-line overrides, reads the previous stage's
files from the run folder (``--out``) and writes its own there, with its resolved config
beside them (``config.<stage>.json``)::

    train     -> ann.safetensors                       trained QCFS ANN (also cached)
    convert   -> snn.safetensors                       ANN weights + converter + thresholds + model config,
                                                       calibration (temperature) and data sizes
    trace     -> trace_val.safetensors, trace_test.safetensors
    fit       -> policy.json                           Dynamic Confidence's fitted threshold
    evaluate  -> results.json                          the same numbers as ``snnexit run``
    report    -> report.md, figures (results.json gets the figure names)

A stage refuses files that a previous stage wrote with other settings (another model,
converter, T, ...) and says which stage to run again. The functions ``stage_<name>(settings)``
are the same stages for Python callers.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, fields
from pathlib import Path
from types import SimpleNamespace

from snnexit.config import Settings, add_config_arguments, save_config, settings_from_args
from snnexit.errors import SnnexitError
from snnexit.io import load_tensors, save_tensors, write_json

ANN_FILE, SNN_FILE, POLICY_FILE, RESULTS_FILE = "ann.safetensors", "snn.safetensors", "policy.json", "results.json"
TRACE_FILES = ("trace_val.safetensors", "trace_test.safetensors")
TIMINGS_FILE = "timings.json"
SNN_FORMAT, SNN_VERSION = "snn", 1
POLICY_FORMAT, POLICY_VERSION = "snnexit-policy", 1
STAGES = ("train", "convert", "trace", "fit", "evaluate", "report")


# ---- helpers --------------------------------------------------------------------------
def _out(settings: Settings) -> Path:
    from snnexit.pipeline import check_writable

    return check_writable(settings.run.out)


def _need(path: Path, stage: str) -> Path:
    if not path.is_file():
        raise SnnexitError(f"{path}: no such file; run `snnexit {stage}` with the same --out first")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _differences(stored: dict, current: dict) -> str:
    ignore = {"out", "device", "progress", "cache_dir"}
    diff = [f"{k}={stored.get(k)!r} there, {current.get(k)!r} now" for k in current
            if k not in ignore and k in stored and stored.get(k) != current.get(k)]
    return "; ".join(diff) or "settings differ"


def _check_train_key(path: Path, meta: dict, settings: Settings, stage: str) -> None:
    if meta.get("train_key") != settings.run.train_key():
        diff = _differences(meta.get("config", {}), asdict(settings.run))
        raise SnnexitError(f"{path} was made with other training settings ({diff}); "
                           f"run `snnexit {stage}` again with these settings")


def _record_time(out: Path, stage: str, seconds: float) -> None:
    path = out / TIMINGS_FILE
    try:
        timings = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        timings = {}
    if not isinstance(timings, dict):
        timings = {}
    timings[stage] = seconds
    write_json(path, timings)


def _read_json(path: Path, stage: str, fmt: str | None = None, version: int | None = None) -> dict:
    _need(path, stage)
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnnexitError(f"{path}: not valid JSON ({exc}); run `snnexit {stage}` again") from None
    if not isinstance(obj, dict):
        raise SnnexitError(f"{path}: expected a JSON object")
    if fmt is not None and (obj.get("format") != fmt or obj.get("version") != version):
        raise SnnexitError(f"{path}: not a snnexit {fmt} file (version {version})")
    return obj


def _load_data(config):
    from snnexit.data import load_dataset

    return load_dataset(config.dataset, config.seed, root=getattr(config, "data_dir", None),
                        cache_dir=getattr(config, "cache_dir", None))


def _run_config(stored: dict):
    from snnexit.pipeline import RunConfig

    names = {f.name for f in fields(RunConfig)}
    return RunConfig(**{k: v for k, v in stored.items() if k in names})


# ---- converted SNN files ----------------------------------------------------------------
def _thresholds(snn) -> dict:
    return {name: float(m.threshold) for name, m in snn.spiking_layers() if hasattr(m, "threshold")}


def save_converted(path, model, snn, config, dims: dict, extra_meta: dict | None = None) -> None:
    """Save a converted SNN so that :func:`load_converted` rebuilds it exactly: the ANN's weights
    (``ann.*``), the SNN's own parameters and buffers (``snn.*``: thresholds, folded weights), the
    model config and the converter's name (safetensors, no pickle)."""
    tensors = {f"ann.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"snn.{k}": v for k, v in snn.state_dict().items()})
    meta = {"config": asdict(config), "train_key": config.train_key(), "converter": config.converter,
            "dims": dict(dims), "thresholds": _thresholds(snn), "snn_meta": dict(snn.meta), **(extra_meta or {})}
    save_tensors(path, tensors, fmt=SNN_FORMAT, version=SNN_VERSION, meta=meta)


def load_converted(path, device: str = "cpu", data=None):
    """Rebuild the SNN saved by :func:`save_converted`; returns ``(snn, meta)``.

    The ANN is rebuilt from the saved config and weights and converted again (``data``: the
    :class:`DataSplits` whose training inputs a data-calibrating converter needs), then the saved
    SNN parameters and buffers are loaded over it, and the thresholds are checked."""
    from snnexit.convert import convert
    from snnexit.pipeline import build_ann, converter_inputs, needs_calibration_data

    path = Path(path)
    tensors, meta = load_tensors(path, fmt=SNN_FORMAT, version=SNN_VERSION)
    ann_state = {k[4:]: v for k, v in tensors.items() if k.startswith("ann.")}
    snn_state = {k[4:]: v for k, v in tensors.items() if k.startswith("snn.")}
    try:
        config = _run_config(meta["config"])
        converter = meta["converter"]
        dims = SimpleNamespace(**{k: meta["dims"][k] for k in ("num_classes", "in_channels", "input_size")})
    except (KeyError, TypeError) as exc:
        raise SnnexitError(f"{path}: converted-SNN metadata is incomplete ({exc})") from None
    if needs_calibration_data(converter) and data is None:
        raise SnnexitError(f"{path}: converter {converter!r} calibrates on data: pass the data set to rebuild it")
    model = build_ann(config, dims)
    try:
        model.load_state_dict(ann_state)
        snn = convert(model.eval(), converter, **(converter_inputs(converter, data) if data is not None else {}))
        snn.load_state_dict(snn_state)
    except RuntimeError as exc:
        raise SnnexitError(f"{path}: weights do not fit model {config.model!r} converted with {converter!r}: "
                           f"{str(exc)[:200]}") from None
    if _thresholds(snn) != meta.get("thresholds"):
        raise SnnexitError(f"{path}: the rebuilt SNN has other thresholds than the ones saved; the file or the "
                           f"converter {converter!r} changed")
    snn.meta.update(meta.get("snn_meta", {}))
    return snn.to(device).eval(), meta


# ---- the stages ---------------------------------------------------------------------------
def stage_train(settings: Settings, log=print) -> Path:
    """Train the ANN (or reuse the cached one); write ``ann.safetensors``."""
    from snnexit.pipeline import ANN_FORMAT, ANN_VERSION, trained_ann

    started = time.perf_counter()
    config = settings.run
    out = _out(settings)
    save_config(out / "config.train.json", settings, "train")
    data = _load_data(config)
    model = trained_ann(config, data, log)
    dims = {"num_classes": data.num_classes, "in_channels": data.in_channels, "input_size": data.input_size}
    save_tensors(out / ANN_FILE, model.state_dict(), fmt=ANN_FORMAT, version=ANN_VERSION,
                 meta={"key": config.train_key(), "train_key": config.train_key(), "config": asdict(config),
                       "dims": dims})
    _record_time(out, "train", time.perf_counter() - started)
    return out / ANN_FILE


def stage_convert(settings: Settings, log=print) -> Path:
    """Calibrate the trained ANN (temperature) and convert it; write ``snn.safetensors``."""
    from snnexit.convert import convert
    from snnexit.pipeline import ANN_FORMAT, ANN_VERSION, build_ann, calibrate, converter_inputs

    started = time.perf_counter()
    config = settings.run
    out = _out(settings)
    path = _need(out / ANN_FILE, "train")
    tensors, meta = load_tensors(path, fmt=ANN_FORMAT, version=ANN_VERSION)
    _check_train_key(path, meta, settings, "train")
    save_config(out / "config.convert.json", settings, "convert")
    data = _load_data(config)
    model = build_ann(config, data)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise SnnexitError(f"{path}: weights do not fit model {config.model!r}: {str(exc)[:200]}") from None
    model = model.to(config.device).eval()
    cal = calibrate(model, data, config.device)
    log(f"ANN test accuracy {cal['test_acc']:.4f}; temperature {cal['temperature']:.3f}")
    snn = convert(model, config.converter, **converter_inputs(config.converter, data))
    snn.meta["temperature"] = cal["temperature"]
    dims = {"num_classes": data.num_classes, "in_channels": data.in_channels, "input_size": data.input_size}
    sizes = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    save_converted(out / SNN_FILE, model, snn, config, dims, {"calibration": cal, "data": sizes})
    _record_time(out, "convert", time.perf_counter() - started)
    return out / SNN_FILE


def stage_trace(settings: Settings, log=print) -> tuple[Path, Path]:
    """Simulate the converted SNN on the validation and test splits; write the two traces."""
    from snnexit.pipeline import trace_snn

    started = time.perf_counter()
    config = settings.run
    out = _out(settings)
    path = _need(out / SNN_FILE, "convert")
    _, meta = load_tensors(path, fmt=SNN_FORMAT, version=SNN_VERSION)
    _check_train_key(path, meta, settings, "convert")
    if meta.get("converter") != config.converter:
        raise SnnexitError(f"{path} was converted with {meta.get('converter')!r}, this config says "
                           f"{config.converter!r}; run `snnexit convert` again")
    data = _load_data(config)
    snn, meta = load_converted(path, config.device, data)
    save_config(out / "config.trace.json", settings, "trace")
    val, test = trace_snn(snn, data, config, settings.trace.batch_size)
    paths = tuple(out / name for name in TRACE_FILES)
    val.save(paths[0])
    test.save(paths[1])
    _record_time(out, "trace", time.perf_counter() - started)
    return paths


def _load_trace(out: Path, name: str, settings: Settings):
    from snnexit.simulate import Trace

    trace = Trace.load(_need(out / name, "trace"))
    config = settings.run
    if trace.T != config.T or trace.meta.get("converter") != config.converter:
        raise SnnexitError(f"{out / name} has T = {trace.T} and converter {trace.meta.get('converter')!r}, this config "
                           f"says T = {config.T} and {config.converter!r}; run `snnexit trace` again")
    return trace


def stage_fit(settings: Settings, log=print) -> Path:
    """Fit Dynamic Confidence on the validation trace; write ``policy.json``."""
    from snnexit.exit import DynamicConfidence, summarize_curve
    from snnexit.pipeline import fit_policy

    started = time.perf_counter()
    out = _out(settings)
    val = _load_trace(out, TRACE_FILES[0], settings)
    save_config(out / "config.fit.json", settings, "fit")
    dc = fit_policy(val, DynamicConfidence(**asdict(settings.fit)))
    record = {
        "format": POLICY_FORMAT, "version": POLICY_VERSION, "policy": "dynamic_confidence",
        "params": asdict(settings.fit), "threshold_": dc.threshold_, "T_": dc.T_,
        "fitted_on": {"file": TRACE_FILES[0], "sha256": _sha256(out / TRACE_FILES[0]), "size": val.N},
        "val_point": dc.point_, "val_acc": float(dc.curve_.accuracy[dc.point_]),
        "val_mean_steps": float(dc.curve_.mean_steps[dc.point_]), "val_curve": summarize_curve(dc.curve_),
    }
    write_json(out / POLICY_FILE, record)
    log(f"Dynamic Confidence threshold {dc.threshold_:.6g}: validation accuracy {record['val_acc']:.4f} "
        f"at {record['val_mean_steps']:.2f} mean steps")
    _record_time(out, "fit", time.perf_counter() - started)
    return out / POLICY_FILE


def load_policy(path, val=None):
    """The fitted Dynamic Confidence of ``policy.json`` (``val``: the trace it was fitted on, to
    restore its validation curve)."""
    from snnexit.exit import DynamicConfidence
    from snnexit.pipeline import fit_policy

    path = Path(path)
    record = _read_json(path, "fit", POLICY_FORMAT, POLICY_VERSION)
    try:
        policy = DynamicConfidence(**dict(record["params"]))
        policy.threshold_, policy.T_ = float(record["threshold_"]), int(record["T_"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SnnexitError(f"{path}: incomplete policy record ({exc})") from None
    if val is None:
        return policy
    policy.threshold_init = policy.threshold_  # refitting on ``val`` keeps the threshold
    return fit_policy(val, policy)


def stage_evaluate(settings: Settings, log=print) -> Path:
    """Evaluate fixed T, Dynamic Confidence and the oracle on the test trace; write ``results.json``."""
    from snnexit.pipeline import assemble_results, evaluate_policies

    started = time.perf_counter()
    config = settings.run
    out = _out(settings)
    val = _load_trace(out, TRACE_FILES[0], settings)
    test = _load_trace(out, TRACE_FILES[1], settings)
    policy_path = _need(out / POLICY_FILE, "fit")
    record = _read_json(policy_path, "fit", POLICY_FORMAT, POLICY_VERSION)
    fitted_on = record.get("fitted_on")
    if not isinstance(fitted_on, dict) or fitted_on.get("sha256") != _sha256(out / TRACE_FILES[0]):
        raise SnnexitError(f"{policy_path} was fitted on another {TRACE_FILES[0]}; run `snnexit fit` again")
    dc = load_policy(policy_path, val)
    snn_path = _need(out / SNN_FILE, "convert")
    _, meta = load_tensors(snn_path, fmt=SNN_FORMAT, version=SNN_VERSION)
    _check_train_key(snn_path, meta, settings, "convert")
    save_config(out / "config.evaluate.json", settings, "evaluate")
    if not isinstance(meta.get("data"), dict) or not isinstance(meta.get("calibration"), dict):
        raise SnnexitError(f"{snn_path} lacks the calibration or data sizes; run `snnexit convert` again")
    policies, extras = evaluate_policies(val, test, dc)
    results = assemble_results(config, meta["data"], meta["calibration"], val, test, policies, extras)
    _record_time(out, "evaluate", time.perf_counter() - started)
    timings = json.loads((out / TIMINGS_FILE).read_text())  # the stages' seconds, summed as `run` reports its total
    results["seconds"] = float(sum(v for k, v in timings.items() if k in STAGES and isinstance(v, (int, float))))
    write_json(out / RESULTS_FILE, results)
    return out / RESULTS_FILE


def stage_report(settings: Settings, log=print) -> Path:
    """Write ``report.md`` and the figures from ``results.json`` and the traces."""
    from snnexit.report import write_report

    out = _out(settings)
    results = _read_json(out / RESULTS_FILE, "evaluate")
    missing = [k for k in ("config", "data", "ann", "calibration", "snn", "policies", "curves", "oracle_capture",
                           "seconds") if k not in results]
    if missing:
        raise SnnexitError(f"{out / RESULTS_FILE} lacks {', '.join(missing)}; run `snnexit evaluate` again")
    val = _load_trace(out, TRACE_FILES[0], settings)
    test = _load_trace(out, TRACE_FILES[1], settings)
    snn = results["snn"]
    if not isinstance(snn, dict) or snn.get("test_acc_per_step") != test.accuracy_per_step().tolist():
        raise SnnexitError(f"{out / RESULTS_FILE} does not belong to {out / TRACE_FILES[1]}; "
                           "run `snnexit evaluate` again")
    save_config(out / "config.report.json", settings, "report")
    write_report(out, results, val, test)
    return out / "report.md"


STAGE_FUNCTIONS = {"train": stage_train, "convert": stage_convert, "trace": stage_trace, "fit": stage_fit,
                   "evaluate": stage_evaluate, "report": stage_report}

_HELP = {
    "train": "train the QCFS ANN (or reuse the cached one) -> ann.safetensors",
    "convert": "calibrate and convert the trained ANN to an SNN -> snn.safetensors",
    "trace": "simulate the SNN on validation and test -> trace_val/trace_test.safetensors",
    "fit": "fit Dynamic Confidence on the validation trace -> policy.json",
    "evaluate": "evaluate fixed T, Dynamic Confidence and the oracle on the test trace -> results.json",
    "report": "write report.md and the figures from results.json and the traces",
}


def _main(stage: str):
    def main(args) -> int:
        from snnexit.report import TABLE1_HEADER, table1_rows

        from snnexit.cli.common import progress_log

        settings = settings_from_args(args)
        log = progress_log(args)
        settings.run.progress = settings.run.progress and not log.quiet
        log(f"{stage}: started")
        written = STAGE_FUNCTIONS[stage](settings, log=log)
        if stage == "evaluate":
            results = json.loads(Path(written).read_text())
            print(TABLE1_HEADER)
            print("\n".join(table1_rows(settings.run.dataset, settings.run.model, settings.run.converter, results)))
        names = ", ".join(str(p) for p in written) if isinstance(written, tuple) else str(written)
        log(f"{stage}: done")
        print(f"Wrote {names}")
        return 0

    return main


def register(sub) -> None:
    for stage in STAGES:
        p = sub.add_parser(stage, help=_HELP[stage], description=f"{_HELP[stage]}. Reads the previous stage's "
                           "files from the run folder (--out); settings from --config FILE, overridden by flags.")
        add_config_arguments(p, stages=("trace", "fit"))  # every stage takes every flag: one command line fits all
        p.set_defaults(func=_main(stage))
