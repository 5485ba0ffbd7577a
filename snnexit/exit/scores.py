"""Exit scores: pure functions of the accumulated output after step ``t`` (1-based).

Each takes ``accumulated`` ``(N, C)`` and returns ``(N,)`` in its dtype, higher meaning "more
sure": a policy exits at the first step whose score exceeds its threshold. Every function works
row by row, so the online runtime (compacted batches) and the offline evaluation (whole
traces) compute the same numbers for the same input. snnexit decides and certifies in float64;
the softmax scores are written so that the same rule in float32 takes the same decisions except
on inputs within float32 rounding of the threshold (see "portable scores" below).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from snnexit.checks import check_flag  # noqa: F401 (the policies' flags are checked with it)
from snnexit.errors import SnnexitError
from snnexit.simulate.scaling import OutputScaling, run_length


def alpha_at(t: int, meta: dict, rule=None) -> float:
    """Dynamic Confidence's alpha after step ``t`` of the run ``meta`` describes (its ``T``), by
    ``rule`` (``"T"``, ``"t"``, a number; None: the network's own, :class:`OutputScaling`)."""
    scaling = OutputScaling.of(meta)
    return (scaling if rule is None else scaling.with_(alpha=rule)).alpha_at(t, run_length(meta))


def scaled_logits(accumulated: torch.Tensor, t: int, T: int | None, scaling: OutputScaling) -> torch.Tensor:
    """``Y[t] / alpha_t / T_cal`` in the dtype of ``accumulated`` (the callers choose: float64 for
    the decisions snnexit takes and certifies, float32 to see what a float32 deployment takes)."""
    return accumulated / scaling.divisor(t, T)


# ---- portable scores ------------------------------------------------------------------------
# A softmax probability saturates: for a confident input, 1 - p_top falls below float64's
# resolution (1e-16) long before the logits stop growing, and below float32's (6e-8) much sooner,
# so a threshold such as 0.9999999999921 is a different rule in float32 (or fixed point), where
# it rounds to 1. Each softmax score below is therefore computed in a form that orders inputs
# exactly as the probability does but keeps its digits where the probability runs out: the
# log-odds of the top class, and the logarithm of the normalised entropy. Their thresholds keep
# their meaning in float32, and a float32 score differs from the float64 one by rounding only.

def top_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """(N,) log-odds of the top class, ``log(p_top / (1 - p_top)) = z_top - logsumexp(z_rest)``:
    Dynamic Confidence's max softmax (and SEENN-I's) as a score that does not saturate. It is a
    strictly increasing function of ``p_top``, so both exit the same inputs at the same steps
    (``p_top = sigmoid(score)``, :func:`probability_from_log_odds`)."""
    top, where = logits.max(-1, keepdim=True)
    rest = logits.scatter(-1, where, float("-inf"))  # every class but (one) top
    return top[..., 0] - torch.logsumexp(rest, -1)


def log_odds(p: float) -> float:
    """The log-odds ``log(p / (1 - p))`` of a probability in (0, 1): the :func:`top_log_odds`
    threshold that means "top probability > p" (``p = 0.99`` -> 4.595)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p < 1.0:
        raise SnnexitError(f"a probability threshold must lie in (0, 1), got {p!r}")
    return math.log(p) - math.log1p(-p)


def probability_from_log_odds(score: torch.Tensor) -> torch.Tensor:
    """The top probability a :func:`top_log_odds` score stands for (for plots and tables)."""
    return torch.sigmoid(score)


def neg_log_normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """(N,) ``-log(H(softmax(z)) / log C)`` in [0, inf]: DT-SNN's entropy as a score that does not
    saturate (0 for the uniform distribution; ``1 - H / log C = 1 - exp(-score)``).

    Computed from log-probabilities, which never underflow: ``H = sum_j p_j (-log p_j)``, so
    ``log H = logsumexp_j(log p_j + log(-log p_j))``. With ``d_j = z_j - z_top`` and
    ``s = sum_{j != top} exp(d_j)`` (kept as ``log s``), ``-log p_top = log1p(s)`` and
    ``-log p_j = log1p(s) - d_j``; ``log(log1p(s))`` is taken as ``log s - s / 2`` for tiny s,
    where ``log1p(s)`` itself would round to 0."""
    top, where = logits.max(-1, keepdim=True)
    d = logits - top  # (N, C) <= 0
    log_s = torch.logsumexp(d.scatter(-1, where, float("-inf")), -1, keepdim=True)  # (N, 1)
    minus_log_p_top = torch.nn.functional.softplus(log_s)  # log1p(s)
    log_of_that = torch.where(log_s < -20.0, log_s - torch.exp(log_s) / 2, torch.log(minus_log_p_top))
    minus_log_p = minus_log_p_top - d  # (N, C): -log p_j, > 0 off the top
    terms = torch.log(minus_log_p) - minus_log_p  # log p_j + log(-log p_j)
    terms = terms.scatter(-1, where, log_of_that - minus_log_p_top)  # the top's, without rounding to log(0)
    log_entropy = torch.logsumexp(terms, -1)
    return math.log(math.log(logits.shape[-1])) - log_entropy


def topk_gap(values: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) top-1 minus top-k of ``values`` (SNNCutoff's Top-K gap; k = 2 is the margin)."""
    top = values.topk(k, dim=-1).values
    return top[..., 0] - top[..., k - 1]


def minus_log_second_probability(logits: torch.Tensor) -> torch.Tensor:
    """(N,) ``-log p_2``, the runner-up's softmax probability as a score that does not saturate
    (a conformal set excludes the runner-up when ``1 - p_2`` is large: when ``-log p_2`` is)."""
    return -torch.log_softmax(logits, dim=-1).topk(2, dim=-1).values[..., 1]


@dataclass(eq=False, repr=False, kw_only=True)
class ScaledOutputSettings:
    """Parameters and checks shared by the policies that score softmax(Y[t] / alpha_t / T_cal).

    A mixin placed before the policy base: a policy class combining the two (decorated with
    :func:`~snnexit.exit.base.policy_params`) takes the base's parameters, then ``temperature``
    and ``use_alpha``. ``alpha_rule`` (a class attribute, not a parameter) says which alpha:
    None, the network's own (``meta["alpha"]``); ``"t"``, the step. ``fit`` records the scaling
    it resolved (``scaling_``) and scores with it from then on.
    """

    temperature: float | None = None
    use_alpha: bool = True

    alpha_rule = None

    def _check_params(self):
        temp = self.temperature
        if temp is not None and (isinstance(temp, bool) or not isinstance(temp, (int, float)) or not math.isfinite(temp)
                                 or temp <= 0):
            raise SnnexitError(f"temperature must be a positive number or None, got {temp!r}")
        check_flag("use_alpha", self.use_alpha)

    def resolved_scaling(self, meta: dict) -> OutputScaling:
        """The scaling this policy applies on a run ``meta`` describes: the network's, overridden by
        the policy's own ``temperature``, ``alpha_rule`` and ``use_alpha`` (False: alpha = 1)."""
        scaling = OutputScaling.of(meta)
        if self.temperature is not None:
            scaling = scaling.with_(temperature=self.temperature)
        if not self.use_alpha:
            return scaling.with_(alpha=1.0)
        return scaling if self.alpha_rule is None else scaling.with_(alpha=self.alpha_rule)

    def meta_keys(self) -> tuple[str, ...]:
        """What of the network's stated scaling this policy takes (not overridden by its own)."""
        return tuple(key for key, taken in (("alpha", self.use_alpha and self.alpha_rule is None),
                                            ("temperature", self.temperature is None)) if taken)

    def scaled(self, accumulated: torch.Tensor, t: int, meta: dict) -> torch.Tensor:
        return scaled_logits(accumulated, t, run_length(meta), self.scaling_for(meta))

    def scaling_formula(self, meta: dict) -> str:
        """``z = Y[t] / (alpha * T_cal)`` in words, with this run's numbers."""
        scaling = self.output_scaling(meta)
        alpha, temp = scaling["alpha"], repr(float(scaling["temperature"]))
        if alpha["rule"] == "none":
            return f"z = Y[t] / {temp}"
        value = "t" if alpha["rule"] == "t" else repr(float(alpha["value"]))
        return f"z = Y[t] / (alpha * T_cal), alpha = {value}, T_cal = {temp}"

    def output_scaling(self, meta: dict) -> dict:
        """The alpha and temperature this policy divides the accumulated output by on a run."""
        scaling = self.scaling_for(meta)
        alpha = scaling.describe_alpha(run_length(meta)) if self.use_alpha else {"rule": "none", "value": 1.0}
        return {"alpha": alpha, "temperature": scaling.temperature}
