"""Leaky neurons as every NIR reader runs them: pure step functions ``step(x, state, p)``.

NIR's ``IF``, ``LIF``, ``CubaLIF``, ``LI`` and ``I`` (integrator) nodes are differential equations
in seconds; each library discretises them its own way (``snnexit.nir.semantics`` says which). One
step of a membrane with potential ``v`` and input ``x``, in the written order of each library's
arithmetic, so that the same float operations give the same spikes:

    charge  "decay":        h = decay * v + gain * x + rest      (snnTorch, Sinabs, SpikingJelly's IF
                                                                  and CubaLIF, Norse's IF; IF: decay 1)
            "euler":        h = v + ((rest - v) + gain * x) / tau (NIR's forward Euler; SpikingJelly's
                                                                  LIF with decay_input; tau in steps)
            "euler_input":  h = v - (v - rest) / tau + gain * x   (SpikingJelly's LIF, decay_input=False)
            "box":          h = v + rate * ((rest - v) + gain * x)  (Norse's leaky integrator, rate = dt / tau)
            "box_lif":      h = v + rate * (gain * x + rest - v)    (Norse's LIF)
    fire    ">":  s = [h > theta]          ">=": s = [h >= theta]
            "multi": s = [h > 0] * trunc(h / theta)    (Sinabs: several spikes in one step)
    reset   "hard": v = v_reset where s          "subtract": v = h - s * theta      "none": v = h
            "subtract_snntorch": snnTorch's subtraction without reset delay: a neuron still above
                theta after its last reset (``r = [v > theta]``) must clear ``h - r theta > theta``;
                then ``v = (h - r theta) - (s - r) theta``
    floor   v = relu(v - floor) + floor     (Sinabs's IF: floor = -theta, written as Sinabs writes it)

A current-based LIF (:func:`cuba_lif_step`) is a leaky integrator (the synaptic current ``i``)
feeding a LIF: ``i <- charge_syn(i, x)``, then the membrane step on the new ``i`` (every library
here updates the current first). A leaky integrator or integrator (:func:`integrator_step`)
charges and outputs its potential: no threshold, no reset, no spikes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

CHARGES = ("decay", "euler", "euler_input", "box", "box_lif")
FIRES = (">", ">=", "multi")
RESETS = ("hard", "subtract", "subtract_snntorch", "none")

Param = "torch.Tensor | float"


class LeakyParams(NamedTuple):
    """How one layer of neurons steps (module doc); tensors broadcast against one input."""

    charge: str = "decay"
    decay: Param = 1.0  # "decay": the factor v is multiplied by
    gain: Param = 1.0  # the factor the input is multiplied by (r, w_in, dt * r, ...)
    rest: Param = 0.0  # "decay": a constant added each step; the others: the leak potential
    tau: Param = 1.0  # "euler", "euler_input": the time constant in steps (tau / dt)
    rate: Param = 1.0  # "box", "box_lif": dt / tau
    threshold: Param = 1.0
    v_reset: Param = 0.0
    fire: str = ">"
    reset: str = "hard"
    floor: Param | None = None  # a lower bound on v after the reset (None: none)
    v_init: Param = 0.0  # v before the first step


class LeakyState(NamedTuple):
    """The state of an IF / LIF neuron or a leaky integrator: its potential."""

    v: torch.Tensor


class CubaState(NamedTuple):
    """The state of a current-based LIF neuron: synaptic current and membrane potential."""

    i: torch.Tensor
    v: torch.Tensor


def initial_state(like: torch.Tensor, p: LeakyParams) -> LeakyState:
    """``v(0) = p.v_init`` for every input of the batch ``like``."""
    return LeakyState(torch.zeros_like(like) + p.v_init)


def charge(v: torch.Tensor, x: torch.Tensor, p: LeakyParams) -> torch.Tensor:
    """The potential after integrating one step of input, before any spike (module doc)."""
    if p.charge == "decay":
        return p.decay * v + p.gain * x + p.rest
    if p.charge == "euler":
        return v + ((p.rest - v) + p.gain * x) / p.tau
    if p.charge == "euler_input":
        return v - (v - p.rest) / p.tau + p.gain * x
    if p.charge == "box":
        return v + p.rate * ((p.rest - v) + p.gain * x)
    if p.charge == "box_lif":
        return v + p.rate * (p.gain * x + p.rest - v)
    raise ValueError(f"unknown charge {p.charge!r}; known: {', '.join(CHARGES)}")


def fire(h: torch.Tensor, p: LeakyParams) -> torch.Tensor:
    """Spikes (of ``h``'s dtype) of a charged potential ``h``."""
    if p.fire == ">":
        return (h > p.threshold).to(h.dtype)
    if p.fire == ">=":
        return (h >= p.threshold).to(h.dtype)
    if p.fire == "multi":
        return (h > 0) * torch.div(h, p.threshold, rounding_mode="trunc")
    raise ValueError(f"unknown firing rule {p.fire!r}; known: {', '.join(FIRES)}")


def leaky_step(x: torch.Tensor, state: LeakyState, p: LeakyParams) -> tuple[torch.Tensor, LeakyState]:
    """One step of an IF or LIF neuron: charge, fire, reset, floor. Returns ``(s, new_state)``."""
    h = charge(state.v, x, p)
    if p.reset == "subtract_snntorch":
        lag = (state.v > p.threshold).to(h.dtype)  # still above theta after the last reset
        h = h - lag * p.threshold
        s = fire(h, p)
        v = h - (s - lag) * p.threshold
    else:
        s = fire(h, p)
        if p.reset == "hard":
            v = torch.where(s > 0, p.v_reset, h)
        elif p.reset == "subtract":
            v = h - s * p.threshold
        elif p.reset == "none":
            v = h
        else:
            raise ValueError(f"unknown reset {p.reset!r}; known: {', '.join(RESETS)}")
    if p.floor is not None:
        v = torch.relu(v - p.floor) + p.floor
    return s, LeakyState(v)


def integrator_step(x: torch.Tensor, state: LeakyState, p: LeakyParams) -> tuple[torch.Tensor, LeakyState]:
    """One step of a leaky integrator (NIR's ``LI``) or integrator (``I``): outputs its potential."""
    v = charge(state.v, x, p)
    return v, LeakyState(v)


def cuba_initial_state(like: torch.Tensor, synapse: LeakyParams, membrane: LeakyParams) -> CubaState:
    """``i(0) = synapse.v_init``, ``v(0) = membrane.v_init``."""
    return CubaState(torch.zeros_like(like) + synapse.v_init, torch.zeros_like(like) + membrane.v_init)


def cuba_lif_step(x: torch.Tensor, state: CubaState, synapse: LeakyParams,
                  membrane: LeakyParams) -> tuple[torch.Tensor, CubaState]:
    """One step of a current-based LIF neuron: the current integrates ``x`` (``synapse``), then the
    membrane integrates the new current and fires (``membrane``). Returns ``(s, new_state)``."""
    i = charge(state.i, x, synapse)
    s, after = leaky_step(i, LeakyState(state.v), membrane)
    return s, CubaState(i, after.v)
