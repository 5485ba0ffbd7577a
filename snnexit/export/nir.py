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
the same order); ``semantics="nir"`` runs the standard NIR semantics instead.

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

import numpy as np
import torch
import torch.fx
from torch import nn

from snnexit.convert.bn_fold import fold_batchnorm as shared_fold
from snnexit.errors import SnnexitError
from snnexit.io import atomic_write
from snnexit.neurons.functional import IFState, if_hard_reset_step, if_initial_state, if_soft_reset_step
from snnexit.neurons.modules import IFNeuron, SpikingNeuron
from snnexit.simulate.network import SpikingNetwork

FORMAT, VERSION = "snnexit-nir", 1
_BYPASS = (nn.Identity, nn.Dropout)
_ADD = {operator.add, torch.add, operator.iadd}


# ---- BatchNorm folding ------------------------------------------------------------------
def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every BatchNorm that directly follows a conv/linear in an
    ``nn.Sequential`` folded into it (:func:`snnexit.convert.bn_fold.fold_batchnorm`, in float64).
    Any BatchNorm left over is an error: NIR has no BatchNorm node."""
    module = shared_fold(module)
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


VARIANTS = ("exact", "hard_reset")


def _module_to_nir(nir, m: nn.Module, path: str, in_shape: tuple, out_shape: tuple, variant: str = "exact",
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
        if variant == "hard_reset":  # what a standard reader runs: the metadata says so too
            fire_at = float(np.float32(theta * threshold_scale))
            meta = {"snnexit_reset": "zero", "snnexit_v_init": 0.0, "snnexit_fire": ">=", "snnexit_threshold": fire_at}
        else:
            fire_at = theta
            meta = {"snnexit_reset": "subtract", "snnexit_v_init": float(m.v_init), "snnexit_fire": ">=",
                    "snnexit_threshold": theta}
        return [("", nir.IF(r=ones, v_threshold=ones * np.float32(fire_at), v_reset=np.zeros_like(ones),
                            metadata=meta)),
                ("_amp", nir.Scale(scale=ones * np.float32(theta)))]
    raise SnnexitError(f"cannot export module {type(m).__name__} at '{path}' to NIR: unsupported layer")


def to_nir(snn: SpikingNetwork, input_shape: tuple[int, ...] | None = None, variant: str = "exact",
           threshold_scale: float = 1.0):
    """The :class:`nir.NIRGraph` of ``snn`` (BatchNorm folded). ``input_shape`` is one input
    without the batch dimension, e.g. ``(1, 28, 28)``; default ``snn.meta["input_shape"]``.

    ``variant="exact"``: ``IF`` + ``Scale`` per spiking layer, the QCFS semantics in metadata
    (module doc). ``variant="hard_reset"``: a network that other NIR readers run as written
    (:mod:`snnexit.export.standard`): hard reset to 0, ``v(0) = 0``, firing threshold
    ``threshold_scale * theta``, each spike's amplitude theta folded into the next layer's weights.
    """
    import nir
    from torch.fx.passes.shape_prop import ShapeProp

    if variant not in VARIANTS:
        raise SnnexitError(f"Unknown NIR variant {variant!r}. Known: {', '.join(VARIANTS)}")
    if not (np.isfinite(threshold_scale) and threshold_scale > 0):
        raise SnnexitError(f"threshold scale must be a positive number, got {threshold_scale}")

    input_shape = input_shape or snn.meta.get("input_shape")
    if not input_shape:
        raise SnnexitError("to_nir needs the input shape (C, H, W) of one input")
    input_shape = tuple(int(s) for s in input_shape)
    body = fold_batchnorm(snn.body).to("cpu").eval()
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
            chain = _module_to_nir(nir, m, node.target, _shape_of(node.args[0]), _shape_of(node), variant,
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
    if variant == "hard_reset":
        from snnexit.export.standard import fold_scales

        graph = fold_scales(graph)
    return graph


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def export_nir(snn: SpikingNetwork, path, input_shape: tuple[int, ...] | None = None, variant: str = "exact",
               threshold_scale: float = 1.0):
    """Write ``snn`` as a NIR file (HDF5, written atomically); returns the graph (``variant``:
    see :func:`to_nir`)."""
    import nir

    graph = to_nir(snn, input_shape, variant, threshold_scale)
    path = Path(path)
    buf = io.BytesIO()
    nir.write(buf, graph)
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return graph


def read_nir(path):
    """Read a NIR file, with a clear error for a missing or malformed one."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise SnnexitError(f"{path}: no such NIR file")
    try:
        return nir.read(path)
    except Exception as exc:  # h5py, nir's own asserts and KeyErrors on foreign files
        raise SnnexitError(f"{path}: not a readable NIR file ({type(exc).__name__}: {str(exc)[:200]})") from None


