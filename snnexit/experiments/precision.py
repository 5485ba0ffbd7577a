"""Whole networks in lower precision, and whether they take the decisions float32 takes.

A lower-precision network is a copy of the float32 one:

* ``bfloat16`` / ``float16``: every parameter, buffer and state in that dtype (the engines run it
  as they are: inputs are cast to the network's dtype, outputs are accumulated in it);
* ``bfloat16_layers``: only the convolutions and linear layers compute in bfloat16 (their inputs
  and weights rounded to bfloat16, oneDNN accumulating in float32, the output cast back), while
  neurons, potentials, BatchNorm and outputs stay float32;
* ``int8_dynamic_linear``: the linear layers replaced by torch.ao's dynamically quantized Linear
  (int8 weights per tensor, the input quantized per call), everything else float32.

:func:`decision_changes` counts the inputs whose exit step, answer at the exit, or answer at any
step of T differ between two traces under a fitted policy. Where the float32 network's sums are
exact (the conformance matrix's dyadic networks), any change is the precision's doing.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as quantized_dynamic

from snnexit.simulate.network import SpikingNetwork


class CastLayer(nn.Module):
    """``layer`` computed in ``dtype``: input cast to it, output cast back to the layer's own dtype."""

    def __init__(self, layer: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.out_dtype = layer.weight.dtype
        self.layer = copy.deepcopy(layer).to(dtype)
        self.dtype = dtype

    def _apply(self, fn, *args, **kwargs):
        """A conversion of the whole network (``.double()``, ``.to(device)``) converts the layer
        (its compute dtype follows) and the dtype it hands on."""
        out = super()._apply(fn, *args, **kwargs)
        self.out_dtype = fn(torch.empty(0, dtype=self.out_dtype)).dtype
        return out

    def forward(self, x):
        return self.layer(x.to(self.layer.weight.dtype)).to(self.out_dtype)


def _swap_layers(body: nn.Module, make) -> None:
    for name, child in list(body.named_children()):
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(body, name, make(child))
        else:
            _swap_layers(child, make)


def fp16_supported() -> bool:
    """Whether oneDNN runs float16 natively on this CPU (AVX512-FP16 / AMX-FP16)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_fp16_supported())


def bf16_supported() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def int8_dynamic_linear(layer: nn.Linear) -> nn.Module:
    """torch.ao's dynamically quantized Linear (int8 weights, per-call input quantization) of ``layer``."""
    layer = copy.deepcopy(layer).float()
    layer.qconfig = torch.ao.quantization.default_dynamic_qconfig
    with warnings.catch_warnings():  # torch.ao's deprecation notice: the kernel itself is what is measured
        warnings.simplefilter("ignore")
        return quantized_dynamic.Linear.from_float(layer)


def precision_network(snn: SpikingNetwork, precision: str) -> SpikingNetwork:
    """A copy of ``snn`` in ``precision`` (see the module doc)."""
    net = copy.deepcopy(snn)
    if precision in ("bfloat16", "float16"):
        return net.to(getattr(torch, precision)).eval()
    if precision == "bfloat16_layers":
        _swap_layers(net.body, lambda m: CastLayer(m, torch.bfloat16))
    elif precision == "int8_dynamic_linear":
        _swap_layers(net.body, lambda m: int8_dynamic_linear(m) if isinstance(m, nn.Linear) else m)
    elif precision != "float32":
        raise ValueError(f"unknown precision {precision!r}")
    net.reset()  # the layer cache sees the swapped modules
    return net.eval()


def precisions_to_try() -> list[str]:
    """The lower precisions this CPU and torch can run (float16 only where oneDNN runs it natively)."""
    names = ["bfloat16", "bfloat16_layers", "int8_dynamic_linear"]
    return names + (["float16"] if fp16_supported() else [])


def decision_changes(reference, other, policy) -> dict:
    """Inputs whose decisions differ between two traces of the same inputs under ``policy``."""
    steps_ref, steps = policy.exit_steps(reference), policy.exit_steps(other)
    pred_ref, pred = policy.predict(reference), policy.predict(other)
    answers_ref, answers = reference.predictions(), other.predictions()  # (T, N)
    return {
        "inputs": int(steps_ref.numel()),
        "exit_step_changed": int((steps_ref != steps).sum()),
        "answer_at_exit_changed": int((pred_ref != pred).sum()),
        "answer_at_T_changed": int((answers_ref[-1] != answers[-1]).sum()),
        "answer_at_some_step_changed": int((answers_ref != answers).any(0).sum()),
        "mean_exit_step": {"float32": float(steps_ref.double().mean()), "other": float(steps.double().mean())},
        "max_abs_output_difference": float((reference.outputs - other.outputs).abs().max()),
    }
