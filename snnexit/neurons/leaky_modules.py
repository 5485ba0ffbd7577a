"""Thin modules around the leaky step functions of :mod:`snnexit.neurons.leaky`.

Each holds its parameters as buffers (one value per neuron, or one for the layer) and its whole
per-input state in ``self.state``, so that ``reset``, ``select`` and chunks need nothing more.
:class:`LeakyNeuron` (IF, LIF) and :class:`CubaLIFNeuron` spike and count their spikes;
:class:`LeakyIntegrator` (LI, I) outputs its potential and is stateful without spiking.
"""

from __future__ import annotations

import torch

from snnexit.neurons.leaky import (CubaState, LeakyParams, LeakyState, cuba_initial_state, cuba_lif_step,
                                   initial_state, integrator_step, leaky_step)
from snnexit.neurons.modules import SpikingNeuron, StatefulModule

_TENSOR_FIELDS = ("decay", "gain", "rest", "tau", "rate", "threshold", "v_reset", "floor", "v_init")


class _Params(torch.nn.Module):
    """A :class:`LeakyParams` whose numeric fields are buffers (they move with ``.to()``)."""

    def __init__(self, p: LeakyParams):
        super().__init__()
        self.charge, self.fire, self.reset = p.charge, p.fire, p.reset
        self.has_floor = p.floor is not None
        for name in _TENSOR_FIELDS:
            value = getattr(p, name)
            if value is not None:
                self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32).clone())

    def value(self) -> LeakyParams:
        numbers = {name: getattr(self, name) for name in _TENSOR_FIELDS if name != "floor"}
        return LeakyParams(charge=self.charge, fire=self.fire, reset=self.reset,
                           floor=self.floor if self.has_floor else None, **numbers)

    def extra_repr(self) -> str:
        return f"charge={self.charge!r}, fire={self.fire!r}, reset={self.reset!r}, floor={self.has_floor}"


class LeakyNeuron(SpikingNeuron):
    """An IF or LIF neuron (:func:`~snnexit.neurons.leaky.leaky_step`); outputs its spikes
    (binary, or counts under the ``"multi"`` rule)."""

    state: LeakyState | None

    def __init__(self, params: LeakyParams):
        super().__init__()
        self.params = _Params(params)

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params.value()
        if self.state is None:
            self.state = initial_state(x, p)
        s, self.state = leaky_step(x, self.state, p)
        self._record(s)
        return s


class CubaLIFNeuron(SpikingNeuron):
    """A current-based LIF neuron (:func:`~snnexit.neurons.leaky.cuba_lif_step`): the synaptic
    current (``synapse``) feeds the membrane (``membrane``); outputs its spikes."""

    state: CubaState | None

    def __init__(self, synapse: LeakyParams, membrane: LeakyParams):
        super().__init__()
        self.synapse, self.membrane = _Params(synapse), _Params(membrane)

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
        syn, mem = self.synapse.value(), self.membrane.value()
        if self.state is None:
            self.state = cuba_initial_state(x, syn, mem)
        s, self.state = cuba_lif_step(x, self.state, syn, mem)
        self._record(s)
        return s


class LeakyIntegrator(StatefulModule):
    """A leaky integrator (NIR's ``LI``) or integrator (``I``): outputs its potential
    (:func:`~snnexit.neurons.leaky.integrator_step`); no spikes."""

    state: LeakyState | None

    def __init__(self, params: LeakyParams):
        super().__init__()
        self.params = _Params(params)

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params.value()
        if self.state is None:
            self.state = initial_state(x, p)
        v, self.state = integrator_step(x, self.state, p)
        return v

    def indicator(self) -> torch.nn.Module:
        """Its twin in the fan-out pass (:func:`snnexit.simulate.cost.fan_out`): elementwise, one
        connection per neuron."""
        return torch.nn.Identity()
