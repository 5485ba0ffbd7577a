"""The running sums a chunk of steps reports after each of its steps, rounded as a step-by-step run rounds them."""

from __future__ import annotations

import torch


def running_sums(carried: torch.Tensor | None, steps: torch.Tensor) -> torch.Tensor:
    """``(k, ...)``: ``carried + steps[0]``, ``+ steps[1]``, ... added one step at a time, so every
    sum rounds exactly as a step-by-step run's (``cumsum`` may accumulate in another precision)."""
    sums = torch.empty_like(steps)
    previous = carried
    for j in range(steps.shape[0]):
        if previous is None:
            sums[j].copy_(steps[j])
        else:
            torch.add(previous, steps[j], out=sums[j])
        previous = sums[j]
    return sums


def count_sums(carried: torch.Tensor | None, counts: torch.Tensor) -> torch.Tensor:
    """``(k, m, L)`` spikes so far after each step of a chunk: whole numbers in float64 (exact below
    2**53), so one ``cumsum`` gives the sums a step-by-step run reaches, at a fraction of the cost."""
    sums = counts.cumsum(0)
    return sums if carried is None else sums.add_(carried)
