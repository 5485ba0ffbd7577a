"""The markdown table and the figure of ``snnexit compare`` (:func:`snnexit.exit.compare.compare_policies`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from snnexit.exit.target import threshold_text  # noqa: E402
from snnexit.io import atomic_write  # noqa: E402


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
        th = "" if r["threshold"] is None else threshold_text(r["threshold"])
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
