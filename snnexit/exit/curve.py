"""The exact accuracy-vs-mean-steps curve of a thresholded exit rule, for every threshold.

Rule: input n exits at the first step t with ``score[t, n] > tau``, else at T.

Because an input that exits at threshold tau also exits, no later, at every lower tau,
the whole curve follows from one sort. Let ``m[t, n]`` be the running maximum of the score.
Input n exits at the first t with ``m[t, n] > tau``, so its exit step only changes when tau
drops below a *record* value (a step where the running max strictly rises). Each record is
an event "input n now exits at t instead of at its next record (or T)". Sorting all events by
value, descending, and taking cumulative sums of their changes in steps and in correct
answers gives the curve at every distinct threshold: O(NT log NT), exact, no grid.
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
    point 0 is "never exit early" (mean steps = T).
    """

    thresholds: np.ndarray  # (K,) float64, strictly decreasing
    mean_steps: np.ndarray  # (K,) float64, non-increasing
    correct: np.ndarray  # (K,) int64 correct answers
    n: int
    T: int

    @property
    def accuracy(self) -> np.ndarray:
        return self.correct / self.n

    def pareto_front(self) -> np.ndarray:
        """Indices of the points no other point beats on both accuracy and mean steps."""
        order = np.lexsort((-self.correct, self.mean_steps))  # by steps, then accuracy desc
        front, best = [], -1
        for k in order:
            if self.correct[k] > best:
                front.append(k)
                best = self.correct[k]
        return np.array(front, dtype=np.int64)

    def select(self, min_correct: int) -> int:
        """The point with the fewest mean steps among those with >= ``min_correct`` correct;
        ties go to more correct answers, then to the higher (safer) threshold."""
        ok = np.flatnonzero(self.correct >= min_correct)
        if ok.size == 0:
            raise SnnexitError("no threshold reaches the required accuracy")
        # lexsort: last key is primary
        best = np.lexsort((-self.thresholds[ok], -self.correct[ok], self.mean_steps[ok]))[0]
        return int(ok[best])


def exit_steps_from_scores(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N,) 1-based exit step: the first t with ``score > threshold``, else T."""
    T = scores.shape[0]
    above = scores.double() > threshold  # (T, N)
    first = torch.where(above.any(0), above.int().argmax(0), torch.full_like(above[0], T - 1, dtype=torch.long))
    return first.long() + 1


def exact_curve(scores: torch.Tensor, correct: torch.Tensor) -> ExitCurve:
    """The exit curve for every threshold; ``scores`` and ``correct`` are ``(T, N)``."""
    if scores.shape != correct.shape or scores.dim() != 2:
        raise SnnexitError(f"scores and correct must both be (T, N), got {tuple(scores.shape)} and {tuple(correct.shape)}")
    s = scores.detach().cpu().double().numpy()
    c = correct.detach().cpu().numpy().astype(np.int64)
    T, N = s.shape
    if not np.isfinite(s).all():
        raise SnnexitError("exit scores contain NaN or infinite values")
    running = np.maximum.accumulate(s, axis=0)  # (T, N)
    record = np.ones_like(running, dtype=bool)
    record[1:] = running[1:] > running[:-1]
    # next record step after t (or T-1 when none): reverse cumulative minimum
    step_if_record = np.where(record, np.arange(T)[:, None], T - 1)
    next_record = np.full((T, N), T - 1, dtype=np.int64)
    next_record[:-1] = np.minimum.accumulate(step_if_record[::-1], axis=0)[::-1][1:]
    t_idx, n_idx = np.nonzero(record)
    nxt = next_record[t_idx, n_idx]
    values = running[t_idx, n_idx]
    d_steps = (t_idx - nxt).astype(np.int64)
    d_correct = c[t_idx, n_idx] - c[nxt, n_idx]
    order = np.argsort(-values, kind="stable")
    values, d_steps, d_correct = values[order], d_steps[order], d_correct[order]
    total_steps = N * T + np.cumsum(d_steps)
    total_correct = int(c[T - 1].sum()) + np.cumsum(d_correct)
    last_of_group = np.append(values[1:] != values[:-1], True)
    g_values = values[last_of_group]
    # after all events >= v_g fire, any tau in [v_{g+1}, v_g) realises the point
    # below the smallest value any tau works: keep a margin that survives a cast to float32
    below_all = g_values[-1] - max(1e-6, 1e-6 * abs(g_values[-1]))
    g_thresholds = np.append(g_values[1:], below_all)
    thresholds = np.concatenate([[g_values[0]], g_thresholds])
    steps = np.concatenate([[N * T], total_steps[last_of_group]]) / N
    corr = np.concatenate([[int(c[T - 1].sum())], total_correct[last_of_group]])
    return ExitCurve(thresholds, steps.astype(np.float64), corr.astype(np.int64), N, T)
