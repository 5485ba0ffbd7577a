"""Trainable IF and LIF neurons (surrogate gradients) as pure step functions plus thin modules.

One step of either neuron, for input current ``x`` and membrane potential ``v``:

    charge   IF :  h = v + x
             LIF:  h = v + (x - (v - v_reset)) / tau          (decay_input=True, SpikingJelly's default)
                   h = v - (v - v_reset) / tau + x            (decay_input=False)
    fire         s = H(h - theta)                              (fire on ">=", surrogate gradient backward)
    reset    soft: v' = h - s * theta                          (keeps the excess: rate coding, QCFS)
             hard: v' = s * v_reset + (1 - s) * h

The semantics equal SpikingJelly's ``IFNode`` / ``LIFNode`` (soft reset there is
``v_reset=None``, which leaks towards 0 as ours does with ``v_reset=0``); the tests compare the
forward passes. The leak goes towards ``v_reset`` in both reset modes. ``detach_reset`` cuts
the gradient through the reset term (a common trick that shortens the backward graph).

The surrogate acts on ``u = h - theta`` in absolute units: a module with threshold theta
stretches the given surrogate by theta, so that ``width=1`` means "one threshold".

The modules subclass :class:`~snnexit.neurons.modules.SpikingNeuron` (``reset``, ``select``, spike
counting), and output ``s * theta`` like the converted ``IFNeuron`` (theta = 1 for directly
trained networks: binary spikes). With ``multi_step = T`` a module takes all T steps of a batch at
once, time-major ``(T * N, ...)`` (training). With ``record_history = True`` a module also keeps, for the
cutoff regulariser, every step's spikes ``s_t`` and post-reset membrane ``v_t`` (with their
graphs) until the next ``reset()``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from snnexit.errors import SnnexitError
from snnexit.neurons.modules import IFNeuron, SpikingNeuron
from snnexit.neurons.surrogate import Surrogate, Triangle, create_surrogate, spike

RESETS = ("soft", "hard")


class NeuronState(NamedTuple):
    v: torch.Tensor  # membrane potential after the last reset, same shape as the input current


class NeuronParams(NamedTuple):
    threshold: float | torch.Tensor = 1.0
    reset: str = "soft"  # "soft" (subtract theta) or "hard" (set to v_reset)
    v_reset: float = 0.0  # hard-reset target and the potential the LIF leak decays towards
    surrogate: Surrogate = Triangle(1.0)  # acts on u = h - theta, absolute units
    detach_reset: bool = False
    tau: float = 2.0  # LIF membrane time constant (in steps); unused by IF
    decay_input: bool = True  # LIF: does the input decay with the membrane as well


def initial_state(like: torch.Tensor, threshold: float | torch.Tensor, v_init: float = 0.0) -> NeuronState:
    """``v(0) = v_init * theta`` (0 for direct training; 1/2 for converted QCFS networks)."""
    return NeuronState(torch.zeros_like(like) + v_init * threshold)


def fire_and_reset(h: torch.Tensor, p: NeuronParams) -> tuple[torch.Tensor, NeuronState]:
    """Spike where ``h >= theta`` and reset; shared by IF and LIF."""
    s = spike(h - p.threshold, p.surrogate)
    s_r = s.detach() if p.detach_reset else s
    if p.reset == "soft":
        v = h - s_r * p.threshold
    else:
        v = s_r * p.v_reset + (1.0 - s_r) * h
    return s, NeuronState(v)


def if_step(x: torch.Tensor, state: NeuronState, p: NeuronParams) -> tuple[torch.Tensor, NeuronState]:
    """Integrate-and-fire: ``h = v + x``, then fire and reset. Returns ``(s, new_state)``."""
    return fire_and_reset(state.v + x, p)


def lif_step(x: torch.Tensor, state: NeuronState, p: NeuronParams) -> tuple[torch.Tensor, NeuronState]:
    """Leaky integrate-and-fire (leak towards ``v_reset`` with time constant ``tau``), then fire and reset."""
    v = state.v
    if p.decay_input:
        h = v + (x - (v - p.v_reset)) / p.tau
    else:
        h = v - (v - p.v_reset) / p.tau + x
    return fire_and_reset(h, p)


class TrainableIF(SpikingNeuron):
    """IF neuron for BPTT training (and for fine-tuning converted networks).

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
            self.state = initial_state(x, self.threshold, self.v_init)
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


class TrainableLIF(TrainableIF):
    """LIF neuron for BPTT training; ``tau`` >= 1 in steps (``tau = 1`` forgets everything each step)."""

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
