"""The exact accuracy-vs-mean-steps curve of a thresholded exit rule, for every threshold.

Rule: input n exits at the first step t with ``score[t, n] > tau``, else at T.

Because an input that exits at threshold tau also exits, no later, at every lower tau,
the whole curve follows from one sort. Let ``m[t, n]`` be the running maximum of the score.
Input n exits at the first t with ``m[t, n] > tau``, so its exit step only changes when tau
drops below a *record* value (a step where the running max strictly rises). Each record is
an event "input n now exits at t instead of at its next record (or T)". Sorting all events by
value, descending, and taking cumulative sums of their changes in steps and in correct
answers gives the curve at every distinct threshold: O(NT log NT), exact, no grid.

The same cumulative sums count, for free, how many exit predictions agree with the fixed-T
prediction (``agree``): the label-free quantity that risk control certifies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from snnexit.errors import SnnexitError


@dataclass
class ExitCurve:
    """Operating points ordered from the most conservative threshold (fixed T) downwards.

    ``thresholds[k]`` is a threshold that realises point k under ``score > tau``;
    point 0 is "never exit early" (mean steps = T). Point k is realised by every tau in
    ``[thresholds[k], thresholds[k - 1])``.
    """

    thresholds: np.ndarray  # (K,) float64, strictly decreasing
    mean_steps: np.ndarray  # (K,) float64, non-increasing
    correct: np.ndarray | None  # (K,) int64 correct answers; None for unlabelled inputs
    n: int
    T: int
    agree: np.ndarray | None = None  # (K,) int64 exit predictions equal to the fixed-T prediction

    @property
    def accuracy(self) -> np.ndarray:
        if self.correct is None:
            raise SnnexitError("this curve was computed on unlabelled inputs: it has no accuracy")
        return self.correct / self.n

    @property
    def disagreement(self) -> np.ndarray:
        """(K,) share of inputs whose exit prediction differs from the fixed-T prediction."""
        if self.agree is None:
            raise SnnexitError("this curve was computed without the fixed-T predictions (agree=None)")
        return 1.0 - self.agree / self.n

    def at(self, tau) -> np.ndarray:
        """Index of the point that threshold(s) ``tau`` realise (vectorised, no loop)."""
        tau = np.asarray(tau, dtype=np.float64)
        # number of thresholds strictly above tau, among thresholds[0..K-2]; thresholds[K-1] is
        # only a representative of the last interval, which extends to -inf
        above = self.thresholds.size - np.searchsorted(self.thresholds[::-1], tau, side="right")
        return np.minimum(above, self.thresholds.size - 1)

    def pareto_front(self) -> np.ndarray:
        """Indices of the points no other point beats on both accuracy and mean steps."""
        order = np.lexsort((-self.correct, self.mean_steps))  # by steps, then accuracy desc
        c = self.correct[order]
        best_before = np.concatenate([[-1], np.maximum.accumulate(c)[:-1]])
        return order[c > best_before].astype(np.int64)

    def select(self, min_correct: int) -> int:
        """The point with the fewest mean steps among those with >= ``min_correct`` correct;
        ties go to more correct answers, then to the higher (safer) threshold."""
        ok = np.flatnonzero(self.correct >= min_correct)
        if ok.size == 0:
            raise SnnexitError("no threshold reaches the required accuracy")
        # lexsort: last key is primary
        best = np.lexsort((-self.thresholds[ok], -self.correct[ok], self.mean_steps[ok]))[0]
        return int(ok[best])

    def select_max_steps(self, max_steps: float) -> int:
        """The most accurate point with mean steps <= ``max_steps``; ties go to fewer steps,
        then to the higher threshold."""
        ok = np.flatnonzero(self.mean_steps <= max_steps + 1e-12)
        if ok.size == 0:
            raise SnnexitError(f"no threshold reaches mean steps <= {max_steps} (the fewest is "
                               f"{self.mean_steps.min():.4g})")
        best = np.lexsort((-self.thresholds[ok], self.mean_steps[ok], -self.correct[ok]))[0]
        return int(ok[best])


def exit_steps_from_scores(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N,) 1-based exit step: the first t with ``score > threshold``, else T. Scores of a floating
    dtype are compared with the threshold rounded to that dtype (as a float32 deployment compares)."""
    T = scores.shape[0]
    above = scores > torch.tensor(threshold, dtype=scores.dtype if scores.is_floating_point() else torch.float64)
    first = torch.where(above.any(0), above.int().argmax(0), torch.full_like(above[0], T - 1, dtype=torch.long))
    return first.long() + 1


