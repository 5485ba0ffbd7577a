"""Run a NIR graph one time step per call, recurrent edges included.

A node's input is the sum of what its incoming edges carry, in the graph's edge order. Nodes that
feed back into each other (a strongly connected component of the graph: a neuron whose output
returns through a ``Linear``, a self-connected neuron) form a :class:`RecurrentBlock`; the rest run
once per step in a topological order. Inside a block the nodes run in the order a depth-first walk
from where the block's input enters reaches them, and every edge back to a node that has already
run this step carries what its source computed one step earlier: the one-step delay of a recurrent
connection. What such an edge carries at the first step is the reader's choice
(``recurrent_start``): ``"zero"`` (nothing; NIRTorch's executor, on which SpikingJelly, Sinabs and
Norse run graphs) or ``"bias"`` (the source layer applied to zeros, i.e. its bias: snnTorch's
``RLeaky`` / ``RSynaptic`` feed last step's spikes, zero at first, through their recurrent layer).

Chunks (``SpikingNetwork.step_chunk``): the layers outside the blocks run once on ``k * N`` inputs
as in any network; a block cannot (its input depends on its own output), so it steps through the
chunk inside and returns the k steps in the same layout. Either way the numbers are those of k
single steps.
"""

from __future__ import annotations

import copy
from collections import namedtuple

import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.neurons.modules import SpikingNeuron, StatefulModule

STARTS = ("zero", "bias")


