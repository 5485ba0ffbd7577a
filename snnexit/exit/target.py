"""What ``fit`` aims for when it picks a threshold: one validated value, :class:`FitTarget`.

==============  ==============================================================================
``no_loss``     fewest mean steps whose accuracy on the fitting trace is >= its fixed-T accuracy
``max_drop``    fewest mean steps losing at most ``eps`` accuracy against fixed T (fitting trace)
``max_steps``   the most accurate point with mean steps <= ``max_steps``
``risk``        fewest mean steps such that, with probability >= 1 - ``delta`` over the fitting
                data, the rate at which the exit answer differs from the fixed-T answer on new
                data (an upper bound on the accuracy lost against fixed T) is <= ``eps`` (Learn
                then Test on the label-free disagreement rate, :mod:`snnexit.exit.risk`)
``precision``   (``topk_per_step`` only) SNNCutoff's rule: exit when the step's calibration
                precision reaches ``1 - eps``
``coverage``    (``conformal`` only) SpikeCP's rule: miscoverage level ``eps``
==============  ==============================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from snnexit.errors import SnnexitError

TARGETS = ("no_loss", "max_drop", "max_steps", "risk")  # every thresholded policy's


@dataclass(frozen=True)
class TargetKind:
    """What a target kind reads: ``eps`` (``"closed"``: in [0, 1]; ``"open"``: in (0, 1); None: not
    read), ``delta`` and ``max_steps``. A policy that brings a kind of its own registers it
    (:func:`register_target`) in its own file and lists it in its ``targets``."""

    eps: str | None = None
    delta: bool = False
    max_steps: bool = False


TARGET_KINDS: dict[str, TargetKind] = {}  # every known kind (the shared ones and the ones policies add)


def register_target(kind: str, *, eps: str | None = None, delta: bool = False, max_steps: bool = False) -> str:
    if kind in TARGET_KINDS:
        raise ValueError(f"target {kind!r} is registered twice")
    if eps not in (None, "closed", "open"):
        raise ValueError(f"eps of a target is 'closed', 'open' or None, got {eps!r}")
    TARGET_KINDS[kind] = TargetKind(eps, delta, max_steps)
    return kind


register_target("no_loss")
register_target("max_drop", eps="closed")
register_target("max_steps", max_steps=True)
register_target("risk", eps="open", delta=True)
register_target("precision", eps="closed")  # topk_per_step's: SNNCutoff's own rule
register_target("coverage", eps="open")  # conformal's: SpikeCP's miscoverage level


def check_fraction(name: str, value, low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float in [0, 1] (``low_open``/``high_open``: excluding 0/1), else SnnexitError."""
    interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SnnexitError(f"{name} must be a number in {interval}, got {value!r}")
    if value < 0 or value > 1 or (low_open and value == 0) or (high_open and value == 1):
        raise SnnexitError(f"{name} must lie in {interval}, got {value}")
    return float(value)


def threshold_text(threshold) -> str:
    """A threshold with the digits that reproduce it (Python's shortest round-trip form), for
    tables and logs: a rule applied as printed takes the decisions that were fitted and certified."""
    return repr(float(threshold))


def check_threshold(value, score_range: tuple[float, float] | None = None, score: str = "the score",
                    name: str = "threshold", tolerance: float = 0.0) -> None:
    """A threshold must be a finite number (None: none given) within ``score_range`` (low,
    high; ``high`` may be inf), the values the policy's score takes: a threshold outside it
    exits every input at step 1 or never. ``score`` says what the score is, for the message;
    ``tolerance`` widens the range (a fitted threshold may lie just below the lowest score)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SnnexitError(f"{name} must be a finite number, got {value!r}")
    if score_range is not None:
        low, high = score_range
        if not low - tolerance <= value <= high + tolerance:
            where = f"be >= {low:g}" if math.isinf(high) else f"lie in [{low:g}, {high:g}]"
            raise SnnexitError(f"{name} must {where}, the range of {score}; got {value!r}")


@dataclass(frozen=True)
class FitTarget:
    """How ``fit`` picks the threshold: a ``kind`` (table above) and the settings it reads.

    Building one validates it; settings the kind does not read are kept but ignored (a config
    file may set ``eps`` for every target). ``kinds`` narrows the accepted kinds to a policy's.
    """

    kind: str = "no_loss"
    eps: float | None = None
    max_steps: float | None = None
    delta: float | None = None

    def __post_init__(self):
        if not isinstance(self.kind, str) or self.kind not in TARGET_KINDS:
            raise SnnexitError(f"Unknown target {self.kind!r}. Known: {', '.join(TARGET_KINDS)}")
        rule = TARGET_KINDS[self.kind]
        if rule.eps is not None:
            check_fraction("eps", self.eps, low_open=rule.eps == "open", high_open=rule.eps == "open")
        if rule.delta:
            check_fraction("delta", self.delta, low_open=True, high_open=True)
        if rule.max_steps:
            ms = self.max_steps
            if ms is None or isinstance(ms, bool) or not isinstance(ms, (int, float)) or not ms >= 1:
                raise SnnexitError(f"max_steps must be a number >= 1 (mean steps per input), got {ms!r}")

    @classmethod
    def for_policy(cls, kind: str, kinds: tuple[str, ...] = TARGETS, **settings) -> "FitTarget":
        """A target among ``kinds`` (a policy's ``targets``); an unknown kind lists them."""
        if kind not in kinds:
            raise SnnexitError(f"Unknown target {kind!r}. Known: {', '.join(kinds)}")
        return cls(kind, **settings)

    @property
    def certifies(self) -> bool:
        """True for ``risk``: the threshold comes with a guarantee on new inputs."""
        return self.kind == "risk"

    def describe(self) -> str:
        """One line, e.g. ``risk: disagreement with fixed T <= 0.05 with probability >= 0.9``."""
        if self.kind == "no_loss":
            return "no_loss: fewest mean steps without losing fitting accuracy against fixed T"
        if self.kind == "max_drop":
            return f"max_drop: fewest mean steps losing at most {self.eps:g} accuracy against fixed T"
        if self.kind == "max_steps":
            return f"max_steps: the most accurate threshold with mean steps <= {self.max_steps:g}"
        if self.kind == "risk":
            return (f"risk: disagreement with fixed T on new inputs <= {self.eps:g} with probability "
                    f">= {1 - self.delta:g}")
        if self.kind == "precision":
            return f"precision: exit once a step's calibration precision reaches {1 - self.eps:g}"
        return f"coverage: exit once the conformal set at miscoverage {self.eps:g} has at most one class"
