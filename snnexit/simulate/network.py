"""A converted (or directly trained) SNN that is simulated one time step at a time."""

from __future__ import annotations

import torch
from torch import nn

from snnexit.simulate.scaling import OutputScaling
from snnexit.neurons.modules import SpikingNeuron, StatefulModule


class SpikingNetwork(nn.Module):
    """Wraps a module tree whose activations are spiking neurons.

    ``step(x)`` advances every neuron by one time step and returns this step's output of
    the (non-spiking) output layer, shape ``(N, C)``; the caller accumulates it. ``meta``
    carries what offline evaluation needs to know (converter, ``alpha``, ...).
    """

    def __init__(self, body: nn.Module, meta: dict | None = None):
        super().__init__()
        self.body = body
        self.meta = dict(meta or {})

    @property
    def scaling(self) -> OutputScaling:
        """The output scaling this network states in its meta (alpha, temperature; defaults where absent)."""
        return OutputScaling.of(self.meta)

    def _layers(self) -> tuple[list, list]:
        """(spiking layers, stateful modules) for the per-step paths (step_chunk, select,
        spike_counts), found once per :meth:`reset`: a walk of the module tree costs more than a
        small step, and a run steps many times between resets. A module swapped in is seen after
        the next :meth:`reset` (every engine and simulator resets before a run)."""
        cache = self.__dict__.get("_layer_cache")
        return cache if cache is not None else self._find_layers()

    def _find_layers(self) -> tuple[list, list]:
        named = list(self.body.named_modules())
        cache = ([m for _, m in named if isinstance(m, SpikingNeuron)],
                 [m for _, m in named if isinstance(m, StatefulModule)])
        self.__dict__["_layer_cache"] = cache  # a plain attribute: no module, parameter or buffer
        return cache

    def spiking_layers(self) -> list[tuple[str, SpikingNeuron]]:
        return [(n, m) for n, m in self.body.named_modules() if isinstance(m, SpikingNeuron)]

    def stateful_modules(self) -> list[StatefulModule]:
        """Every module that carries per-input state between steps: the spiking layers, and the
        non-spiking ones (a leaky integrator, a recurrent block of an imported NIR graph)."""
        return [m for m in self.body.modules() if isinstance(m, StatefulModule)]

    def reset(self) -> None:
        for m in self._find_layers()[1]:  # a module swapped in since the last reset is found here
            m.reset()

    def select(self, index: torch.Tensor) -> None:
        """Drop every input but those at ``index`` from all neuron states."""
        for m in self._layers()[1]:
            m.select(index)

    # False for a network that cannot take a sequence of frames (one per step), e.g. one that
    # delivers a static input for a fixed window of steps (QFFS): check_inputs refuses it
    temporal_input = True

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_body(x)

    forward = step

    def run_body(self, x: torch.Tensor) -> torch.Tensor:
        """The body on ``x`` (one step, or a chunk's ``k * N`` rows), in the memory layout chosen by
        :meth:`optimize`. A network with behaviour of its own per step (QFFS's input window)
        overrides :meth:`step` and :meth:`step_chunk` around this call."""
        if self._channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x)

    def step_chunk(self, x: torch.Tensor) -> torch.Tensor:
        """Advance ``k`` steps at once, layer by layer: ``x`` ``(k, N, ...)`` holds each step's
        input; returns each step's output ``(k, N, C)``. Every stateless layer runs once on
        ``k * N`` inputs and every neuron steps through the chunk (``StatefulModule.chunk``), so
        the result is that of ``k`` calls of :meth:`step` wherever the layers compute each
        input independently of the batch it sits in (exactly so with exact sums; in floating
        point a kernel may sum in another order for another batch size). A module whose input
        depends on its own earlier outputs (a recurrent block) steps through the chunk inside."""
        k, n = x.shape[0], x.shape[1]
        flat = x.reshape(k * n, *x.shape[2:])  # (k * N, ...), time-major
        spiking, layers = self._layers()
        for m in layers:
            m.chunk = k
        try:
            y = self.run_body(flat)
        finally:
            for m in layers:
                m.chunk = None
        self._chunk_counts = (torch.stack([m.chunk_spike_counts for m in spiking], dim=2) if spiking
                              else torch.zeros(k, n, 0, device=y.device))  # (k, N, L)
        return y.reshape(k, n, *y.shape[1:])

    def chunk_spike_counts(self) -> torch.Tensor:
        """(k, N, L) spikes emitted by each input in each spiking layer at each step of the last chunk."""
        return self._chunk_counts

    _channels_last = False

    def optimize(self, channels_last: bool = True) -> "SpikingNetwork":
        """Faster inference: convolutions and pooling in NHWC layout, oneDNN's native one on CPU.
        The same arithmetic summed in another order, so an output can differ from the default
        layout's where a neuron's potential lies within rounding of its threshold (in
        benchmarks/speed_race.py: one spike among 256 inputs x 32 steps). Returns ``self``."""
        self._channels_last = bool(channels_last)
        self.body.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return self

    def spike_counts(self) -> torch.Tensor:
        """(N, L) spikes emitted by each input in each spiking layer in the last step."""
        return torch.stack([m.last_spike_count for m in self._layers()[0]], dim=1)

    def neurons_per_layer(self) -> list[int]:
        return [m.neurons_per_input for _, m in self.spiking_layers()]
