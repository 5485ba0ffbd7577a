"""Export a converted SNN to NIR (the Neuromorphic Intermediate Representation) and back.

**The semantic gap.** NIR's ``IF`` node integrates ``v <- v + r * x``, fires on ``v > v_threshold``
and resets *hard* to ``v_reset``, from ``v(0) = 0``. A QCFS-converted neuron resets *softly*
(``v <- v - theta``, keeping the surplus), starts at ``v(0) = theta / 2`` and fires on
``v >= theta``. The surplus carried over by the soft reset is what makes the spike count match
the quantised ANN activation, so a NIR consumer that honours only the standard fields runs a
different, less accurate network (``benchmarks/nir_gap.py`` measures how much).

**Keeping the exact semantics.** Every exported ``IF`` node carries metadata
``snnexit_reset = "subtract"``, ``snnexit_v_init`` (the fraction of the threshold that ``v``
starts from, 0.5), ``snnexit_fire = ">="`` and ``snnexit_threshold`` (theta); the graph carries
``snnexit_meta`` (the SNN's meta as JSON: converter, alpha, temperature). :func:`import_nir`
with ``semantics="snnexit"`` reads them and reproduces our SNN bit for bit (same torch ops in
the same order); ``semantics="nir"`` runs the standard NIR semantics instead. (The importer is
:mod:`snnexit.nir.importer`; this module writes and reads the graphs.)

**For other readers** (:mod:`snnexit.nir.variants`): ``variant="hard_reset"`` is a network whose
standard reading (hard reset to 0, ``v(0) = 0``) is its meaning, for SpikingJelly and the spec;
``variant="subtract"`` keeps the subtractive reset, which snnTorch and Sinabs read into an ``IF``
node with ``r = 1``, and drops only what NIR cannot say (``v(0) = theta / 2``). Both fold each
spike's amplitude theta into the next layer's weights (no ``Scale`` node: those readers have none).

**Graph layout.** Each spiking layer becomes ``IF`` (binary spikes) followed by ``Scale``
(theta: the amplitude our spikes carry). BatchNorm is folded into the conv/linear before it
(NIR has no BatchNorm node); Dropout and Identity vanish; residual additions become several
edges into one node (NIR sums a node's inputs). The output node emits the per-step output of
the non-spiking last layer; accumulating it over time gives the trace's ``Y[t]``. Inputs are
presented at every step unchanged (direct encoding).
"""

from __future__ import annotations

import io
import json
import operator
from pathlib import Path

import nir
import numpy as np
import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from snnexit.convert.bn_fold import fold_batchnorm_pairs
from snnexit.errors import SnnexitError
from snnexit.io import atomic_write
from snnexit.neurons.corrected import CorrectedIF
from snnexit.neurons.modules import IFNeuron, SpikingNeuron
from snnexit.simulate.network import SpikingNetwork

FORMAT, VERSION = "snnexit-nir", 1
_BYPASS = (nn.Identity, nn.Dropout)
_ADD = {operator.add, torch.add, operator.iadd}


