"""What an inference costs up to its exit step: time steps, spikes, synaptic operations.

Counts per input ``n`` that exits after ``k_n`` steps (fixed T: ``k_n = T``):

* **time steps** ``k_n``;
* **spikes** ``S[n, l] = sum_{t <= k_n} spikes[t, n, l]`` per spiking layer ``l`` (negative
  QFFS spikes count too: ``|s|``);
* **spikes per neuron per inference** ``sum_l S[n, l] / sum_l neurons_l`` (the paper's Table 3);
* **synaptic operations** ``SynOps[n] = sum_l S[n, l] * fan_out_l``: every spike is delivered
  to ``fan_out_l`` downstream neurons, each delivery one accumulate.

``fan_out_l`` is the mean number of neurons (of any later spiking layer or of the output layer)
that one neuron of layer ``l`` connects to: the non-zero entries of the Jacobian of the linear
map from layer ``l``'s spikes to the inputs of the layers they feed, averaged over layer
``l``'s neurons (a module may give its own twin for this pass, ``indicator()``: a leaky
integrator passes its input on, a recurrent block also delivers its loop's connections). :func:`fan_out` computes it from the modules that consume each layer's output
(conv, linear, pooling, batch norm, flatten, residual additions) in one forward pass of an
"indicator" copy of the network: every weight becomes ``[w != 0]``, average pooling becomes sum
pooling, batch norm and biases vanish, and layer ``l`` emits ones while every other spiking
layer is silent. It is exact for the network's structure; ``spikes x mean fan-out`` is exact
when the spikes of a layer are spread like its fan-out (border neurons of a padded conv reach
fewer neurons than interior ones) and an estimate otherwise.

**Energy** (:func:`energy_pj`), snnexit's convention: a model of a spike-driven chip, as SNN
papers account it. The layers that read the analog input (the first convolution under direct
encoding) multiply-accumulate, ``MACs[n] = k_n * input_macs`` (``input_macs`` per step, dense: every
output times its ``C_in / groups * kernel`` taps, as op counters count it; the input is presented
at every step, so it is counted at every step); every later layer is spike-driven and adds a
weight per delivered spike, ``ACs[n] = SynOps[n]``. Energy ``= MACs * E_MAC + ACs * E_AC`` with
per-operation energies from Horowitz (ISSCC 2014, 45 nm): FP32 4.6 / 0.9 pJ (multiply 3.7 + add
0.9; add 0.9), FP16 1.5 / 0.4 pJ (1.1 + 0.4; 0.4), INT8 0.23 / 0.03 pJ (0.2 + 0.03; 0.03), the
presets of SpikingJelly's ``SimpleEnergyCostConfig``; or any pair the user gives. Neuron updates,
batch norm (foldable into the weights) and memory traffic are not counted, average pooling is
folded into the fan-out of the layer after it, each layer's fan-out is its mean, and a spike is
one event whatever amplitude it carries (a chip folds theta into the next weights). This is not
what SpikingJelly's op counter counts: :mod:`snnexit.simulate.opcount` counts that way (exact
fan-out of 0/1 inputs, dense MACs for any other input, pooling and BatchNorm counted) on the
same run, and ``benchmarks/energy_conventions.py`` compares the two.

Everything here is a pure function of spike counts, so the online runtime (which accumulates
spikes up to each input's exit) and a recorded :class:`~snnexit.simulate.trace.Trace` give the
same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from snnexit.errors import SnnexitError
from snnexit.simulate.structure import fan_out, input_macs, structural_counts  # noqa: F401 (re-exported)
from snnexit.simulate.trace import Trace


@dataclass(frozen=True)
class EnergyModel:
    """Energy of one multiply-accumulate (analog input) and one accumulate (spike), in pJ."""

    name: str
    mac_pj: float
    ac_pj: float

    def as_dict(self) -> dict:
        return {"name": self.name, "mac_pj": self.mac_pj, "ac_pj": self.ac_pj}


# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm: MAC = multiply + add, AC = add
ENERGY_PRESETS = {
    "fp32": EnergyModel("45nm FP32", 3.7 + 0.9, 0.9),
    "fp16": EnergyModel("45nm FP16", 1.1 + 0.4, 0.4),
    "int8": EnergyModel("45nm INT8", 0.2 + 0.03, 0.03),
}


def energy_model(spec: "str | tuple[float, float] | EnergyModel" = "fp32") -> EnergyModel:
    """A preset name (``fp32``, ``fp16``, ``int8``), a ``(mac_pj, ac_pj)`` pair, the same as a
    string ``"4.6,0.9"``, or an :class:`EnergyModel`."""
    if isinstance(spec, EnergyModel):
        return spec
    if isinstance(spec, str):
        if spec.lower() in ENERGY_PRESETS:
            return ENERGY_PRESETS[spec.lower()]
        if "," in spec:
            try:
                spec = tuple(float(v) for v in spec.split(","))
            except ValueError:
                spec = ()
        else:
            raise SnnexitError(f"Unknown energy preset {spec!r}. Known: {', '.join(ENERGY_PRESETS)}, "
                               f"or 'MAC_PJ,AC_PJ'")
    pair = tuple(spec)
    if len(pair) != 2 or not all(isinstance(v, (int, float)) and v >= 0 and v == v for v in pair):
        raise SnnexitError(f"an energy pair is two numbers >= 0 (pJ per MAC, pJ per AC), got {spec!r}")
    return EnergyModel(f"user {pair[0]:g}/{pair[1]:g} pJ", float(pair[0]), float(pair[1]))


def energy_pj(spikes: torch.Tensor, fan_out: list[float], input_macs: float, steps: torch.Tensor,
              model: "str | tuple[float, float] | EnergyModel" = "fp32") -> dict[str, torch.Tensor]:
    """Energy per inference ``(N,)`` in pJ, split into its MAC and AC parts.

    ``spikes`` ``(N, L)`` up to each exit step, ``fan_out`` ``(L,)``, ``input_macs`` the MACs of
    the layers reading the analog input per input and step, ``steps`` ``(N,)`` exit steps.
    """
    m = energy_model(model)
    spikes = torch.as_tensor(spikes, dtype=torch.float64)
    if spikes.dim() != 2 or len(fan_out) != spikes.shape[1]:
        raise SnnexitError(f"energy needs spikes (N, L) and one fan-out per layer, got {tuple(spikes.shape)} "
                           f"and {len(fan_out)}")
    macs = torch.as_tensor(steps).double() * float(input_macs)
    acs = spikes @ torch.tensor(fan_out, dtype=torch.float64)
    mac_pj, ac_pj = macs * m.mac_pj, acs * m.ac_pj
    return {"macs": macs, "acs": acs, "mac_pj": mac_pj, "ac_pj": ac_pj, "total_pj": mac_pj + ac_pj}


@dataclass
class Cost:
    """Per-input cost of a set of inferences.

    ``spikes`` ``(N, L)`` spikes per input and spiking layer up to each input's exit step,
    ``steps`` ``(N,)`` exit steps; ``fan_out`` ``(L,)`` per layer (None: SynOps unknown);
    ``input_macs`` MACs per step of the layers reading the analog input (None: energy unknown);
    ``energy`` the per-operation energies the summary reports (a preset name, a pair, a model).
    """

    steps: torch.Tensor  # (N,) int64
    spikes: torch.Tensor  # (N, L) float64
    neurons_per_layer: list[int]
    fan_out: list[float] | None = None
    input_macs: float | None = None
    energy: "str | tuple[float, float] | EnergyModel" = "fp32"

    def __post_init__(self):
        if self.spikes.dim() != 2 or self.steps.shape != (self.spikes.shape[0],):
            raise SnnexitError(f"cost needs spikes (N, L) and steps (N,), got {tuple(self.spikes.shape)} "
                               f"and {tuple(self.steps.shape)}")
        L = self.spikes.shape[1]
        if len(self.neurons_per_layer) != L:
            raise SnnexitError(f"neurons_per_layer has {len(self.neurons_per_layer)} entries for {L} spiking layers")
        if self.fan_out is not None and len(self.fan_out) != L:
            raise SnnexitError(f"fan_out has {len(self.fan_out)} entries for {L} spiking layers")
        self.energy = energy_model(self.energy)

    @property
    def N(self) -> int:
        return self.spikes.shape[0]

    @property
    def neurons(self) -> int:
        return int(sum(self.neurons_per_layer))

    def spikes_per_input(self) -> torch.Tensor:
        """(N,) all spikes of each inference."""
        return self.spikes.sum(1)

    def spikes_per_neuron(self) -> torch.Tensor:
        """(N,) spikes per neuron of each inference (the paper's Table 3 averages this)."""
        if self.neurons == 0:
            raise SnnexitError("the number of neurons is unknown (neurons_per_layer is empty or zero)")
        return self.spikes_per_input() / self.neurons

    def synops(self) -> torch.Tensor:
        """(N,) synaptic operations (spike deliveries) of each inference."""
        if self.fan_out is None:
            raise SnnexitError("synaptic fan-out per layer is unknown: pass fan_out (see snnexit.simulate.cost.fan_out)")
        return self.spikes @ torch.tensor(self.fan_out, dtype=self.spikes.dtype)

    def summary(self) -> dict:
        """Means over the inputs, JSON-able."""
        out = {
            "inputs": self.N,
            "mean_steps": self.steps.double().mean().item(),
            "spikes_per_inference": self.spikes_per_input().mean().item(),
            "spikes_per_neuron": self.spikes_per_neuron().mean().item() if self.neurons else None,
            "spikes_per_layer": self.spikes.mean(0).tolist(),
            "neurons": self.neurons,
        }
        out["synops_per_inference"] = self.synops().mean().item() if self.fan_out is not None else None
        out.update(self.energy_summary())
        return out

    def energy_pj(self, model=None) -> dict[str, torch.Tensor]:
        """(N,) energy per inference in pJ with its MAC / AC split (see :func:`energy_pj`)."""
        if self.fan_out is None or self.input_macs is None:
            raise SnnexitError("energy needs the synaptic fan-out and the input layer's MACs (fan_out, input_macs)")
        return energy_pj(self.spikes, self.fan_out, self.input_macs, self.steps, model or self.energy)

    def energy_summary(self) -> dict:
        """Means over the inputs: ``energy_pj_per_inference`` with the model in ``self.energy``,
        its MAC and AC parts, the operation counts, and the total under every preset."""
        if self.fan_out is None or self.input_macs is None:
            return {"energy_pj_per_inference": None}
        e = self.energy_pj()
        return {"energy_pj_per_inference": e["total_pj"].mean().item(),
                "energy_mac_pj_per_inference": e["mac_pj"].mean().item(),
                "energy_ac_pj_per_inference": e["ac_pj"].mean().item(),
                "macs_per_inference": e["macs"].mean().item(), "acs_per_inference": e["acs"].mean().item(),
                "energy_model": self.energy.as_dict(),
                "energy_pj_per_inference_by_preset": {name: self.energy_pj(name)["total_pj"].mean().item()
                                                      for name in ENERGY_PRESETS}}


def spikes_until(spikes: torch.Tensor, exit_steps: torch.Tensor | None = None) -> torch.Tensor:
    """``(N, L)`` spikes of each input summed over its steps ``1..exit_steps[n]``.

    ``spikes`` is ``(T, N, L)`` per step (a trace's ``spikes``); ``exit_steps`` ``(N,)`` is
    1-based, None means every input runs all T steps.
    """
    if spikes.dim() != 3:
        raise SnnexitError(f"spikes must have shape (T, N, L), got {tuple(spikes.shape)}")
    T, N, L = spikes.shape
    s = spikes.double().abs()
    if exit_steps is None:
        return s.sum(0)
    exit_steps = torch.as_tensor(exit_steps).long().cpu()
    if exit_steps.shape != (N,):
        raise SnnexitError(f"exit_steps must have shape (N,) = ({N},), got {tuple(exit_steps.shape)}")
    if N and (exit_steps.min() < 1 or exit_steps.max() > T):
        raise SnnexitError(f"exit steps must lie in [1, {T}], got [{int(exit_steps.min())}, {int(exit_steps.max())}]")
    alive = torch.arange(1, T + 1).view(T, 1) <= exit_steps.view(1, N)  # (T, N)
    return (s * alive.unsqueeze(2).to(s.device)).sum(0)


def cost_from_trace(trace: Trace, exit_steps: torch.Tensor | None = None,
                    fan_out: list[float] | None = None, energy="fp32") -> Cost:
    """The cost of the inferences of ``trace`` stopped at ``exit_steps`` (None: fixed T).

    Neurons per layer come from ``trace.meta["neurons_per_layer"]``; the fan-out from
    ``fan_out`` or ``trace.meta["fan_out_per_layer"]`` (without either, SynOps are unknown);
    the input layer's MACs per step from ``trace.meta["input_macs_per_step"]`` (without it,
    energy is unknown).
    """
    if trace.spikes is None:
        raise SnnexitError("the trace has no spike counts: record it with record_trace")
    neurons = trace.meta.get("neurons_per_layer")
    if neurons is None:
        raise SnnexitError("trace meta lacks 'neurons_per_layer'")
    fan = fan_out if fan_out is not None else trace.meta.get("fan_out_per_layer")
    steps = (torch.full((trace.N,), trace.T, dtype=torch.long) if exit_steps is None
             else torch.as_tensor(exit_steps).long().cpu())
    return Cost(steps, spikes_until(trace.spikes, exit_steps), list(neurons), None if fan is None else list(fan),
                trace.meta.get("input_macs_per_step"), energy)


def compare_costs(trace: Trace, exit_steps: torch.Tensor, fan_out: list[float] | None = None) -> dict:
    """Fixed T against early exit on the same trace (the paper's Table 3, plus SynOps and steps)."""
    fixed = cost_from_trace(trace, None, fan_out).summary()
    early = cost_from_trace(trace, exit_steps, fan_out).summary()
    ratio = lambda k: (early[k] / fixed[k]) if fixed.get(k) else None  # noqa: E731
    return {"fixed": fixed, "early_exit": early,
            "ratios": {k: ratio(k) for k in ("mean_steps", "spikes_per_neuron", "synops_per_inference",
                                             "energy_pj_per_inference")}}
