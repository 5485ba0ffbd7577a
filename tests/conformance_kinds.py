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

import nir
import numpy as np
import torch
from torch import nn

from snnexit.convert import CONVERTERS, convert
from snnexit.convert.fixes import CONVERSION_FIXES, apply_conversion_fix
from snnexit.neurons.corrected import CorrectedIF
from snnexit.nir import SEMANTICS, import_nir
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
    default: bool = True  # in the default suite's matrix (False: only in the slow one, which runs every kind)


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


def converted_network(converter: str, quantizer: str, dtype: torch.dtype, seed: int) -> tuple[nn.Module, SpikingNetwork]:
    """The small exact ANN with ``quantizer`` activations and its exact SNN under ``converter``."""
    make = QUANTIZERS.get(quantizer)(levels=4, bits=2, init_threshold=1.0)
    ann = small_ann(make, seed).to(dtype)
    kwargs = {"calibration_data": inputs(64, seed + 100, dtype=dtype)} if CONVERTERS.get(converter).needs_calibration \
        else {}
    snn = convert(ann, converter, **kwargs)
    return ann, make_exact(snn.to(dtype), seed).eval()


def converted_kind(converter: str, quantizer: str) -> NetworkKind:
    build = lambda dtype, seed: converted_network(converter, quantizer, dtype, seed)[1]  # noqa: E731
    return NetworkKind(f"{converter}-{quantizer}", build, temporal=CONVERTERS.get(converter).temporal)


FIX_HORIZON = 5  # steps a fix is fitted over: fewer than the matrix's T, so its last step's current stays on after
# the small ANN of seed 0 answers one class for every input: a fix that makes the SNN follow it from step 1 leaves
# answers that never change over time (test_the_matrix_is_not_trivial); seed 3 is the first that answers 3 classes
FIX_SEED_OFFSET = 3


@torch.no_grad()
def make_fix_exact(snn: SpikingNetwork) -> SpikingNetwork:
    """Put a fix's corrections on a dyadic grid: currents on multiples of 1/1024, initial potentials
    on multiples of theta / 64 (in place; returns ``snn``). Every sum a layer adds them to is a
    multiple of 1/512 far below 2^14, so it stays exact in float32."""
    for m in snn.modules():
        if isinstance(m, CorrectedIF):
            m.current.copy_(dyadic(m.current.double(), -4.0, 4.0, grid=1024).to(m.current.dtype))
            m.v_start.copy_(dyadic(m.v_start.double(), -1.0, 2.0, grid=64).to(m.v_start.dtype))
    return snn


def fixed_kind(fix: str) -> NetworkKind:
    """A converted network corrected by the conversion fix ``fix``, fitted on the kind's own
    inputs: one converter per fix (the first it declares) keeps the default matrix fast."""
    converter = CONVERSION_FIXES.get(fix).converters[0]
    quantizer = CONVERTERS.get(converter).quantizers[0]

    def build(dtype: torch.dtype, seed: int) -> SpikingNetwork:
        ann, snn = converted_network(converter, quantizer, dtype, seed + FIX_SEED_OFFSET)
        apply_conversion_fix(snn, ann, fix, inputs(64, seed + 200, dtype=dtype), FIX_HORIZON)
        return make_fix_exact(snn).eval()

    # a fix with behaviour per step is what chunk plans can break: in the default matrix; a constant
    # current is a bias, and runs in the slow one
    return NetworkKind(f"{converter}-{quantizer}+{fix}", build, temporal=CONVERTERS.get(converter).temporal,
                       default=CONVERSION_FIXES.get(fix).per_step)


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


def fixed_kinds() -> list[NetworkKind]:
    return [fixed_kind(name) for name in CONVERSION_FIXES.names()]


