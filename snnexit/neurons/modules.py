"""Stateful neuron modules for step-by-step simulation.

A module keeps its membrane state between ``forward`` calls until ``reset()``; ``select``
keeps only some inputs of the batch (the early-exit runtime drops finished inputs).
``last_spike_count`` is the number of spikes (|s| summed over the neurons) that each input
emitted in the most recent step, for cost accounting.

**Chunk mode** (the time-chunked runtime): while ``chunk = k`` is set, ``forward`` takes the input
of k consecutive steps at once, ``(k * N, ...)`` time-major, steps through them and returns the
k steps' outputs in the same layout, so the stateless layers between neurons (convolutions,
pooling) see k x N inputs in one call; ``chunk_spike_counts`` ``(k, N)`` holds each step's
spikes. The numbers are those of k single steps.

:class:`IFNeuron` is the converted network's soft-reset IF; :class:`TrainableIF` and
:class:`TrainableLIF` are trained by backpropagation through time (surrogate gradients, the
step functions of ``snnexit.neurons.functional``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.neurons.functional import (RESETS, IFState, NeuronParams, if_initial_state, if_soft_reset_step,
                                        if_soft_reset_step_, if_step, lif_step)
from snnexit.neurons.surrogate import Surrogate, create_surrogate
from snnexit.registry import Registry

# the trainable neurons by name (``build_direct_snn(neuron=...)``, ``cutoff-train --neuron``)
NEURONS: Registry = Registry("neuron")


def threshold_buffer(threshold: float | torch.Tensor) -> torch.Tensor:
    """A scalar threshold buffer: a tensor keeps its dtype (so a float64 network's thresholds are
    not rounded through float32), a number gets the default dtype."""
    if isinstance(threshold, torch.Tensor):
        return threshold.detach().clone().reshape(())
    return torch.tensor(float(threshold))


class StatefulModule(nn.Module):
    """A module that carries per-input state from one time step to the next.

    All of it lives in ``self.state``, a NamedTuple of tensors whose first dimension is the batch
    (None before the first step), so that :meth:`reset`, :meth:`select` (the early-exit runtime
    drops finished inputs) and chunks handle every piece of it, nothing by hand. Spiking neurons
    (:class:`SpikingNeuron`) are stateful modules that also count their spikes; a leaky integrator
    or a recurrent block of an imported NIR graph is stateful without spiking.
    """

    state: NamedTuple | None
    chunk: int | None = None  # k: forward takes k steps at once (set by SpikingNetwork.step_chunk)
    # per-step attributes, set as plain attributes: nn.Module.__setattr__ looks each name up among
    # parameters, buffers and submodules first, which cost more than a small layer's step
    _PLAIN = frozenset({"state", "chunk", "last_spike_count", "chunk_spike_counts", "neurons_per_input"})

    def __init__(self):
        super().__init__()
        self.state = None

    def __setattr__(self, name, value):
        if name in StatefulModule._PLAIN:
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    def reset(self) -> None:
        self.state = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.chunk is not None:
            return self.forward_chunk(x, self.chunk)
        return self.forward_step(x)

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
        """One time step (subclasses implement it)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward_step")

    def forward_chunk(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``k`` steps at once: ``x`` is ``(k * N, ...)`` time-major; one :meth:`forward_step` per
        step's slice, the outputs in the same layout."""
        return torch.cat([self.forward_step(xt) for xt in _split_steps(x, k)])

    def select(self, index: torch.Tensor) -> None:
        """Keep the state of the inputs at ``index`` (along the batch dimension) only."""
        if self.state is not None:
            self.state = type(self.state)(*(s[index] for s in self.state))


class SpikingNeuron(StatefulModule):
    """Base class of spiking neurons: a stateful module that records the spikes of each step."""

    def __init__(self):
        super().__init__()
        self.last_spike_count: torch.Tensor | None = None
        self.chunk_spike_counts: torch.Tensor | None = None  # (k, N) after a chunk
        self.neurons_per_input: int = 0

    def reset(self) -> None:
        super().reset()
        self.last_spike_count = None
        self.chunk_spike_counts = None

    def forward_chunk(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``k`` steps at once: ``x`` is ``(k * N, ...)`` time-major. This generic version calls
        :meth:`forward_step` on each step's slice; neurons may override it with a faster one."""
        xs = _split_steps(x, k)  # (k, N, ...)
        outs, counts = [], []
        for xt in xs:
            outs.append(self.forward_step(xt))
            counts.append(self.last_spike_count)
        self.chunk_spike_counts = torch.stack(counts)  # (k, N)
        return torch.stack(outs).reshape(x.shape)

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

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
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

    def forward_chunk(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """k steps with three passes over memory per step (add, compare, subtract) instead of
        six: the comparison writes the float spike straight into the chunk's output buffer, and
        scaling by theta and counting run once for the whole chunk. The same operations on the
        same numbers as :meth:`forward_step`: ``v - 1 * theta`` and ``v - 0 * theta`` round like
        ``v - theta`` and ``v``, so spikes and potentials are bit-identical."""
        xs = _split_steps(x, k)  # (k, N, ...)
        if self.state is None:
            self.state = if_initial_state(xs[0], self.threshold, self.v_init)
        v = self.state.v
        if torch.is_grad_enabled() or v.dtype != x.dtype or xs.shape[1] == 0:
            return super().forward_chunk(x, k)
        theta = self.threshold if self.threshold.dtype == x.dtype else self.threshold.to(x.dtype)
        minus_theta = -float(theta)  # exact: a float32 theta is a double without rounding
        s = torch.empty_like(xs)  # (k, N, ...) float spikes, in x's memory layout
        for t in range(k):
            v.add_(xs[t])
            torch.ge(v, theta, out=s[t])
            v.add_(s[t], alpha=minus_theta)
        self.neurons_per_input = xs[0, 0].numel()
        self.chunk_spike_counts = s.reshape(k, xs.shape[1], -1).sum(2)  # (k, N), exact sums of 0s and 1s
        self.last_spike_count = self.chunk_spike_counts[-1]
        return s.mul_(theta).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}, v_init={self.v_init}"



@NEURONS.register("if")
class TrainableIF(SpikingNeuron):
    """IF neuron for BPTT training (and for fine-tuning converted networks): :func:`if_step`.

    The surrogate acts on ``u = h - theta`` in absolute units: a module with threshold theta
    stretches the given surrogate by theta, so that ``width=1`` means "one threshold". The module
    outputs ``s * theta`` like the converted :class:`IFNeuron` (theta = 1 for directly trained
    networks: binary spikes). With ``multi_step = T`` it takes all T steps of a batch at once,
    time-major ``(T * N, ...)`` (training). With ``record_history = True`` it also keeps, for the
    cutoff regulariser, every step's spikes ``s_t`` and post-reset membrane ``v_t`` (with their
    graphs) until the next ``reset()``.

    Args:
        threshold: theta (> 0). Directly trained networks use 1; converted ones keep QCFS's ``lam``.
        v_init: ``v(0)`` as a fraction of theta (1/2 keeps a converted QCFS network exact).
        reset: ``"soft"`` or ``"hard"``.
        v_reset: hard-reset potential (and the LIF rest potential).
        surrogate: a :class:`Surrogate` or a registered name (``triangle``, ``sigmoid``, ``atan``);
            it is stretched by theta.
        detach_reset: no gradient through the reset.
    """

    step_fn = staticmethod(if_step)

    def __init__(self, threshold: float = 1.0, v_init: float = 0.0, reset: str = "soft", v_reset: float = 0.0,
                 surrogate: Surrogate | str = "triangle", detach_reset: bool = False):
        super().__init__()
        threshold = float(threshold)
        if not (math.isfinite(threshold) and threshold > 0):
            raise SnnexitError(f"neuron threshold must be a finite number > 0, got {threshold}")
        if reset not in RESETS:
            raise SnnexitError(f"Unknown reset {reset!r}. Known: {', '.join(sorted(RESETS))}")
        self.register_buffer("threshold", torch.tensor(threshold))
        self.v_init = float(v_init)
        self.reset_mode = reset
        self.v_reset = float(v_reset)
        self.surrogate = create_surrogate(surrogate) if isinstance(surrogate, str) else surrogate
        self.detach_reset = bool(detach_reset)
        self.record_history = False
        self.history: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._params: NeuronParams | None = None
        self.multi_step: int | None = None  # T: forward takes (T * N, ...) at once (training)

    def params(self) -> NeuronParams:
        theta = float(self.threshold)
        return NeuronParams(threshold=self.threshold, reset=self.reset_mode, v_reset=self.v_reset,
                            surrogate=self.surrogate.rescaled(theta), detach_reset=self.detach_reset)

    def reset(self) -> None:
        super().reset()
        self.history = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.chunk is not None:
            return self.forward_chunk(x, self.chunk)
        if self.multi_step is not None:
            return self._forward_sequence(x, self.multi_step)
        return self._forward_step(x)

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_step(x)

    def _forward_step(self, x: torch.Tensor) -> torch.Tensor:
        if self.state is None:
            self.state = if_initial_state(x, self.threshold, self.v_init)
            self._params = self.params()  # one .item() per sequence, not per step
        s, self.state = self.step_fn(x, self.state, self._params)
        self._record(s.detach())
        if self.record_history:
            self.history.append((s, self.state.v))
        return s * self.threshold

    def _forward_sequence(self, x: torch.Tensor, T: int) -> torch.Tensor:
        """Multi-step mode: ``x`` is ``(T * N, ...)``, time-major; the neuron steps through the T
        slices and returns its outputs in the same layout. The layers between neurons then see all
        T steps as one batch (faster, and BatchNorm normalises over time and batch together, so
        its running statistics are the ones step-by-step inference uses)."""
        if x.shape[0] % T:
            raise SnnexitError(f"multi-step input of {x.shape[0]} rows is not a multiple of T = {T}")
        xs = x.reshape(T, x.shape[0] // T, *x.shape[1:])  # (T, N, ...)
        return torch.cat([self._forward_step(xt) for xt in xs]).reshape(x.shape)

    def stacked_history(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s, v)`` of every step since the last reset, each ``(T, N, ...)``."""
        if not self.history:
            raise SnnexitError("no recorded steps: set record_history = True and run the network first")
        return torch.stack([s for s, _ in self.history]), torch.stack([v for _, v in self.history])

    @classmethod
    def from_if_neuron(cls, neuron: IFNeuron, surrogate: Surrogate | str = "triangle", **kwargs) -> "TrainableIF":
        """The trainable twin of a converted soft-reset ``IFNeuron``: same theta and ``v(0)``."""
        return cls(threshold=float(neuron.threshold), v_init=neuron.v_init, reset="soft",
                   surrogate=surrogate, **kwargs)

    def extra_repr(self) -> str:
        return (f"threshold={float(self.threshold):.4g}, v_init={self.v_init}, reset={self.reset_mode}, "
                f"surrogate={self.surrogate}")


@NEURONS.register("lif")
class TrainableLIF(TrainableIF):
    """LIF neuron for BPTT training (:func:`lif_step`); ``tau`` >= 1 in steps (``tau = 1`` forgets everything each step)."""

    step_fn = staticmethod(lif_step)

    def __init__(self, threshold: float = 1.0, tau: float = 2.0, decay_input: bool = True, **kwargs):
        super().__init__(threshold=threshold, **kwargs)
        tau = float(tau)
        if not (math.isfinite(tau) and tau >= 1):
            raise SnnexitError(f"LIF time constant tau must be >= 1 (steps), got {tau}")
        self.tau = tau
        self.decay_input = bool(decay_input)

    def params(self) -> NeuronParams:
        return super().params()._replace(tau=self.tau, decay_input=self.decay_input)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}, decay_input={self.decay_input}"

def _split_steps(x: torch.Tensor, k: int) -> torch.Tensor:
    """``(k * N, ...)`` time-major -> ``(k, N, ...)`` (a view)."""
    if k < 1 or x.shape[0] % k:
        raise SnnexitError(f"a chunk of {k} steps needs a multiple of {k} rows, got {x.shape[0]}")
    return x.view(k, x.shape[0] // k, *x.shape[1:])
