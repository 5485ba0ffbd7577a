"""The QFFS neuron (Li, Ma & Furber 2022): soft-reset IF with a spike cap and negative spikes.

State: membrane potential ``v`` and the net spike count ``n`` emitted so far. One step::

    v <- v + x
    s = +1  if v >= theta and n < cap      (a positive spike, at most ``cap`` net)
        -1  if v < 0      and n > 0        (a negative spike corrects earlier over-firing)
         0  otherwise
    v <- v - s * theta;   n <- n + s

with ``theta = s_lsq * (2**b - 1)``, ``cap = 2**b - 1`` and ``v(0) = theta / 2``. The net
count therefore always lies in ``[0, cap]``, and a negative spike needs a net positive count
before it. Two facts the tests prove:

* with a constant input ``x`` for ``T = cap`` steps the count is
  ``clip(floor(x / s + 1/2), 0, cap)``: the LSQ-quantized activation divided by ``s``;
* for any input sequence whose total is ``U``, once the input stops the count settles (in at
  most ``cap`` steps) at ``clip(floor(U / theta + 1/2), 0, cap)``: the neuron quantizes the
  *total* input, whatever its timing. This is why QFFS networks deliver every input for a
  fixed window and then let the network settle (see ``snnexit.convert.qffs``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from snnexit.neurons.modules import SpikingNeuron, threshold_buffer


class QFFSState(NamedTuple):
    """:class:`~snnexit.neurons.functional.IFState` plus the net spike count: the cap (no positive
    spike once ``count = cap``) and the negative spikes (only while ``count > 0``) depend on it, and
    it cannot be recovered from ``v``, so it is state of its own."""

    v: torch.Tensor  # membrane potential
    count: torch.Tensor  # net spikes emitted so far, in [0, cap]


def qffs_initial_state(like: torch.Tensor, threshold: torch.Tensor | float, v_init: float = 0.5) -> QFFSState:
    """``v(0) = v_init * theta`` and no spikes yet."""
    return QFFSState(torch.zeros_like(like) + v_init * threshold, torch.zeros_like(like))


def qffs_step(x: torch.Tensor, state: QFFSState, threshold: torch.Tensor | float, cap: int):
    """One QFFS step. Returns ``(s, QFFSState)`` with ``s`` in {-1, 0, 1} of the input's dtype;
    the spike carries amplitude ``theta`` downstream (the caller multiplies)."""
    v = state.v + x
    pos = (v >= threshold) & (state.count < cap)
    neg = (v < 0) & (state.count > 0)
    s = pos.to(x.dtype) - neg.to(x.dtype)
    return s, QFFSState(v - s * threshold, state.count + s)


class QFFSNeuron(SpikingNeuron):
    """Stateful QFFS neuron; outputs ``s * threshold`` (signed).

    Args:
        threshold: theta = s * (2**b - 1) (more generally ``s * window``, see the converter).
        cap: the largest net spike count, 2**b - 1.
        v_init: initial potential as a fraction of theta (1/2).
    """

    state: QFFSState | None

    def __init__(self, threshold: float | torch.Tensor, cap: int, v_init: float = 0.5):
        super().__init__()
        if not threshold > 0:
            raise ValueError(f"QFFS threshold must be > 0, got {threshold}")
        if cap < 1:
            raise ValueError(f"QFFS spike cap must be >= 1, got {cap}")
        self.register_buffer("threshold", threshold_buffer(threshold))  # a tensor keeps its dtype
        self.cap = int(cap)
        self.v_init = float(v_init)

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
        if self.state is None:
            self.state = qffs_initial_state(x, self.threshold, self.v_init)
        s, self.state = qffs_step(x, self.state, self.threshold, self.cap)
        self._record(s)  # counts |s|: a negative spike costs as much as a positive one
        return s * self.threshold

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}, cap={self.cap}, v_init={self.v_init}"