def _call(name: str, op: nn.Module, x: torch.Tensor, single_step: bool = False) -> torch.Tensor:
    """``op(x)``, or ``op.forward_step(x)`` for a stateful node stepped one step at a time; a shape
    the node cannot take becomes a one-line error naming it."""
    try:
        return op.forward_step(x) if single_step and isinstance(op, StatefulModule) else op(x)
    except (RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SnnexitError(f"NIR node '{name}' ({type(op).__name__}) cannot take its input of shape "
                           f"{tuple(x.shape)}: {reason}") from None


def _sum(values: list[torch.Tensor]) -> torch.Tensor:
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


class RecurrentBlock(StatefulModule):
    """Nodes of a graph that feed back into each other, stepped together (module doc).

    ``forward`` takes the summed external input of each entry node and returns every node's
    output; ``self.state`` holds what each delayed edge carries into the next step.
    """

    def __init__(self, order: list[str], ops: dict[str, nn.Module], keys: dict[str, str],
                 inner: list[tuple[str, str]], start: str = "zero"):
        super().__init__()
        if start not in STARTS:
            raise SnnexitError(f"unknown recurrent start {start!r}; known: {', '.join(STARTS)}")
        self.order, self.keys, self.start = list(order), dict(keys), start
        self.ops = nn.ModuleDict({keys[n]: ops[n] for n in order})
        position = {n: i for i, n in enumerate(order)}
        self.delayed = [(u, v) for u, v in inner if position[v] <= position[u]]  # edges back in time
        self.forward_preds = {n: [u for u, v in inner if v == n and (u, v) not in self.delayed] for n in order}
        self._State = namedtuple("FeedbackState", [f"edge{i}" for i in range(len(self.delayed))])
        self.indicator_pass = False

    def indicator(self) -> "RecurrentBlock":
        """Its twin in the fan-out pass (:func:`snnexit.simulate.cost.fan_out`): one step in which
        each delayed edge also delivers what its source sent, so the loop's connections count."""
        twin = copy.deepcopy(self)
        twin.reset()
        twin.indicator_pass = True
        return twin

    def op(self, name: str) -> nn.Module:
        return self.ops[self.keys[name]]

    def _initial(self, source: str, rows: int, like: torch.Tensor) -> torch.Tensor | None:
        """What the delayed edge from ``source`` carries at the first step (None: nothing)."""
        op = self.op(source)
        if self.start == "bias" and isinstance(op, nn.Linear):
            return op(like.new_zeros(rows, op.in_features))
        return None

    def step(self, external: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One time step: ``external`` maps entry nodes to their summed outside input."""
        rows = next(iter(external.values())).shape[0]
        like = next(iter(external.values()))
        carried = {}
        for i, (u, v) in enumerate(self.delayed):
            value = self.state[i] if self.state is not None else self._initial(u, rows, like)
            if value is not None:
                carried.setdefault(v, []).append(value)
        values: dict[str, torch.Tensor] = {}
        for n in self.order:
            parts = ([external[n]] if n in external else []) + [values[u] for u in self.forward_preds[n]]
            parts += carried.get(n, [])
            if not parts:  # first step, nothing carried yet
                raise SnnexitError(f"NIR node '{n}' has no input at the first step of its recurrent loop")
            values[n] = _call(n, self.op(n), _sum(parts), single_step=True)
        self.state = self._State(*(values[u] for u, _ in self.delayed))
        if self.indicator_pass:
            for u, v in self.delayed:
                self.op(v)(values[u])
        return values

    def forward(self, external: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        k = self.chunk
        if k is None:
            return self.step(external)
        slices = {n: x.reshape(k, x.shape[0] // k, *x.shape[1:]) for n, x in external.items()}  # (k, N, ...)
        steps, counts = [], {n: [] for n in self.order if isinstance(self.op(n), SpikingNeuron)}
        for t in range(k):
            steps.append(self.step({n: x[t] for n, x in slices.items()}))
            for n in counts:
                counts[n].append(self.op(n).last_spike_count)
        for n, c in counts.items():
            self.op(n).chunk_spike_counts = torch.stack(c)  # (k, N)
        return {n: torch.cat([s[n] for s in steps]) for n in self.order}


def _components(names: list[str], succ: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan), each in the graph's node order."""
    index, low, stack, on_stack, comps, counter = {}, {}, [], set(), [], [0]

    def visit(n):
        index[n] = low[n] = counter[0]
        counter[0] += 1
        stack.append(n)
        on_stack.add(n)
        for m in succ[n]:
            if m not in index:
                visit(m)
                low[n] = min(low[n], low[m])
            elif m in on_stack:
                low[n] = min(low[n], index[m])
        if low[n] == index[n]:
            comp = []
            while True:
                m = stack.pop()
                on_stack.discard(m)
                comp.append(m)
                if m == n:
                    break
            comps.append(sorted(comp, key=names.index))

    for n in names:
        if n not in index:
            visit(n)
    return comps


def _block_order(comp: list[str], entries: list[str], succ: dict[str, list[str]]) -> list[str]:
    """The order a depth-first walk from the entry nodes reaches the nodes of ``comp`` (reverse postorder)."""
    inside, seen, post = set(comp), set(), []

    def walk(n):
        seen.add(n)
        for m in succ[n]:
            if m in inside and m not in seen:
                walk(m)
        post.append(n)

    for n in entries + comp:
        if n not in seen:
            walk(n)
    return post[::-1]


class GraphModule(nn.Module):
    """Executes a NIR graph for one time step per call (module doc). ``ops`` maps node names to
    their torch modules; ``edges`` are the graph's; ``start`` the recurrent start (module doc)."""

    def __init__(self, ops: dict[str, nn.Module], edges: list[tuple[str, str]], input_name: str,
                 output_name: str, start: str = "zero"):
        super().__init__()
        names = list(ops)
        succ = {n: [b for a, b in edges if a == n] for n in names}
        preds = {n: [a for a, b in edges if b == n] for n in names}
        needed = self._ancestors(output_name, preds)
        if input_name not in needed:
            raise SnnexitError(f"NIR graph: no path from the input node '{input_name}' to the output node "
                               f"'{output_name}'")
        names = [n for n in names if n in needed]
        succ = {n: [m for m in succ[n] if m in needed] for n in names}
        keys = self._keys(names)
        comps = _components(names, succ)
        unit_of = {n: i for i, comp in enumerate(comps) for n in comp}
        # one module per unit, registered in the order they run: spiking layers are listed in that order
        self.units = nn.ModuleDict()
        self.plan: list[tuple[str, str]] = []  # ("node", name) or ("block", key of the block in self.units)
        self.preds, self.input_name, self.output_name = preds, input_name, output_name
        for i in self._unit_order(comps, unit_of, succ, names):
            comp = comps[i]
            if len(comp) == 1 and comp[0] not in succ[comp[0]]:
                self.plan.append(("node", comp[0]))
                self.units[keys[comp[0]]] = ops[comp[0]]
                continue
            if input_name in comp or output_name in comp:
                raise SnnexitError(f"NIR graph: the input or output node is part of a recurrent loop ({comp})")
            entries = [n for n in comp if any(p not in comp for p in preds[n])]
            if not entries:
                raise SnnexitError(f"NIR graph: the recurrent loop {comp} receives no input")
            order = _block_order(comp, entries, succ)
            inner = [(a, b) for a, b in edges if a in comp and b in comp]
            key = f"loop_{len(self.blocks)}"
            self.plan.append(("block", key))
            self.units[key] = RecurrentBlock(order, ops, keys, inner, start)
        self.keys = keys

    @property
    def blocks(self) -> list["RecurrentBlock"]:
        return [m for m in self.units.values() if isinstance(m, RecurrentBlock)]

    @staticmethod
    def _ancestors(node: str, preds: dict[str, list[str]]) -> set[str]:
        seen, todo = {node}, [node]
        while todo:
            for p in preds[todo.pop()]:
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        return seen

    @staticmethod
    def _keys(names: list[str]) -> dict[str, str]:
        """Module names for the nodes ('.' is not allowed in them), unique."""
        keys, used = {}, set()
        for n in names:
            key = n.replace(".", "_") or "node"
            while key in used:
                key += "_"
            used.add(key)
            keys[n] = key
        return keys

    @staticmethod
    def _unit_order(comps, unit_of, succ, names) -> list[int]:
        """A topological order of the components (Kahn), ties broken by the graph's node order."""
        edges = {(unit_of[a], unit_of[b]) for a in names for b in succ[a] if unit_of[a] != unit_of[b]}
        indegree = {i: 0 for i in range(len(comps))}
        for _, b in edges:
            indegree[b] += 1
        first = {i: min(names.index(n) for n in comp) for i, comp in enumerate(comps)}
        ready, order = sorted((i for i, d in indegree.items() if d == 0), key=first.get), []
        while ready:
            i = ready.pop(0)
            order.append(i)
            for a, b in sorted(edges):
                if a == i:
                    indegree[b] -= 1
                    if indegree[b] == 0:
                        ready.append(b)
            ready.sort(key=first.get)
        return order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for kind, ref in self.plan:
            if kind == "node":
                if ref == self.input_name:
                    values[ref] = x
                    continue
                incoming = [values[p] for p in self.preds[ref] if p in values]
                if not incoming:
                    raise SnnexitError(f"NIR node '{ref}' has no input")
                values[ref] = _call(ref, self.units[self.keys[ref]], _sum(incoming))
            else:
                block = self.units[ref]
                external = {n: _sum([values[p] for p in self.preds[n] if p in values])
                            for n in block.order if any(p in values for p in self.preds[n])}
                values.update(block(external))
        return values[self.output_name]
