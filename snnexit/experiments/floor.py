"""The dense floor: the same layers run as an ANN, the least time dense arithmetic needs for T steps.

An SNN step runs every convolution, pooling and linear layer of the network once on the step's
input (dense: zeros are multiplied like any number), plus the neurons' updates. The layers alone,
with each spiking neuron replaced by a ReLU (one pass over memory), are what no dense simulator
of the network can beat:

* ``steps``: T passes on the batch, one per step (what any step-by-step simulator must compute);
* ``chunked``: the T steps as passes on ``k x n`` rows, ``k`` the longest chunk the chunked
  engine's memory cap allows (one pass on ``T x n`` rows when it fits): the layers at their
  most efficient, what a simulator that runs several steps per layer call can approach.

Every speed figure is shown beside both, so it says how far it is from the limit of dense
arithmetic; only doing less arithmetic (sparse or lower-precision layers) goes below it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from snnexit.neurons.modules import StatefulModule
from snnexit.simulate.stepper import chunk_frames


def dense_twin(snn) -> nn.Module:
    """The network's layers with every stateful module (spiking neuron, leaky integrator) replaced
    by a ReLU: the same convolutions, pooling and linear layers, in the same memory layout."""
    body = copy.deepcopy(snn.body)

    def swap(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, StatefulModule):
                setattr(parent, name, nn.ReLU())
            else:
                swap(child)

    swap(body)
    return body.eval()


def floor_chunk(snn, n: int, T: int, max_chunk_bytes: int = 256 * 2 ** 20) -> int:
    """The chunk length of the ``chunked`` floor: the chunked engine's rule (3 x the largest
    layer's activations per input-step, within ``max_chunk_bytes``)."""
    largest = max(snn.neurons_per_layer(), default=1)
    per_row = 3 * largest * 4
    return max(1, min(T, max_chunk_bytes // max(1, per_row * n)))


class DenseFloor:
    """Time-able runs of the dense twin of ``snn`` for ``T`` steps on a batch.

    ``steps(x)`` and ``chunked(x)`` compute what the module doc describes; each returns the last
    output so the work cannot be skipped. ``channels_last`` puts the twin and its inputs in the
    layout the engines run in."""

    def __init__(self, snn, T: int, temporal: bool = False, channels_last: bool = False,
                 max_chunk_bytes: int = 256 * 2 ** 20):
        device = next(iter(snn.parameters())).device
        self.twin = dense_twin(snn).to(device)
        self.channels_last = channels_last
        if channels_last:
            self.twin.to(memory_format=torch.channels_last)
        self.snn, self.T, self.temporal, self.max_chunk_bytes = snn, T, temporal, max_chunk_bytes

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def chunk(self, x: torch.Tensor) -> int:
        """The ``chunked`` floor's chunk length for the batch ``x``."""
        if not any(self.snn.neurons_per_layer()):
            with torch.no_grad():  # the layer sizes are known after a step
                self.snn.reset()
                self.snn.step(x[:1, 0] if self.temporal else x[:1])
                self.snn.reset()
        return floor_chunk(self.snn, x.shape[0], self.T, self.max_chunk_bytes)

    @torch.no_grad()
    def steps(self, x: torch.Tensor) -> torch.Tensor:
        y = None
        for t in range(self.T):
            y = self.twin(self._layout(x[:, t] if self.temporal else x))
        return y

    @torch.no_grad()
    def chunked(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        k_max, y, t0 = k or self.chunk(x), None, 0
        while t0 < self.T:
            k = min(k_max, self.T - t0)
            frames = chunk_frames(x, t0, k, self.temporal)  # (k, n, ...)
            y = self.twin(self._layout(frames.reshape(k * frames.shape[1], *frames.shape[2:])))
            t0 += k
        return y
