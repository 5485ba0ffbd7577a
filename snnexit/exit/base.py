"""Exit policies as estimators (scikit-learn style).

* ``__init__`` only stores settings;
* ``fit(trace)`` validates the settings and the trace, learns attributes ending in ``_``
  and returns ``self``;
* ``exit_steps(trace)`` gives each input's 1-based exit step, ``predict(trace)`` its answer;
* ``decide(accumulated, t, meta, labels=None)`` is the online twin of ``exit_steps``: it
  takes exactly the same decisions, one step at a time, on any subset of the inputs;
* a policy that needs fitting raises :class:`NotFittedError` until it is fitted.

A thresholded policy is defined by a per-step score computed from the accumulated output
alone (``score_step``), so the online runtime and the offline evaluation call the same
function on the same numbers and take the same decisions. Its threshold is chosen from the
exact accuracy-vs-mean-steps curve (one sort, :mod:`snnexit.exit.curve`) for one of the
fitting targets:

==============  ==============================================================================
``no_loss``     fewest mean steps whose accuracy on the fitting trace is >= its fixed-T accuracy
``max_drop``    fewest mean steps losing at most ``eps`` accuracy against fixed T (fitting trace)
``max_steps``   the most accurate point with mean steps <= ``max_steps``
``risk``        fewest mean steps such that, with probability >= 1 - ``delta`` over the fitting
                data, the rate at which the exit answer differs from the fixed-T answer on new
                data (an upper bound on the accuracy lost against fixed T) is <= ``eps`` (Learn
                then Test on the label-free disagreement rate, :mod:`snnexit.exit.risk`)
==============  ==============================================================================

Risk control is valid only if the inputs that certify the threshold played no part in shaping
the score. Policies whose score is itself learned from data (``learns_score``: per-step tables,
per-step temperatures, conformal scores) therefore learn it on one half of the fitting trace
and certify on the other (a fixed random split, :func:`split_learn_certify`), unless
``fit(trace, calibration=other)`` gives a separate certification trace; that trace needs no
labels.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch

from snnexit.errors import SnnexitError
from snnexit.exit.curve import ExitCurve, exact_curve, exit_steps_from_scores
from snnexit.registry import Registry
from snnexit.simulate.trace import Trace

POLICIES: Registry = Registry("policy")
register_policy = POLICIES.register

TARGETS = ("no_loss", "max_drop", "max_steps", "risk")


class NotFittedError(SnnexitError):
    pass


def check_step_fitted(policy, per_step: torch.Tensor | None, t: int, what: str) -> None:
    """Refuse scoring step ``t`` with a per-step table (``per_step``, one row per fitted step)
    that ``fit`` has not learnt yet, or that has no row for ``t``."""
    if per_step is None:
        raise NotFittedError(f"{type(policy).__name__} is not fitted: its {what} come from fit(trace)")
    if not 1 <= t <= per_step.shape[0]:
        raise SnnexitError(f"{type(policy).__name__} was fitted on {per_step.shape[0]} steps; it cannot score step {t}")


def check_trace(trace) -> Trace:
    if not isinstance(trace, Trace):
        raise SnnexitError(f"expected a Trace, got {type(trace).__name__}")
    trace.validate()
    return trace


def predictions_at(trace: Trace, exit_steps: torch.Tensor) -> torch.Tensor:
    """(N,) the argmax of the accumulated output at each input's exit step."""
    idx = (exit_steps.long() - 1).view(1, -1, 1).expand(1, -1, trace.C).to(trace.outputs.device)
    return trace.outputs.gather(0, idx)[0].argmax(-1)


CERTIFY_SPLIT_SEED = 0


