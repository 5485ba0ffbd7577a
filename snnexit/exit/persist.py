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
import os
from pathlib import Path

from snnexit.errors import SnnexitError
from snnexit.exit.base import POLICIES, POLICY_FORMAT, POLICY_VERSION, ExitPolicy, check_is_fitted
from snnexit.exit.codec import decode_fitted
from snnexit.io import write_json

RECORD_KEYS = ("format", "version", "policy", "params", "fitted", "extra")


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
    known = cls.fitted_state
    values = {}
    for key, value in fitted.items():
        if key not in known:
            raise SnnexitError(f"{name} record: {name} has no fitted attribute {key!r}; its fitted attributes: "
                               f"{', '.join(known)}")
        try:
            values[key] = decode_fitted(key, value, known[key])
        except SnnexitError as exc:
            raise SnnexitError(f"{name} record: {exc}") from None
    if values:
        try:
            policy._check_fitted_state(values)
        except SnnexitError as exc:
            raise SnnexitError(f"{name} record: {exc}") from None
    policy.__dict__.update(values)
    return policy


def save_policy(path, policy: ExitPolicy, extra: dict | None = None) -> Path:
    """Write ``policy.to_dict()`` (plus ``extra``, a JSON-able table for the caller) to ``path``
    atomically; returns the path. A policy that needs a fit is saved only fitted."""
    if not isinstance(policy, ExitPolicy):
        raise SnnexitError(f"save_policy saves an exit policy, got {type(policy).__name__}")
    check_is_fitted(policy)
    record = policy.to_dict()
    if extra is not None:
        if not isinstance(extra, dict):
            raise SnnexitError(f"extra must be a table (dict), got {type(extra).__name__}")
        record["extra"] = extra
    write_json(path, record)
    return Path(path)


def read_record(path, what: str = "policy"):
    """The JSON record in the file ``path`` (a one-line error when there is none to read)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise SnnexitError(f"a {what} file is a path, got {path!r}")
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SnnexitError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SnnexitError(f"{path}: not a readable JSON {what} file ({type(exc).__name__}: {str(exc)[:80]})") from None


def load_policy_with_extra(path) -> tuple[ExitPolicy, dict]:
    """The policy saved at ``path`` and the ``extra`` table saved with it ({} if none)."""
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