# ---- BatchNorm folding ------------------------------------------------------------------
def fold_all_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of ``module`` without BatchNorm: every BatchNorm that directly follows a conv/linear
    in an ``nn.Sequential`` is folded into it (:func:`snnexit.convert.bn_fold.fold_batchnorm_pairs`,
    in float64), and any other is an error: NIR has no BatchNorm node."""
    module = fold_batchnorm_pairs(module)
    for path, m in module.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise SnnexitError(f"cannot export BatchNorm at '{path}': it does not directly follow a conv or "
                               f"linear layer in a Sequential, so it cannot be folded (NIR has no BatchNorm)")
    return module


# ---- torch -> NIR -------------------------------------------------------------------------
class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SpikingNeuron) or super().is_leaf_module(m, qualname)


def _shape_of(node: torch.fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape[1:])  # without the batch dimension


def _arr(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


VARIANTS = ("exact", "hard_reset", "subtract")
POOLINGS = ("avg", "sum")


def _module_to_nir(m: nn.Module, path: str, in_shape: tuple, out_shape: tuple, variant: str = "exact",
                   threshold_scale: float = 1.0) -> list:
    """The NIR node(s) of one leaf module: a list of (suffix, node), chained in order."""
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise SnnexitError(f"cannot export {path}: padding_mode {m.padding_mode!r} (NIR pads with zeros)")
        bias = _arr(m.bias) if m.bias is not None else np.zeros(m.out_channels, np.float32)
        return [("", nir.Conv2d(input_shape=in_shape[1:], weight=_arr(m.weight), stride=_pair(m.stride),
                                padding=m.padding if isinstance(m.padding, str) else _pair(m.padding),
                                dilation=_pair(m.dilation), groups=m.groups, bias=bias))]
    if isinstance(m, nn.Linear):
        bias = _arr(m.bias) if m.bias is not None else np.zeros(m.out_features, np.float32)
        return [("", nir.Affine(weight=_arr(m.weight), bias=bias))]
    if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        if isinstance(m, nn.AdaptiveAvgPool2d):
            H, W = in_shape[1:]
            oh, ow = out_shape[1:]
            if H % oh or W % ow:
                raise SnnexitError(f"cannot export {path}: adaptive pooling {H}x{W} -> {oh}x{ow} is not a fixed window")
            kernel = stride = (H // oh, W // ow)
            padding = (0, 0)
        else:
            if m.ceil_mode or (m.divisor_override is not None) or (_pair(m.padding) != (0, 0) and not m.count_include_pad):
                raise SnnexitError(f"cannot export {path}: AvgPool2d with ceil_mode/divisor_override/count_include_pad=False")
            kernel, stride, padding = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
        return [("", nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding)))]
    if isinstance(m, nn.Flatten):
        rank = len(in_shape) + 1
        start, end = m.start_dim % rank, m.end_dim % rank
        if start == 0:
            raise SnnexitError(f"cannot export {path}: Flatten over the batch dimension")
        return [("", nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start - 1, end_dim=end - 1))]
    if isinstance(m, IFNeuron):
        theta = float(m.threshold)
        ones = np.ones(in_shape, np.float32)
        if variant in ("hard_reset", "subtract"):  # what another reader runs: the metadata says so too
            fire_at = float(np.float32(theta * threshold_scale))
            meta = {"snnexit_reset": "zero" if variant == "hard_reset" else "subtract", "snnexit_v_init": 0.0,
                    "snnexit_fire": ">=", "snnexit_threshold": fire_at}
        else:
            fire_at = theta
            meta = {"snnexit_reset": "subtract", "snnexit_v_init": float(m.v_init), "snnexit_fire": ">=",
                    "snnexit_threshold": theta}
        return [("", nir.IF(r=ones, v_threshold=ones * np.float32(fire_at), v_reset=np.zeros_like(ones),
                            metadata=meta)),
                ("_amp", nir.Scale(scale=ones * np.float32(theta)))]
    if isinstance(m, CorrectedIF):
        raise SnnexitError(f"cannot export {path} to NIR: a conversion fix gave it an input current per step or "
                           f"channel (snnexit.convert.fixes), which NIR cannot express; export the network converted "
                           f"without a fix")
    raise SnnexitError(f"cannot export module {type(m).__name__} at '{path}' to NIR: unsupported layer")


def to_nir(snn: SpikingNetwork, input_shape: tuple[int, ...] | None = None, variant: str = "exact",
           threshold_scale: float = 1.0, pooling: str = "avg"):
    """The :class:`nir.NIRGraph` of ``snn`` (BatchNorm folded). ``input_shape`` is one input
    without the batch dimension, e.g. ``(1, 28, 28)``; default ``snn.meta["input_shape"]``.

    ``variant="exact"``: ``IF`` + ``Scale`` per spiking layer, the QCFS semantics in metadata
    (module doc). ``variant="hard_reset"``: a network that other NIR readers run as written
    (:mod:`snnexit.nir.variants`): hard reset to 0, ``v(0) = 0``, firing threshold
    ``threshold_scale * theta``, each spike's amplitude theta folded into the next layer's weights
    (:func:`fold_scales`). ``variant="subtract"``: the same but resetting by subtraction (snnTorch
    and Sinabs read ``IF`` so). ``pooling="sum"``: average pools as ``SumPool2d`` with their
    ``1 / area`` in the next layer (:func:`sum_pooling`; Sinabs and Norse have no ``AvgPool2d``).
    """
    if variant not in VARIANTS:
        raise SnnexitError(f"Unknown NIR variant {variant!r}. Known: {', '.join(VARIANTS)}")
    if pooling not in POOLINGS:
        raise SnnexitError(f"Unknown NIR pooling {pooling!r}. Known: {', '.join(POOLINGS)}")
    if not (np.isfinite(threshold_scale) and threshold_scale > 0):
        raise SnnexitError(f"threshold scale must be a positive number, got {threshold_scale}")

    input_shape = input_shape or snn.meta.get("input_shape")
    if not input_shape:
        raise SnnexitError("to_nir needs the input shape (C, H, W) of one input")
    input_shape = tuple(int(s) for s in input_shape)
    body = fold_all_batchnorm(snn.body).to("cpu").eval()
    try:
        gm = torch.fx.GraphModule(body, _Tracer().trace(body))
    except Exception as exc:
        raise SnnexitError(f"cannot trace the SNN for NIR export ({type(exc).__name__}: {exc})") from None
    for m in body.modules():
        if isinstance(m, SpikingNeuron):
            m.reset()
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros((1, *input_shape)))
    for m in body.modules():
        if isinstance(m, SpikingNeuron):
            m.reset()

    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    sources: dict[torch.fx.Node, list[str]] = {}  # fx node -> the NIR nodes whose sum it is
    for node in gm.graph.nodes:
        inputs = [s for a in node.all_input_nodes for s in sources[a]]
        if len(set(inputs)) != len(inputs):
            raise SnnexitError(f"cannot export: '{node.name}' adds a tensor to itself")
        if node.op == "placeholder":
            nodes["input"] = nir.Input(input_type={"input": np.array(input_shape)})
            sources[node] = ["input"]
        elif node.op == "output":
            nodes["output"] = nir.Output(output_type={"output": np.array(_shape_of(node.args[0]))})
            edges += [(s, "output") for s in inputs]
        elif node.op == "call_function" and node.target in _ADD:
            sources[node] = inputs
        elif node.op == "call_method" and node.target in ("add", "__add__"):
            sources[node] = inputs
        elif node.op == "call_module":
            m = gm.get_submodule(node.target)
            if isinstance(m, _BYPASS) or (isinstance(m, nn.Sequential) and len(m) == 0):
                sources[node] = inputs
                continue
            chain = _module_to_nir(m, node.target, _shape_of(node.args[0]), _shape_of(node), variant,
                                   threshold_scale)
            prev = None
            for suffix, nir_node in chain:
                name = node.name + suffix
                nodes[name] = nir_node
                edges += [(s, name) for s in inputs] if prev is None else [(prev, name)]
                prev = name
            sources[node] = [prev]
        else:
            what = getattr(node.target, "__name__", node.target)
            raise SnnexitError(f"cannot export operation {node.op} {what!r} ('{node.name}') to NIR: only layers "
                               f"and additions are supported")
    meta = {"snnexit_format": FORMAT, "snnexit_version": VERSION,
            "snnexit_meta": json.dumps({k: v for k, v in snn.meta.items() if _jsonable(v)}),
            "snnexit_input_shape": json.dumps(list(input_shape)),
            "snnexit_output": "per-step output of the last layer; accumulate over steps for Y[t]",
            "snnexit_variant": variant}
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    if variant != "exact":
        graph = fold_scales(graph)
    return sum_pooling(graph) if pooling == "sum" else graph


def _links(edges):
    def succ(n):
        return [b for a, b in edges if a == n]

    def pred(n):
        return [a for a, b in edges if b == n]
    return succ, pred


def _next_weighted(nodes, edges, start: str, through=(nir.AvgPool2d, nir.Flatten)) -> str | None:
    """The ``Conv2d`` / ``Affine`` / ``Linear`` node that ``start`` feeds alone, through nodes of
    the types ``through`` that each have one input and one output (None: there is none)."""
    succ, pred = _links(edges)
    cur = start
    while len(succ(cur)) == 1 and len(pred(succ(cur)[0])) == 1:
        nxt = succ(cur)[0]
        if isinstance(nodes[nxt], through):
            cur = nxt
            continue
        return nxt if isinstance(nodes[nxt], (nir.Conv2d, nir.Affine, nir.Linear)) else None
    return None


def _scaled(node, factor: float):
    """The same weighted node with its weights (not its bias) times ``factor``."""
    weight = np.asarray(node.weight, np.float32) * np.float32(factor)
    if isinstance(node, nir.Conv2d):
        return nir.Conv2d(input_shape=node.input_shape, weight=weight, stride=node.stride, padding=node.padding,
                          dilation=node.dilation, groups=node.groups, bias=node.bias)
    if isinstance(node, nir.Affine):
        return nir.Affine(weight=weight, bias=node.bias)
    return nir.Linear(weight=weight)


def fold_scales(graph):
    """A copy of ``graph`` where each ``Scale`` node with one uniform factor is folded into the
    next ``Conv2d`` / ``Affine`` / ``Linear`` reached through ``AvgPool2d`` / ``Flatten`` nodes,
    each with a single input and a single output. Scales that cannot be folded (a residual
    addition in between) stay."""
    nodes, edges = dict(graph.nodes), list(graph.edges)
    for name in [n for n, node in nodes.items() if isinstance(node, nir.Scale)]:
        factors = np.unique(np.asarray(nodes[name].scale))
        _, pred = _links(edges)
        if factors.size != 1 or len(pred(name)) != 1:
            continue
        target = _next_weighted(nodes, edges, name)
        if target is None:
            continue
        nodes[target] = _scaled(nodes[target], float(factors[0]))
        succ, pred = _links(edges)
        (source,), after = pred(name), succ(name)
        edges = [e for e in edges if name not in e] + [(source, b) for b in after]
        del nodes[name]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata or {}))


def sum_pooling(graph):
    """A copy of ``graph`` where each ``AvgPool2d`` without padding is a ``SumPool2d`` and its
    ``1 / area`` is folded into the next ``Conv2d`` / ``Affine`` / ``Linear`` (through ``Flatten``):
    the same network for readers that have sum pooling only (Sinabs, Norse). An average pool that
    does not feed such a layer alone stays."""
    nodes, edges = dict(graph.nodes), list(graph.edges)
    for name in [n for n, node in nodes.items() if isinstance(node, nir.AvgPool2d)]:
        node = nodes[name]
        if np.any(np.asarray(node.padding) != 0):
            continue
        target = _next_weighted(nodes, edges, name, through=(nir.Flatten,))
        if target is None:
            continue
        kernel = np.broadcast_to(np.asarray(node.kernel_size).reshape(-1), (2,))
        nodes[target] = _scaled(nodes[target], 1.0 / float(kernel[0] * kernel[1]))
        nodes[name] = nir.SumPool2d(kernel_size=np.asarray(kernel), stride=np.asarray(node.stride),
                                    padding=np.asarray(node.padding))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata or {}))


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def export_nir(snn: SpikingNetwork, path, input_shape: tuple[int, ...] | None = None, variant: str = "exact",
               threshold_scale: float = 1.0, pooling: str = "avg"):
    """Write ``snn`` as a NIR file (HDF5, written atomically); returns the graph (``variant``,
    ``pooling``: see :func:`to_nir`)."""
    graph = to_nir(snn, input_shape, variant, threshold_scale, pooling)
    path = Path(path)
    buf = io.BytesIO()
    nir.write(buf, graph)
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return graph


def read_nir(path):
    """Read a NIR file, with a clear error for a missing or malformed one."""
    path = Path(path)
    if not path.is_file():
        raise SnnexitError(f"{path}: no such NIR file")
    try:
        return nir.read(path)
    except Exception as exc:  # h5py, nir's own asserts and KeyErrors on foreign files
        raise SnnexitError(f"{path}: not a readable NIR file ({type(exc).__name__}: {str(exc)[:200]})") from None
