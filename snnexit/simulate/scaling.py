"""How a network's accumulated output is scaled before a softmax: one typed value.

Dynamic Confidence divides the accumulated output ``Y[t]`` by ``alpha_t * T_cal`` before the
softmax: ``alpha`` keeps the confidence from saturating as ``Y[t]`` grows with t, ``T_cal`` is the
ANN's temperature (temperature scaling). ``alpha`` is a rule:

* ``"T"``: the simulation length of the run, a constant (the paper's rule for QCFS, Sec. 5.2,
  and snnexit's for every rate-coded network: ``Y[T] / T`` is the output the network was
  trained or calibrated to give, so the confidence rises with t and meets the ANN's at T);
* ``"t"``: the current step (the mean output ``Y[t] / t``);
* a positive number: a constant (QFFS: ``2**b - 1``).

T itself is never part of the scaling: it comes from the trace or the engine that runs. A
network and its traces state their scaling in their ``meta`` (``alpha``, ``temperature``);
:meth:`OutputScaling.of` reads it, and is the one place where the defaults (alpha = T, no
temperature: 1.0) live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from snnexit.errors import SnnexitError

ALPHA_RULES = ("T", "t")
META_KEYS = ("alpha", "temperature")  # where a network's or trace's meta states its scaling


def _positive_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@dataclass(frozen=True)
class OutputScaling:
    """``alpha`` (``"T"``, ``"t"`` or a positive number) and ``temperature`` (T_cal > 0)."""

    alpha: str | float = "T"
    temperature: float = 1.0

    def __post_init__(self):
        if self.alpha not in ALPHA_RULES and not _positive_number(self.alpha):
            raise SnnexitError(f"alpha must be 'T', 't' or a positive number, got {self.alpha!r}")
        if not _positive_number(self.temperature):
            raise SnnexitError(f"temperature must be a positive number, got {self.temperature!r}")
        if self.alpha not in ALPHA_RULES:
            object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "temperature", float(self.temperature))

    @classmethod
    def of(cls, meta: dict) -> "OutputScaling":
        """The scaling a network's or trace's ``meta`` states (absent keys: alpha = T, temperature 1)."""
        return cls(meta.get("alpha", "T"), meta.get("temperature", 1.0))

    def with_(self, **changes) -> "OutputScaling":
        return replace(self, **changes)

    def alpha_at(self, t: int, T: int | None) -> float:
        """alpha after step ``t`` (1-based) of a run of ``T`` steps."""
        if self.alpha == "t":
            return float(t)
        if self.alpha == "T":
            if T is None:
                raise SnnexitError("alpha = T needs the run length T (the trace's or the engine's)")
            return float(T)
        return float(self.alpha)

    def divisor(self, t: int, T: int | None) -> float:
        """``alpha_t * T_cal``: what ``Y[t]`` is divided by."""
        return self.alpha_at(t, T) * self.temperature

    def describe_alpha(self, T: int | None) -> dict:
        """JSON-able record of alpha on a run of T steps: its rule and, when constant, its value."""
        if self.alpha == "t":
            return {"rule": "t", "value": None}
        if self.alpha == "T":
            return {"rule": "T", "value": None if T is None else float(T)}
        return {"rule": "constant", "value": float(self.alpha)}

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "temperature": self.temperature}

    @classmethod
    def from_dict(cls, record) -> "OutputScaling":
        if not isinstance(record, dict) or set(record) != set(META_KEYS):
            raise SnnexitError(f"an output scaling is a table with exactly the keys alpha and temperature, got "
                               f"{record!r:.80}")
        return cls(record["alpha"], record["temperature"])


def stated_scaling(meta: dict) -> dict:
    """The parts of the scaling that ``meta`` states explicitly (a network rebuilt without its
    temperature states none: it cannot contradict a policy that carries one)."""
    return {key: meta[key] for key in META_KEYS if key in meta}


def run_length(meta: dict) -> int | None:
    """T of the run ``meta`` describes (a trace's own, or the engine's), None when unknown."""
    T = meta.get("T")
    return None if T is None else int(T)