# ---- NIR -> torch (our interpreter) -------------------------------------------------------
class NIRIFNeuron(SpikingNeuron):
    """A NIR ``IF`` node stepped with dt = 1; outputs binary spikes (a ``Scale`` node follows).

    ``semantics="nir"``: ``v(0) = 0``; ``v <- v + r x``; ``s = [v > v_threshold]``;
    ``v <- v_reset`` where ``s``. ``semantics="snnexit"``: the QCFS neuron from the node's
    snnexit metadata (soft reset, ``v(0) = v_init * theta``, fire on ``>=``), computed with the
    same step functions as :class:`snnexit.neurons.IFNeuron`; for the ``hard_reset`` export
    (metadata ``snnexit_reset = "zero"``): ``v(0) = 0``, fire on ``>=``, ``v <- v_reset``
    where ``s``, as SpikingJelly's ``IFNode`` computes it. The hard-reset step is
    :func:`snnexit.neurons.functional.if_hard_reset_step`.
    """

    def __init__(self, r, v_threshold, v_reset, semantics: str, v_init: float = 0.0, fire_ge: bool = False):
        super().__init__()
        self.register_buffer("r", torch.as_tensor(np.asarray(r, np.float32)))
        self.register_buffer("threshold", torch.as_tensor(np.asarray(v_threshold, np.float32)))
        self.register_buffer("v_reset", torch.as_tensor(np.asarray(v_reset, np.float32)))
        self.semantics, self.v_init, self.fire_ge = semantics, float(v_init), bool(fire_ge)

    def forward_step(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.r
        if self.semantics == "snnexit":
            if self.state is None:
                self.state = if_initial_state(x, self.threshold, self.v_init)
            s, self.state = if_soft_reset_step(x, self.state, self.threshold)
        else:
            if self.state is None:
                self.state = IFState(torch.zeros_like(x))
            s, self.state = if_hard_reset_step(x, self.state, self.threshold, self.v_reset, self.fire_ge)
        self._record(s)
        return s

    def extra_repr(self) -> str:
        return f"semantics={self.semantics!r}, shape={tuple(self.threshold.shape)}"


class _Scale(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, np.float32)))

    def forward(self, x):
        return x * self.scale


def _meta_value(meta: dict, key: str):
    v = meta.get(key)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
    return v.item() if isinstance(v, np.generic) else v


def _node_to_torch(nir, name: str, node, semantics: str) -> nn.Module:
    if isinstance(node, (nir.Input, nir.Output)):
        return nn.Identity()
    if isinstance(node, nir.Affine):
        w = torch.as_tensor(np.asarray(node.weight, np.float32))
        m = nn.Linear(w.shape[1], w.shape[0])
        m.weight.data.copy_(w)
        m.bias.data.copy_(torch.as_tensor(np.asarray(node.bias, np.float32)))
        return m
    if isinstance(node, nir.Linear):
        w = torch.as_tensor(np.asarray(node.weight, np.float32))
        m = nn.Linear(w.shape[1], w.shape[0], bias=False)
        m.weight.data.copy_(w)
        return m
    if isinstance(node, nir.Conv2d):
        w = torch.as_tensor(np.asarray(node.weight, np.float32))
        padding = node.padding if isinstance(node.padding, str) else tuple(int(p) for p in node.padding)
        m = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]), stride=tuple(int(s) for s in node.stride),
                      padding=padding, dilation=tuple(int(d) for d in node.dilation), groups=int(node.groups))
        m.weight.data.copy_(w)
        m.bias.data.copy_(torch.as_tensor(np.asarray(node.bias, np.float32)))
        return m
    if isinstance(node, nir.AvgPool2d):
        return nn.AvgPool2d(tuple(int(k) for k in node.kernel_size), tuple(int(s) for s in node.stride),
                            tuple(int(p) for p in node.padding))
    if isinstance(node, nir.Flatten):
        end = int(node.end_dim)
        return nn.Flatten(int(node.start_dim) + 1, end + 1 if end >= 0 else end)
    if isinstance(node, nir.Scale):
        return _Scale(node.scale)
    if isinstance(node, nir.IF):
        if semantics == "nir":
            return NIRIFNeuron(node.r, node.v_threshold, node.v_reset, "nir")
        meta = node.metadata or {}
        if _meta_value(meta, "snnexit_reset") == "zero" and _meta_value(meta, "snnexit_fire") == ">=":
            return NIRIFNeuron(node.r, node.v_threshold, node.v_reset, "nir", fire_ge=True)  # hard_reset export
        if _meta_value(meta, "snnexit_reset") != "subtract" or _meta_value(meta, "snnexit_fire") != ">=":
            raise SnnexitError(f"NIR node '{name}' lacks snnexit metadata (soft reset, fire on >=): it was not "
                               f"exported by snnexit; import it with semantics='nir'")
        return NIRIFNeuron(node.r, node.v_threshold, node.v_reset, "snnexit", _meta_value(meta, "snnexit_v_init"))
    raise SnnexitError(f"NIR node '{name}' of type {type(node).__name__} is not supported by snnexit's importer")


