"""What a network's structure says about its cost, independent of any input's spikes: the mean
synaptic fan-out of each spiking layer (SynOps per spike) and the multiply-accumulates of the layers
that read the analog input (:mod:`snnexit.simulate.cost` turns them into SynOps and energy)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.neurons.modules import SpikingNeuron


# ---- fan-out from the network's structure -----------------------------------------------------

class _Probe(nn.Module):
    """Stands in for a spiking layer: sums what arrives, emits ones only for its own batch row."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index
        self.arrived: torch.Tensor | None = None  # (B,) connections arriving per source row
        self.neurons = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arrived = x.flatten(1).sum(1)  # a recurrent layer also receives its loop's connections: they add up
        self.arrived = arrived if self.arrived is None else self.arrived + arrived
        self.neurons = x[0].numel()
        out = torch.zeros_like(x)
        out[self.index] = 1
        return out


def _indicator_copy(body: nn.Module, is_spiking) -> tuple[nn.Module, list[_Probe]]:
    model = copy.deepcopy(body).eval()
    for m in model.modules():  # the user's hooks must not see this structural pass
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    probes: list[_Probe] = []

    def swap(parent: nn.Module, prefix: str):
        for name, child in list(parent.named_children()):
            path = f"{prefix}.{name}" if prefix else name
            new = None
            if hasattr(child, "indicator") and not is_spiking(child):  # a module that says what it connects
                new = child.indicator()
                swap(new, path)
            elif is_spiking(child):
                new = _Probe(len(probes))
                probes.append(new)
            elif isinstance(child, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                new = copy.deepcopy(child)
                with torch.no_grad():
                    new.weight.copy_((child.weight != 0).to(new.weight.dtype))
                    if new.bias is not None:
                        new.bias.zero_()
            elif isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Dropout, nn.Identity)):
                new = nn.Identity()
            elif isinstance(child, nn.AvgPool2d):
                new = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode,
                                   count_include_pad=child.count_include_pad, divisor_override=1)
            elif isinstance(child, nn.AdaptiveAvgPool2d):
                new = _SumAdaptivePool(child.output_size)
            elif any(True for _ in child.children()):
                swap(child, path)
            elif any(True for _ in child.parameters()) or any(True for _ in child.buffers()):
                raise SnnexitError(f"cannot compute the fan-out through module {type(child).__name__} at '{path}'")
            if new is not None:
                setattr(parent, name, new)

    swap(model, "")
    return model, probes


class _SumAdaptivePool(nn.Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        out = nn.functional.adaptive_avg_pool2d(x, self.output_size)
        h, w = x.shape[-2:]
        oh, ow = out.shape[-2:]
        if h % oh or w % ow:
            raise SnnexitError(f"fan-out through adaptive pooling {h}x{w} -> {oh}x{ow} needs divisible sizes")
        return out * (h // oh) * (w // ow)


@torch.no_grad()
def fan_out(snn, example: torch.Tensor) -> list[float]:
    """Mean synaptic fan-out of every spiking layer of ``snn`` (a ``SpikingNetwork``), in the order
    of ``snn.spiking_layers()``. ``example`` is one input ``(1, ...)`` or a batch (its first row
    is used) that fixes the shapes."""
    layers = snn.spiking_layers()
    L = len(layers)
    if L == 0:
        return []
    model, probes = _indicator_copy(snn.body, lambda m: isinstance(m, SpikingNeuron))
    model = model.to(device="cpu", dtype=torch.float64)
    x = torch.zeros((L,) + tuple(example.shape[1:]), dtype=torch.float64)
    out = model(x)  # row l: only layer l emits (ones); everything else is silent and bias-free
    arrived = out.flatten(1).sum(1) + sum(p.arrived for p in probes)  # (L,)
    return [float(arrived[i]) / probes[i].neurons for i in range(L)]


def structural_counts(snn, example: torch.Tensor) -> tuple[list[float] | None, float | None]:
    """``(fan_out(snn, example), input_macs(snn, example))``, None where the network has a layer
    they cannot count, remembered on ``snn`` for what they depend on: the input's shape, the
    modules and the parameters (their identity, shape and version: an in-place update of a weight
    changes its version, and so its zero pattern may have changed)."""
    key = (tuple(example.shape[1:]), tuple(id(m) for m in snn.modules()),
           tuple((id(p), tuple(p.shape), p._version) for p in snn.parameters()))
    memo = snn.__dict__.get("_structural_counts")
    if memo is not None and memo[0] == key:
        return memo[1]
    try:
        fan = fan_out(snn, example[:1].cpu())
    except SnnexitError:
        fan = None  # an exotic layer: spikes are still counted, SynOps are not
    try:
        macs = input_macs(snn, example[:1])
    except (SnnexitError, RuntimeError, TypeError):
        macs = None  # energy stays unknown
    counts = (fan, macs)
    snn.__dict__["_structural_counts"] = (key, counts)
    return counts


# ---- MACs of the layers that read the analog input ----------------------------------------------

@torch.no_grad()
def input_macs(snn, example: torch.Tensor) -> float:
    """Multiply-accumulates per input and step of the conv / linear layers that run before the
    first spiking layer (they read the analog input, not spikes), counted densely:
    ``outputs x C_in / groups x kernel size`` for a convolution, ``in x out`` for a linear layer.
    ``example`` fixes the shapes (its first row is used; the network's state is not touched)."""
    body = copy.deepcopy(snn.body).eval()
    for m in body.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    macs = [0.0]
    spiked = [False]

    class _Stop(Exception):
        pass

    def count(module, inputs, output):
        if spiked[0]:
            return
        if isinstance(module, nn.Linear):
            macs[0] += module.in_features * module.out_features * (output[0].numel() // module.out_features)
        else:  # a convolution
            per_output = module.in_channels // module.groups * int(torch.tensor(module.kernel_size).prod())
            macs[0] += output[0].numel() * per_output

    def first_spike(module, inputs):
        spiked[0] = True
        raise _Stop

    for m in body.modules():
        if isinstance(m, SpikingNeuron):
            m.reset()
            m.chunk = None
            m.register_forward_pre_hook(first_spike)
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            m.register_forward_hook(count)
    x = example[:1]
    param = next(body.parameters(), None)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype if x.is_floating_point() else x.dtype)
    try:
        body(x)
    except _Stop:
        pass
    return float(macs[0])
