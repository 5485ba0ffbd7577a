"""Neuron dynamics as pure step functions: ``step(x, state, params) -> (spikes, new_state)``.

No hidden counters: the caller owns the state. The modules in ``snnexit.neurons.modules``
are thin wrappers that keep the state between calls.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class IFState(NamedTuple):
    v: torch.Tensor  # membrane potential, same shape as the input current


def if_initial_state(like: torch.Tensor, threshold: torch.Tensor | float, v_init: float = 0.5) -> IFState:
    """``v(0) = v_init * threshold`` (QCFS and QFFS use one half: rounding instead of flooring)."""
    return IFState(torch.zeros_like(like) + v_init * threshold)


def if_soft_reset_step(x: torch.Tensor, state: IFState, threshold: torch.Tensor | float):
    """Integrate-and-fire with reset by subtraction (soft reset), firing on ``>=``.

        v <- v + x;   s = [v >= theta];   v <- v - s * theta

    Returns ``(s, IFState(v))`` with binary ``s`` of the input's dtype. The spike carries
    amplitude ``theta`` downstream (the caller multiplies), so rates match the ANN.
    """
    v = state.v + x
    s = (v >= threshold).to(x.dtype)
    return s, IFState(v - s * threshold)



def if_soft_reset_step_(x: torch.Tensor, state: IFState, threshold: torch.Tensor):
    """In-place twin of :func:`if_soft_reset_step` for inference (no autograd): updates
    ``state.v`` in place and returns ``(s, s * theta, spikes per input)``. The same operations
    on the same numbers, so the results are bit-identical; ``threshold`` must have the dtype
    of ``x`` and ``state.v``. (Counting on the float ``s`` before scaling it in place is
    several times faster than reducing the bool mask.)"""
    v = state.v.add_(x)
    s = (v >= threshold).to(x.dtype)
    count = s.sum(dim=tuple(range(1, s.dim()))) if s.dim() > 1 else s.clone()  # exact: a sum of 0s and 1s
    out = s.mul_(threshold)
    v.sub_(out)
    return out, count
