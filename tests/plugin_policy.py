"""An exit policy written outside snnexit, in one file of its own (tests/test_policy_plugin.py uses it).

``relative_margin``: exit when the Top-2 margin of the accumulated output exceeds the step's own
baseline by a threshold; the baseline of step t is the median margin of the correctly answered
fitting inputs at t, learned from labels. It brings a target kind of its own, ``quantile``: the
threshold is the (1 - eps) quantile of the fitting trace's scores. Everything snnexit needs to know
about it is declared here: its parameters, its fitted state (and that the baselines are learned,
so a risk target certifies on other inputs), its targets.
"""

from __future__ import annotations

import torch

from snnexit.errors import SnnexitError
from snnexit.exit import ThresholdPolicy, policy_params, register_policy
from snnexit.exit.base import check_is_fitted, check_step_range
from snnexit.exit.codec import Fitted
from snnexit.exit.scores import topk_gap
from snnexit.exit.target import TARGETS, FitTarget, register_target

register_target("quantile", eps="closed")


@register_policy("relative_margin")
@policy_params
class RelativeMargin(ThresholdPolicy):
    """Top-2 margin of ``Y[t]`` minus the step's learned baseline.

    Args:
        floor: the least baseline (a margin below it counts as this much).
        target, threshold, eps, max_steps, delta: see :class:`ThresholdPolicy`.
    """

    floor: float = 0.0

    targets = TARGETS + ("quantile",)
    score_range = None
    score_meaning = "the Top-2 margin above the step's learned baseline"
    declare_fitted = {"baselines_": Fitted("tensor", "float64", 1, learned=True)}

    def _check_params(self):
        if isinstance(self.floor, bool) or not isinstance(self.floor, (int, float)) or self.floor < 0:
            raise SnnexitError(f"floor must be a number >= 0, got {self.floor!r}")

    def _fit_scores(self, trace) -> None:
        margins = torch.stack([topk_gap(trace.outputs[t].double(), 2) for t in range(trace.T)])  # (T, N)
        correct = trace.correct()
        baselines = [float(m[c].median()) if bool(c.any()) else 0.0 for m, c in zip(margins, correct)]
        self.baselines_ = torch.tensor(baselines, dtype=torch.float64).clamp(min=float(self.floor))
        self._last_scores = torch.stack([self.score_step(trace.outputs[t].double(), t + 1, trace.meta)
                                         for t in range(trace.T)])

    def score_step(self, accumulated, t, meta):
        check_is_fitted(self, "baselines_")
        check_step_range(self, self.baselines_.shape[0], t)
        return topk_gap(accumulated, 2) - float(self.baselines_[t - 1])

    def _direct_threshold(self, target: FitTarget):
        if target.kind == "quantile":
            return float(torch.quantile(self._last_scores.flatten(), 1.0 - target.eps))
        return None

    def _check_fitted_state(self, values):
        super()._check_fitted_state(values)
        if tuple(values["baselines_"].shape) != (values["T_"],):
            raise SnnexitError(f"baselines_ must have shape (T_,) = ({values['T_']},)")
