"""Every policy on the same validation/test traces, with the oracle capture (the table and the
plot of it: :mod:`snnexit.report.compare`).

Each policy is fitted on the validation trace and evaluated on the test trace. The "oracle
capture" is ``(T - mean_steps) / (T - mean_steps of the oracle)``: the share of the oracle's
saving a policy realises. It is reported

* **honestly**: for the threshold fitted on validation data, measured on test data, with the
  test-accuracy change against fixed T beside it (a capture at an accuracy loss is flagged);
* **in hindsight**: for the cheapest point of the policy's test curve that loses no test
  accuracy (an upper reference for what that score could do, not a result).
"""

from __future__ import annotations

from snnexit.errors import SnnexitError
from snnexit.exit.base import POLICIES, check_trace, summarize_curve
from snnexit.exit.evaluation import validation_point
from snnexit.exit.policies import FixedT, Oracle, OracleStable
from snnexit.exit.threshold import ThresholdPolicy
from snnexit.simulate.trace import Trace

ORACLES = ("oracle", "oracle_stable")


def _capture(T: int, mean_steps: float, oracle_steps: float) -> float | None:
    return (T - mean_steps) / (T - oracle_steps) if T > oracle_steps else None


def _target_kwargs(target: str, eps, max_steps, delta) -> dict:
    kwargs = {"target": target}
    if eps is not None:
        kwargs["eps"] = eps
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    if delta is not None:
        kwargs["delta"] = delta
    return kwargs


def compare_policies(val: Trace, test: Trace, names: list[str] | None = None, *, target: str = "no_loss",
                     eps: float | None = None, max_steps: float | None = None, delta: float | None = None,
                     risk: tuple[float, float] | None = None, policy_kwargs: dict | None = None) -> dict:
    """Fit every policy in ``names`` (default: all registered) on ``val``, evaluate on ``test``.

    ``target``/``eps``/``max_steps``/``delta`` go to every thresholded policy; ``risk=(eps, delta)``
    adds a risk-controlled row for each of them. ``policy_kwargs`` maps a name to extra settings.
    """
    check_trace(val)
    check_trace(test)
    if val.T != test.T or val.C != test.C:
        raise SnnexitError(f"validation and test traces differ: (T, C) = {(val.T, val.C)} vs {(test.T, test.C)}")
    names = POLICIES.names() if names is None else list(names)
    for name in names:
        POLICIES.get(name)  # unknown names list the known ones
    T = test.T
    fixed = FixedT().evaluate(test)
    oracle, stable = Oracle().evaluate(test), OracleStable().evaluate(test)
    fixed_correct = round(fixed["test_acc"] * test.N)
    entries = []
    for name in names:
        cls = POLICIES.get(name)
        extra = dict((policy_kwargs or {}).get(name, {}))
        if issubclass(cls, ThresholdPolicy):
            entries.append((name, name, {**_target_kwargs(target, eps, max_steps, delta), **extra}))
            if risk is not None:
                entries.append((f"{name} (risk)", name, {"target": "risk", "eps": risk[0], "delta": risk[1], **extra}))
        else:
            entries.append((name, name, extra))
    rows = {}
    for label, name, kwargs in entries:
        policy = POLICIES.get(name)(**kwargs).fit(val)
        res = policy.evaluate(test)
        row = {
            "policy": name, "settings": repr(policy), "threshold": res["threshold"],
            "test_acc": res["test_acc"], "acc_change": res["test_acc"] - fixed["test_acc"],
            "no_loss_on_test": res["test_acc"] >= fixed["test_acc"],
            "mean_steps": res["mean_steps"], "saving": res["saving"], "disagreement": res["disagreement"],
            "oracle_capture": _capture(T, res["mean_steps"], oracle["mean_steps"]),
            "stable_oracle_capture": _capture(T, res["mean_steps"], stable["mean_steps"]),
            "exit_step_counts": res["exit_step_counts"],
            "uses_labels_at_test": policy.uses_labels_at_test,
        }
        if isinstance(policy, ThresholdPolicy):
            row.update({k: v for k, v in validation_point(policy).items() if k != "val_size"})
            test_curve = policy.curve(test)
            best = test_curve.select(min_correct=fixed_correct)
            row["hindsight"] = {"threshold": float(test_curve.thresholds[best]),
                                "test_acc": float(test_curve.accuracy[best]),
                                "mean_steps": float(test_curve.mean_steps[best]),
                                "oracle_capture": _capture(T, float(test_curve.mean_steps[best]), oracle["mean_steps"])}
            row["test_curve"] = summarize_curve(test_curve, max_points=2000)
        rows[label] = row
    deployable = {k: r for k, r in rows.items()
                  if not r["uses_labels_at_test"] and r["policy"] != "fixed" and r["oracle_capture"] is not None}
    best_no_loss = max((k for k, r in deployable.items() if r["no_loss_on_test"]),
                       key=lambda k: deployable[k]["oracle_capture"], default=None)
    return {
        "T": T, "val_size": val.N, "test_size": test.N, "target": target, "eps": eps, "max_steps": max_steps,
        "delta": delta, "risk": list(risk) if risk is not None else None,
        "fixed": {"test_acc": fixed["test_acc"], "mean_steps": fixed["mean_steps"]},
        "oracle": {"test_acc": oracle["test_acc"], "mean_steps": oracle["mean_steps"]},
        "oracle_stable": {"test_acc": stable["test_acc"], "mean_steps": stable["mean_steps"]},
        "best_no_loss": best_no_loss,
        "policies": rows,
    }
