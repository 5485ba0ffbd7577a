"""The files of a run folder: their names, their formats, and the checks that they belong together.

::

    ann.safetensors                       trained ANN (also in the cache)            train
    snn.safetensors                       ANN weights + converter + thresholds,      convert
                                          the calibration (temperature), data sizes
    network.json                          an imported network (--nir): its file's    convert
                                          checksum, reader, fingerprint, data sizes
    trace_val/trace_test.safetensors      the SNN's outputs and spikes at every step trace
    trace_calibration.safetensors         unlabelled calibration inputs (optional)   trace
    policy.json                           the fitted exit policy (any registered)    fit
    certified.json                        the certified exit: what to deploy         evaluate
    results.json                          the numbers                                evaluate
    report.md, fig*.png                   the report                                 report
    config.<command>.json, timings.json   resolved settings, seconds per stage

A file made with other settings than the current ones is refused with the stage to run again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields
from pathlib import Path
from types import SimpleNamespace

from snnexit.convert.fixes import NO_FIX, restore_conversion_fix
from snnexit.errors import SnnexitError
from snnexit.exit import load_policy_with_extra, policy_name, save_policy
from snnexit.exit.certify import load_certified_with_extra, save_certified
from snnexit.io import check_output_folder, load_tensors, read_json_file, save_tensors, write_json
from snnexit.runs.ann import build_ann
from snnexit.runs.config_file import flatten, newest_saved_config, next_sequence, save_config
from snnexit.runs.imported import NETWORK_FILE, check_network_record, write_network_file
from snnexit.runs.network import converted
from snnexit.runs.settings import RunConfig, Settings
from snnexit.simulate import Trace
from snnexit.simulate.trace import check_same_network

ANN_FILE, SNN_FILE, POLICY_FILE, RESULTS_FILE = "ann.safetensors", "snn.safetensors", "policy.json", "results.json"
CERTIFIED_FILE = "certified.json"
TRACE_FILES = ("trace_val.safetensors", "trace_test.safetensors")
CALIBRATION_TRACE_FILE = "trace_calibration.safetensors"
TIMINGS_FILE = "timings.json"
SPLIT_OF = {TRACE_FILES[0]: "val", TRACE_FILES[1]: "test", CALIBRATION_TRACE_FILE: "calibration"}
SNN_FORMAT, SNN_VERSION = "snn", 1
STAGES = ("train", "convert", "trace", "fit", "evaluate", "report")
_NOT_SETTINGS = {"out", "device", "progress", "cache_dir", "download"}  # where and how, not what: may differ between stages


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_config_from(stored: dict) -> RunConfig:
    names = {f.name for f in fields(RunConfig)}
    stored = {"conversion_fix": NO_FIX, **stored}  # a config saved before conversion fixes existed applied none
    return RunConfig(**{k: v for k, v in stored.items() if k in names})


def _differences(stored: dict, current: dict) -> str:
    diff = [f"{k}={stored.get(k)!r} there, {current.get(k)!r} now" for k in current
            if k not in _NOT_SETTINGS and k in stored and stored.get(k) != current.get(k)]
    return "; ".join(diff) or "settings differ"


def _fix_setting(config: RunConfig) -> dict | None:
    """The record a network fixed with ``config``'s conversion fix carries (None: no fix)."""
    if config.fix_name() == NO_FIX:
        return None
    return {"name": config.fix_name(), "inputs_asked": config.conversion_fix_inputs, "horizon": config.T}


def conversion_fix_of(meta) -> str:
    """``name (inputs N, horizon T)`` of the conversion fix a network's (or trace's) meta records,
    or ``none``; inputs as the setting asked for them (a smaller training split gives fewer)."""
    record = meta.get("conversion_fix") if isinstance(meta, dict) else None
    if not isinstance(record, dict):
        return NO_FIX
    return f"{record.get('name')} (inputs {record.get('inputs_asked', record.get('inputs'))}, horizon {record.get('horizon')})"
def _as_json(value):
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError):
        return repr(value)


def check_fitted_as_said(policy, fit, path) -> None:
    """Refuse ``[fit]`` settings (``fit``: :class:`FitSettings`) other than those ``policy`` (read
    from ``path``) was fitted with: evaluate takes policy.json as fitted, and records what it evaluated."""
    name = policy_name(policy)
    if name != fit.policy:
        raise SnnexitError(f"{path} holds {name}, this config says {fit.policy}; drop --policy: evaluate takes "
                           f"policy.json as fitted")
    missing = object()
    for key, value in fit.policy_kwargs().items():
        fitted = getattr(policy, key, missing)
        if fitted is missing or _as_json(fitted) != _as_json(value):
            shown = "no such parameter" if fitted is missing else f"{key} = {fitted!r}"
            raise SnnexitError(f"{path} holds {name} fitted with {shown}, this config says {key} = {value!r}; drop "
                               f"the setting (--policy-option, or [fit] in the config): evaluate takes policy.json "
                               f"as fitted")


