"""Less arithmetic per step: each spike-fed layer dense, spike-driven, in bfloat16/float16 and int8.

For every convolution and linear layer that receives spikes (recorded by
:class:`~snnexit.experiments.layer_inputs.LayerInputRecorder` on real test inputs), the
variants of the layer are timed on the same kept inputs, as the median of interleaved repeats
(the variants take turns in a rotating order), and reported as ratios to the dense float32 layer
(the arithmetic the engines run, in the network's memory layout):

* ``sparse_*``: the spike-driven formulations of :mod:`snnexit.experiments.sparse_layers`;
* ``bfloat16`` / ``float16``: a copy of the layer in that dtype on inputs already in it (as in a
  network that runs in it throughout); float16 only where oneDNN runs it natively on this CPU;
* ``int8_dynamic``: torch.ao's dynamically quantized Linear / Conv2d (int8 weights per tensor,
  the input quantized on every call);
* ``int8_int_mm`` (linear layers whose input is an integer multiple, at most 127, of its smallest
  non-zero value, as spikes and pooled spikes are): ``torch._int_mm`` of the int8 input counts
  with per-output-channel int8 weights, exact int32 sums, then scaled.

Each variant's error is measured on the same inputs against the dense float32 output and a
float64 truth; ``float32_rounding_only`` says its error is within 4x the dense layer's own.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings

import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as quantized_dynamic

from snnexit.experiments.layer_inputs import LayerInputs
from snnexit.experiments.precision import bf16_supported, fp16_supported, int8_dynamic_linear
from snnexit.experiments.sparse_layers import sparse_formulations
from snnexit.runtime.threads import num_threads


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x.contiguous()


def _dtype_layer(layer: nn.Module, dtype: torch.dtype, channels_last: bool) -> nn.Module:
    twin = copy.deepcopy(layer).to(dtype)
    return twin.to(memory_format=torch.channels_last) if channels_last and isinstance(twin, nn.Conv2d) else twin


def int8_dynamic_conv(conv: nn.Conv2d) -> nn.Module:
    conv = copy.deepcopy(conv).float().to(memory_format=torch.contiguous_format)
    conv.qconfig = torch.ao.quantization.default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantized_dynamic.Conv2d.from_float(conv)


def integer_unit(samples: list[torch.Tensor]) -> float | None:
    """The smallest non-zero input value if every input is an integer multiple of it in [0, 127]."""
    nonzero = torch.cat([s.reshape(-1) for s in samples])
    nonzero = nonzero[nonzero != 0]
    if nonzero.numel() == 0 or bool((nonzero < 0).any()):
        return None
    unit = float(nonzero.min())
    counts = nonzero.double() / unit
    return unit if bool((counts - counts.round()).abs().max() < 1e-6) and float(counts.max()) <= 127 else None


class IntMMLinear:
    """``linear(x)`` for inputs that are integer multiples of ``unit``: int8 counts times int8
    per-output-channel weights, summed exactly in int32 by ``torch._int_mm``, then scaled."""

    def __init__(self, linear: nn.Linear, unit: float):
        w = linear.weight.detach().float()
        self.scale = w.abs().amax(1).clamp_min(1e-12) / 127  # (O,)
        self.weight_t = (w / self.scale.unsqueeze(1)).round().clamp(-127, 127).to(torch.int8).t().contiguous()
        self.unit, self.bias = unit, linear.bias

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return (x / self.unit).round().to(torch.int8)

    def __call__(self, counts: torch.Tensor) -> torch.Tensor:
        y = torch._int_mm(counts, self.weight_t).float() * (self.scale * self.unit)
        return y if self.bias is None else y + self.bias


def layer_variants(record: LayerInputs, channels_last: bool) -> tuple[dict, dict]:
    """``(variants, notes)``: name -> (call, its inputs prepared) for the layer of ``record``;
    notes say why a variant is absent."""
    layer, samples = record.module, record.samples
    dense_layer = _dtype_layer(layer, torch.float32, channels_last)
    fp32 = [_layout(s, channels_last) for s in samples]
    variants = {"dense": (dense_layer, fp32)}
    notes = {}
    try:
        for name, f in sparse_formulations(layer).items():
            variants[name] = (f, fp32)
    except ValueError as exc:
        notes["sparse"] = str(exc)
    for dtype, supported in ((torch.bfloat16, bf16_supported()), (torch.float16, fp16_supported())):
        name = str(dtype).removeprefix("torch.")
        if supported:
            variants[name] = (_dtype_layer(layer, dtype, channels_last), [s.to(dtype) for s in fp32])
        else:
            notes[name] = "oneDNN does not run it natively on this CPU (torch.ops.mkldnn._is_mkldnn_*_supported)"
    if isinstance(layer, nn.Linear):
        variants["int8_dynamic"] = (int8_dynamic_linear(layer), fp32)
        unit = integer_unit(samples)
        if unit is not None and hasattr(torch, "_int_mm"):
            mm = IntMMLinear(layer, unit)
            variants["int8_int_mm"] = (mm, [mm.prepare(s) for s in samples])
        else:
            notes["int8_int_mm"] = "inputs are not small integer multiples of one value" if unit is None \
                else "torch._int_mm is absent"
    else:
        variants["int8_dynamic"] = (int8_dynamic_conv(layer), [s.contiguous() for s in samples])
        notes["int8_int_mm"] = ("no int8 convolution with exact int32 sums on float inputs in torch on CPU "
                                "(torch._int_mm is a matrix product; a conv would need our own im2col)")
    return variants, notes


@torch.no_grad()
def errors(record: LayerInputs, variants: dict) -> dict:
    """Per variant: max |y - dense float32|, max |y - float64|, and whether its error is within 4x the dense one."""
    truth_layer = copy.deepcopy(record.module).double()
    dense, dense_inputs = variants["dense"]
    out = {}
    dense_err = max(float((dense(x).double() - truth_layer(s.double())).abs().max())
                    for x, s in zip(dense_inputs, record.samples))
    for name, (f, inputs) in variants.items():
        vs_dense = vs_truth = 0.0
        for s, x, xd in zip(record.samples, inputs, dense_inputs):
            y = f(x).double()
            vs_dense = max(vs_dense, float((y - dense(xd).double()).abs().max()))
            vs_truth = max(vs_truth, float((y - truth_layer(s.double())).abs().max()))
        out[name] = {"max_abs_diff_vs_dense": vs_dense, "max_abs_err_vs_float64": vs_truth,
                     "float32_rounding_only": vs_truth <= 4 * dense_err + 1e-6}
    out["dense"]["max_abs_err_vs_float64"] = dense_err
    return out


@torch.no_grad()
def time_interleaved(calls: dict, repeats: int) -> dict:
    """Median seconds of each ``name -> f()`` over ``repeats`` rounds, the order rotating each round."""
    names = list(calls)
    for name in names:
        calls[name]()  # warm-up (oneDNN primitives, quantization packs)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            started = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(v) for name, v in times.items()}


def time_layer(record: LayerInputs, variants: dict, batch: int, repeats: int, threads: int) -> dict:
    """Median seconds per layer call at ``batch`` rows (each kept step's input once per repeat)."""
    def call(f, inputs):
        rows = [x[:batch] for x in inputs]
        return lambda: [f(x) for x in rows]

    with num_threads(threads):
        med = time_interleaved({name: call(f, inputs) for name, (f, inputs) in variants.items()}, repeats)
    return {name: s / len(record.samples) for name, s in med.items()}


def best_choice(ratios: dict, exact: dict, exact_only: bool) -> tuple[str, float]:
    """The variant with the lowest ratio to dense (``exact_only``: among those with float32 rounding only)."""
    allowed = {n: r for n, r in ratios.items() if not exact_only or exact[n]["float32_rounding_only"]}
    name = min(allowed, key=allowed.get)
    return name, allowed[name]
