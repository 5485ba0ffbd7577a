"""Stateful neuron modules for step-by-step simulation.

A module keeps its membrane state between ``forward`` calls until ``reset()``; ``select``
keeps only some inputs of the batch (the early-exit runtime drops finished inputs).
``last_spike_count`` is the number of spikes (|s| summed over the neurons) that each input
emitted in the most recent step, for cost accounting.
"""

from __future__ import annotations

import torch
from torch import nn

from snnexit.neurons.functional import IFState, if_initial_state, if_soft_reset_step, if_soft_reset_step_


def threshold_buffer(threshold: float | torch.Tensor) -> torch.Tensor:
    """A scalar threshold buffer: a tensor keeps its dtype (so a float64 network's thresholds are
    not rounded through float32), a number gets the default dtype."""
    if isinstance(threshold, torch.Tensor):
        return threshold.detach().clone().reshape(())
    return torch.tensor(float(threshold))


class SpikingNeuron(nn.Module):
    """Base class: state handling shared by every spiking neuron module."""

    state: IFState | None

    def __init__(self):
        super().__init__()
        self.state = None
        self.last_spike_count: torch.Tensor | None = None
        self.neurons_per_input: int = 0

    def reset(self) -> None:
        self.state = None
        self.last_spike_count = None

    def select(self, index: torch.Tensor) -> None:
        """Keep the state of the inputs at ``index`` (along the batch dimension) only."""
        if self.state is not None:
            self.state = type(self.state)(*(s[index] for s in self.state))

    def _record(self, spikes: torch.Tensor) -> None:
        self.neurons_per_input = spikes[0].numel() if spikes.shape[0] else 0
        self.last_spike_count = spikes.abs().flatten(1).sum(1)


class IFNeuron(SpikingNeuron):
    """Soft-reset IF neuron of QCFS conversion; outputs ``s * threshold``.

    Args:
        threshold: theta (QCFS: the trained ``lam`` of the layer it replaces). A tensor keeps its
            dtype (a float64 network then thresholds in float64); a number gets the default dtype.
        v_init: initial potential as a fraction of theta (1/2 in QCFS).
    """

    def __init__(self, threshold: float | torch.Tensor, v_init: float = 0.5):
        super().__init__()
        self.register_buffer("threshold", threshold_buffer(threshold))
        self.v_init = float(v_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.state is None:
            self.state = if_initial_state(x, self.threshold, self.v_init)
        v = self.state.v
        if (torch.is_grad_enabled() and (x.requires_grad or self.threshold.requires_grad)) or v.dtype != x.dtype:
            s, self.state = if_soft_reset_step(x, self.state, self.threshold)
            self._record(s)
            return s * self.threshold
        # inference: the same arithmetic, updating v in place with fewer passes over memory
        theta = self.threshold if self.threshold.dtype == x.dtype else self.threshold.to(x.dtype)
        self.neurons_per_input = x[0].numel() if x.shape[0] else 0
        out, self.last_spike_count = if_soft_reset_step_(x, self.state, theta)
        return out

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}, v_init={self.v_init}"
