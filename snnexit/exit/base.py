"""Exit policies as estimators (scikit-learn style).

* ``__init__`` only stores settings;
* ``fit(trace)`` validates the trace, learns attributes ending in ``_`` and returns ``self``;
* ``exit_steps(trace)`` gives each input's 1-based exit step, ``predict(trace)`` its answer;
* a policy that needs fitting raises :class:`NotFittedError` until it is fitted.

A thresholded policy is defined by a per-step score computed from the accumulated output
alone (``score_step``), so the online runtime and the offline evaluation call the same
function on the same numbers and take the same decisions.
"""

from __future__ import annotations

import numpy as np
import torch

from snnexit.errors import SnnexitError
from snnexit.exit.curve import ExitCurve, exact_curve, exit_steps_from_scores
from snnexit.registry import Registry
from snnexit.simulate.trace import Trace

POLICIES: Registry = Registry("policy")
register_policy = POLICIES.register


class NotFittedError(SnnexitError):
    pass


def check_trace(trace) -> Trace:
    if not isinstance(trace, Trace):
        raise SnnexitError(f"expected a Trace, got {type(trace).__name__}")
    trace.validate()
    return trace


def predictions_at(trace: Trace, exit_steps: torch.Tensor) -> torch.Tensor:
    """(N,) the argmax of the accumulated output at each input's exit step."""
    idx = (exit_steps.long() - 1).view(1, -1, 1).expand(1, -1, trace.C)
    return trace.outputs.gather(0, idx)[0].argmax(-1)


class ExitPolicy:
    """Base class. Subclasses implement ``exit_steps``; ``fit`` is a no-op by default."""

    needs_fit = False
    uses_labels_at_test = False  # oracles peek at labels: an upper bound, not a deployable policy

    def fit(self, trace: Trace) -> "ExitPolicy":
        check_trace(trace)
        self.T_ = trace.T
        return self

    def _check_fitted(self) -> None:
        if self.needs_fit and not hasattr(self, "T_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(validation_trace) first")

    def exit_steps(self, trace: Trace) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, trace: Trace) -> torch.Tensor:
        return predictions_at(trace, self.exit_steps(trace))

    def threshold(self):
        return None

    def decide(self, accumulated: torch.Tensor, t: int, meta: dict, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Online rule: (N,) bool, may each input stop after step ``t`` (1-based), given its
        accumulated output ``(N, C)``? Must take exactly the decisions of ``exit_steps`` on a
        trace (a runtime stops at T regardless). ``labels`` only for oracles."""
        raise NotImplementedError(f"{type(self).__name__} has no online decision rule")

    def evaluate(self, trace: Trace) -> dict:
        """Accuracy, mean steps and saving against fixed T on ``trace``."""
        check_trace(trace)
        steps = self.exit_steps(trace)
        pred = predictions_at(trace, steps)
        mean_steps = steps.double().mean().item()
        return {
            "threshold": self.threshold(),
            "test_acc": (pred == trace.labels).double().mean().item(),
            "mean_steps": mean_steps,
            "saving": 1.0 - mean_steps / trace.T,
            "exit_step_counts": torch.bincount(steps, minlength=trace.T + 1)[1:].tolist(),
        }


class ThresholdPolicy(ExitPolicy):
    """Exit at the first step whose score exceeds ``threshold_``, else at T.

    Args:
        target: how ``fit`` picks the threshold. ``"no_loss"``: fewest mean steps whose
            accuracy on the fitting trace is at least its fixed-T accuracy.
        threshold: a fixed threshold; when given, ``fit`` learns nothing.
    """

    needs_fit = True
    targets = ("no_loss",)

    def __init__(self, target: str = "no_loss", threshold: float | None = None):
        self.target = target
        self.threshold_init = threshold

    # --- subclasses -------------------------------------------------------------------
    def score_step(self, accumulated: torch.Tensor, t: int, meta: dict) -> torch.Tensor:
        """(N,) score after step ``t`` (1-based) from the accumulated output ``(N, C)``."""
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------
    def scores(self, trace: Trace) -> torch.Tensor:
        """(T, N) score at every step."""
        return torch.stack([self.score_step(trace.outputs[t], t + 1, trace.meta) for t in range(trace.T)])

    def curve(self, trace: Trace) -> ExitCurve:
        check_trace(trace)
        return exact_curve(self.scores(trace), trace.correct())

    def fit(self, trace: Trace) -> "ThresholdPolicy":
        check_trace(trace)
        if self.target not in self.targets:
            raise SnnexitError(f"Unknown target {self.target!r}. Known: {', '.join(self.targets)}")
        self.T_ = trace.T
        if self.threshold_init is not None:
            self.threshold_ = float(self.threshold_init)
            return self
        self.curve_ = self.curve(trace)
        self.point_ = self._select(self.curve_)
        self.threshold_ = float(self.curve_.thresholds[self.point_])
        return self

    def _select(self, curve: ExitCurve) -> int:
        return curve.select(min_correct=int(curve.correct[0]))

    def threshold(self):
        self._check_fitted()
        return self.threshold_

    def exit_steps(self, trace: Trace) -> torch.Tensor:
        self._check_fitted()
        check_trace(trace)
        return exit_steps_from_scores(self.scores(trace), self.threshold_)

    def decide(self, accumulated, t, meta, labels=None):
        self._check_fitted()
        return self.score_step(accumulated, t, meta).double() > self.threshold_


def fixed_t_accuracy(trace: Trace) -> float:
    return trace.correct()[-1].double().mean().item()


def summarize_curve(curve: ExitCurve) -> dict:
    """JSON-able curve with its Pareto front (for plots and results.json)."""
    front = curve.pareto_front()
    return {
        "thresholds": np.where(np.isfinite(curve.thresholds), curve.thresholds, None).tolist(),
        "mean_steps": curve.mean_steps.tolist(),
        "accuracy": curve.accuracy.tolist(),
        "pareto_front": front.tolist(),
    }
