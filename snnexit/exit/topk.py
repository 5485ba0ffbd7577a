"""SNNCutoff's Top-K gap (Wu et al., 2023): exit when the top-1 output leads the top-K one.

``topk`` uses one global threshold on the gap of the accumulated output; ``topk_per_step``
fits one threshold per time step as SNNCutoff does: on calibration data, the inputs whose gap
at step t exceeds ``tau_t`` are correct with rate >= 1 - eps.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from snnexit.errors import SnnexitError
from snnexit.exit.base import policy_params, register_policy
from snnexit.exit.codec import Fitted
from snnexit.exit.scores import check_flag, topk_gap
from snnexit.simulate.scaling import run_length
from snnexit.exit.steptable import StepTablePolicy
from snnexit.exit.target import FitTarget
from snnexit.exit.threshold import ThresholdPolicy
from snnexit.simulate.trace import Trace


def _check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise SnnexitError(f"k (top-1 minus top-k) must be an integer >= 2, got {k!r}")


def _check_k_classes(k: int, C: int) -> None:
    if k > C:
        raise SnnexitError(f"k = {k} exceeds the number of classes C = {C}")


@register_policy("topk")
@policy_params
class TopK(ThresholdPolicy):
    """Score: ``top1(Y[t]) - topK(Y[t])`` of the accumulated output (divided by alpha_t, the
    number of steps for QCFS, when ``use_alpha``: the mean output's gap).

    Args:
        k: which runner-up to compare with (2: the margin between the two best classes).
        use_alpha: divide by alpha_t first (False: the raw accumulated output, which grows with t).
        target, threshold, eps, max_steps, delta: see :class:`ThresholdPolicy` (also for the
            fitted attributes).
    """

    k: int = 2
    use_alpha: bool = False

    score_range = (0.0, math.inf)
    score_meaning = "a gap between outputs"

    def _check_params(self):
        _check_k(self.k)
        check_flag("use_alpha", self.use_alpha)

    def score_step(self, accumulated, t, meta):
        _check_k(self.k)
        _check_k_classes(self.k, accumulated.shape[-1])
        gap = topk_gap(accumulated, self.k)
        return gap / self.scaling_for(meta).alpha_at(t, run_length(meta)) if self.use_alpha else gap

    def score_depends_on_step(self, meta):
        return self.use_alpha and self.scaling_for(meta).alpha == "t"

    def meta_keys(self):
        return ("alpha",) if self.use_alpha else ()

    def score_formula(self, meta):
        gap = f"top1(Y[t]) - top{self.k}(Y[t])"
        if not self.use_alpha:
            return gap
        scaling = self.scaling_for(meta)
        return f"({gap}) / alpha, alpha = {'t' if scaling.alpha == 't' else repr(scaling.alpha_at(1, run_length(meta)))}"


@register_policy("topk_per_step")
@policy_params
class TopKPerStep(StepTablePolicy):
    """Top-K gap with one threshold per time step, fitted as SNNCutoff does.

    For a level eps, ``tau_t`` is the lowest gap threshold at which the calibration inputs
    with gap > tau_t at step t (all calibration inputs, not only those still running) are
    correct with rate >= 1 - eps. The fitted score of an input at step t is the best such
    precision its gap reaches, so "score >= 1 - eps" is exactly "gap > tau_t(eps)" and the
    exact curve sweeps eps. Targets: the four shared ones, plus ``"precision"`` (SNNCutoff's own
    rule: the level ``eps`` given directly).

    Fitted attributes besides the shared ones: ``sorted_values_`` and ``score_table_`` (the
    per-step lookup) and ``step_thresholds_`` ``(T,)`` (tau_t for the chosen threshold).
    """

    k: int = 2

    targets = ThresholdPolicy.targets + ("precision",)
    score_range = (0.0, 1.0)
    score_meaning = "a calibration precision"
    declare_fitted = {"step_thresholds_": Fitted("array", "float64", 1)}

    def _check_fitted_state(self, values):
        super()._check_fitted_state(values)
        if tuple(values["step_thresholds_"].shape) != (values["T_"],):
            raise SnnexitError(f"step_thresholds_ has shape {tuple(values['step_thresholds_'].shape)}, expected (T_,) "
                               f"= ({values['T_']},)")

    def _check_params(self):
        _check_k(self.k)

    def raw_step(self, accumulated, t, meta):
        _check_k(self.k)
        _check_k_classes(self.k, accumulated.shape[-1])
        return topk_gap(accumulated, self.k)

    def raw_formula(self, meta):
        return f"top1(Y[t]) - top{self.k}(Y[t])"

    def _tables(self, raw, trace: Trace):
        T, N = raw.shape
        correct = trace.correct().cpu().double()  # (T, N)
        desc, order = raw.sort(dim=1, descending=True)  # (T, N)
        c = correct.gather(1, order)
        precision = c.cumsum(1) / torch.arange(1, N + 1, dtype=torch.float64)  # (T, N): top-j sets, j = 1..N
        # only sets closed under ties are realisable by a threshold "gap > tau"
        boundary = torch.ones_like(desc, dtype=torch.bool)
        boundary[:, :-1] = desc[:, :-1] != desc[:, 1:]
        precision = torch.where(boundary, precision, torch.full_like(precision, -np.inf))
        best = precision.flip(1).cummax(1).values.flip(1)  # (T, N): best realisable precision with >= j inputs
        q = torch.cat([torch.ones(T, 1, dtype=torch.float64), best], 1)  # (T, N + 1), q[:, 0]: above all
        # an input with i calibration gaps below its own has N - i at or above it
        return desc.flip(1), q.flip(1)

    def _direct_threshold(self, target: FitTarget):
        if target.kind == "precision":
            return float(np.nextafter(1.0 - target.eps, -np.inf))  # score >= 1 - eps
        return None

    def fit(self, trace: Trace, calibration: Trace | None = None) -> "TopKPerStep":
        super().fit(trace, calibration)
        self.step_thresholds_ = self.raw_thresholds().numpy()  # tau_t: exit iff gap > tau_t
        return self
