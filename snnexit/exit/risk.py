"""Risk control: a threshold with a stated guarantee on the accuracy it may lose.

Goal: given ``eps`` and ``delta``, pick a threshold tau such that, with probability at least
``1 - delta`` over the fitting inputs, the accuracy lost against fixed T on new inputs from the
same distribution is at most ``eps``.

Why disagreement. For every input, "right at T, wrong at the exit step" implies "the exit
prediction differs from the fixed-T prediction", so

    acc(fixed T) - acc(tau)  <=  P(exit prediction != fixed-T prediction)  =:  R(tau).

``R`` needs no labels, so unlabelled inputs can certify it, and its empirical value on n
i.i.d. inputs is Binomial(n, R(tau)).

Learn then Test (Angelopoulos et al., 2021) with fixed-sequence testing: walk the thresholds
from the most conservative (fixed T, R = 0) downwards; at each, test the null "R(tau) > eps"
with the exact binomial p-value ``P(Binomial(n, eps) <= disagreements)``; keep going while
p <= delta and stop at the first failure. Because the order is fixed in advance (decreasing
tau), the family-wise error is at most delta: with probability >= 1 - delta every accepted
threshold has R <= eps. The cheapest accepted one is returned. Testing only the curve's
points is the same as testing every tau: the empirical disagreement is constant between them.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom

from snnexit.errors import SnnexitError
from snnexit.exit.curve import ExitCurve


def binomial_pvalues(disagreements: np.ndarray, n: int, eps: float) -> np.ndarray:
    """p-values of the nulls "R > eps": ``P(Binomial(n, eps) <= k)`` (valid for any R > eps)."""
    return binom.cdf(np.asarray(disagreements), n, eps)


def ltt_select(curve: ExitCurve, eps: float, delta: float) -> tuple[int, np.ndarray]:
    """The point with the fewest mean steps that fixed-sequence testing certifies.

    Returns the chosen point and the p-value of every point (point 0, fixed T, is always
    certified: it never disagrees with itself).
    """
    if curve.agree is None:
        raise SnnexitError("risk control needs a curve with agreement counts (exact_curve(..., agree=...))")
    k = curve.n - curve.agree  # (K,) disagreements with the fixed-T prediction
    pvalues = binomial_pvalues(k, curve.n, eps)
    passes = pvalues <= delta
    passes[0] = True
    certified = np.flatnonzero(np.logical_and.accumulate(passes))
    # mean steps are non-increasing along the sequence; ties go to the higher threshold
    best = certified[np.lexsort((-curve.thresholds[certified], curve.mean_steps[certified]))[0]]
    return int(best), pvalues


def zero_disagreement_bound(n: int, delta: float) -> float:
    """The smallest eps certifiable with zero disagreements on n inputs: 1 - delta**(1/n) (~ -ln(delta)/n)."""
    return 1.0 - delta ** (1.0 / n)
