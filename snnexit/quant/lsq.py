"""LSQ: learned step size quantization of activations (Esser et al., ICLR 2020), unsigned.

    q(x) = s * clip(floor(x / s + 1/2), 0, Q),      Q = 2**b - 1

``s`` is one trainable step size per layer, ``b`` the bit width (2 in the Dynamic Confidence
paper). Rounding is half-up (``floor(u + 1/2)``) rather than torch's half-to-even, so that a
spiking neuron that fires on ``>=`` reproduces the activation exactly at ties. With
``u = x / s`` and ``n = q / s`` the straight-through gradients of the LSQ paper are

    dq/dx = 1[0 < u < Q]
    dq/ds = (n - u) if 0 < u < Q, else n      (0 below the clip, Q above it)

and the step's gradient is scaled by ``g = 1 / sqrt(N_F * Q)`` where ``N_F`` is the number of
features of one input in the layer (the paper's N_F; the batch dimension is not counted), so
the step size learns at a rate comparable to the weights.

An LSQ activation computes exactly QCFS with ``L = Q`` levels and threshold ``lam = s * Q``
(``h(z) = lam/L * clip(floor(z*L/lam + 1/2), 0, L)``), so :class:`LSQ` subclasses
:class:`~snnexit.quant.qcfs.QCFS`: every consumer of QCFS activations (the ``qcfs`` converter,
exporters) handles it, reading ``levels`` and the derived ``threshold``. Only the trained
parameter (``step``) and its gradient differ. The matching SNNs are QCFS (soft-reset IF,
theta = s*Q) and QFFS (the same with a spike cap of Q and negative spikes).

Like ``qcfs.py`` this is one fused autograd Function: one node in the graph instead of six.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from snnexit.quant.qcfs import QCFS, check_count, check_positive

# 2**16 - 1 levels: an SNN needs about as many steps to resolve them; more is a mistake (--bits 64
# would train, then fail in conversion, where 2**64 - 1 is no float32 level count)
MAX_BITS = 16


class _LSQFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, step: torch.Tensor, levels: int, grad_scale: float) -> torch.Tensor:
        u = x / step
        n = torch.clamp(torch.floor(u + 0.5), 0, levels)
        ctx.save_for_backward(u, n)
        ctx.levels, ctx.grad_scale = levels, grad_scale
        return n * step

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        u, n = ctx.saved_tensors
        inside = (u > 0) & (u < ctx.levels)
        grad_x = grad_out * inside
        grad_step = ((grad_out * (n - u * inside)).sum() * ctx.grad_scale).reshape(1)
        return grad_x, grad_step, None, None


def lsq_grad_scale(features: int, levels: int) -> float:
    """LSQ's step-size gradient scale ``1 / sqrt(N_F * Q)``."""
    return 1.0 / math.sqrt(max(int(features), 1) * levels)


def lsq(x: torch.Tensor, step: torch.Tensor, bits: int, grad_scale: float | None = None) -> torch.Tensor:
    """Functional LSQ activation; ``step`` is a 1-element tensor. ``grad_scale`` defaults to
    ``1 / sqrt(N_F * (2**bits - 1))`` with ``N_F = x[0].numel()`` (features per input)."""
    levels = 2 ** int(bits) - 1
    if grad_scale is None:
        grad_scale = lsq_grad_scale(x[0].numel() if x.dim() > 1 else x.numel(), levels)
    return _LSQFunction.apply(x, step, levels, grad_scale)


class LSQ(QCFS):
    """Unsigned b-bit LSQ activation with a trainable per-layer step size ``step``.

    Args:
        bits: b in 1..16 (:data:`MAX_BITS`); the activation takes the ``2**b`` values
            ``s * {0, ..., 2**b - 1}``.
        init_step: the initial step size. ``None`` initialises from data on the first
            training batch with the LSQ paper's rule ``s = 2 * mean(|x|) / sqrt(Q)``.
            The pipeline passes ``init_threshold / Q`` instead, so that ``s * Q`` (the SNN
            threshold) starts where QCFS's ``lam`` starts (1.0 for inputs in [0, 1]); see
            ``RunConfig.lsq_init``.
    """

    def __init__(self, bits: int = 2, init_step: float | None = None):
        nn.Module.__init__(self)  # not QCFS.__init__: the trained parameter is the step, not lam
        self.bits = check_count("LSQ bits", bits, 1, MAX_BITS)
        self.levels = 2 ** self.bits - 1
        step = 1.0 if init_step is None else check_positive("LSQ init_step", init_step)
        self.step = nn.Parameter(torch.tensor([step]))
        # 1 once the step holds a usable value (saved in the state_dict, so a loaded model is not
        # re-initialised from its first batch)
        self.register_buffer("initialized", torch.tensor(0.0 if init_step is None else 1.0))

    @property
    def threshold(self) -> torch.Tensor:
        """QCFS's ``lam = s * Q``: the clip value, and the threshold of the matching IF neuron."""
        return self.step * self.levels

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        mean_abs = x.detach().abs().mean().item()
        self.step.fill_(max(2.0 * mean_abs / math.sqrt(self.levels), 1e-4))
        self.initialized.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self.initialized.item():
            self._init_from(x)
        return lsq(x, self.step, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, step={self.step.item():.4g}"
