"""Fit a policy on validation, evaluate it on test: the one way every command does it."""

from __future__ import annotations

from snnexit.errors import SnnexitError
from snnexit.exit.base import POLICIES, ExitPolicy
from snnexit.simulate.trace import Trace


def policy_name(policy: ExitPolicy) -> str:
    """The registry name of ``policy``'s class."""
    name = getattr(type(policy), "name", None)
    if name in POLICIES and POLICIES.get(name) is type(policy):
        return name
    raise SnnexitError(f"{type(policy).__name__} is not a registered exit policy")


def validation_point(policy: ExitPolicy) -> dict:
    """Where a fitted thresholded policy sits on the curve it was fitted on: accuracy, mean steps
    and size of that trace at the chosen threshold (empty for policies without a curve)."""
    curve, point = getattr(policy, "curve_", None), getattr(policy, "point_", None)
    if curve is None or point is None:
        return {}
    return {"val_acc": float(curve.accuracy[point]), "val_mean_steps": float(curve.mean_steps[point]),
            "val_size": int(curve.n)}


def fit_and_evaluate(policy: ExitPolicy, val: Trace, test: Trace) -> dict:
    """Fit ``policy`` on ``val`` (when it learns anything) and evaluate it on ``test``: the row of
    :meth:`ExitPolicy.evaluate` plus the validation point (:func:`validation_point`)."""
    if policy.needs_fit:
        policy.fit(val)
    return {**policy.evaluate(test), **validation_point(policy)}
