"""Run a NIR graph in torch: :func:`import_nir` (our interpreter of the graphs that
:mod:`snnexit.export.nir` writes, and of other NIR feed-forward graphs).

``semantics="snnexit"`` reads the snnexit metadata of each ``IF`` node and reproduces the
exported SNN bit for bit; ``semantics="nir"`` runs NIR's standard ``IF`` (hard reset,
``v(0) = 0``, fire on ``>``). See :mod:`snnexit.export.nir` for the semantic gap between them.
"""

from __future__ import annotations

import json
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.export.nir import read_nir
from snnexit.neurons.functional import IFState, if_hard_reset_step, if_initial_state, if_soft_reset_step
from snnexit.neurons.modules import SpikingNeuron
from snnexit.simulate.network import SpikingNetwork


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


def _node_to_torch(name: str, node, semantics: str) -> nn.Module:
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
            self.ops[key] = _node_to_torch(n, graph.nodes[n], semantics)

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
