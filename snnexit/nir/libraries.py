"""NIR's neuron nodes as snnTorch, Sinabs, Norse and SpikingJelly read them.

Each class follows that library's importer (read in its source: ``snntorch/import_nir.py``,
``sinabs/nir.py``, ``norse/torch/utils/import_nir.py``,
``spikingjelly/activation_based/nir_exchange/from_nir.py``), with the library's own arithmetic
(:mod:`snnexit.neurons.leaky` names the forms), its checks (what it refuses, we refuse, naming the
node) and its default step. Where an importer has a bug that a newer release fixes, the intended
meaning is taken and the difference is said here. The tests run each library on the graphs it
exports and compare every step.

================  =========================================================================
snnTorch 1.0.0    ``IF``: ``Leaky`` with subtractive reset (without reset delay), fire on
                  ``>``, ``r`` must be 1; the 1.0.0 importer leaks (beta = 0.9), snnTorch's
                  main branch does not (beta = 1, "NIR defines IF as an ideal integrate-and-
                  fire neuron"): ``if_beta`` (default 1). ``LIF`` / ``CubaLIF``: reset to zero,
                  ``beta = 1 - dt / tau``, input scale ``r dt / tau`` folded into the threshold
                  as snnTorch folds it; ``dt = 1e-4`` (its default). Recurrent edges: last
                  step's spikes through the recurrent layer, its bias from the first step.
Sinabs 3.1.3      time constants in steps (``dt = 1``), exact decay ``exp(-dt / tau)``, input not
                  scaled (``r`` ignored; ``LI`` needs ``r = 1``), several spikes per step
                  (``trunc(v / theta)``), subtractive reset; ``IF``: membrane floored at
                  ``-v_threshold``; no ``CubaLIF``; no recurrent graphs (its importer runs a whole
                  sequence per call, so a recurrent edge would never carry anything).
Norse 1.1.0       forward Euler with ``dt = 1e-3``; reset to 0 whatever ``v_reset`` (``CubaLIF``:
                  subtractive with ``cuba_reset="subtract"``); ``r`` ignored except in
                  ``CubaLIF``; ``LIF``, ``LI`` start at ``v_leak``; ``IF`` adds its input as is.
SpikingJelly 2.0  ``IF``: ``r`` must be ``1 / dt``; every neuron starts at ``v_reset``, fires on
                  ``>=``, resets to ``v_reset``; ``LIF`` needs ``v_leak = v_reset`` and ``r`` of
                  1 (input decays) or ``tau / dt``; ``CubaLIF`` needs ``r = tau_mem / dt``,
                  ``w_in = tau_syn / dt``, ``v_leak = 0``; ``dt = 1e-4``; no ``LI``.
================  =========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from snnexit.neurons.leaky import LeakyParams
from snnexit.neurons.leaky_modules import CubaLIFNeuron, LeakyIntegrator, LeakyNeuron
from snnexit.nir.semantics import SEMANTICS, Semantics, f32


def _uniform(values) -> float | None:
    """The one value of ``values`` (None if they differ)."""
    unique = np.unique(np.asarray(values))
    return float(unique[0]) if unique.size == 1 else None


def _close(values, expected, rtol=1e-6, atol=1e-12) -> bool:
    return bool(np.allclose(np.asarray(values, np.float64), expected, rtol=rtol, atol=atol))


@SEMANTICS.register("snntorch")
@dataclass(frozen=True)
class SnnTorchSemantics(Semantics):
    name: str = "snntorch"
    label: str = "snnTorch reads it"
    dt: float | None = 1e-4
    recurrent_start: str = "bias"
    if_beta: float = 1.0  # snnTorch 1.0.0's importer: 0.9; its main branch: 1

    def if_(self, name, node, dt):
        if not _close(node.r, 1.0, rtol=0, atol=0):
            self.refuse(name, node, "snnTorch reads IF only with r = 1")
        return LeakyNeuron(LeakyParams(decay=np.float32(self.if_beta), threshold=f32(node.v_threshold) * f32(node.r),
                                       fire=">", reset="subtract_snntorch"))

    def _leak_free(self, name, node):
        if not _close(node.v_leak, 0.0, rtol=1e-5, atol=1e-8):
            self.refuse(name, node, "snnTorch reads it only with v_leak = 0")

    def lif(self, name, node, dt):
        self._leak_free(name, node)
        tau = f32(node.tau)
        beta = np.clip(1 - dt / tau, 0, 1)
        threshold = f32(node.v_threshold)
        w_scale = f32(node.r) * dt / tau
        if not _close(w_scale, 1.0, rtol=1e-5, atol=1e-8):  # snnTorch scales the threshold, not the input
            scale = _uniform(w_scale)
            if scale is None:
                self.refuse(name, node, "its input scale r dt / tau differs between neurons")
            threshold = threshold / np.float32(scale)
        return LeakyNeuron(LeakyParams(decay=beta, threshold=threshold, fire=">", reset="hard"))

    def cuba_lif(self, name, node, dt):
        self._leak_free(name, node)
        if not _close(node.r, f32(node.tau_mem) / dt, rtol=1e-5, atol=1e-8):
            self.refuse(name, node, "snnTorch reads CubaLIF only with r = tau_mem / dt")
        alpha = np.clip(1 - dt / f32(node.tau_syn), 0, 1)
        beta = np.clip(1 - dt / f32(node.tau_mem), 0, 1)
        threshold = f32(node.v_threshold)
        w_scale = f32(node.w_in) * (dt / f32(node.tau_syn))
        if not _close(w_scale, 1.0, rtol=1e-5, atol=1e-8):
            threshold = threshold / w_scale
        return CubaLIFNeuron(LeakyParams(decay=alpha),
                             LeakyParams(decay=beta, threshold=threshold, fire=">", reset="hard"))

    def li(self, name, node, dt):
        self.missing(name, node)

    integrator = li


@SEMANTICS.register("sinabs")
@dataclass(frozen=True)
class SinabsSemantics(Semantics):
    name: str = "sinabs"
    label: str = "Sinabs reads it"
    dt: float | None = 1.0  # Sinabs reads time constants in steps
    recurrent: bool = False

    @staticmethod
    def _decay(tau, dt) -> torch.Tensor:
        return torch.exp(-dt / torch.as_tensor(f32(tau)))  # Sinabs: exp(-1 / tau_mem) in float32

    def if_(self, name, node, dt):
        theta = f32(node.v_threshold)
        return LeakyNeuron(LeakyParams(threshold=theta, fire="multi", reset="subtract", floor=-theta))

    def lif(self, name, node, dt):
        if not _close(node.v_leak, 0.0, rtol=0, atol=0):
            self.refuse(name, node, "Sinabs reads it only with v_leak = 0")
        return LeakyNeuron(LeakyParams(decay=self._decay(node.tau, dt), threshold=f32(node.v_threshold),
                                       fire="multi", reset="subtract"))

    def li(self, name, node, dt):
        if not _close(node.v_leak, 0.0, rtol=0, atol=0) or not _close(node.r, 1.0, rtol=0, atol=0):
            self.refuse(name, node, "Sinabs reads LI only with v_leak = 0 and r = 1")
        return LeakyIntegrator(LeakyParams(decay=self._decay(node.tau, dt)))

    def cuba_lif(self, name, node, dt):
        self.missing(name, node)

    integrator = cuba_lif


@SEMANTICS.register("norse")
@dataclass(frozen=True)
class NorseSemantics(Semantics):
    name: str = "norse"
    label: str = "Norse reads it"
    dt: float | None = 1e-3
    cuba_reset: str = "value"  # Norse's from_nir(reset_method=...): "value" (to 0) or "subtract"

    @staticmethod
    def _rate(tau, dt) -> torch.Tensor:
        return dt * (1 / torch.as_tensor(f32(tau)))  # Norse: dt * tau_mem_inv, tau_mem_inv = 1 / tau

    def if_(self, name, node, dt):
        return LeakyNeuron(LeakyParams(threshold=f32(node.v_threshold), fire=">", reset="hard"))

    def lif(self, name, node, dt):
        leak = f32(node.v_leak)
        return LeakyNeuron(LeakyParams(charge="box_lif", rate=self._rate(node.tau, dt), rest=leak,
                                       threshold=f32(node.v_threshold), fire=">", reset="hard", v_init=leak))

    def cuba_lif(self, name, node, dt):
        leak = f32(node.v_leak)
        synapse = LeakyParams(charge="box", rate=self._rate(node.tau_syn, dt), rest=leak, gain=f32(node.w_in),
                              v_init=leak)
        membrane = LeakyParams(charge="box_lif", rate=self._rate(node.tau_mem, dt), rest=leak, gain=f32(node.r),
                               threshold=f32(node.v_threshold), fire=">",
                               reset="subtract" if self.cuba_reset == "subtract" else "hard", v_init=leak)
        return CubaLIFNeuron(synapse, membrane)

    def li(self, name, node, dt):
        leak = f32(node.v_leak)
        return LeakyIntegrator(LeakyParams(charge="box", rate=self._rate(node.tau, dt), rest=leak, v_init=leak))

    def integrator(self, name, node, dt):
        self.missing(name, node)


@SEMANTICS.register("spikingjelly")
@dataclass(frozen=True)
class SpikingJellySemantics(Semantics):
    name: str = "spikingjelly"
    label: str = "SpikingJelly reads it"
    dt: float | None = 1e-4

    def _one(self, name, node, field: str) -> float:
        value = _uniform(getattr(node, field))
        if value is None:
            self.refuse(name, node, f"SpikingJelly needs one {field} for the whole layer")
        return value

    def if_(self, name, node, dt):
        if not _close(self._one(name, node, "r"), 1.0 / dt):
            self.refuse(name, node, f"SpikingJelly reads IF only with r = 1 / dt = {1.0 / dt:g}")
        v_reset = f32(node.v_reset)
        return LeakyNeuron(LeakyParams(threshold=f32(node.v_threshold), v_reset=v_reset, fire=">=", reset="hard",
                                       v_init=v_reset))

    def lif(self, name, node, dt):
        tau = self._one(name, node, "tau") / dt
        if not (np.isfinite(tau) and tau > 1):
            self.refuse(name, node, "SpikingJelly needs tau / dt finite and > 1")
        r = self._one(name, node, "r")
        if not (_close(r, 1.0) or _close(r, tau)):
            self.refuse(name, node, "SpikingJelly reads LIF only with r = 1 or r = tau / dt")
        v_reset = self._one(name, node, "v_reset")
        if not _close(self._one(name, node, "v_leak"), v_reset):
            self.refuse(name, node, "SpikingJelly reads LIF only with v_leak = v_reset")
        return LeakyNeuron(LeakyParams(charge="euler" if _close(r, 1.0) else "euler_input", tau=tau, rest=v_reset,
                                       threshold=f32(node.v_threshold), v_reset=v_reset, fire=">=", reset="hard",
                                       v_init=v_reset))

    def cuba_lif(self, name, node, dt):
        tau_syn, tau_mem = self._one(name, node, "tau_syn"), self._one(name, node, "tau_mem")
        if not (_close(self._one(name, node, "r"), tau_mem / dt) and _close(self._one(name, node, "w_in"), tau_syn / dt)
                and _close(self._one(name, node, "v_leak"), 0.0)):
            self.refuse(name, node, "SpikingJelly reads CubaLIF only with r = tau_mem / dt, w_in = tau_syn / dt, "
                                    "v_leak = 0")
        v_reset = self._one(name, node, "v_reset")
        return CubaLIFNeuron(LeakyParams(decay=1.0 - dt / tau_syn),
                             LeakyParams(decay=1.0 - dt / tau_mem, threshold=f32(node.v_threshold), v_reset=v_reset,
                                         fire=">=", reset="hard", v_init=v_reset))

    def li(self, name, node, dt):
        self.missing(name, node)

    integrator = li
