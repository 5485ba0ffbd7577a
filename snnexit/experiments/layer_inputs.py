"""What each weighted layer of an SNN receives: its input density per step, and real inputs to time.

:class:`LayerInputRecorder` puts a forward hook on every convolution and linear layer and steps
the network (``snn.step``, the step engine's arithmetic) over T steps on the batches it is given.
Per layer and step it counts the non-zero entries of the layer's input and all of them, so the
density is exact over every input and step seen; it also keeps the inputs of the first
``keep_rows`` inputs at the steps ``keep_steps`` (copies), the real spike inputs a layer
formulation is timed on. A layer whose input is the network's own input (the analog image or an
event frame, not spikes) is marked ``receives_spikes = False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from snnexit.simulate.network import SpikingNetwork

WEIGHTED = (nn.Conv2d, nn.Linear)


@dataclass
class LayerInputs:
    """One weighted layer: its input counts per step and the kept inputs."""

    name: str
    module: nn.Module
    receives_spikes: bool = True
    nonzero: list = field(default_factory=list)  # per step: non-zero input entries (all batches)
    total: list = field(default_factory=list)  # per step: input entries
    samples: list = field(default_factory=list)  # per kept step: (rows, ...) inputs of the first rows

    def density_per_step(self) -> list[float]:
        return [nz / max(1, tot) for nz, tot in zip(self.nonzero, self.total)]

    def density(self) -> float:
        return sum(self.nonzero) / max(1, sum(self.total))

    @property
    def kind(self) -> str:
        return type(self.module).__name__

    def shape(self) -> list[int]:
        """The layer's input shape per input (from a kept sample)."""
        return list(self.samples[0].shape[1:]) if self.samples else []


class LayerInputRecorder:
    """Densities and kept inputs of every conv/linear layer of ``snn`` (see the module doc)."""

    def __init__(self, snn: SpikingNetwork, keep_rows: int = 16, keep_steps=(8, 16, 24, 32)):
        self.snn = snn
        self.keep_rows = keep_rows
        self.keep_steps = tuple(keep_steps)
        self.layers = [LayerInputs(name, m) for name, m in snn.body.named_modules() if isinstance(m, WEIGHTED)]
        self._step = 0
        self._network_input: torch.Tensor | None = None

    def _body_input(self, module, args):
        self._network_input = args[0]

    def _hook(self, record: LayerInputs):
        def hook(module, args, output):
            x = args[0]
            if self._network_input is not None and x.data_ptr() == self._network_input.data_ptr():
                record.receives_spikes = False
            t = self._step
            while len(record.nonzero) <= t:
                record.nonzero.append(0)
                record.total.append(0)
            record.nonzero[t] += int(x.count_nonzero())
            record.total[t] += x.numel()
            if t + 1 in self.keep_steps:
                k = self.keep_steps.index(t + 1)
                if len(record.samples) <= k:
                    record.samples.append(x[:0].clone())
                room = self.keep_rows - record.samples[k].shape[0]
                if room > 0:
                    record.samples[k] = torch.cat([record.samples[k], x[:room].clone()])
        return hook

    @torch.no_grad()
    def run(self, x: torch.Tensor, T: int, temporal: bool = False) -> None:
        """Step the network over T steps on the batch ``x`` (static ``(n, ...)`` or frames
        ``(n, T, ...)``), counting every weighted layer's input."""
        handles = [self.snn.body.register_forward_pre_hook(self._body_input)]
        handles += [r.module.register_forward_hook(self._hook(r)) for r in self.layers]
        try:
            self.snn.reset()
            for t in range(T):
                self._step = t
                self.snn.step(x[:, t] if temporal else x)
        finally:
            for h in handles:
                h.remove()
            self.snn.reset()
            self._network_input = None