def _as_numpy(x: torch.Tensor | np.ndarray, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if dtype is bool and x.dtype != bool:
        return x != 0
    return np.ascontiguousarray(x.astype(dtype, copy=False))


def exact_curve(scores, correct, agree=None) -> ExitCurve:
    """The exit curve for every threshold.

    Args:
        scores: ``(T, N)`` exit score after every step (torch or numpy).
        correct: ``(T, N)`` bool, is the prediction after every step right? None for
            unlabelled inputs (then ``agree`` is required: the curve of a certification set).
        agree: optional ``(T, N)`` bool, does the prediction after every step equal the
            prediction at T? Fills ``ExitCurve.agree`` (for risk control).
    """
    if correct is None and agree is None:
        raise SnnexitError("exact_curve needs correct (labels), agree (fixed-T predictions) or both")
    if len(scores.shape) != 2 or (correct is not None and tuple(scores.shape) != tuple(correct.shape)):
        raise SnnexitError(f"scores and correct must both be (T, N), got {tuple(scores.shape)} and "
                           f"{None if correct is None else tuple(correct.shape)}")
    if agree is not None and tuple(agree.shape) != tuple(scores.shape):
        raise SnnexitError(f"agree must be (T, N) like scores, got {tuple(agree.shape)}")
    s = _as_numpy(scores, np.float64)
    T, N = s.shape
    if N < 1 or T < 1:
        raise SnnexitError(f"need at least one step and one input, got (T, N) = {(T, N)}")
    if not np.isfinite(s).all():
        raise SnnexitError("exit scores contain NaN or infinite values")
    indicators = [_as_numpy(x, bool) for x in (correct, agree) if x is not None]
    # work input-major, (N, T): each input's records are then consecutive events
    running = np.maximum.accumulate(np.ascontiguousarray(s.T), axis=1)  # (N, T)
    record = np.empty((N, T), dtype=bool)  # the running max strictly rises (step 0 always)
    record[:, 0] = True
    np.greater(running[:, 1:], running[:, :-1], out=record[:, 1:])
    flat = np.flatnonzero(record)  # n * T + t, sorted by input then step
    t_idx = flat % T
    nxt = np.empty_like(flat)  # the input's next record (exit there instead), else its step T
    nxt[:-1] = flat[1:]
    last_of_input = np.append(flat[1:] // T != flat[:-1] // T, True)
    nxt[last_of_input] = flat[last_of_input] - t_idx[last_of_input] + T - 1
    # per event: change in steps and in each indicator, before sorting (small integer types)
    d_steps = (t_idx - nxt % T).astype(np.int32)
    deltas = []
    for ind in indicators:
        ind8 = np.ascontiguousarray(ind.T).reshape(-1).view(np.int8)  # (N * T,) input-major
        deltas.append(ind8[flat] - ind8[nxt])
    values = running.reshape(-1)[flat]
    order = np.argsort(values)[::-1]  # descending; equal values are merged below, so no stable sort
    values = values[order]
    last_of_group = np.append(values[1:] != values[:-1], True)
    g_values = values[last_of_group]
    total_steps = N * T + np.cumsum(d_steps[order], dtype=np.int64)
    steps = np.concatenate([[N * T], total_steps[last_of_group]]) / N
    totals = []
    for ind, delta in zip(indicators, deltas):  # correct, then agree
        start = int(ind[T - 1].sum())
        cum = start + np.cumsum(delta[order], dtype=np.int64)
        totals.append(np.concatenate([[start], cum[last_of_group]]).astype(np.int64))
    # after all events >= v_g fire, any tau in [v_{g+1}, v_g) realises the point
    # below the smallest value any tau works: keep a margin that survives a cast to float32
    below_all = g_values[-1] - max(1e-6, 1e-6 * abs(g_values[-1]))
    thresholds = np.concatenate([[g_values[0]], g_values[1:], [below_all]])
    totals_correct = totals.pop(0) if correct is not None else None
    return ExitCurve(thresholds, steps.astype(np.float64), totals_correct, N, T, totals[0] if agree is not None else None)
