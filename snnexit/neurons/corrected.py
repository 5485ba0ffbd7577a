"""The soft-reset IF neuron of a converted network after a conversion fix (``snnexit.convert.fixes``).

:class:`CorrectedIF` is :class:`~snnexit.neurons.modules.IFNeuron` (soft reset, fire on ``>=``,
spikes carry theta, ``v(0) = v_start * theta``) plus the correction a conversion fix sets from
training inputs: ``current``, an extra input current per step and channel, ``(S, C)``. Step
``t`` (1-based) adds ``current[min(t, S) - 1]`` to the layer's input (channel = dimension 1 of
the input): ``S = 1`` is a constant bias, ``S > 1`` a bias per time step (after S steps the last
row stays on). ``v_start`` is a buffer (saved with the network), a scalar or any shape that
broadcasts over one input.

One step::

    x' = x + current[min(t, S) - 1]          (broadcast over the batch and the positions)
    v <- v + x';   s = [v >= theta];   v <- v - s * theta;   out = s * theta

The number of steps since ``reset()`` (``steps_done``) is state like the membrane: every input
of a batch is at the same step, so ``select`` keeps it. In chunk mode each step of the chunk
gets its own row of ``current``, computed as the single step computes it (the same float
additions), so the chunked and the step engines agree bit for bit.

With ``current = 0`` and ``v_start = 1/2`` it computes what ``IFNeuron(theta, v_init=0.5)``
computes (tested). It is not an ``IFNeuron`` subclass on purpose: code that handles a plain IF
(NIR export, BPTT fine-tuning) must not take it for one and drop its corrections.
"""

from __future__ import annotations

import torch

from snnexit.neurons.functional import IFState, if_soft_reset_step
from snnexit.neurons.modules import SpikingNeuron, threshold_buffer


class CorrectedIF(SpikingNeuron):
    """Soft-reset IF with a per-step input current and an initial potential of its own.

    Args:
        threshold: theta.
        v_start: ``v(0) / theta`` (the converters' 1/2): a number, or a tensor that broadcasts over one input.
        current: ``(S, C)`` extra input current per step (rows) and channel; None: ``(1, 1)`` zeros.
    """

    def __init__(self, threshold: float | torch.Tensor, v_start: float | torch.Tensor = 0.5,
                 current: torch.Tensor | None = None):
        super().__init__()
        theta = threshold_buffer(threshold)
        self.register_buffer("threshold", theta)
        self.register_buffer("v_start", torch.as_tensor(v_start, dtype=theta.dtype).detach().clone())
        if current is None:
            current = torch.zeros(1, 1, dtype=theta.dtype)
        if current.dim() != 2 or current.shape[0] < 1:
            raise ValueError(f"current must have shape (S, C) with S >= 1, got {tuple(current.shape)}")
        self.register_buffer("current", current.detach().clone().to(theta.dtype))
        self.steps_done = 0

    @classmethod
    def like(cls, neuron: SpikingNeuron) -> "CorrectedIF":
        """The uncorrected twin of a converted ``IFNeuron`` (same theta and ``v(0)``)."""
        theta = neuron.threshold.detach().clone()
        return cls(theta, v_start=float(getattr(neuron, "v_init", 0.5)))

    def reset(self) -> None:
        super().reset()
        self.steps_done = 0

    def step_current(self, t: int, like: torch.Tensor) -> torch.Tensor:
        """The extra current of step ``t`` (0-based), shaped to broadcast over ``like`` ``(N, C, ...)``."""
        row = self.current[min(t, self.current.shape[0] - 1)].to(like.dtype)
        return row.view((1, -1) + (1,) * (like.dim() - 2)) if like.dim() >= 2 else row

    def initial_state(self, like: torch.Tensor) -> IFState:
        theta = self.threshold.to(like.dtype)
        return IFState(torch.zeros_like(like) + self.v_start.to(like.dtype) * theta)

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.step_current(self.steps_done, x)
        if self.state is None:
            self.state = self.initial_state(x)
        theta = self.threshold.to(x.dtype)
        s, self.state = if_soft_reset_step(x, self.state, theta)
        self.steps_done += 1
        self._record(s)
        return s * theta

    def extra_repr(self) -> str:
        v = self.v_start
        shown = f"{v.item():.4g}" if v.numel() == 1 else f"per neuron {tuple(v.shape)}"
        return f"threshold={self.threshold.item():.4g}, v_start={shown}, current={tuple(self.current.shape)}"
