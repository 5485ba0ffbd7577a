"""The network kinds of the conformance matrix (tests/test_conformance.py), generated from the registries.

Every registered converter, with every ANN activation it declares (``register_converter(...,
quantizers=...)``), and every registered trainable neuron (direct training) joins the matrix
without an edit to the matrix itself. A new *family* of networks (e.g. NIR graphs imported under
each library's semantics, from that registry) adds one function to :data:`KIND_FAMILIES`.

Each kind builds a small network (8 x 8 x 1 inputs, C = 5 classes) whose arithmetic is exact:
dyadic weights, thresholds and inputs, BatchNorm with power-of-four variances and eps = 0. Every
sum of a layer is then exact in float32 and float64 alike, whatever the batch size, the chunk of
steps or the summation order, so the offline trace and every engine must agree bit for bit and
any difference is a bug in a path, not rounding. (How often real float arithmetic differs
between the paths is measured separately: benchmarks/arithmetic_paths.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from snnexit.convert import CONVERTERS, convert
from snnexit.neurons.modules import NEURONS, SpikingNeuron
from snnexit.quant import QUANTIZERS
from snnexit.simulate import SpikingNetwork

C = 5  # classes
SIDE = 8  # inputs are (1, SIDE, SIDE)
GRID = 16  # inputs are multiples of 1 / GRID, weights and biases of 1 / (2 GRID)
WEIGHT_GAIN = 2.0  # weights ~ N(0, (gain^2 / fan-in)): layers that fire at fractional rates
DIRECT_GAIN = 3.0  # binary spikes (theta = 1): a larger gain keeps every layer firing


@dataclass(frozen=True)
class NetworkKind:
    """A kind of spiking network in the matrix: ``build(dtype, seed)`` gives an exact one."""

    name: str
    build: Callable[[torch.dtype, int], SpikingNetwork]
    temporal: bool = True  # does it take a sequence of frames (one per step)?


def dyadic(t: torch.Tensor, lo: float = -1.0, hi: float = 1.0, grid: int = GRID) -> torch.Tensor:
    return (t.clamp(lo, hi) * grid).round() / grid


@torch.no_grad()
def make_exact(net: nn.Module, seed: int, gain: float = WEIGHT_GAIN) -> nn.Module:
    """Put every number a layer sums over on the dyadic grid (in place; returns ``net``).

    Convolutions and linear layers: dyadic weights and biases; BatchNorm: eps = 0, variances in
    {1/4, 1, 4} (so 1/sqrt(var) is a power of two), dyadic means, scales and shifts; spiking
    neurons: dyadic thresholds >= 1/8 (a spike carries theta into the next sum)."""
    g = torch.Generator().manual_seed(seed)

    def draw(like: torch.Tensor, scale: float, limit: float = 2.0) -> torch.Tensor:
        values = torch.randn(like.shape, generator=g, dtype=torch.float64) * scale
        return dyadic(values, -limit, limit, grid=2 * GRID).to(like.dtype)

    for m in net.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.copy_(draw(m.weight, gain / fan_in ** 0.5))  # spike rates strictly between 0 and 1
            if m.bias is not None:
                m.bias.copy_(draw(m.bias, 0.125, 0.5))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eps = 0.0
            choice = torch.randint(0, 3, m.running_var.shape, generator=g)
            m.running_var.copy_(torch.tensor([0.25, 1.0, 4.0], dtype=m.running_var.dtype)[choice])
            m.running_mean.copy_(draw(m.running_mean, 0.25))
            if m.affine:
                m.weight.copy_(dyadic(1.0 + draw(m.weight, 0.25), 0.25, 2.0))
                m.bias.copy_(draw(m.bias, 0.25, 0.5))
        if isinstance(m, SpikingNeuron) and isinstance(getattr(m, "threshold", None), torch.Tensor):
            m.threshold.copy_(dyadic(m.threshold.double(), 1 / 8, 4.0, grid=8).to(m.threshold.dtype))
    return net


def small_ann(activation: Callable[[], nn.Module], seed: int) -> nn.Sequential:
    """conv-BN-act-pool, conv-act, linear-act, linear: every layer type the models use."""
    torch.manual_seed(seed)
    ann = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), activation(), nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), activation(),
        nn.Flatten(), nn.Linear(6 * (SIDE // 2) ** 2, 16), activation(), nn.Linear(16, C),
    )
    with torch.no_grad():  # spread the activation thresholds (QCFS lam, LSQ step, clip) over dyadic values
        for i, m in enumerate(ann.modules()):
            for name in ("threshold", "step", "max_val"):
                value = getattr(m, name, None)
                if isinstance(value, torch.Tensor):
                    value.fill_((0.75, 1.0, 1.5)[i % 3] / (3.0 if name == "step" else 1.0))
                elif name == "max_val" and isinstance(value, float):
                    m.max_val = (0.75, 1.0, 1.5)[i % 3]
    return make_exact(ann.eval(), seed)


def inputs(n: int, seed: int, T: int | None = None, dtype=torch.float64) -> torch.Tensor:
    """``n`` dyadic inputs in [0, 1]: static ``(n, 1, 8, 8)`` or, with ``T``, frames ``(n, T, 1, 8, 8)``."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, 1, SIDE, SIDE) if T is None else (n, T, 1, SIDE, SIDE)
    return dyadic(torch.rand(shape, generator=g, dtype=torch.float64), 0.0, 1.0).to(dtype)


def converted_kind(converter: str, quantizer: str) -> NetworkKind:
    info = CONVERTERS.get(converter)

    def build(dtype: torch.dtype, seed: int) -> SpikingNetwork:
        make = QUANTIZERS.get(quantizer)(levels=4, bits=2, init_threshold=1.0)
        ann = small_ann(make, seed).to(dtype)
        kwargs = {"calibration_data": inputs(64, seed + 100, dtype=dtype)} if info.needs_calibration else {}
        snn = convert(ann, converter, **kwargs)
        return make_exact(snn.to(dtype), seed).eval()

    return NetworkKind(f"{converter}-{quantizer}", build, temporal=info.temporal)


def direct_kind(neuron: str) -> NetworkKind:
    """A directly trained network (BPTT's neurons, binary spikes) of the small ANN's layout."""

    def build(dtype: torch.dtype, seed: int) -> SpikingNetwork:
        body = small_ann(NEURONS.get(neuron), seed)
        snn = SpikingNetwork(body, meta={"converter": "direct", "alpha": "T", "neuron": neuron})
        return make_exact(snn.to(dtype), seed, DIRECT_GAIN).eval()

    return NetworkKind(f"direct-{neuron}", build)


def converted_kinds() -> list[NetworkKind]:
    return [converted_kind(name, q) for name in CONVERTERS.names() for q in CONVERTERS.get(name).quantizers]


def direct_kinds() -> list[NetworkKind]:
    return [direct_kind(name) for name in NEURONS.names()]


# each family lists its kinds from its registry
KIND_FAMILIES: list[Callable[[], list[NetworkKind]]] = [converted_kinds, direct_kinds]


def network_kinds() -> list[NetworkKind]:
    return [kind for family in KIND_FAMILIES for kind in family()]
