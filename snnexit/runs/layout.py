"""The layout of ``results.json``, checked before a report is drawn from a stored one.

``results.json`` is written by the evaluate stage; a file edited by hand (or by another tool)
must fail with a line naming the first field that is missing or of the wrong type, not with a
traceback from inside a figure.
"""

from __future__ import annotations

import math

from snnexit.errors import SnnexitError

NUMBER, INTEGER, TEXT, FLAG, TABLE = "a number", "an integer", "a string", "true or false", "a table"
OPTIONAL = "or null"

ROW = {"test_acc": NUMBER, "mean_steps": NUMBER, "saving": NUMBER, "exit_step_counts": [INTEGER]}
CERTIFIED = {**ROW, "policy": TEXT, "eps": NUMBER, "delta": NUMBER, "calibration_size": INTEGER,
             "learn_size": INTEGER, "threshold": NUMBER, "test_disagreement": NUMBER, "n": INTEGER,
             "holds_on_test": FLAG, "candidates": TABLE}
RESULTS = {
    "config": {"dataset": TEXT, "model": TEXT, "converter": TEXT, "seed": INTEGER, "epochs": INTEGER,
               "levels": INTEGER},
    "data": {"train": INTEGER, "val": INTEGER, "test": INTEGER},
    "ann": {"test_acc": (NUMBER, OPTIONAL), "val_acc": (NUMBER, OPTIONAL)},  # null: an imported network
    "calibration": {"temperature": NUMBER, "ece_val_before": NUMBER, "ece_val_after": NUMBER,
                    "ece_test_before": NUMBER, "ece_test_after": NUMBER},
    "snn": {"T": INTEGER, "test_acc_per_step": [NUMBER], "val_acc_per_step": [NUMBER]},
    "policies": {"fixed": ROW, "oracle": ROW},
    "curves": TABLE,
    "oracle_capture": (NUMBER, OPTIONAL),
    "seconds": (NUMBER, OPTIONAL),
}
CURVE = {"thresholds": [(NUMBER, OPTIONAL)], "mean_steps": [NUMBER], "accuracy": [NUMBER], "pareto_front": [INTEGER]}


def _is(value, kind: str) -> bool:
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == TEXT:
        return isinstance(value, str)
    if kind == FLAG:
        return isinstance(value, bool)
    return isinstance(value, dict)  # TABLE


def _check(value, spec, where: str) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise SnnexitError(f"{where} must be a table")
        for key, inner in spec.items():
            if key not in value:
                raise SnnexitError(f"{where}.{key} is missing")
            _check(value[key], inner, f"{where}.{key}")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise SnnexitError(f"{where} must be a list")
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]")
    elif isinstance(spec, tuple):  # (kind, OPTIONAL)
        if value is not None:
            _check(value, spec[0], where)
    elif not _is(value, spec):
        raise SnnexitError(f"{where} must be {spec}, got {value!r:.40}")


def check_results(results, fitted: str, curve_prefix: str) -> None:
    """Refuse ``results`` (a loaded ``results.json``) whose layout the report cannot read."""
    _check(results, RESULTS, "results")
    policies = results["policies"]
    _check(policies.get(fitted), ROW, f"results.policies.{fitted}")
    if "certified" in policies:
        _check(policies["certified"], CERTIFIED, "results.policies.certified")
    curve = results["curves"].get(f"{curve_prefix}_val_curve")
    if curve is not None:
        _check(curve, CURVE, f"results.curves.{curve_prefix}_val_curve")
        _check(results["curves"].get(f"{curve_prefix}_val_point"), INTEGER, f"results.curves.{curve_prefix}_val_point")
