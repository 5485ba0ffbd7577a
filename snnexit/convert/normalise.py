"""Data-based normalisation: ``max`` (Diehl et al. 2015) and ``robust`` (Rueckauer et al. 2017).

From a trained ReLU (or clipped-ReLU) ANN: run calibration data (training inputs) through the
BatchNorm-folded network and record, per activation layer, a scale ``lambda_l``:

* ``max``: the largest activation;
* ``robust``: the 99.9th percentile of the positive activations (Rueckauer et al. use the
  non-zero activity; a few outliers no longer force a huge threshold and slow firing).

Each activation becomes a soft-reset IF neuron with ``theta = lambda_l`` whose spikes carry
amplitude ``theta``. That is Diehl's weight normalisation ``W_l * lambda_{l-1} / lambda_l`` with
threshold 1, written with the scales in the thresholds so the weights stay untouched. The
membrane starts at ``theta / 2`` (``v_init``; rounding instead of flooring, as in QCFS: it halves
the expected quantization error; pass ``v_init=0`` for the original papers' reset state). The
output layer stays non-spiking and accumulates; like QCFS the network is rate-coded (``Y[T] / T``
approximates the ANN's logits), so Dynamic Confidence uses QCFS's ``alpha = T``.

Both converters need calibration data: ``convert(model, "max", calibration_data=x)`` with a
tensor ``(N, ...)`` or an iterable of tensors or ``(x, y)`` batches. Activations must be
``nn.ReLU``, ``nn.ReLU6`` or ``nn.Hardtanh(min_val=0)``; a module used twice in one forward
pass cannot hold one neuron state and is refused.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

from snnexit.convert.base import register_converter, replace_modules
from snnexit.convert.bn_fold import fold_batchnorm_pairs
from snnexit.errors import SnnexitError
from snnexit.neurons.modules import IFNeuron
from snnexit.simulate.network import SpikingNetwork

MAX_SAMPLES_PER_BATCH = 1 << 16  # activations kept per layer and batch for the percentile


def _is_relu_like(module: nn.Module) -> bool:
    if isinstance(module, (nn.ReLU, nn.ReLU6)):
        return True
    return isinstance(module, nn.Hardtanh) and module.min_val == 0


def _batches(data, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        for i in range(0, len(data), batch_size):
            yield data[i : i + batch_size]
        return
    for item in data:
        yield item[0] if isinstance(item, (tuple, list)) else item


@torch.no_grad()
def activation_scales(model: nn.Module, calibration_data, percentile: float | None = None,
                      batch_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Per ReLU-like module path: the max (``percentile=None``) or the given percentile of its
    positive outputs over ``calibration_data`` (the model must already be BN-folded or in eval)."""
    if calibration_data is None:
        raise SnnexitError("data-based normalisation needs calibration data: convert(model, 'max', calibration_data=x)")
    model = model.eval()
    acts = {p: m for p, m in model.named_modules() if _is_relu_like(m)}
    if not acts:
        raise SnnexitError("data-based normalisation needs an ANN with ReLU activations; this model has none")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    maxima = dict.fromkeys(acts, 0.0)
    samples: dict[str, list[torch.Tensor]] = {p: [] for p in acts}
    calls: dict[str, int] = {}

    def hook(path):
        def record(_module, _inputs, out):
            calls[path] = calls.get(path, 0) + 1
            maxima[path] = max(maxima[path], float(out.max()))
            if percentile is not None:
                pos = out[out > 0].float().cpu()
                if pos.numel() > MAX_SAMPLES_PER_BATCH:
                    pos = pos[torch.randperm(pos.numel(), generator=gen)[:MAX_SAMPLES_PER_BATCH]]
                samples[path].append(pos)
        return record

    handles = [m.register_forward_hook(hook(p)) for p, m in acts.items()]
    n_batches = 0
    try:
        for x in _batches(calibration_data, batch_size):
            calls.clear()
            model(x.to(device))
            n_batches += 1
            for path, n in calls.items():
                if n > 1:
                    raise SnnexitError(f"activation module at '{path}' is used {n} times in one forward pass: "
                                       f"give each use its own module so each can become its own neuron")
    finally:
        for h in handles:
            h.remove()
    if n_batches == 0:
        raise SnnexitError("calibration data is empty")
    scales = {}
    for path in acts:
        if percentile is None or not samples[path]:
            scales[path] = maxima[path]
        else:
            scales[path] = float(np.percentile(torch.cat(samples[path]).numpy(), percentile))
        if not scales[path] > 0:
            raise SnnexitError(f"activation at '{path}' is never positive on the calibration data: "
                               f"no threshold can be set from data (a dead layer)")
    return scales


def _convert_normalised(model: nn.Module, name: str, calibration_data, percentile: float | None,
                        v_init: float, batch_size: int) -> SpikingNetwork:
    folded = fold_batchnorm_pairs(model)
    # refuse unsupported layers (named with their path) before spending time on calibration
    replace_modules(folded, lambda path, m: nn.Identity() if _is_relu_like(m) else None)
    if not any(_is_relu_like(m) for m in folded.modules()):
        raise SnnexitError(f"{name} conversion needs an ANN with ReLU activations; this model has none, so its SNN "
                           f"would have no spiking layer")
    scales = activation_scales(folded, calibration_data, percentile, batch_size)

    def swap(path, module):
        if path in scales:
            return IFNeuron(threshold=scales[path], v_init=v_init)
        return None

    body = replace_modules(folded, swap).eval()
    return SpikingNetwork(body, meta={"converter": name, "alpha": "T", "percentile": percentile,
                                      "scales": [scales[p] for p in scales]})


@register_converter("max", quantizers=("relu", "clip"), needs_calibration=True)
def convert_max(model: nn.Module, calibration_data=None, v_init: float = 0.5, batch_size: int = 256) -> SpikingNetwork:
    """Diehl et al. 2015: per-layer threshold = the max activation on the calibration data."""
    return _convert_normalised(model, "max", calibration_data, None, v_init, batch_size)


@register_converter("robust", quantizers=("relu", "clip"), needs_calibration=True)
def convert_robust(model: nn.Module, calibration_data=None, percentile: float = 99.9, v_init: float = 0.5,
                   batch_size: int = 256) -> SpikingNetwork:
    """Rueckauer et al. 2017: per-layer threshold = the 99.9th percentile of positive activations."""
    if not 0 < percentile <= 100:
        raise SnnexitError(f"percentile must lie in (0, 100], got {percentile}")
    return _convert_normalised(model, "robust", calibration_data, percentile, v_init, batch_size)