def learn_certify_indices(n: int, learn_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the learning and the certifying part of ``n`` inputs: a fixed random permutation
    (independent of the data, so both parts stay exchangeable with new inputs)."""
    if n < 2:
        raise SnnexitError(f"need at least 2 inputs to split into learning and certification parts, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(CERTIFY_SPLIT_SEED))
    k = min(max(int(round(learn_fraction * n)), 1), n - 1)
    return perm[:k], perm[k:]


def split_learn_certify(trace: Trace, learn_fraction: float = 0.5) -> tuple[Trace, Trace]:
    """``trace`` split into a part that learns and a part that certifies (:func:`learn_certify_indices`)."""
    learn, certify = learn_certify_indices(trace.N, learn_fraction)
    return trace.subset(learn), trace.subset(certify)


def agreement_with_fixed_t(trace: Trace) -> torch.Tensor:
    """(T, N) bool: does the prediction after each step equal the prediction at T?"""
    pred = trace.predictions()
    return pred == pred[-1:]


class ExitPolicy:
    """Base class. Subclasses implement ``exit_steps`` and ``decide``; ``fit`` is a no-op by default."""

    needs_fit = False
    uses_labels_at_test = False  # oracles peek at labels: an upper bound, not a deployable policy
    online = True  # False: decide() would need future steps (oracle_stable)

    # --- scikit-learn conveniences -----------------------------------------------------
    def get_params(self) -> dict:
        names = [p.name for p in inspect.signature(type(self).__init__).parameters.values()
                 if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return {name: getattr(self, "threshold_init" if name == "threshold" else name) for name in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # --- estimator API --------------------------------------------------------------------
    def fit(self, trace: Trace) -> "ExitPolicy":
        check_trace(trace)
        self.T_ = trace.T
        return self

    def is_fitted(self) -> bool:
        return hasattr(self, "T_")

    def _check_fitted(self) -> None:
        if self.needs_fit and not self.is_fitted():
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

    def output_scaling(self, meta: dict) -> dict | None:
        """The alpha and temperature the score divides the accumulated output by (None: no softmax)."""
        return None

    def evaluate(self, trace: Trace) -> dict:
        """Accuracy, mean steps, saving and disagreement with fixed T on ``trace`` (plus the
        alpha and temperature a softmax score used)."""
        check_trace(trace)
        steps = self.exit_steps(trace)
        pred = predictions_at(trace, steps)
        mean_steps = steps.double().mean().item()
        scaling = self.output_scaling(trace.meta) or {"alpha": None, "temperature": None}
        return {
            "threshold": self.threshold(),
            **scaling,
            "test_acc": (pred == trace.labels).double().mean().item() if trace.labelled else None,
            "mean_steps": mean_steps,
            "saving": 1.0 - mean_steps / trace.T,
            "disagreement": (pred != trace.predictions()[-1]).double().mean().item(),
            "n": trace.N,
            "exit_step_counts": torch.bincount(steps.cpu(), minlength=trace.T + 1)[1:].tolist(),
        }


def _check_fraction(name: str, value, low_open: bool = False, high_open: bool = False) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SnnexitError(f"{name} must be a number in {'(' if low_open else '['}0, 1{')' if high_open else ']'}, "
                           f"got {value!r}")
    if value < 0 or value > 1 or (low_open and value == 0) or (high_open and value == 1):
        raise SnnexitError(f"{name} must lie in {'(' if low_open else '['}0, 1{')' if high_open else ']'}, got {value}")
    return float(value)


class ThresholdPolicy(ExitPolicy):
    """Exit at the first step whose score exceeds ``threshold_``, else at T.

    Args:
        target: how ``fit`` picks the threshold: ``"no_loss"``, ``"max_drop"`` (needs ``eps``),
            ``"max_steps"`` (needs ``max_steps``) or ``"risk"`` (needs ``eps`` and ``delta``);
            see the module docstring.
        threshold: a fixed threshold; when given, ``fit`` learns no threshold (but still
            learns any per-step score tables).
        eps: the accuracy drop allowed (a fraction, 0.01 = one point).
        max_steps: the mean-steps budget.
        delta: the probability allowed for the risk guarantee to fail.

    Fitted attributes: ``T_``, ``threshold_``, and (unless ``threshold`` was given) the
    fitting trace's ``curve_`` and the chosen ``point_``; for ``risk`` also ``pvalues_``,
    ``certification_size_`` and ``learn_size_`` (``curve_`` is then the curve of the
    certifying inputs, label-free when they are unlabelled).
    """

    needs_fit = True
    targets = TARGETS
    learns_score = False  # True: fit learns the score itself (tables, temperatures) from labelled data

    def __init__(self, target: str = "no_loss", threshold: float | None = None, *, eps: float | None = None,
                 max_steps: float | None = None, delta: float | None = None):
        self.target = target
        self.threshold_init = threshold
        self.eps = eps
        self.max_steps = max_steps
        self.delta = delta

    # --- subclasses -------------------------------------------------------------------
    def score_step(self, accumulated: torch.Tensor, t: int, meta: dict) -> torch.Tensor:
        """(N,) score after step ``t`` (1-based) from the accumulated output ``(N, C)``."""
        raise NotImplementedError

    def _fit_scores(self, trace: Trace) -> None:
        """Learn what the score needs from the fitting trace (per-step tables); default nothing."""

    def _check_params(self) -> None:
        """Subclass settings (e.g. K of top-K); raise SnnexitError naming the problem."""

    # --- shared -----------------------------------------------------------------------
    def is_fitted(self) -> bool:
        return hasattr(self, "threshold_")

    def check_settings(self) -> None:
        if self.target not in self.targets:
            raise SnnexitError(f"Unknown target {self.target!r}. Known: {', '.join(self.targets)}")
        if self.target in ("max_drop", "precision"):
            _check_fraction("eps", self.eps)
        if self.target in ("risk", "coverage"):
            _check_fraction("eps", self.eps, low_open=True, high_open=True)
        if self.target == "risk":
            _check_fraction("delta", self.delta, low_open=True, high_open=True)
        if self.target == "max_steps":
            ms = self.max_steps
            if ms is None or isinstance(ms, bool) or not isinstance(ms, (int, float)) or not ms >= 1:
                raise SnnexitError(f"max_steps must be a number >= 1 (mean steps per input), got {ms!r}")
        if self.threshold_init is not None:
            th = self.threshold_init
            if isinstance(th, bool) or not isinstance(th, (int, float)) or not math.isfinite(th):
                raise SnnexitError(f"threshold must be a finite number, got {th!r}")
        self._check_params()

    def scores(self, trace: Trace) -> torch.Tensor:
        """(T, N) score at every step (a loop over steps, each vectorised over inputs)."""
        return torch.stack([self.score_step(trace.outputs[t], t + 1, trace.meta) for t in range(trace.T)])

    def curve(self, trace: Trace) -> ExitCurve:
        """The exact curve of this score on ``trace``, with agreement counts for risk control."""
        check_trace(trace)
        return exact_curve(self.scores(trace), trace.correct() if trace.labelled else None,
                           agreement_with_fixed_t(trace))

    def fit(self, trace: Trace, calibration: Trace | None = None) -> "ThresholdPolicy":
        """Learn the score (if it is learned) and the threshold from ``trace``.

        ``calibration``: for target ``"risk"`` only, inputs (labelled or not) that certify the
        threshold while ``trace`` learns everything else. Without it, a policy whose score is
        learned splits ``trace`` into a learning and a certifying half.
        """
        self.check_settings()
        check_trace(trace)
        if calibration is not None:
            if self.target != "risk" or self.threshold_init is not None:
                raise SnnexitError("a separate calibration trace certifies a threshold: it needs target='risk' "
                                   "and no fixed threshold")
            check_trace(calibration)
            if (calibration.T, calibration.C) != (trace.T, trace.C):
                raise SnnexitError(f"calibration trace (T, C) = {(calibration.T, calibration.C)} differs from the "
                                   f"fitting trace's {(trace.T, trace.C)}")
        for name in ("threshold_", "curve_", "point_", "pvalues_", "certification_size_", "learn_size_"):
            self.__dict__.pop(name, None)
        self.T_ = trace.T
        if self.target == "risk" and self.threshold_init is None:
            learn, certify = trace, calibration
            if certify is None:
                learn, certify = split_learn_certify(trace) if self.learns_score else (trace, trace)
            self._fit_scores(learn)
            return self._certify(certify, learn_size=learn.N if self.learns_score else 0)
        self._fit_scores(trace)
        if self.threshold_init is not None:
            self.threshold_ = float(self.threshold_init)
            return self
        direct = self._direct_threshold()
        if direct is not None:
            self.threshold_ = direct
            return self
        self.curve_ = self.curve(trace)
        self.point_ = self._select(self.curve_)
        self.threshold_ = float(self.curve_.thresholds[self.point_])
        return self

    def _certify(self, certify: Trace, learn_size: int) -> "ThresholdPolicy":
        """Learn then Test on ``certify`` (which learned nothing), labelled or not."""
        from snnexit.exit.risk import ltt_select  # risk imports scipy: only when certifying

        self.curve_ = self.curve(certify)
        self.point_, self.pvalues_ = ltt_select(self.curve_, self.eps, self.delta)
        self.threshold_ = float(self.curve_.thresholds[self.point_])
        self.certification_size_, self.learn_size_ = certify.N, learn_size
        return self

    def _direct_threshold(self) -> float | None:
        """Targets that fix the threshold without the curve (e.g. SNNCutoff's precision)."""
        return None

    def _select(self, curve: ExitCurve) -> int:
        fixed_correct = int(curve.correct[0])
        if self.target == "no_loss":
            return curve.select(min_correct=fixed_correct)
        if self.target == "max_drop":
            return curve.select(min_correct=int(math.ceil(fixed_correct - self.eps * curve.n - 1e-9)))
        if self.target == "max_steps":
            return curve.select_max_steps(float(self.max_steps))
        raise SnnexitError(f"target {self.target!r} is not handled by {type(self).__name__}")

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


def summarize_curve(curve: ExitCurve, max_points: int | None = None) -> dict:
    """JSON-able curve with its Pareto front (for plots and results.json).

    ``max_points`` keeps only the Pareto front (plus fixed T) when the curve is longer, so a
    50,000-input curve does not bloat a JSON file.
    """
    front = curve.pareto_front()
    keep = np.arange(curve.thresholds.size)
    if max_points is not None and keep.size > max_points:
        keep = np.union1d(front, [0])
    pos = np.full(curve.thresholds.size, -1)
    pos[keep] = np.arange(keep.size)
    th = curve.thresholds[keep]
    out = {
        "thresholds": np.where(np.isfinite(th), th, None).tolist(),
        "mean_steps": curve.mean_steps[keep].tolist(),
        "accuracy": curve.accuracy[keep].tolist(),
        "pareto_front": pos[front].tolist(),
    }
    if curve.agree is not None:
        out["disagreement"] = curve.disagreement[keep].tolist()
    return out