def _nir_neurons(semantics: str, shape: tuple, layer: int):
    """A neuron node the reader ``semantics`` reads (its own kinds: IF, LIF, CubaLIF, LI), per layer
    (0, 1; 2: the readout, None for none), with time constants of a few steps in its own dt."""
    full = lambda v: np.full(shape, v, np.float32)  # noqa: E731
    dt = {"nir": 1.0, "snnexit": 1.0, "sinabs": 1.0, "norse": 1e-3, "snntorch": 1e-4, "spikingjelly": 1e-4}[semantics]
    lif = nir.LIF(tau=full(4 * dt), r=full(4.0 if semantics == "snntorch" else 1.0), v_leak=full(0), v_threshold=full(0.75),
                  v_reset=full(0))
    cuba = nir.CubaLIF(tau_syn=full(2 * dt), tau_mem=full(4 * dt), v_leak=full(0), v_threshold=full(1.0),
                       r=full(1.0 if semantics == "norse" else 4.0), w_in=full(1.0 if semantics == "norse" else 2.0))
    if_ = nir.IF(r=full(1 / dt), v_threshold=full(0.75 + 0.25 * layer), v_reset=full(0),
                 metadata={"snnexit_reset": "subtract", "snnexit_v_init": 0.5, "snnexit_fire": ">="})
    li = nir.LI(tau=full(4 * dt), r=full(1), v_leak=full(0))
    table = {"nir": (lif, cuba, li), "snnexit": (if_, if_, None), "snntorch": (lif, cuba, None),
             "sinabs": (if_, lif, li), "norse": (lif, cuba, li), "spikingjelly": (if_, cuba, None)}
    return table[semantics][layer]


def nir_graph(semantics: str, recurrent: bool, seed: int) -> "nir.NIRGraph":
    """conv - neuron - pool - flatten - affine - neuron (fed back through an Affine if
    ``recurrent``) - affine [- leaky integrator]: dyadic weights, the reader's own neurons."""
    g = torch.Generator().manual_seed(seed)

    def w(*shape, gain=WEIGHT_GAIN):
        values = torch.randn(shape, generator=g, dtype=torch.float64) * gain / float(np.prod(shape[1:])) ** 0.5
        return dyadic(values, -2.0, 2.0, grid=2 * GRID).numpy().astype(np.float32)

    pool = nir.SumPool2d if semantics in ("sinabs", "norse") else nir.AvgPool2d
    nodes = {"input": nir.Input(input_type={"input": np.array([1, SIDE, SIDE])}),
             "conv": nir.Conv2d(input_shape=(SIDE, SIDE), weight=w(4, 1, 3, 3), stride=1, padding=1, dilation=1,
                                groups=1, bias=w(4, gain=0.5)),
             "n0": _nir_neurons(semantics, (4, SIDE, SIDE), 0),
             "pool": pool(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([4, SIDE // 2, SIDE // 2])}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(w(16, 4 * (SIDE // 2) ** 2, gain=DIRECT_GAIN), w(16, gain=0.5)),
             "n1": _nir_neurons(semantics, (16,), 1), "out": nir.Affine(w(C, 16), w(C, gain=0.5)),
             "output": nir.Output(output_type={"output": np.array([C])})}
    edges = [("input", "conv"), ("conv", "n0"), ("n0", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "n1"),
             ("n1", "out")]
    readout = _nir_neurons(semantics, (C,), 2)
    edges += [("out", "readout"), ("readout", "output")] if readout is not None else [("out", "output")]
    if readout is not None:
        nodes["readout"] = readout
    if recurrent:
        nodes["rec"] = nir.Affine(w(16, 16, gain=1.0), w(16, gain=0.25))
        edges += [("n1", "rec"), ("rec", "n1")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


# the imported kinds of the default suite: one feed-forward graph, one recurrent loop, one reader
# whose neurons fire several spikes per step (every reader and loop runs in the slow matrix)
DEFAULT_NIR = ("nir-snntorch", "nir-norse-recurrent", "nir-sinabs")


def nir_kind(semantics: str, recurrent: bool) -> NetworkKind:
    def build(dtype: torch.dtype, seed: int) -> SpikingNetwork:
        dt = 1.0 if semantics == "nir" else None  # the spec has no step of its own
        return import_nir(nir_graph(semantics, recurrent, seed), semantics, dt=dt).to(dtype).eval()

    name = f"nir-{semantics}{'-recurrent' if recurrent else ''}"
    return NetworkKind(name, build, default=name in DEFAULT_NIR)


def nir_kinds() -> list[NetworkKind]:
    """NIR graphs imported under every registered reader's semantics, feed-forward and (where the
    reader runs loops) recurrent."""
    return [nir_kind(name, recurrent) for name in SEMANTICS.names()
            for recurrent in ((False, True) if SEMANTICS.create(name).recurrent else (False,))]


# each family lists its kinds from its registry
KIND_FAMILIES: list[Callable[[], list[NetworkKind]]] = [converted_kinds, direct_kinds, fixed_kinds, nir_kinds]


def network_kinds() -> list[NetworkKind]:
    return [kind for family in KIND_FAMILIES for kind in family()]
