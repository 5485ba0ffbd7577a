"""Import a NIR graph as a :class:`~snnexit.simulate.SpikingNetwork`: :func:`import_nir`.

The graph is read as one reader means it (``semantics``: :mod:`snnexit.nir.semantics`), with
its stateless nodes as :mod:`snnexit.nir.layers` and its neurons as the semantics builds them,
and run one step per call by :class:`snnexit.nir.graph.GraphModule` (recurrent edges included).
Subgraphs (snnTorch writes each recurrent layer as one) are inlined first. What cannot run is
refused before any simulation, with one line naming the node: a node type snnexit does not run
(``Delay``, ``Threshold``, ...), a neuron the reader does not define, parameters the reader
refuses, a shape that does not fit (one step on a zero input of the graph's input shape).

The network's output at each step is what the graph's ``Output`` node receives; a trace
accumulates it over steps (``Y[t]``: spike counts for a spiking output layer).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nir
import numpy as np
import torch

from snnexit.errors import SnnexitError
from snnexit.nir.export import read_nir
from snnexit.nir.graph import GraphModule
from snnexit.nir.layers import layer_module
from snnexit.nir.semantics import NEURON_NODES, Semantics, create_semantics, meta_value
from snnexit.simulate.network import SpikingNetwork

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten",
             "IF", "LIF", "CubaLIF", "LI", "I")


def inline_subgraphs(graph) -> tuple[dict, list[tuple[str, str]]]:
    """The nodes and edges of ``graph`` with every node that is itself a graph replaced by its
    nodes (named ``outer.inner``): edges into it enter its ``Input``, edges out of it leave its
    ``Output``, both of which pass their input on. Duplicate edges are dropped."""
    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    entry, exit_ = {}, {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            inner_nodes, inner_edges = inline_subgraphs(node)
            inputs = [n for n, v in node.nodes.items() if isinstance(v, nir.Input)]
            outputs = [n for n, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(inputs) != 1 or len(outputs) != 1:
                raise SnnexitError(f"NIR subgraph '{name}' needs one input and one output node, got {inputs} and "
                                   f"{outputs}")
            for n, v in inner_nodes.items():
                nodes[f"{name}.{n}"] = _Passthrough() if isinstance(v, (nir.Input, nir.Output)) else v
            edges += [(f"{name}.{a}", f"{name}.{b}") for a, b in inner_edges]
            entry[name], exit_[name] = f"{name}.{inputs[0]}", f"{name}.{outputs[0]}"
        else:
            nodes[name] = node
    for a, b in graph.edges:
        edge = (exit_.get(a, a), entry.get(b, b))
        if edge not in edges:
            edges.append(edge)
    return nodes, edges


class _Passthrough:
    """The input or output node of an inlined subgraph: passes its input on."""


def _ops(nodes: dict, semantics: Semantics, dt: float | None) -> dict:
    ops = {}
    for name, node in nodes.items():
        if isinstance(node, _Passthrough):
            ops[name] = torch.nn.Identity()
            continue
        module = layer_module(name, node)
        if module is None and isinstance(node, NEURON_NODES):
            if dt is None:
                raise SnnexitError(f"NIR node '{name}' ({type(node).__name__}) has dynamics in seconds and semantics "
                                   f"'{semantics.name}' has no default step: pass dt (seconds per step)")
            module = semantics.neuron(name, node, dt)
        if module is None:
            raise SnnexitError(f"NIR node '{name}' of type {type(node).__name__} cannot be run by snnexit "
                               f"(supported: {', '.join(SUPPORTED)})")
        ops[name] = module
    return ops


def _step(semantics: Semantics, dt: float | None) -> float | None:
    dt = semantics.dt if dt is None else dt
    if dt is not None and not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and math.isfinite(dt)
                               and dt > 0):
        raise SnnexitError(f"dt must be a positive number of seconds per step, got {dt!r}")
    return None if dt is None else float(dt)


def _declared_shape(graph, input_name: str) -> tuple[int, ...] | None:
    raw = meta_value(graph.metadata, "snnexit_input_shape")
    if raw:
        return tuple(json.loads(raw))
    shape = (graph.nodes[input_name].input_type or {}).get("input")
    if shape is None:
        return None
    shape = tuple(int(s) for s in np.asarray(shape).reshape(-1))
    return shape if shape and all(s > 0 for s in shape) else None


def input_shape(snn: SpikingNetwork, graph, input_name: str) -> tuple[int, ...] | None:
    """The shape of one input: snnexit's metadata, else the graph's input node, checked by one
    step on a zero input whose output must be one vector per input. Some writers (Norse, snnTorch
    without ``ignore_dims``) put the batch dimension into the input node's type: then the shape
    without its first dimension is the one that gives one vector per input."""
    declared = _declared_shape(graph, input_name)
    if declared is None:
        return None
    what = f"the input of shape {declared} (the graph's input node)"
    for shape in (declared, declared[1:]) if len(declared) > 1 else (declared,):
        out = _probe(snn, shape, what)
        if out.dim() == 2:
            return shape
    raise SnnexitError(f"NIR graph: one input of shape {declared} (its input node) gives an output of shape "
                       f"{tuple(out.shape[1:])}; the output must be a vector of class scores")


@torch.no_grad()
def _probe(snn: SpikingNetwork, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """The output of one step on a zero input of ``shape`` (state reset before and after)."""
    snn.eval().reset()
    try:
        return snn.step(torch.zeros((1, *shape)))
    except (RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SnnexitError(f"{what} cannot be run: {reason}") from None
    finally:
        snn.reset()


def import_nir(graph_or_path, semantics="snnexit", dt: float | None = None) -> SpikingNetwork:
    """A :class:`SpikingNetwork` that runs a NIR graph (or file) step by step as ``semantics``
    reads it (a registered name: ``nir``, ``snnexit``, ``snntorch``, ``sinabs``, ``norse``,
    ``spikingjelly``; or a :class:`~snnexit.nir.semantics.Semantics`). ``dt``: seconds per step
    (default: the reader's own; ``nir`` has none). The network's meta names the semantics, dt,
    the input shape (from the graph) and, for our exports, what snnexit wrote (alpha, temperature).
    """
    graph = read_nir(graph_or_path) if isinstance(graph_or_path, (str, Path)) else graph_or_path
    if not isinstance(graph, nir.NIRGraph):
        raise SnnexitError(f"expected a NIR graph, got {type(graph).__name__}")
    sem = create_semantics(semantics)
    dt = _step(sem, dt)
    nodes, edges = inline_subgraphs(graph)
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise SnnexitError(f"NIR edge ({a!r}, {b!r}) names an unknown node")
    inputs = [n for n in graph.nodes if isinstance(graph.nodes[n], nir.Input)]
    outputs = [n for n in graph.nodes if isinstance(graph.nodes[n], nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise SnnexitError(f"NIR graph needs exactly one input and one output node, got {inputs} and {outputs}")
    body = GraphModule(_ops(nodes, sem, dt), edges, inputs[0], outputs[0], sem.recurrent_start)
    if body.blocks and not sem.recurrent:
        loop = body.blocks[0].order
        raise SnnexitError(f"NIR nodes {', '.join(repr(n) for n in loop)} form a recurrent loop, which {sem.label} "
                           f"cannot run (semantics '{sem.name}'); import with semantics='nir' for the spec's meaning")
    meta = {}
    raw = meta_value(graph.metadata, "snnexit_meta")
    if raw:
        try:
            meta = json.loads(raw)
        except (TypeError, json.JSONDecodeError):
            raise SnnexitError("NIR graph has corrupt snnexit_meta metadata") from None
    meta.update(nir_semantics=sem.name, nir_dt=dt)
    snn = SpikingNetwork(body, meta=meta)
    shape = input_shape(snn, graph, inputs[0])
    if shape is not None:
        snn.meta["input_shape"] = list(shape)
    return snn
