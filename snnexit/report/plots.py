"""The figures of the Dynamic Confidence paper, drawn from traces and results (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from snnexit.exit import DynamicConfidence  # noqa: E402
from snnexit.exit.scores import probability_from_log_odds  # noqa: E402
from snnexit.io import atomic_write  # noqa: E402
from snnexit.simulate.trace import Trace  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def oracle_accuracy_per_step(trace: Trace) -> np.ndarray:
    """(T,) accuracy if every input may stop at its first correct step up to T' (Fig. 1)."""
    return trace.correct().cummax(0).values.double().mean(1).numpy()


def plot_accuracy_vs_steps(trace: Trace, ann_acc: float | None, path: Path) -> None:
    """Fig. 1: fixed-T accuracy at every T' and the oracle's, with the ANN's as a line (None: no ANN)."""
    t = np.arange(1, trace.T + 1)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(t, 100 * trace.accuracy_per_step().numpy(), marker=".", label="SNN, fixed T")
    ax.plot(t, 100 * oracle_accuracy_per_step(trace), marker=".", label="oracle (first correct step)")
    if ann_acc is not None:
        ax.axhline(100 * ann_acc, color="gray", ls="--", label="ANN")
    ax.set(xlabel="time step T", ylabel="test accuracy (%)", title="Accuracy vs time step")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_confidence(trace: Trace, path: Path) -> None:
    """Fig. 2 as the paper draws it: the mean correctness (accuracy) after each step beside the
    mean confidence, (a) without alpha (max softmax(Y[t]): saturates early) and (b) with the
    network's alpha and T_cal (Dynamic Confidence: softened, tracks the accuracy)."""
    t = np.arange(1, trace.T + 1)
    accuracy = trace.accuracy_per_step().numpy()
    alpha = DynamicConfidence().output_scaling(trace.meta)
    a = alpha["alpha"]
    alpha_text = {"T": f"alpha = T = {a['value']:g}", "t": "alpha = t"}.get(a["rule"], f"alpha = {a['value']:g}")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    panels = ((False, "(a) without alpha", "max softmax(Y[t])"),
              (True, f"(b) with {alpha_text}, T_cal = {alpha['temperature']:.3g}", "max softmax(Y[t] / alpha / T_cal)"))
    for ax, (use_alpha, title, label) in zip(axes, panels):
        policy = DynamicConfidence(use_alpha=use_alpha, temperature=None if use_alpha else 1.0)
        ax.plot(t, accuracy, marker=".", label="accuracy (mean correctness)")
        confidence = probability_from_log_odds(policy.scores(trace))  # the score holds it as log-odds
        ax.plot(t, confidence.mean(1).numpy(), marker=".", label=f"mean confidence: {label}")
        ax.set(xlabel="time step t", title=title, ylim=(0, 1.02))
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean over test inputs")
    _save(fig, path)


def plot_pareto(curve: dict, chosen: int, fixed_acc: float, T: int, oracle: dict, path: Path,
                title: str = "Accuracy vs mean steps (validation)", certified: dict | None = None) -> None:
    """Fig. 3: every threshold's (mean steps, accuracy), its Pareto front and the chosen point
    (plus the certified exit's test point, when given)."""
    steps, acc = np.array(curve["mean_steps"]), 100 * np.array(curve["accuracy"])
    front = np.array(curve["pareto_front"], dtype=int)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(steps, acc, ".", ms=2, color="lightgray", label="all thresholds")
    ax.plot(steps[front], acc[front], "-", color="C0", label="Pareto front")
    ax.plot(steps[chosen], acc[chosen], "*", ms=14, color="C3",
            label=f"chosen tau = {curve['thresholds'][chosen]:.6g}")
    ax.plot([T], [100 * fixed_acc], "s", color="k", label=f"fixed T = {T}")
    ax.plot([oracle["mean_steps"]], [100 * oracle["test_acc"]], "^", color="C2", label="oracle (test)")
    if certified is not None and certified.get("test_acc") is not None:
        ax.plot([certified["mean_steps"]], [100 * certified["test_acc"]], "D", color="C1", mec="k",
                label=f"certified exit, {certified['policy']} (test)")
    ax.set(xlabel="mean time steps", ylabel="accuracy (%)", title=title)
    lo = min(acc[front].min(), 100 * fixed_acc) - 1
    ax.set_ylim(max(lo, 0), 100.5)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_exit_histogram(counts: dict[str, list[int]], T: int, path: Path) -> None:
    """Fig. 4: how many test inputs exit at each step, per policy."""
    t = np.arange(1, T + 1)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    width = 0.8 / len(counts)
    for i, (name, c) in enumerate(counts.items()):
        ax.bar(t + (i - (len(counts) - 1) / 2) * width, c, width=width, label=name)
    ax.set(xlabel="exit time step", ylabel="test inputs", title="Exit steps")
    ax.legend()
    _save(fig, path)
