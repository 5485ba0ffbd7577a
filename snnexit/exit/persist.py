"""A fitted policy saved and loaded as JSON: the same decisions, bit for bit.

``policy.to_dict()`` (:meth:`ExitPolicy.to_dict`) gives::

    {"format": "snnexit-policy", "version": 3, "policy": <registry name>,
     "params": get_params(), "fitted": {<every fitted attribute>: <its JSON form>}}

and :func:`policy_from_dict` rebuilds the policy from it, refusing a record that is not one
(format, version, unknown policy or parameter), whose parameters the policy rejects, or whose
fitted attributes are incomplete, of the wrong type or of inconsistent shapes. The encoding is
exact (:mod:`snnexit.exit.codec`): the rebuilt policy's exit steps, predictions, evaluation
and curves equal the original's on every trace. :func:`save_policy` and :func:`load_policy`
add a file (written atomically) and an optional ``extra`` table for the caller's notes.
"""

from __future__ import annotations

import json
from pathlib import Path

from snnexit.errors import SnnexitError
from snnexit.exit.base import POLICIES, POLICY_FORMAT, POLICY_VERSION, ExitPolicy
from snnexit.exit.codec import decode_fitted
from snnexit.exit.target import check_threshold
from snnexit.exit.threshold import ThresholdPolicy
from snnexit.io import write_json

RECORD_KEYS = ("format", "version", "policy", "params", "fitted", "extra")
FIT_MARGIN = 1e-5  # how far outside the score's range a fitted threshold_ may lie (curve: 1e-6 below the lowest)


def policy_from_dict(record) -> ExitPolicy:
    """The policy a :meth:`ExitPolicy.to_dict` record describes (fitted if the record is)."""
    if not isinstance(record, dict):
        raise SnnexitError(f"a policy record is a JSON object, got {type(record).__name__}")
    if record.get("format") != POLICY_FORMAT:
        raise SnnexitError(f"not a policy record: format {record.get('format')!r}, expected {POLICY_FORMAT!r}")
    version = record.get("version")
    if isinstance(version, bool) or version != POLICY_VERSION:
        older = " (its softmax thresholds were probabilities, now log-odds: fit the policy again)" if version == 2 else ""
        raise SnnexitError(f"policy record version {version!r} cannot be read: this snnexit reads version "
                           f"{POLICY_VERSION}{older}")
    unknown = [key for key in record if key not in RECORD_KEYS]
    if unknown:
        raise SnnexitError(f"policy record has unknown keys {', '.join(map(repr, unknown))}")
    name = record.get("policy")
    if not isinstance(name, str):
        raise SnnexitError(f"policy record names no policy (policy = {name!r})")
    cls = POLICIES.get(name)
    params, fitted = record.get("params", {}), record.get("fitted", {})
    if not isinstance(params, dict) or not isinstance(fitted, dict):
        raise SnnexitError(f"{name} record: params and fitted must be tables")
    bad = [key for key in params if key not in cls.param_names()]
    if bad:
        raise SnnexitError(f"{name} has no parameter {', '.join(map(repr, bad))}; its parameters: "
                           f"{', '.join(cls.param_names()) or 'none'}")
    policy = cls(**params)
    try:
        policy.check_settings()
    except SnnexitError as exc:
        raise SnnexitError(f"{name} record: {exc}") from None
    known = cls.fitted_attributes + cls.optional_fitted_attributes
    values = {}
    for key, value in fitted.items():
        if key not in known:
            raise SnnexitError(f"{name} record: {name} has no fitted attribute {key!r}; its fitted attributes: "
                               f"{', '.join(known)}")
        try:
            values[key] = decode_fitted(key, value)
        except SnnexitError as exc:
            raise SnnexitError(f"{name} record: {exc}") from None
    if values:
        try:
            _check_fitted_values(policy, values)
        except SnnexitError as exc:
            raise SnnexitError(f"{name} record: {exc}") from None
    policy.__dict__.update(values)
    return policy


