"""SpikeCP (Chen, Park & Simeone, 2023): stop once the conformal prediction set is small.

Split-conformal calibration on the fitting trace, separately at every step t: with class
probabilities ``p = softmax(Y[t] / alpha_t / T_cal)`` and nonconformity ``-log p_y`` (SpikeCP's
``1 - p_y`` ordered the same way, without rounding to 1 where ``p_y`` is tiny), the
calibration scores ``s_i = -log p_{y_i}`` give the set at miscoverage level a,

    Gamma_t(x) = { y : -log p_y(x) <= s_(k) },   k = ceil((n + 1)(1 - a)),

which holds the true class with probability >= 1 - a. The set has at most one class (the
stopping rule) iff the runner-up class is out: ``-log p_2(x) > s_(k)``, i.e. iff at least k
calibration scores lie below ``-log p_2(x)``. The score ``#{i : s_i < -log p_2(x)} / (n + 1)``
(one minus the runner-up's conformal p-value) therefore exits exactly when the set is a
singleton (or empty) at level ``a = 1 - threshold``-ish, and one sort sweeps every level.
Targets: the four shared ones, plus ``"coverage"``: the miscoverage level a = ``eps`` given
directly, as in SpikeCP.
"""

from __future__ import annotations

import math

import torch

from snnexit.errors import SnnexitError
from snnexit.exit.base import policy_params, register_policy
from snnexit.exit.codec import Fitted
from snnexit.exit.scores import ScaledOutputSettings, minus_log_second_probability
from snnexit.exit.steptable import StepTablePolicy
from snnexit.exit.target import FitTarget
from snnexit.exit.threshold import ThresholdPolicy
from snnexit.simulate.trace import Trace


@register_policy("conformal")
@policy_params
class Conformal(ScaledOutputSettings, StepTablePolicy):
    """Exit when the per-step split-conformal prediction set has at most one class.

    Args:
        temperature, use_alpha: how the accumulated output becomes probabilities (as in
            Dynamic Confidence; None reads ``meta['temperature']``).

    Fitted attributes besides the shared ones: ``sorted_values_`` (per-step calibration
    nonconformity scores), ``score_table_`` and ``miscoverage_`` (the level a the threshold
    corresponds to: the set at step t has <= 1 class iff the score exceeds the threshold).
    """

    targets = ThresholdPolicy.targets + ("coverage",)
    score_range = (0.0, 1.0)
    score_meaning = "a share of calibration scores"
    declare_fitted = {"miscoverage_": Fitted("float")}

    def _check_fitted_state(self, values):
        super()._check_fitted_state(values)
        if not 0.0 <= values["miscoverage_"] <= 1.0:
            raise SnnexitError(f"miscoverage_ must lie in [0, 1], got {values['miscoverage_']}")

    def raw_step(self, accumulated, t, meta):
        return minus_log_second_probability(self.scaled(accumulated, t, meta))

    def raw_formula(self, meta):
        return f"-log p_2 (the runner-up's softmax probability) of {self.scaling_formula(meta)}"

    def _tables(self, raw, trace: Trace):
        T, N = raw.shape
        log_probs = torch.stack([torch.log_softmax(self.scaled(trace.outputs[t].double(), t + 1, trace.meta), -1)
                                 for t in range(T)])  # (T, N, C)
        labels = trace.labels.long().to(log_probs.device).view(1, N, 1).expand(T, N, 1)
        nonconformity = (-log_probs.gather(2, labels)[..., 0]).cpu()  # (T, N): -log p_y
        table = torch.arange(N + 1, dtype=torch.float64).expand(T, N + 1) / (N + 1)
        return nonconformity.sort(dim=1).values, table

    def _direct_threshold(self, target: FitTarget):
        if target.kind == "coverage":
            n = self.sorted_values_.shape[1]
            k = math.ceil((n + 1) * (1.0 - target.eps))  # exit iff >= k calibration scores below 1 - p_2
            return (k - 0.5) / (n + 1)
        return None

    def fit(self, trace: Trace, calibration: Trace | None = None) -> "Conformal":
        super().fit(trace, calibration)
        n = self.sorted_values_.shape[1]
        k = min(max(math.floor(self.threshold_ * (n + 1)) + 1, 0), n + 1)  # least count that exits
        self.miscoverage_ = 1.0 - k / (n + 1)
        return self
