"""Subnormal floats: count them in a network's numbers, and switch the CPU's flushing of them.

A float whose exponent field is all zeros and whose mantissa is not is *subnormal* (float32:
0 < |x| < 2**-126). x86 CPUs compute with such numbers in microcode, tens of times slower than
with normal ones, so a network whose activations shrink into that range can take many times
longer per step. ``torch.set_flush_denormal(True)`` sets the FTZ/DAZ bits of the calling
thread's MXCSR register: results that would be subnormal become zero and subnormal inputs read
as zero, which changes arithmetic (a sum of such numbers is zero instead of tiny).

* :func:`subnormal_count` counts from the bit pattern, so it sees subnormals even while flushing
  is on (where ``x != 0`` would read a subnormal as zero);
* :class:`SubnormalCensus` counts them per spiking layer in the input currents, membrane
  potentials (every float tensor of the neuron's state) and outputs of every step, and
  :func:`module_census` in every leaf module's output of an ANN forward;
* :func:`flush_denormal_active` and :func:`flush_denormal` read and set flushing, restoring the
  caller's setting (torch offers no getter: the state is read from a product whose exact
  result is subnormal). The setting is per thread: torch's worker threads keep the flags they
  started with (:func:`flushed_share` measures how much of a parallel op is flushed), so with
  more than one thread flushing reaches only the caller's share of an operation, and a worker
  started while the caller flushed keeps flushing after the caller stops.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import torch
from torch import nn

from snnexit.neurons.modules import SpikingNeuron

# dtype -> (integer view, exponent mask, mantissa mask): an IEEE value is subnormal when its
# exponent bits are zero and its mantissa bits are not
_LAYOUT = {
    torch.float16: (torch.int16, 0x7C00, 0x03FF),
    torch.bfloat16: (torch.int16, 0x7F80, 0x007F),
    torch.float32: (torch.int32, 0x7F800000, 0x007FFFFF),
    torch.float64: (torch.int64, 0x7FF0000000000000, 0x000FFFFFFFFFFFFF),
}


def subnormal_count(t: torch.Tensor) -> int:
    """How many entries of ``t`` are subnormal floats (0 for other dtypes), read from the bits."""
    layout = _LAYOUT.get(t.dtype)
    if layout is None or t.numel() == 0:
        return 0
    view, exponent, mantissa = layout
    bits = t.detach().contiguous().view(view)
    return int(((bits & exponent) == 0).logical_and_((bits & mantissa) != 0).sum())


def flush_denormal_active() -> bool:
    """Whether the calling thread flushes subnormal results to zero: the smallest normal float32
    halved is subnormal, and reads as zero only under flushing."""
    tiny = torch.tensor(torch.finfo(torch.float32).tiny)
    return bool((tiny * 0.5).item() == 0.0)


@contextlib.contextmanager
def flush_denormal(on: bool):
    """Run the block with subnormal flushing ``on`` (or off) on the calling thread, restoring the
    caller's setting after. Yields whether the setting took (False where the CPU cannot flush)."""
    before = flush_denormal_active()
    took = bool(torch.set_flush_denormal(bool(on))) or not on
    try:
        yield took and flush_denormal_active() == bool(on)
    finally:
        torch.set_flush_denormal(before)


def flushed_share(threads: int, n: int = 1 << 20) -> float:
    """Share of a ``threads``-way parallel product whose subnormal results come out zero when the
    calling thread flushes: 1.0 when every thread flushes, about 1/threads when only the caller does.

    torch's worker threads keep the flags they were created with (a worker started while the
    caller flushed goes on flushing after the caller stops), so the workers are started first,
    with flushing off: this measures a pool that existed before flushing was switched on."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tiny = torch.full((n,), torch.finfo(torch.float32).tiny)
        with flush_denormal(False):
            tiny * 0.25  # starts the workers, if not yet started, without flushing
        with flush_denormal(True):
            return float((tiny * 0.25 == 0).double().mean())  # exactly subnormal unless flushed
    finally:
        torch.set_num_threads(before)


class SubnormalCensus:
    """Subnormal counts per spiking layer of a network while it runs step by step.

    ``with SubnormalCensus(snn) as census: ...`` hooks every spiking layer; after each of its
    forward calls the input current, every float tensor of its state (the membrane potential)
    and its output are counted. ``census.layers`` maps a layer's name to
    ``{"input": k, "membrane": k, "output": k, "values": n}`` (``values``: input entries seen,
    the membrane and output have as many)."""

    def __init__(self, snn: nn.Module):
        self.snn = snn
        self.layers: dict[str, dict[str, int]] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def count(module, args, output):
            c = self.layers.setdefault(name, defaultdict(int))
            c["input"] += subnormal_count(args[0])
            state = getattr(module, "state", None)
            c["membrane"] += sum(subnormal_count(s) for s in (state or ()) if isinstance(s, torch.Tensor))
            c["output"] += subnormal_count(output)
            c["values"] += args[0].numel()
        return count

    def __enter__(self) -> "SubnormalCensus":
        body = getattr(self.snn, "body", self.snn)
        for name, m in body.named_modules():
            if isinstance(m, SpikingNeuron):
                self.layers[name] = defaultdict(int)
                self._handles.append(m.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def summary(self) -> dict:
        """``{"per_layer": {name: counts}, "total": counts}`` as plain ints."""
        per = {name: dict(c) for name, c in self.layers.items()}
        keys = ("input", "membrane", "output", "values")
        return {"per_layer": per, "total": {k: sum(c.get(k, 0) for c in per.values()) for k in keys}}


@torch.no_grad()
def module_census(model: nn.Module, x: torch.Tensor) -> dict:
    """Subnormal outputs of every leaf module of ``model`` in one forward pass on ``x``:
    ``{"per_module": {name: {"output": k, "values": n}}, "total": {...}}`` (the input counted as
    ``"input"``)."""
    per: dict[str, dict[str, int]] = {}
    handles = []
    for name, m in model.named_modules():
        if name and not any(True for _ in m.children()):
            def count(module, args, output, name=name):
                c = per.setdefault(name, {"output": 0, "values": 0})
                c["output"] += subnormal_count(output)
                c["values"] += output.numel()
            handles.append(m.register_forward_hook(count))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    total = {"input": subnormal_count(x), "output": sum(c["output"] for c in per.values()),
             "values": sum(c["values"] for c in per.values())}
    return {"per_module": per, "total": total}


def weight_census(model: nn.Module) -> dict:
    """Subnormal entries among a model's parameters and buffers: ``{"subnormal": k, "values": n}``."""
    tensors = list(model.state_dict().values())
    return {"subnormal": sum(subnormal_count(t) for t in tensors), "values": sum(t.numel() for t in tensors)}