def _thresholds(snn) -> dict:
    return {name: float(m.threshold) for name, m in snn.spiking_layers() if hasattr(m, "threshold")}


def save_converted(path, model, snn, config: RunConfig, dims: dict, extra_meta: dict | None = None) -> None:
    """Save a converted SNN so that :func:`load_converted` rebuilds it exactly: the ANN's weights
    (``ann.*``), the SNN's own parameters and buffers (``snn.*``: thresholds, folded weights), the
    model config and the converter's name (safetensors, no pickle)."""
    tensors = {f"ann.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"snn.{k}": v for k, v in snn.state_dict().items()})
    meta = {"config": asdict(config), "train_key": config.train_key(), "converter": config.converter,
            "dims": dict(dims), "thresholds": _thresholds(snn), "snn_meta": dict(snn.meta), **(extra_meta or {})}
    save_tensors(path, tensors, fmt=SNN_FORMAT, version=SNN_VERSION, meta=meta)


def load_converted(path, device: str = "cpu", data=None, stored: tuple[dict, dict] | None = None):
    """Rebuild the SNN saved by :func:`save_converted`; returns ``(snn, meta)``.

    The ANN is rebuilt from the saved config and weights and converted again (``data``: the
    :class:`DataSplits` whose training inputs a data-calibrating converter needs), then the saved
    SNN parameters and buffers are loaded over it, and the thresholds are checked. ``stored``: the
    file's ``(tensors, meta)``, when the caller has read them already."""
    path = Path(path)
    tensors, meta = stored if stored is not None else load_tensors(path, fmt=SNN_FORMAT, version=SNN_VERSION)
    ann_state = {k[4:]: v for k, v in tensors.items() if k.startswith("ann.")}
    snn_state = {k[4:]: v for k, v in tensors.items() if k.startswith("snn.")}
    try:
        config = run_config_from(meta["config"])
        converter = meta["converter"]
        dims = SimpleNamespace(**{k: meta["dims"][k] for k in ("num_classes", "in_channels", "input_size")})
    except (KeyError, TypeError) as exc:
        raise SnnexitError(f"{path}: converted-SNN metadata is incomplete ({exc})") from None
    model = build_ann(config, dims)
    try:
        model.load_state_dict(ann_state)
        snn = restore_conversion_fix(converted(model.eval(), converter, data), snn_state)  # the fix's layers, unfitted
        snn.load_state_dict(snn_state)
    except RuntimeError as exc:
        raise SnnexitError(f"{path}: weights do not fit model {config.model!r} converted with {converter!r}: "
                           f"{str(exc)[:200]}") from None
    if _thresholds(snn) != meta.get("thresholds"):
        raise SnnexitError(f"{path}: the rebuilt SNN has other thresholds than the ones saved; the file or the "
                           f"converter {converter!r} changed")
    snn.meta.update(meta.get("snn_meta", {}))
    return snn.to(device).eval(), meta


class RunFolder:
    """One run's folder: where each stage finds the files of the stages before it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._snn_file = None  # (tensors, meta) of snn.safetensors, read once

    def save_snn(self, model, snn, config: RunConfig, dims: dict, extra_meta: dict) -> Path:
        """Write ``snn.safetensors`` (:func:`save_converted`)."""
        save_converted(self.path / SNN_FILE, model, snn, config, dims, extra_meta)
        self._snn_file = None
        return self.path / SNN_FILE

    def _read_snn_file(self) -> tuple[dict, dict]:
        if self._snn_file is None:
            self._snn_file = load_tensors(self.need(SNN_FILE, "convert"), fmt=SNN_FORMAT, version=SNN_VERSION)
        return self._snn_file

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def create(self) -> "RunFolder":
        check_output_folder(self.path, "run folder")
        return self

    def need(self, name: str, stage: str) -> Path:
        """The path of ``name``, which the stage ``stage`` writes; an error when it is missing."""
        path = self.path / name
        if not path.is_file():
            raise SnnexitError(f"{path}: no such file; run `snnexit {stage}` with the same --out first")
        return path

    def read_json(self, name: str, stage: str) -> dict:
        path = self.need(name, stage)
        try:
            obj = read_json_file(path, "file")
        except SnnexitError as exc:
            raise SnnexitError(f"{exc}; run `snnexit {stage}` again") from None
        if not isinstance(obj, dict):
            raise SnnexitError(f"{path}: expected a JSON object")
        return obj

    def save_config(self, settings: Settings, command: str) -> None:
        """``config.<command>.json``, numbered after the folder's other configs: the newest holds
        the folder's settings (:mod:`snnexit.runs.resolve`)."""
        save_config(self.path / f"config.{command}.json", settings, command, sequence=next_sequence(self.path))

    def check_same_settings(self, settings: Settings, keys) -> None:
        """Refuse a folder that holds a run made with other settings: its newest saved config
        (whichever command wrote it) differs in one of ``keys`` (flat: ``T``, ``fit.policy``, the
        settings its files were made with), and its files would end up beside files of these settings."""
        saved = newest_saved_config(self.path)
        if saved is None:
            return
        stored = flatten(saved[0])
        defaults, current = flatten(Settings().to_dict()), flatten(settings.to_dict())
        stored = {k: stored.get(k, defaults.get(k)) for k in keys}  # a key an older version did not write: its default
        diff = [f"{k}={stored[k]!r} there, {current.get(k)!r} now" for k in keys if stored[k] != current.get(k)]
        if diff:
            raise SnnexitError(f"{self.path} holds a run with other settings ({'; '.join(diff)}); pass --overwrite "
                               f"to replace it, or choose another --out")

    def record_time(self, stage: str, seconds: float) -> None:
        timings = self.timings()
        timings[stage] = seconds
        write_json(self.path / TIMINGS_FILE, timings)

    def timings(self) -> dict:
        """The seconds per stage so far (an unreadable ``timings.json`` counts as none: it is rewritten)."""
        path = self.path / TIMINGS_FILE
        try:
            timings = read_json_file(path) if path.is_file() else {}
        except SnnexitError:
            timings = {}
        return timings if isinstance(timings, dict) else {}

    # ---- the files, each checked against the current settings --------------------------------
    def check_train_key(self, name: str, meta: dict, config: RunConfig, stage: str) -> None:
        if meta.get("train_key") != config.train_key():
            diff = _differences(meta.get("config", {}), asdict(config))
            raise SnnexitError(f"{self.path / name} was made with other training settings ({diff}); "
                               f"run `snnexit {stage}` again with these settings")

    def snn_meta(self, config: RunConfig) -> dict:
        """The metadata of ``snn.safetensors`` (calibration, data sizes), checked against ``config``."""
        path = self.path / SNN_FILE
        _, meta = self._read_snn_file()
        self.check_train_key(SNN_FILE, meta, config, "convert")
        if meta.get("converter") != config.converter:
            raise SnnexitError(f"{path} was converted with {meta.get('converter')!r}, this config says "
                               f"{config.converter!r}; run `snnexit convert` again")
        if conversion_fix_of(meta.get("snn_meta")) != conversion_fix_of({"conversion_fix": _fix_setting(config)}):
            raise SnnexitError(f"{path} has conversion fix {conversion_fix_of(meta.get('snn_meta'))}, this config says "
                               f"{conversion_fix_of({'conversion_fix': _fix_setting(config)})}; run `snnexit convert` "
                               f"again")
        if not isinstance(meta.get("data"), dict) or not isinstance(meta.get("calibration"), dict):
            raise SnnexitError(f"{path} lacks the calibration or data sizes; run `snnexit convert` again")
        return meta

    def load_snn(self, config: RunConfig, data):
        self.snn_meta(config)
        snn, _ = load_converted(self.path / SNN_FILE, config.device, data, stored=self._read_snn_file())
        return snn

    def load_trace(self, name: str, config: RunConfig) -> Trace:
        """The trace ``name``, checked against the settings and against its own split."""
        path = self.need(name, "trace")
        trace = Trace.load(path)
        if trace.meta.get("converter") == "nir" and not config.imported:
            raise SnnexitError(f"{path} holds outputs of a network imported from NIR ({trace.meta.get('nir_file')}); "
                               f"pass --nir FILE --semantics NAME as the run did")
        if trace.T != config.T or trace.meta.get("converter") != config.network_source():
            raise SnnexitError(f"{path} has T = {trace.T} and converter {trace.meta.get('converter')!r}, this config "
                               f"says T = {config.T} and {config.network_source()!r}; run `snnexit trace` again")
        if conversion_fix_of(trace.meta) != conversion_fix_of({"conversion_fix": _fix_setting(config)}):
            raise SnnexitError(f"{path} was traced with conversion fix {conversion_fix_of(trace.meta)}, this config "
                               f"says {conversion_fix_of({'conversion_fix': _fix_setting(config)})}; run "
                               f"`snnexit trace` again")
        split = trace.meta.get("split")
        if split is not None and split != SPLIT_OF[name]:
            raise SnnexitError(f"{path} holds the {split} trace, not the {SPLIT_OF[name]} one (a copied file?); "
                               "run `snnexit trace` again")
        return trace

    def save_network_record(self, record: dict) -> Path:
        """``network.json``: what the convert stage of an imported network made (snnexit.runs.imported)."""
        write_network_file(self.path / NETWORK_FILE, record)
        return self.path / NETWORK_FILE

    def network_record(self, config: RunConfig) -> dict:
        """``network.json``, checked against ``config`` (the same NIR file, reader and step)."""
        return check_network_record(self.read_json(NETWORK_FILE, "convert"), config, self.path / NETWORK_FILE)

    def network_of_snn_file(self) -> str | None:
        """The fingerprint of the network in ``snn.safetensors`` or ``network.json`` (None without
        either): read as it is, whatever the settings, since a stage that only reads traces does not
        check them."""
        if (self.path / NETWORK_FILE).is_file() and not (self.path / SNN_FILE).is_file():
            try:
                record = read_json_file(self.path / NETWORK_FILE)
            except SnnexitError:  # unreadable, not JSON, nested too deeply: no fingerprint to check against
                return None
            return record.get("network") if isinstance(record, dict) else None
        if not (self.path / SNN_FILE).is_file():
            return None
        _, meta = self._read_snn_file()
        snn_meta = meta.get("snn_meta")
        return snn_meta.get("network") if isinstance(snn_meta, dict) else None

    def check_traces(self, traces: dict[str, Trace], network: str | None) -> None:
        """The traces of one run come from one network: each other's, and ``network`` (the one in
        ``snn.safetensors``)."""
        val, test = traces[TRACE_FILES[0]], traces[TRACE_FILES[1]]
        check_same_network(val, test, f"{self.path / TRACE_FILES[0]} and {TRACE_FILES[1]}")
        for name, trace in traces.items():
            if network is not None and trace.meta.get("network") not in (None, network):
                raise SnnexitError(f"{self.path / name} was traced from another network than {self.path / SNN_FILE}; "
                                   "run `snnexit trace` again")

    def save_policy(self, policy, fitted_on: str = TRACE_FILES[0]) -> Path:
        """``policy.json``: the policy's own record, and the checksum of the trace it was fitted on."""
        return save_policy(self.path / POLICY_FILE, policy,
                           extra={"fitted_on": {"file": fitted_on, "sha256": sha256(self.path / fitted_on)}})

    def load_policy(self):
        """The fitted policy of ``policy.json``, refused when the validation trace changed since."""
        path = self.need(POLICY_FILE, "fit")
        policy, extra = load_policy_with_extra(path)
        fitted_on = extra.get("fitted_on")
        if not isinstance(fitted_on, dict) or fitted_on.get("file") not in TRACE_FILES:
            raise SnnexitError(f"{path}: does not name the trace it was fitted on; run `snnexit fit` again")
        if fitted_on.get("sha256") != sha256(self.need(fitted_on["file"], "trace")):
            raise SnnexitError(f"{path} was fitted on another {fitted_on['file']}; run `snnexit fit` again")
        return policy

    def save_certified(self, certified, traces: dict[str, Trace]) -> Path:
        """``certified.json``: the certified exit's own record, the network it was certified for and the
        checksums of the traces it learned and was certified on (``traces``: file name -> trace)."""
        network = next(iter(traces.values())).meta.get("network")
        fitted_on = {name: sha256(self.path / name) for name in traces if (self.path / name).is_file()}
        return save_certified(self.path / CERTIFIED_FILE, certified,
                              extra={"network": network, "T": certified.policy.T_, "fitted_on": fitted_on})

    def load_certified(self):
        """The certified exit of ``certified.json``, refused when a trace it was made from changed since."""
        path = self.need(CERTIFIED_FILE, "evaluate")
        certified, extra = load_certified_with_extra(path)
        fitted_on = extra.get("fitted_on")
        if not isinstance(fitted_on, dict) or TRACE_FILES[0] not in fitted_on:
            raise SnnexitError(f"{path}: does not name the traces it was certified on; run `snnexit evaluate` again")
        for name, digest in fitted_on.items():
            if name not in SPLIT_OF or digest != sha256(self.need(name, "trace")):
                raise SnnexitError(f"{path} was certified on another {name}; run `snnexit evaluate` again")
        return certified
