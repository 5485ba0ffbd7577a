"""The stateless NIR nodes as torch modules: one meaning for every reader.

``Affine``, ``Linear``, ``Conv1d``, ``Conv2d``, ``AvgPool2d``, ``SumPool2d``, ``Flatten`` and
``Scale`` compute the same thing in every library that reads them (where a library's importer
gets one wrong, e.g. snnTorch 1.0.0 builds ``Flatten`` over the batch dimension, the graph's
meaning is taken, not the bug). NIR shapes leave out the batch dimension, so a ``Flatten`` over
NIR dims ``start..end`` flattens torch dims ``start + 1 .. end + 1``. ``SumPool2d`` is computed
as torch's ``LPPool2d`` with p = 1 computes it (average times window area), which is what
Sinabs and Norse run.
"""

from __future__ import annotations

import nir
import numpy as np
import torch
from torch import nn

from snnexit.errors import SnnexitError


def _tensor(value) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, np.float32))


def _ints(value, n: int) -> tuple[int, ...]:
    flat = np.asarray(value).reshape(-1)
    if flat.size == 1:
        return (int(flat[0]),) * n
    if flat.size != n:
        raise SnnexitError(f"expected {n} values, got {flat.tolist()}")
    return tuple(int(v) for v in flat)


class Scale(nn.Module):
    """NIR's ``Scale``: ``y = scale * x`` elementwise."""

    def __init__(self, scale):
        super().__init__()
        self.register_buffer("scale", _tensor(scale))

    def forward(self, x):
        return x * self.scale

    def indicator(self) -> nn.Module:
        """The fan-out pass (:func:`snnexit.simulate.cost.fan_out`) counts a connection where the factor is not 0."""
        return Scale((self.scale != 0).float())


class SumPool2d(nn.Module):
    """NIR's ``SumPool2d``: the sum over each window (``LPPool2d`` with p = 1, plus zero padding)."""

    def __init__(self, kernel_size, stride, padding=(0, 0)):
        super().__init__()
        self.kernel_size, self.stride, self.padding = tuple(kernel_size), tuple(stride), tuple(padding)

    def forward(self, x):
        area = self.kernel_size[0] * self.kernel_size[1]
        return nn.functional.avg_pool2d(x, self.kernel_size, self.stride, self.padding) * area

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _linear(weight, bias) -> nn.Linear:
    w = _tensor(weight)
    if w.dim() != 2:
        raise SnnexitError(f"weight of shape {tuple(w.shape)} is not a matrix (out, in)")
    m = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        m.weight.copy_(w)
        if bias is not None:
            m.bias.copy_(_tensor(bias).reshape(-1))
    return m


def _conv(node, dims: int) -> nn.Module:
    w = _tensor(node.weight)
    if w.dim() != dims + 2:
        raise SnnexitError(f"weight of shape {tuple(w.shape)} is not a {dims}-d convolution kernel")
    groups = int(np.asarray(node.groups).reshape(-1)[0])
    padding = node.padding if isinstance(node.padding, str) else _ints(node.padding, dims)
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    bias = getattr(node, "bias", None)
    m = cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=_ints(node.stride, dims), padding=padding,
            dilation=_ints(node.dilation, dims), groups=groups, bias=bias is not None)
    with torch.no_grad():
        m.weight.copy_(w)
        if bias is not None:
            m.bias.copy_(_tensor(bias).reshape(-1))
    return m


def _flatten(node) -> nn.Flatten:
    start, end = int(node.start_dim), int(node.end_dim)
    return nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)


LAYERS = {
    nir.Input: lambda node: nn.Identity(),
    nir.Output: lambda node: nn.Identity(),
    nir.Affine: lambda node: _linear(node.weight, node.bias),
    nir.Linear: lambda node: _linear(node.weight, None),
    nir.Conv1d: lambda node: _conv(node, 1),
    nir.Conv2d: lambda node: _conv(node, 2),
    nir.AvgPool2d: lambda node: nn.AvgPool2d(_ints(node.kernel_size, 2), _ints(node.stride, 2),
                                             _ints(node.padding, 2)),
    nir.SumPool2d: lambda node: SumPool2d(_ints(node.kernel_size, 2), _ints(node.stride, 2),
                                          _ints(getattr(node, "padding", (0, 0)), 2)),
    nir.Flatten: _flatten,
    nir.Scale: lambda node: Scale(node.scale),
}


def layer_module(name: str, node) -> nn.Module | None:
    """The torch module of a stateless node (None: not a stateless node; a neuron, or unknown).
    A malformed node is refused naming it."""
    make = LAYERS.get(type(node))
    if make is None:
        return None
    try:
        return make(node)
    except (SnnexitError, TypeError, ValueError, RuntimeError) as exc:
        raise SnnexitError(f"NIR node '{name}' ({type(node).__name__}) is malformed: {exc}") from None
