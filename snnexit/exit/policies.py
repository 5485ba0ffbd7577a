"""The exit policies of the spine: fixed T, Dynamic Confidence, and the oracle bound."""

from __future__ import annotations

import torch

from snnexit.errors import SnnexitError
from snnexit.exit.base import ExitPolicy, ThresholdPolicy, check_trace, register_policy
from snnexit.simulate.trace import Trace


def alpha_at(t: int, meta: dict) -> float:
    """Dynamic Confidence's alpha: ``t`` for QCFS (the mean output), ``2**b - 1`` for QFFS."""
    alpha = meta.get("alpha", "t")
    return float(t) if alpha == "t" else float(alpha)


@register_policy("fixed")
class FixedT(ExitPolicy):
    """Run every input for all T steps: the baseline."""

    def exit_steps(self, trace: Trace) -> torch.Tensor:
        check_trace(trace)
        return torch.full((trace.N,), trace.T, dtype=torch.long)

    def decide(self, accumulated, t, meta, labels=None):
        return torch.zeros(accumulated.shape[0], dtype=torch.bool, device=accumulated.device)


@register_policy("dynamic_confidence")
class DynamicConfidence(ThresholdPolicy):
    """Li, Jones & Furber (ICCV 2023): ``c_t = max softmax(Y[t] / alpha_t / T_cal)``.

    Args:
        temperature: T_cal from temperature scaling of the ANN; None reads
            ``trace.meta["temperature"]`` (1.0 if absent).
        use_alpha: False drops alpha (plain max-softmax of the accumulated output, for Fig. 2).
    """

    def __init__(self, target: str = "no_loss", threshold: float | None = None,
                 temperature: float | None = None, use_alpha: bool = True):
        super().__init__(target=target, threshold=threshold)
        self.temperature = temperature
        self.use_alpha = use_alpha

    def score_step(self, accumulated, t, meta):
        temperature = self.temperature if self.temperature is not None else float(meta.get("temperature", 1.0))
        alpha = alpha_at(t, meta) if self.use_alpha else 1.0
        return torch.softmax(accumulated.double() / (alpha * temperature), dim=-1).max(-1).values


@register_policy("oracle")
class Oracle(ExitPolicy):
    """Upper bound: exit at the first step whose prediction is correct (never: T, wrong)."""

    uses_labels_at_test = True

    def exit_steps(self, trace: Trace) -> torch.Tensor:
        check_trace(trace)
        correct = trace.correct()  # (T, N)
        first = correct.int().argmax(0)
        return torch.where(correct.any(0), first, torch.full_like(first, trace.T - 1)).long() + 1

    def decide(self, accumulated, t, meta, labels=None):
        if labels is None:
            raise SnnexitError("the oracle needs the labels to decide (it is an upper bound, not a deployable policy)")
        return accumulated.argmax(-1) == labels.to(accumulated.device)
