"""Exit scores: pure functions of the accumulated output after step ``t`` (1-based).

Each takes ``accumulated`` ``(N, C)`` and returns ``(N,)`` float64, higher meaning "more sure":
a policy exits at the first step whose score exceeds its threshold. Every function works
row by row, so the online runtime (compacted batches) and the offline evaluation (whole
traces) compute the same numbers for the same input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from snnexit.errors import SnnexitError

ALPHA_RULES = ("T", "t")


def check_flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise SnnexitError(f"{name} must be true or false, got {value!r}")


def alpha_at(t: int, meta: dict, rule=None) -> float:
    """Dynamic Confidence's alpha after step ``t`` of a run of ``meta["T"]`` steps.

    ``rule`` (default: the network's own, ``meta["alpha"]``, itself ``"T"`` when absent):

    * ``"T"``: the simulation length of the run, a constant (the paper's rule for QCFS, Sec. 5.2,
      and snnexit's for every rate-coded network: ``Y[T] / T`` is the output the network was
      trained or calibrated to give, so the confidence rises with t and meets the ANN's at T);
    * ``"t"``: the current step (the mean output ``Y[t] / t``; policy ``mean_output_confidence``);
    * a positive number: a constant (QFFS: ``2**b - 1``).
    """
    alpha = meta.get("alpha", "T") if rule is None else rule
    if alpha == "t":
        return float(t)
    if alpha == "T":
        if "T" not in meta:
            raise SnnexitError("alpha = T needs the run length: meta['T'] is missing")
        return float(meta["T"])
    return float(alpha)


def describe_alpha(meta: dict, rule=None) -> dict:
    """JSON-able record of the alpha a policy used on a run: its rule and, when constant, its value."""
    alpha = meta.get("alpha", "T") if rule is None else rule
    if alpha == "t":
        return {"rule": "t", "value": None}
    if alpha == "T":
        return {"rule": "T", "value": float(meta["T"]) if "T" in meta else None}
    return {"rule": "constant", "value": float(alpha)}


def scaled_logits(accumulated: torch.Tensor, t: int, meta: dict, temperature: float | None,
                  use_alpha: bool, alpha_rule=None) -> torch.Tensor:
    """``Y[t] / alpha_t / T_cal`` in float64; ``temperature=None`` reads ``meta['temperature']``;
    ``alpha_rule`` as in :func:`alpha_at` (None: the network's)."""
    temp = float(meta.get("temperature", 1.0)) if temperature is None else float(temperature)
    alpha = alpha_at(t, meta, alpha_rule) if use_alpha else 1.0
    return accumulated.double() / (alpha * temp)


def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    """(N,) largest softmax probability (Dynamic Confidence with alpha; SEENN-I without)."""
    return torch.softmax(logits, dim=-1).max(-1).values


def one_minus_normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """(N,) ``1 - H(softmax) / log C`` in [0, 1] (DT-SNN exits when the entropy is low)."""
    logp = torch.log_softmax(logits, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return 1.0 - entropy / math.log(logits.shape[-1])


def topk_gap(values: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) top-1 minus top-k of ``values`` (SNNCutoff's Top-K gap; k = 2 is the margin)."""
    top = values.double().topk(k, dim=-1).values
    return top[..., 0] - top[..., k - 1]


def second_probability(logits: torch.Tensor) -> torch.Tensor:
    """(N,) the runner-up's softmax probability (for conformal set sizes)."""
    return torch.softmax(logits, dim=-1).topk(2, dim=-1).values[..., 1]


@dataclass(eq=False, repr=False, kw_only=True)
class ScaledOutputSettings:
    """Parameters and checks shared by the policies that score softmax(Y[t] / alpha_t / T_cal).

    A mixin placed before the policy base: a policy class combining the two (decorated with
    :func:`~snnexit.exit.base.policy_params`) takes the base's parameters, then ``temperature``
    and ``use_alpha``. ``alpha_rule`` (a class attribute, not a parameter) says which alpha:
    None, the network's own (``meta["alpha"]``); ``"t"``, the step.
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

    def scaled(self, accumulated: torch.Tensor, t: int, meta: dict) -> torch.Tensor:
        return scaled_logits(accumulated, t, meta, self.temperature, self.use_alpha, self.alpha_rule)

    def output_scaling(self, meta: dict) -> dict:
        """The alpha and temperature this policy divides the accumulated output by on a run."""
        temp = float(meta.get("temperature", 1.0)) if self.temperature is None else float(self.temperature)
        alpha = describe_alpha(meta, self.alpha_rule) if self.use_alpha else {"rule": "none", "value": 1.0}
        return {"alpha": alpha, "temperature": temp}
