"""Every policy on the same validation/test traces: one table, one plot, the oracle capture.

Each policy is fitted on the validation trace and evaluated on the test trace. The "oracle
capture" is ``(T - mean_steps) / (T - mean_steps of the oracle)``: the share of the oracle's
saving a policy realises. It is reported

* **honestly**: for the threshold fitted on validation data, measured on test data, with the
  test-accuracy change against fixed T beside it (a capture at an accuracy loss is flagged);
* **in hindsight**: for the cheapest point of the policy's test curve that loses no test
  accuracy (an upper reference for what that score could do, not a result).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnexit.errors import SnnexitError
from snnexit.exit.base import POLICIES, check_trace, summarize_curve
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
            if hasattr(policy, "curve_"):
                row["val_acc"] = float(policy.curve_.accuracy[policy.point_])
                row["val_mean_steps"] = float(policy.curve_.mean_steps[policy.point_])
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


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def comparison_markdown(result: dict) -> str:
    T = result["T"]
    lines = [
        f"# Exit policies compared (T = {T})",
        "",
        f"Fitted on {result['val_size']} validation inputs (target `{result['target']}`), evaluated on "
        f"{result['test_size']} test inputs. Fixed T: {100 * result['fixed']['test_acc']:.2f}% at {T} steps; "
        f"oracle: {100 * result['oracle']['test_acc']:.2f}% at {result['oracle']['mean_steps']:.2f} mean steps; "
        f"stable oracle: {100 * result['oracle_stable']['test_acc']:.2f}% at "
        f"{result['oracle_stable']['mean_steps']:.2f}.",
        "",
        "Capture = (T - mean steps) / (T - oracle mean steps). \"Hindsight\" is the cheapest point of the "
        "policy's own test curve with no test-accuracy loss: a reference, not a result.",
        "",
        "| policy | threshold | val acc | test acc | change vs fixed T | mean steps | saving | disagreement "
        "| oracle capture | stable-oracle capture | hindsight capture |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in result["policies"].items():
        th = "" if r["threshold"] is None else f"{r['threshold']:.6g}"
        val_acc = f"{100 * r['val_acc']:.2f}%" if "val_acc" in r else ""
        flag = "" if r["no_loss_on_test"] else " (loss)"
        hind = _pct(r["hindsight"]["oracle_capture"]) if "hindsight" in r else ""
        lines.append(f"| {label} | {th} | {val_acc} | {100 * r['test_acc']:.2f}% | {100 * r['acc_change']:+.2f} pts "
                     f"| {r['mean_steps']:.2f} | {_pct(r['saving'])} | {100 * r['disagreement']:.2f}% "
                     f"| {_pct(r['oracle_capture'])}{flag} | {_pct(r['stable_oracle_capture'])} | {hind} |")
    best = result["best_no_loss"]
    lines += ["", (f"Best deployable policy without test-accuracy loss: **{best}**, capturing "
                   f"{_pct(result['policies'][best]['oracle_capture'])} of the oracle's saving."
                   if best else "No early-exit policy fitted on validation kept the fixed-T test accuracy."), ""]
    return "\n".join(lines)


def plot_comparison(result: dict, path: Path) -> None:
    """All test accuracy-vs-mean-steps curves (Pareto fronts), the chosen points and the oracles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from snnexit.io import atomic_write

    T = result["T"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lows = [100 * result["fixed"]["test_acc"]]
    bases = list(dict.fromkeys(r["policy"] for r in result["policies"].values()))
    for label, r in result["policies"].items():
        color = f"C{bases.index(r['policy']) % 10}"
        if "test_curve" in r and "(risk)" not in label:
            c = r["test_curve"]
            front = np.array(c["pareto_front"], dtype=int)
            steps, acc = np.array(c["mean_steps"])[front], 100 * np.array(c["accuracy"])[front]
            ax.plot(steps, acc, "-", color=color, lw=1.2, label=label)
            lows.append(acc[steps <= T].min() if steps.size else lows[0])
        if not r["uses_labels_at_test"] and r["policy"] != "fixed":
            ax.plot([r["mean_steps"]], [100 * r["test_acc"]], "o" if "(risk)" not in label else "D", color=color,
                    ms=6, mec="k", label=f"{label}: fitted" if "(risk)" in label else None)
    ax.plot([T], [100 * result["fixed"]["test_acc"]], "s", color="k", label=f"fixed T = {T}")
    ax.plot([result["oracle"]["mean_steps"]], [100 * result["oracle"]["test_acc"]], "^", ms=9, color="C2",
            mec="k", label="oracle")
    ax.plot([result["oracle_stable"]["mean_steps"]], [100 * result["oracle_stable"]["test_acc"]], "v", ms=9,
            color="C3", mec="k", label="stable oracle")
    ax.axhline(100 * result["fixed"]["test_acc"], color="gray", lw=0.8, ls=":")
    top = max(100 * result["oracle"]["test_acc"], 100 * result["fixed"]["test_acc"])
    ax.set_ylim(max(0.0, min(top - 5, 100 * result["fixed"]["test_acc"] - 3)), min(100.5, top + 1))
    ax.set(xlabel="mean time steps", ylabel="test accuracy (%)",
           title="Accuracy vs mean steps (test; dots: thresholds fitted on validation)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
