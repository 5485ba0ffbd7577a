"""What a NIR neuron node means, by reader: the registry of semantics.

NIR's neuron nodes (``IF``, ``LIF``, ``CubaLIF``, ``LI``, ``I``) are differential equations with
time constants in seconds; the spec says nothing of the step, the initial potential or how a
spike is counted, and the libraries that read NIR fill those gaps differently (read from their
importers; ``snnexit.nir.libraries`` holds theirs). So one file does not mean the same to every
reader, and :func:`snnexit.nir.import_nir` takes the writer's reader as an argument:

* ``nir``: the spec, forward Euler with step ``dt`` (no default: give it): every neuron starts
  at 0, fires on ``v > v_threshold`` and resets to ``v_reset``;
* ``snnexit``: our own exports, bit for bit, from the snnexit metadata of each ``IF`` node
  (soft reset, ``v(0) = theta / 2``, fire on ``>=`` for the exact export); ``dt = 1`` (our
  graphs count time in steps); other neuron nodes as ``nir``;
* ``snntorch``, ``sinabs``, ``norse``, ``spikingjelly``: as each library's importer runs them.

A semantics is an object (:class:`Semantics`): ``SEMANTICS.create(name)`` gives the registered
one, and ``dataclasses.replace`` makes a variant (``replace(NorseSemantics(), cuba_reset="subtract")``).
Each method builds the module of one neuron node or refuses it with a line naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.neurons.leaky import LeakyParams
from snnexit.neurons.leaky_modules import CubaLIFNeuron, LeakyIntegrator, LeakyNeuron
from snnexit.registry import Registry

SEMANTICS: Registry = Registry("NIR semantics")
NEURON_NODES = (nir.IF, nir.LIF, nir.CubaLIF, nir.LI, nir.I)


def f32(value) -> np.ndarray:
    """A node parameter as float32 (NIR files store float32; numbers given in Python become it)."""
    return np.asarray(value, np.float32)


def meta_value(meta: dict | None, key: str):
    """A metadata entry as a Python value (HDF5 gives bytes and 0-d arrays)."""
    v = (meta or {}).get(key)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
    return v.item() if isinstance(v, np.generic) else v


@dataclass(frozen=True)
class Semantics:
    """How a reader runs NIR's neuron nodes (module doc). ``dt``: the default step in seconds
    (None: the caller must give one); ``recurrent_start``: what a recurrent edge carries at the
    first step (``snnexit.nir.graph``); ``recurrent``: False for a reader that cannot run a graph
    with recurrent edges (it is refused)."""

    name: str = "nir"
    label: str = "the NIR spec"
    dt: float | None = None
    recurrent_start: str = "zero"
    recurrent: bool = True

    def neuron(self, name: str, node, dt: float) -> nn.Module:
        build = {nir.IF: self.if_, nir.LIF: self.lif, nir.CubaLIF: self.cuba_lif, nir.LI: self.li,
                 nir.I: self.integrator}[type(node)]
        return build(name, node, dt)

    def refuse(self, name: str, node, reason: str):
        raise SnnexitError(f"NIR node '{name}' ({type(node).__name__}), read as {self.label} (semantics "
                           f"'{self.name}'): {reason}")

    def missing(self, name: str, node):
        self.refuse(name, node, f"this reader has no {type(node).__name__} neuron; import with semantics='nir' "
                                "for the spec's meaning")

    # the spec, forward Euler with step dt; subclasses override what their reader does otherwise
    def if_(self, name: str, node, dt: float) -> nn.Module:
        return LeakyNeuron(LeakyParams(gain=np.float32(dt) * f32(node.r), threshold=f32(node.v_threshold),
                                       v_reset=f32(node.v_reset), fire=">", reset="hard"))

    def lif(self, name: str, node, dt: float) -> nn.Module:
        return LeakyNeuron(LeakyParams(charge="euler", tau=f32(node.tau) / np.float32(dt), rest=f32(node.v_leak),
                                       gain=f32(node.r), threshold=f32(node.v_threshold), v_reset=f32(node.v_reset),
                                       fire=">", reset="hard"))

    def cuba_lif(self, name: str, node, dt: float) -> nn.Module:
        synapse = LeakyParams(charge="euler", tau=f32(node.tau_syn) / np.float32(dt), gain=f32(node.w_in))
        membrane = LeakyParams(charge="euler", tau=f32(node.tau_mem) / np.float32(dt), rest=f32(node.v_leak),
                               gain=f32(node.r), threshold=f32(node.v_threshold), v_reset=f32(node.v_reset),
                               fire=">", reset="hard")
        return CubaLIFNeuron(synapse, membrane)

    def li(self, name: str, node, dt: float) -> nn.Module:
        return LeakyIntegrator(LeakyParams(charge="euler", tau=f32(node.tau) / np.float32(dt), rest=f32(node.v_leak),
                                           gain=f32(node.r)))

    def integrator(self, name: str, node, dt: float) -> nn.Module:
        return LeakyIntegrator(LeakyParams(gain=np.float32(dt) * f32(node.r)))


SEMANTICS.register("nir")(Semantics)


@SEMANTICS.register("snnexit")
@dataclass(frozen=True)
class SnnexitSemantics(Semantics):
    """Our exports: each ``IF`` node's snnexit metadata says how it resets, where it starts and how
    it fires (``snnexit.nir.export``); time counts in steps (``dt = 1``)."""

    name: str = "snnexit"
    label: str = "snnexit's own export"
    dt: float | None = 1.0

    def if_(self, name: str, node, dt: float) -> nn.Module:
        meta = node.metadata or {}
        reset, fire = meta_value(meta, "snnexit_reset"), meta_value(meta, "snnexit_fire")
        if reset not in ("subtract", "zero") or fire not in (">=", ">"):
            raise SnnexitError(f"NIR node '{name}' ({type(node).__name__}) lacks snnexit metadata (how it resets, "
                               f"starts and fires): it was not exported by snnexit; import it with the semantics of "
                               f"the library that wrote it ({', '.join(n for n in SEMANTICS.names() if n != 'snnexit')})")
        theta = f32(node.v_threshold)
        v_init = np.float32(meta_value(meta, "snnexit_v_init") or 0.0) * theta
        return LeakyNeuron(LeakyParams(gain=f32(node.r), threshold=theta, v_reset=f32(node.v_reset), fire=fire,
                                       reset="subtract" if reset == "subtract" else "hard", v_init=v_init))

    def lif(self, name: str, node, dt: float) -> nn.Module:
        self._foreign(name, node)

    cuba_lif = li = integrator = lif

    def _foreign(self, name: str, node):
        raise SnnexitError(f"NIR node '{name}' ({type(node).__name__}) was not exported by snnexit (it writes IF "
                           f"nodes only); import it with the semantics of the library that wrote it "
                           f"({', '.join(n for n in SEMANTICS.names() if n != 'snnexit')})")


def create_semantics(semantics) -> Semantics:
    """A registered name or a :class:`Semantics` object."""
    if isinstance(semantics, Semantics):
        return semantics
    if not isinstance(semantics, str):
        raise SnnexitError(f"semantics must be a name or a Semantics, got {type(semantics).__name__}")
    return SEMANTICS.create(semantics)
