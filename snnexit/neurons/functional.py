"""Neuron dynamics as pure step functions: ``step(x, state, ...) -> (spikes, new_state)``.

No hidden counters: the caller owns the state. The modules in ``snnexit.neurons.modules``
are thin wrappers that keep the state between calls. Every neuron of the integrate-and-fire
family here (the converted IF, the trainable IF and LIF, NIR's hard-reset IF) carries one
:class:`IFState`: its membrane potential. (The QFFS neuron also counts its spikes: see
``snnexit.neurons.qffs``.)

**Trainable IF and LIF** (:func:`if_step`, :func:`lif_step`, surrogate gradients). One step,
for input current ``x`` and membrane potential ``v``::

    charge   IF :  h = v + x
             LIF:  h = v + (x - (v - v_reset)) / tau          (decay_input=True, SpikingJelly's default)
                   h = v - (v - v_reset) / tau + x            (decay_input=False)
    fire         s = H(h - theta)                              (fire on ">=", surrogate gradient backward)
    reset    soft: v' = h - s * theta                          (keeps the excess: rate coding, QCFS)
             hard: v' = s * v_reset + (1 - s) * h

The semantics equal SpikingJelly's ``IFNode`` / ``LIFNode`` (soft reset there is
``v_reset=None``, which leaks towards 0 as ours does with ``v_reset=0``); the tests compare the
forward passes. The leak goes towards ``v_reset`` in both reset modes. ``detach_reset`` cuts
the gradient through the reset term (a common trick that shortens the backward graph). The
surrogate acts on ``u = h - theta`` in absolute units (:class:`NeuronParams`).

**Converted IF** (:func:`if_soft_reset_step`, and its in-place twin for inference): soft reset,
fire on ``>=``, no autograd function in the way.

**NIR's IF** (:func:`if_hard_reset_step`): hard reset, ``v(0) = 0``, fire on ``>`` (or ``>=``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from snnexit.neurons.surrogate import Surrogate, Triangle, spike
from snnexit.names import RESETS  # the names table is the single source of these



class IFState(NamedTuple):
    """The state of an integrate-and-fire neuron (IF, LIF, NIR's IF): its membrane potential."""

    v: torch.Tensor  # membrane potential (after the last reset), same shape as the input current


class NeuronParams(NamedTuple):
    """Settings of :func:`if_step` and :func:`lif_step`."""

    threshold: float | torch.Tensor = 1.0
    reset: str = "soft"  # "soft" (subtract theta) or "hard" (set to v_reset)
    v_reset: float = 0.0  # hard-reset target and the potential the LIF leak decays towards
    surrogate: Surrogate = Triangle(1.0)  # acts on u = h - theta, absolute units
    detach_reset: bool = False
    tau: float = 2.0  # LIF membrane time constant (in steps); unused by IF
    decay_input: bool = True  # LIF: does the input decay with the membrane as well


def if_initial_state(like: torch.Tensor, threshold: torch.Tensor | float, v_init: float = 0.5) -> IFState:
    """``v(0) = v_init * threshold`` (QCFS and QFFS use one half: rounding instead of flooring;
    direct training uses 0)."""
    return IFState(torch.zeros_like(like) + v_init * threshold)


# ---- trainable IF and LIF (surrogate gradients) -------------------------------------------------
def fire_and_reset(h: torch.Tensor, p: NeuronParams) -> tuple[torch.Tensor, IFState]:
    """Spike where ``h >= theta`` and reset; shared by IF and LIF."""
    s = spike(h - p.threshold, p.surrogate)
    s_r = s.detach() if p.detach_reset else s
    if p.reset == "soft":
        v = h - s_r * p.threshold
    else:
        v = s_r * p.v_reset + (1.0 - s_r) * h
    return s, IFState(v)


def if_step(x: torch.Tensor, state: IFState, p: NeuronParams) -> tuple[torch.Tensor, IFState]:
    """Integrate-and-fire: ``h = v + x``, then fire and reset. Returns ``(s, new_state)``."""
    return fire_and_reset(state.v + x, p)


def lif_step(x: torch.Tensor, state: IFState, p: NeuronParams) -> tuple[torch.Tensor, IFState]:
    """Leaky integrate-and-fire (leak towards ``v_reset`` with time constant ``tau``), then fire and reset."""
    v = state.v
    if p.decay_input:
        h = v + (x - (v - p.v_reset)) / p.tau
    else:
        h = v - (v - p.v_reset) / p.tau + x
    return fire_and_reset(h, p)


# ---- converted IF (soft reset) ------------------------------------------------------------------
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


# ---- NIR's IF (hard reset) ----------------------------------------------------------------------
def if_hard_reset_step(x: torch.Tensor, state: IFState, threshold: torch.Tensor | float, v_reset: torch.Tensor,
                       fire_ge: bool = False):
    """Integrate-and-fire with hard reset: NIR's ``IF`` stepped with dt = 1 (start it from
    ``IFState(torch.zeros_like(x))``: ``v(0) = 0``).

        v <- v + x;   s = [v > theta]  (``fire_ge``: [v >= theta]);   v <- v_reset where s

    ``fire_ge=True`` is SpikingJelly's ``IFNode`` (and the ``hard_reset`` NIR export).
    ``v_reset`` is a tensor that broadcasts to ``v``. Returns ``(s, IFState(v))`` with binary
    ``s`` of the input's dtype.
    """
    v = state.v + x
    s = (v >= threshold if fire_ge else v > threshold).to(x.dtype)
    return s, IFState(torch.where(s.bool(), v_reset.expand_as(v), v))
