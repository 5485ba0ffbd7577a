"""Fold inference-mode BatchNorm into the convolution or linear layer before it.

For ``y = BN(W x + b)`` with running statistics ``mu``, ``var`` and affine ``gamma``, ``beta``::

    a  = gamma / sqrt(var + eps)            (one factor per output channel)
    W' = a * W,   b' = a * (b - mu) + beta   =>   y = W' x + b'

so a converted SNN applies one affine map per step and every constant term sits in a bias
(QFFS delivers biases for a fixed window only, which needs them in one place). A BatchNorm is
folded when it directly follows a Conv1d/Conv2d/Linear in the same ``nn.Sequential`` (the
layout of every model in ``snnexit.models`` and of the QCFS authors' models); the folded
BatchNorm becomes ``nn.Identity``. A BatchNorm in any other position is left as is.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@torch.no_grad()
def fold_pair(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """A new layer equal to ``bn(layer(x))`` in eval mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    out_channels = layer.weight.shape[0]
    if bn.num_features != out_channels:
        raise ValueError(f"BatchNorm has {bn.num_features} features but the layer before it has {out_channels} outputs")
    dtype = layer.weight.dtype
    var, mu = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    a = gamma / torch.sqrt(var + bn.eps)
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(var)
    folded = copy.deepcopy(layer)
    if folded.bias is None:
        folded.bias = nn.Parameter(torch.zeros(out_channels, dtype=dtype, device=layer.weight.device))
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    folded.weight.copy_((layer.weight.double() * a.view(shape)).to(dtype))
    folded.bias.copy_((a * (bias - mu) + beta).to(dtype))
    return folded


def fold_batchnorm_pairs(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every (conv/linear, BatchNorm) pair folded; eval mode.
    A BatchNorm in any other position stays (``snnexit.nir.export.fold_all_batchnorm`` refuses it)."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for prev, name in zip(names, names[1:]):
            layer, bn = module._modules[prev], module._modules[name]
            if isinstance(layer, FOLDABLE) and isinstance(bn, BATCHNORMS):
                module._modules[prev] = fold_pair(layer, bn)
                module._modules[name] = nn.Identity()
    return model
