"""Thresholded exit policies: exit at the first step whose score exceeds a fitted threshold.

A thresholded policy is defined by a per-step score computed from the accumulated output
alone (``score_step``), so the online runtime and the offline evaluation call the same
function on the same numbers and take the same decisions. Its threshold is chosen from the
exact accuracy-vs-mean-steps curve (one sort, :mod:`snnexit.exit.curve`) for a
:class:`~snnexit.exit.target.FitTarget` (``no_loss``, ``max_drop``, ``max_steps``, ``risk``).

Risk control is valid only if the inputs that certify the threshold played no part in shaping
the score. Policies whose score is itself learned from data (``learns_score``: per-step tables,
per-step temperatures, conformal scores) therefore learn it on one half of the fitting trace
and certify on the other (a fixed random split, :func:`~snnexit.exit.base.split_learn_certify`),
unless ``fit(trace, calibration=other)`` gives a separate certification trace; that trace needs
no labels.
"""

from __future__ import annotations

import math
from dataclasses import field
from typing import ClassVar

import torch

from snnexit.errors import SnnexitError
from snnexit.exit.base import (ExitPolicy, agreement_with_fixed_t, check_fitted_T, check_is_fitted, check_other_inputs,
                               check_trace, policy_params, split_learn_certify)
from snnexit.exit.codec import Fitted
from snnexit.exit.curve import ExitCurve, exact_curve, exit_steps_from_scores
from snnexit.exit.target import TARGETS, FitTarget, check_threshold, threshold_text
from snnexit.simulate.scaling import OutputScaling, stated_scaling
from snnexit.simulate.trace import Trace


FIT_MARGIN = 1e-5  # how far outside the score's range a fitted threshold_ may lie (curve: 1e-6 below the lowest)


