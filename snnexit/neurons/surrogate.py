"""The spike function with a surrogate gradient, for training SNNs by backpropagation.

Forward, a neuron fires when its membrane potential reaches the threshold:

    s = H(u),   u = v - theta,   H(u) = 1 if u >= 0 else 0        (fire on ">=", as the IF neuron)

H has zero gradient almost everywhere, so backward replaces ``dH/du`` with the derivative
``sigma'(u)`` of a smooth *surrogate* ``sigma`` that steps from 0 to 1 around ``u = 0``:

* ``triangle`` (half-width ``w``; Esser et al. 2016, Bellec et al. 2018): ``sigma'(u) = max(0, w - |u|) / w**2``,
  a triangle of height ``1/w`` and area 1; its primitive ``sigma`` is piecewise quadratic.
* ``sigmoid`` (sharpness ``alpha``): ``sigma(u) = 1 / (1 + exp(-alpha u))``.
* ``atan`` (sharpness ``alpha``; SpikingJelly's default): ``sigma(u) = 1/2 + atan(pi/2 * alpha * u) / pi``.

Every surrogate exposes ``primitive(u)`` (sigma) and ``derivative(u)`` (sigma'); the tests
check the backward pass against finite differences of ``primitive``. The width is in the
units of ``u``: a neuron with threshold theta passes ``width * theta`` so the surrogate
scales with the threshold (see ``snnexit.neurons.modules.TrainableIF``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from snnexit.errors import SnnexitError
from snnexit.registry import Registry

SURROGATES: Registry = Registry("surrogate")


@dataclass(frozen=True)
class Surrogate:
    """Base: ``scale`` is the width (triangle) or the sharpness (sigmoid, atan)."""

    scale: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise SnnexitError(f"surrogate {type(self).__name__} needs a finite scale > 0, got {self.scale!r}")

    def primitive(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rescaled(self, factor: float) -> "Surrogate":
        """The same shape stretched along ``u`` by ``factor`` (for a threshold theta != 1)."""
        raise NotImplementedError


@SURROGATES.register("triangle")
@dataclass(frozen=True)
class Triangle(Surrogate):
    """``sigma'(u) = max(0, w - |u|) / w**2`` with half-width ``w = scale``."""

    def primitive(self, u):
        w = self.scale
        left = (u + w).clamp(min=0) ** 2 / (2 * w * w)  # rising half, u in (-w, 0]
        right = 1 - (w - u).clamp(min=0) ** 2 / (2 * w * w)  # u in (0, w)
        return torch.where(u <= 0, torch.where(u <= -w, torch.zeros_like(u), left),
                           torch.where(u >= w, torch.ones_like(u), right))

    def derivative(self, u):
        w = self.scale
        return (w - u.abs()).clamp(min=0) / (w * w)

    def rescaled(self, factor):
        return Triangle(self.scale * factor)


@SURROGATES.register("sigmoid")
@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """``sigma(u) = sigmoid(alpha u)`` with ``alpha = scale`` (default 4: SpikingJelly's)."""

    scale: float = 4.0

    def primitive(self, u):
        return torch.sigmoid(self.scale * u)

    def derivative(self, u):
        sg = torch.sigmoid(self.scale * u)
        return self.scale * sg * (1 - sg)

    def rescaled(self, factor):
        return Sigmoid(self.scale / factor)


@SURROGATES.register("atan")
@dataclass(frozen=True)
class ATan(Surrogate):
    """``sigma(u) = 1/2 + atan(pi/2 alpha u) / pi`` with ``alpha = scale`` (default 2)."""

    scale: float = 2.0

    def primitive(self, u):
        return 0.5 + torch.atan(math.pi / 2 * self.scale * u) / math.pi

    def derivative(self, u):
        return self.scale / 2 / (1 + (math.pi / 2 * self.scale * u) ** 2)

    def rescaled(self, factor):
        return ATan(self.scale / factor)


def create_surrogate(name: str = "triangle", scale: float | None = None) -> Surrogate:
    """``create_surrogate("triangle", 1.0)``; ``scale=None`` takes the surrogate's default."""
    cls = SURROGATES.get(name)
    return cls() if scale is None else cls(float(scale))


class SpikeFunction(torch.autograd.Function):
    """``H(u)`` forward (fire on ``u >= 0``), ``grad * sigma'(u)`` backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (u,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(u), None


def spike(u: torch.Tensor, surrogate: Surrogate | None = None) -> torch.Tensor:
    """Heaviside spike of ``u = v - theta`` with a surrogate gradient (default: triangle, width 1).

    Without autograd (no input requires grad) this is just ``(u >= 0)``.
    """
    if surrogate is None:
        surrogate = Triangle(1.0)
    if not u.requires_grad:
        return (u >= 0).to(u.dtype)
    return SpikeFunction.apply(u, surrogate)