def _check_fitted_values(policy: ExitPolicy, values: dict) -> None:
    """Complete and consistent fitted attributes, as one ``fit`` leaves them."""
    missing = [key for key in policy.fitted_attributes if key not in values]
    if missing:
        raise SnnexitError(f"fitted attributes lack {', '.join(missing)}")
    T = values["T_"]
    if T < 1:
        raise SnnexitError(f"T_ must be a positive integer, got {T}")
    if "classes_" in values and values["classes_"] < 2:
        raise SnnexitError(f"classes_ must be an integer >= 2, got {values['classes_']}")
    if isinstance(policy, ThresholdPolicy):
        _check_threshold_values(policy, values)
    for key in ("step_temperatures_", "step_thresholds_"):
        if key in values and tuple(values[key].shape) != (T,):
            raise SnnexitError(f"{key} has shape {tuple(values[key].shape)}, expected (T_,) = ({T},)")
    if "step_temperatures_" in values and not bool((values["step_temperatures_"] > 0).all()):
        raise SnnexitError("step_temperatures_ must be positive")
    if "sorted_values_" in values:
        shape, table = tuple(values["sorted_values_"].shape), tuple(values["score_table_"].shape)
        if shape[0] != T or shape[1] < 1 or table != (T, shape[1] + 1):
            raise SnnexitError(f"sorted_values_ {shape} and score_table_ {table} must be (T_, N) and (T_, N + 1) "
                               f"with T_ = {T}, N >= 1")
    if "miscoverage_" in values and not 0.0 <= values["miscoverage_"] <= 1.0:
        raise SnnexitError(f"miscoverage_ must lie in [0, 1], got {values['miscoverage_']}")


def _check_threshold_values(policy: ThresholdPolicy, values: dict) -> None:
    threshold, curve, point = values["threshold_"], values["curve_"], values["point_"]
    if policy.threshold is not None and threshold != float(policy.threshold):
        raise SnnexitError(f"threshold_ = {threshold} differs from the fixed threshold {policy.threshold}")
    # a fitted threshold may lie just below the lowest score (the curve's last point)
    check_threshold(threshold, policy.score_range, policy.describe_score(), name="threshold_", tolerance=FIT_MARGIN)
    if curve.T != values["T_"]:
        raise SnnexitError(f"curve_ has T = {curve.T}, T_ = {values['T_']}")
    if not ((curve.mean_steps >= 1) & (curve.mean_steps <= curve.T)).all():
        raise SnnexitError(f"curve_.mean_steps must lie in [1, T_ = {curve.T}]")
    if point != int((curve.thresholds[:-1] > threshold).sum()):
        raise SnnexitError(f"point_ = {point} is not the point of curve_ that threshold_ = {threshold} realises")
    risk = [key for key in policy.optional_fitted_attributes if key in values]
    if policy.certifies != bool(risk) or (risk and len(risk) != len(policy.optional_fitted_attributes)):
        raise SnnexitError(f"{', '.join(policy.optional_fitted_attributes)} come together, and exactly when the "
                           f"threshold is certified (target 'risk', no fixed threshold)")
    if risk:
        if values["pvalues_"].shape != curve.thresholds.shape:
            raise SnnexitError(f"pvalues_ has shape {values['pvalues_'].shape}, curve_ has {curve.thresholds.size} "
                               f"points")
        if values["certification_size_"] != curve.n or values["learn_size_"] < 0:
            raise SnnexitError(f"certification_size_ = {values['certification_size_']} must equal curve_.n = "
                               f"{curve.n} and learn_size_ = {values['learn_size_']} be >= 0")


def save_policy(path, policy: ExitPolicy, extra: dict | None = None) -> Path:
    """Write ``policy.to_dict()`` (plus ``extra``, a JSON-able table for the caller) to ``path``
    atomically; returns the path."""
    record = policy.to_dict()
    if extra is not None:
        if not isinstance(extra, dict):
            raise SnnexitError(f"extra must be a table (dict), got {type(extra).__name__}")
        record["extra"] = extra
    write_json(path, record)
    return Path(path)


def read_record(path, what: str = "policy"):
    """The JSON record in the file ``path`` (a one-line error when there is none to read)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SnnexitError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SnnexitError(f"{path}: not a readable JSON {what} file ({type(exc).__name__}: {str(exc)[:80]})") from None


def load_policy_with_extra(path) -> tuple[ExitPolicy, dict]:
    """The policy saved at ``path`` and the ``extra`` table saved with it ({} if none)."""
    path = Path(path)
    record = read_record(path)
    try:
        policy = policy_from_dict(record)
    except SnnexitError as exc:
        raise SnnexitError(f"{path}: {exc}") from None
    extra = record.get("extra", {})
    if not isinstance(extra, dict):
        raise SnnexitError(f"{path}: extra must be a table")
    return policy, extra


def load_policy(path) -> ExitPolicy:
    """The policy saved at ``path`` by :func:`save_policy`."""
    return load_policy_with_extra(path)[0]