class NIRGraphModule(nn.Module):
    """Executes a feed-forward NIR graph for one time step per call (nodes in topological
    order; a node's input is the sum of its incoming edges, in edge order)."""

    def __init__(self, graph, semantics: str = "snnexit"):
        super().__init__()
        import nir

        if semantics not in ("snnexit", "nir"):
            raise SnnexitError(f"unknown NIR semantics {semantics!r}: use 'snnexit' or 'nir'")
        names = list(graph.nodes)
        preds: dict[str, list[str]] = {n: [] for n in names}
        for a, b in graph.edges:
            if a not in preds or b not in preds:
                raise SnnexitError(f"NIR edge ({a!r}, {b!r}) names an unknown node")
            preds[b].append(a)
        inputs = [n for n in names if isinstance(graph.nodes[n], nir.Input)]
        outputs = [n for n in names if isinstance(graph.nodes[n], nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise SnnexitError(f"NIR graph needs exactly one input and one output node, got {inputs} and {outputs}")
        order, done = [], set()
        visiting = set()

        def visit(n):
            if n in done:
                return
            if n in visiting:
                raise SnnexitError(f"NIR graph has a cycle through '{n}': recurrent graphs are not supported")
            visiting.add(n)
            for p in preds[n]:
                visit(p)
            visiting.discard(n)
            done.add(n)
            order.append(n)

        visit(outputs[0])
        self.order, self.preds, self.input, self.output = order, preds, inputs[0], outputs[0]
        self.ops = nn.ModuleDict()
        self._keys = {}
        for n in order:
            key = n.replace(".", "_") or "_"
            self._keys[n] = key
            self.ops[key] = _node_to_torch(nir, n, graph.nodes[n], semantics)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for n in self.order:
            if n == self.input:
                total = x
            else:
                incoming = self.preds[n]
                if not incoming:
                    raise SnnexitError(f"NIR node '{n}' has no input")
                total = values[incoming[0]]
                for p in incoming[1:]:
                    total = total + values[p]
            values[n] = self.ops[self._keys[n]](total)
        return values[self.output]


def import_nir(graph_or_path, semantics: str = "snnexit") -> SpikingNetwork:
    """A :class:`SpikingNetwork` that runs a NIR graph (or file) step by step.

    ``semantics="snnexit"`` reproduces an snnexit export exactly (from its metadata);
    ``semantics="nir"`` runs the standard NIR ``IF`` (hard reset, ``v(0) = 0``, fire on ``>``).
    """
    graph = read_nir(graph_or_path) if isinstance(graph_or_path, (str, Path)) else graph_or_path
    meta = {}
    raw = _meta_value(graph.metadata or {}, "snnexit_meta")
    if raw:
        try:
            meta = json.loads(raw)
        except (TypeError, json.JSONDecodeError):
            raise SnnexitError("NIR graph has corrupt snnexit_meta metadata") from None
    shape = _meta_value(graph.metadata or {}, "snnexit_input_shape")
    if shape:
        meta["input_shape"] = json.loads(shape)
    meta["nir_semantics"] = semantics
    return SpikingNetwork(NIRGraphModule(graph, semantics), meta=meta)