@policy_params
class ThresholdPolicy(ExitPolicy):
    """Exit at the first step whose score exceeds ``threshold_``, else at T.

    Args:
        target: how ``fit`` picks the threshold: ``"no_loss"``, ``"max_drop"`` (needs ``eps``),
            ``"max_steps"`` (needs ``max_steps``) or ``"risk"`` (needs ``eps`` and ``delta``);
            see :mod:`snnexit.exit.target`. ``fit_target`` is the validated :class:`FitTarget`.
        threshold: a fixed threshold; when given, ``fit`` chooses no threshold (but still
            learns any per-step score tables).
        eps: the accuracy drop allowed (a fraction, 0.01 = one point).
        max_steps: the mean-steps budget.
        delta: the probability allowed for the risk guarantee to fail.

    Subclasses declare only the parameters they add (:func:`~snnexit.exit.base.policy_params`).

    Fitted attributes (every fit): ``T_``; ``classes_`` (C); ``scaling_`` (the
    :class:`~snnexit.simulate.scaling.OutputScaling` the score applies, resolved from the fitting
    trace: the policy carries it, so its decisions never depend on what a network's meta says
    later, and :meth:`check_output` refuses a network or trace that states another); ``threshold_``; ``curve_``, the exact curve of the
    fitting trace (for ``risk`` without a fixed threshold: of the certifying inputs, label-free
    when they are unlabelled); ``point_``, the point of ``curve_`` that ``threshold_`` realises
    (the number of its thresholds above ``threshold_``). For ``risk`` without a fixed threshold
    also ``pvalues_`` (one per curve point), ``certification_size_`` and ``learn_size_``.
    """

    target: str = field(default="no_loss", kw_only=False)
    threshold: float | None = field(default=None, kw_only=False)
    eps: float | None = None
    max_steps: float | None = None
    delta: float | None = None

    needs_fit = True
    targets = TARGETS
    # the values the score takes, (low, high) with high possibly inf, and what it is: a fixed
    # threshold outside is refused (None: any finite threshold)
    score_range: ClassVar[tuple[float, float] | None] = None
    score_meaning: ClassVar[str] = "the score"

    min_fit_inputs: ClassVar[int] = 2  # a threshold chosen on fewer inputs is chosen on nothing
    declare_fitted = {
        "classes_": Fitted("int"), "scaling_": Fitted("scaling"), "threshold_": Fitted("float"),
        "curve_": Fitted("curve"), "point_": Fitted("int"),
        # certified thresholds (target risk) only
        "pvalues_": Fitted("array", "float64", 1, optional=True),
        "certification_size_": Fitted("int", optional=True), "learn_size_": Fitted("int", optional=True),
    }

    # --- subclasses -------------------------------------------------------------------
    def score_step(self, accumulated: torch.Tensor, t: int, meta: dict) -> torch.Tensor:
        """(N,) score after step ``t`` (1-based) from the accumulated output ``(N, C)``."""
        raise NotImplementedError

    def _fit_scores(self, trace: Trace) -> None:
        """Learn what the score needs from the fitting trace (per-step tables); default nothing."""

    def _check_params(self) -> None:
        """Subclass settings (e.g. K of top-K); raise SnnexitError naming the problem."""

    def _direct_threshold(self, target: FitTarget) -> float | None:
        """Targets that fix the threshold without the curve (e.g. SNNCutoff's precision)."""
        return None

    def _check_fitted_state(self, values: dict) -> None:
        super()._check_fitted_state(values)
        if values["classes_"] < 2:
            raise SnnexitError(f"classes_ must be an integer >= 2, got {values['classes_']}")
        threshold, curve, point = values["threshold_"], values["curve_"], values["point_"]
        if self.threshold is not None and threshold != float(self.threshold):
            raise SnnexitError(f"threshold_ = {threshold} differs from the fixed threshold {self.threshold}")
        # a fitted threshold may lie just below the lowest score (the curve's last point)
        check_threshold(threshold, self.score_range, self.describe_score(), name="threshold_", tolerance=FIT_MARGIN)
        if curve.T != values["T_"]:
            raise SnnexitError(f"curve_ has T = {curve.T}, T_ = {values['T_']}")
        if not ((curve.mean_steps >= 1) & (curve.mean_steps <= curve.T)).all():
            raise SnnexitError(f"curve_.mean_steps must lie in [1, T_ = {curve.T}]")
        if point != int((curve.thresholds[:-1] > threshold).sum()):
            raise SnnexitError(f"point_ = {point} is not the point of curve_ that threshold_ = {threshold} realises")
        risk = [key for key in self.optional_fitted_attributes if key in values]
        if self.certifies != bool(risk) or (risk and len(risk) != len(self.optional_fitted_attributes)):
            raise SnnexitError(f"{', '.join(self.optional_fitted_attributes)} come together, and exactly when the "
                               f"threshold is certified (target 'risk', no fixed threshold)")
        if risk:
            if values["pvalues_"].shape != curve.thresholds.shape:
                raise SnnexitError(f"pvalues_ has shape {values['pvalues_'].shape}, curve_ has "
                                   f"{curve.thresholds.size} points")
            if values["certification_size_"] != curve.n or values["learn_size_"] < 0:
                raise SnnexitError(f"certification_size_ = {values['certification_size_']} must equal curve_.n = "
                                   f"{curve.n} and learn_size_ = {values['learn_size_']} be >= 0")

    # --- output scaling ------------------------------------------------------------------
    def resolved_scaling(self, meta: dict) -> OutputScaling:
        """The output scaling the score applies on a run ``meta`` describes (default: the network's)."""
        return OutputScaling.of(meta)

    def meta_keys(self) -> tuple[str, ...]:
        """What of a network's stated scaling (``alpha``, ``temperature``) the score takes from it."""
        return ()

    def scaling_for(self, meta: dict) -> OutputScaling:
        """The fitted scaling (``scaling_``), or before a fit the one ``meta`` resolves to."""
        fitted = self.__dict__.get("scaling_")
        return fitted if fitted is not None else self.resolved_scaling(meta)

    def check_output(self, meta: dict, classes: int | None = None) -> None:
        """Refuse output of another number of classes, or a network or trace that states another
        scaling than the one this policy was fitted with (where the score takes it from there)."""
        check_is_fitted(self, ("classes_", "scaling_"))
        name = type(self).__name__
        if classes is not None and classes != self.classes_:
            raise SnnexitError(f"{name} was fitted on outputs of {self.classes_} classes; these have {classes}")
        stated = stated_scaling(meta)
        fitted = self.scaling_.to_dict()
        for key in self.meta_keys():
            if key in stated and OutputScaling.of({**fitted, key: stated[key]}).to_dict()[key] != fitted[key]:
                raise SnnexitError(f"{name} was fitted with {key} = {fitted[key]!r}; this network or trace has "
                                   f"{key} = {stated[key]!r}: fit the policy on this network's traces")

    # --- shared -----------------------------------------------------------------------
    @property
    def fit_target(self) -> FitTarget:
        """``target``, ``eps``, ``max_steps`` and ``delta`` as one validated value."""
        return FitTarget.for_policy(self.target, self.targets, eps=self.eps, max_steps=self.max_steps,
                                    delta=self.delta)

    def check_settings(self) -> FitTarget:
        target = self.fit_target
        check_threshold(self.threshold, self.score_range, self.describe_score())
        self._check_params()
        return target

    @classmethod
    def describe_score(cls) -> str:
        return f"{cls.name or cls.__name__}'s score ({cls.score_meaning})"

    def _check_fit_size(self, trace: Trace, calibration: Trace | None) -> None:
        """Refuse choosing a threshold from fewer than ``min_fit_inputs`` inputs (per part, when
        ``fit`` splits the trace into a learning and a certifying part)."""
        least = self.min_fit_inputs
        name = type(self).__name__
        if trace.N < least:
            raise SnnexitError(f"{name}.fit needs at least {least} inputs, got a trace of {trace.N}: a threshold "
                               f"fitted on it would be chosen on nothing")
        if calibration is not None and calibration.N < least:
            raise SnnexitError(f"{name}.fit needs at least {least} calibration inputs to certify on, got {calibration.N}")
        if self.certifies and calibration is None and self.learns_score and trace.N < 2 * least:
            raise SnnexitError(f"{name}.fit with target 'risk' splits the trace into a learning and a certifying "
                               f"part of at least {least} inputs each: it needs {2 * least} inputs, got {trace.N} "
                               f"(or pass calibration=)")

    def _check_labels(self, trace: Trace, target: FitTarget) -> None:
        """Refuse an unlabelled fitting trace where the fit needs labels: a score learned from data,
        or a threshold chosen for accuracy (only target ``risk``, and a given threshold, need none)."""
        if trace.labelled:
            return
        if self.learns_score:
            raise SnnexitError(f"{type(self).__name__}.fit learns its score from labels; this trace has none")
        if not self.certifies and self.threshold is None:
            raise SnnexitError(f"{type(self).__name__}.fit with target {target.kind!r} chooses the threshold by "
                               f"accuracy, which needs labels; this trace has none (target 'risk' certifies on "
                               f"unlabelled inputs)")

    @property
    def certifies(self) -> bool:
        """Does ``fit`` certify the threshold (target ``risk``, no fixed threshold)?"""
        return self.target == "risk" and self.threshold is None

    def scores(self, trace: Trace, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """(T, N) score at every step (a loop over steps, each vectorised over inputs), computed in
        ``dtype``: float64, in which snnexit fits, certifies and decides; float32 to see what a
        float32 deployment of the same rule computes."""
        return torch.stack([self.score_step(trace.outputs[t].to(dtype), t + 1, trace.meta) for t in range(trace.T)])

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
        target = self.check_settings()
        check_trace(trace)
        self._check_labels(trace, target)
        self._check_fit_size(trace, calibration)
        if calibration is not None:
            if not self.certifies:
                raise SnnexitError("a separate calibration trace certifies a threshold: it needs target='risk' "
                                   "and no fixed threshold")
            check_trace(calibration)
            check_other_inputs(trace, calibration)
            if (calibration.T, calibration.C) != (trace.T, trace.C):
                raise SnnexitError(f"calibration trace (T, C) = {(calibration.T, calibration.C)} differs from the "
                                   f"fitting trace's {(trace.T, trace.C)}")
        self._forget_fit()
        self.T_, self.classes_, self.scaling_ = trace.T, trace.C, self.resolved_scaling(trace.meta)
        if self.certifies:
            learn, certify = trace, calibration
            if certify is None:
                learn, certify = split_learn_certify(trace) if self.learns_score else (trace, trace)
            self._fit_scores(learn)
            return self._certify(certify, target, learn_size=learn.N if self.learns_score else 0)
        self._fit_scores(trace)
        curve = self.curve(trace)
        threshold = float(self.threshold) if self.threshold is not None else self._direct_threshold(target)
        if threshold is None:
            point = self._select(curve, target)
            threshold = float(curve.thresholds[point])
        else:  # the point this threshold realises on the fitting trace's curve
            point = int((curve.thresholds[:-1] > threshold).sum())
        self.curve_, self.point_, self.threshold_ = curve, point, threshold
        return self

    def _certify(self, certify: Trace, target: FitTarget, learn_size: int) -> "ThresholdPolicy":
        """Learn then Test on ``certify`` (which learned nothing), labelled or not."""
        from snnexit.exit.risk import ltt_select  # scipy: only when certifying

        curve = self.curve(certify)
        point, pvalues = ltt_select(curve, target.eps, target.delta)
        self.curve_, self.point_, self.pvalues_ = curve, point, pvalues
        self.certification_size_, self.learn_size_ = certify.N, learn_size
        self.threshold_ = float(curve.thresholds[point])
        return self

    def _select(self, curve: ExitCurve, target: FitTarget) -> int:
        fixed_correct = int(curve.correct[0])
        if target.kind == "no_loss":
            return curve.select(min_correct=fixed_correct)
        if target.kind == "max_drop":
            return curve.select(min_correct=int(math.ceil(fixed_correct - target.eps * curve.n - 1e-9)))
        if target.kind == "max_steps":
            return curve.select_max_steps(float(target.max_steps))
        raise SnnexitError(f"target {target.kind!r} is not handled by {type(self).__name__}")

    def fitted_threshold(self) -> float:
        check_is_fitted(self)
        return self.threshold_

    def score_formula(self, meta: dict) -> str:
        """How the score is computed from the accumulated output ``Y[t]``, in words, with the numbers
        of a network whose traces carry ``meta``."""
        return self.describe_score()

    def describe_rule(self, meta: dict) -> str:
        """The fitted rule in words, with every number it needs in the digits that reproduce it: what a
        chip's host, another simulator or fixed-point code implements to take these decisions."""
        check_is_fitted(self)
        return (f"after each step t < {self.T_}, stop when {self.score_formula(meta)} > "
                f"{threshold_text(self.threshold_)}; else stop at t = {self.T_}")

    def exit_steps(self, trace: Trace, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Each input's exit step; ``dtype`` as in :meth:`scores` (in float32 the threshold is
        compared as the float32 number nearest to it, as a float32 deployment compares it)."""
        check_is_fitted(self)
        check_trace(trace)
        check_fitted_T(self, trace)
        self.check_output(trace.meta, trace.C)
        return exit_steps_from_scores(self.scores(trace, dtype), self.threshold_)

    def decide(self, accumulated, t, meta, labels=None):
        check_is_fitted(self)
        self.check_output(meta, accumulated.shape[-1])
        return self.score_step(accumulated.double(), t, meta) > self.threshold_

    def decide_steps(self, accumulated, t_first, meta, labels=None):
        if accumulated.dim() != 3:
            raise SnnexitError(f"decide_steps takes accumulated outputs (k, N, C), got shape {tuple(accumulated.shape)}")
        check_is_fitted(self)
        self.check_output(meta, accumulated.shape[-1])
        if self.score_depends_on_step(meta):
            return super().decide_steps(accumulated, t_first, meta, labels)
        k, n, classes = accumulated.shape  # every row scored alike, whatever its step: one call
        return (self.score_step(accumulated.reshape(k * n, classes).double(), t_first, meta) > self.threshold_).reshape(k, n)

    def score_depends_on_step(self, meta: dict) -> bool:
        """Does the score of an accumulated output depend on the step it was taken after (an
        alpha of t, per-step tables or temperatures)? True unless the class that defines
        ``score_step`` says otherwise: a subclass with a ``score_step`` of its own must say it
        again, or it is taken to depend (:meth:`__init_subclass__`)."""
        return True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "score_step" in cls.__dict__ and "score_depends_on_step" not in cls.__dict__:
            cls.score_depends_on_step = ThresholdPolicy.score_depends_on_step
