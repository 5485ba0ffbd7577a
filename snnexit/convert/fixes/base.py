"""Conversion fixes: post-conversion corrections of a converted SNN, fitted on training inputs.

A conversion fix takes a converted network (its spiking layers soft-reset ``IFNeuron``s: the
``qcfs``, ``max`` and ``robust`` converters), the ANN it came from and a few hundred training
inputs, and sets the extra input currents of :class:`~snnexit.neurons.corrected.CorrectedIF`
(per step and channel, or per channel) so that the spiking layers' outputs follow the ANN's
activations from the first steps on. It is forward-only (no
gradients) and uses training inputs only: validation and test belong to fitting and certifying
the exit.

Not to be confused with the two other calibrations of a run: the ANN's temperature
(``snnexit.calibrate``, for the softmax of the exit scores) and the calibration inputs of the
certified exit (``snnexit.exit.certify``). A fix changes the network; those do not.

Each fix is registered with what it declares about itself (the converters whose networks it
corrects, whether it adds behaviour per time step), so settings are checked before any work and
the conformance matrix builds each fixed network from the registry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.neurons.corrected import CorrectedIF
from snnexit.neurons.modules import IFNeuron
from snnexit.registry import Registry
from snnexit.simulate.network import SpikingNetwork

CONVERSION_FIXES: Registry = Registry("conversion fix")
NO_FIX = "none"  # the setting that applies no fix
DEFAULT_FIX = NO_FIX  # what a run applies where its converter supports it (RunConfig.fix_name)
FIXABLE_CONVERTERS = ("qcfs", "max", "robust")  # networks of soft-reset IF neurons


def register_conversion_fix(name: str, *, converters: tuple[str, ...] = FIXABLE_CONVERTERS, per_step: bool,
                            reference: str):
    """Register a fix ``fn(snn, ann, inputs, T, temporal) -> dict`` (it corrects the
    network's :class:`CorrectedIF` layers in place and returns its own facts for the report):

    * ``converters``: the converters whose networks it can correct;
    * ``per_step``: it gives the network behaviour of its own per time step (a current per step);
    * ``reference``: the method it implements, for reports and ``--help``.
    """

    def decorator(fn):
        fn.converters = tuple(converters)
        fn.per_step = bool(per_step)
        fn.reference = reference
        return CONVERSION_FIXES.register(name)(fn)

    return decorator


def fix_names() -> list[str]:
    """Every value the setting takes: ``none`` and the registered fixes."""
    return [NO_FIX, *CONVERSION_FIXES.names()]


def default_fix(converter: str) -> str:
    """The fix a run applies when its settings name none: :data:`DEFAULT_FIX` where it corrects
    ``converter``'s networks, else ``none``."""
    if DEFAULT_FIX == NO_FIX or converter not in CONVERSION_FIXES.get(DEFAULT_FIX).converters:
        return NO_FIX
    return DEFAULT_FIX


def check_fix(name: str, converter: str) -> None:
    """Refuse (one line, before any work) a fix that is unknown or does not apply to ``converter``."""
    if name == NO_FIX:
        return
    if name not in CONVERSION_FIXES:
        raise SnnexitError(f"Unknown conversion fix {name!r}. Known: {', '.join(fix_names())}")
    supported = CONVERSION_FIXES.get(name).converters
    if converter not in supported:
        raise SnnexitError(f"conversion fix {name!r} corrects networks of the {', '.join(supported)} converters, not "
                           f"{converter!r}; choose --conversion-fix none or another converter")


@dataclass
class FixReport:
    """What a fix cost and did: its name, seconds, the training inputs it used, the horizon it
    fitted (steps), and its own facts (with ``measure``: each layer's error before and after)."""

    name: str
    seconds: float
    inputs: int
    horizon: int
    facts: dict = field(default_factory=dict)


def make_correctable(snn: SpikingNetwork) -> list[tuple[str, CorrectedIF]]:
    """Swap every ``IFNeuron`` of ``snn`` (in place) for its uncorrected :class:`CorrectedIF`
    twin; any other spiking layer is an error. Returns the layers in forward order."""
    layers = []
    for path, module in list(snn.body.named_modules()):
        if isinstance(module, CorrectedIF):
            layers.append((path, module))
        elif isinstance(module, IFNeuron):
            twin = CorrectedIF.like(module)
            _set_module(snn.body, path, twin)
            layers.append((path, twin))
    kinds = {type(m).__name__ for _, m in snn.spiking_layers()} - {"CorrectedIF"}
    if kinds:
        raise SnnexitError(f"a conversion fix corrects soft-reset IF neurons only; this network has {', '.join(kinds)}")
    return layers


def _set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, attr, new)


@torch.no_grad()
def ann_activations(ann: nn.Module, paths: list[str], x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """The outputs of the ANN's modules at ``paths`` (the activations the spiking layers replace:
    converters keep each module's path) on inputs ``x``: ``{path: (N, ...)}``."""
    modules = dict(ann.named_modules())
    missing = [p for p in paths if p not in modules]
    if missing:
        raise SnnexitError(f"the ANN has no module at {missing[0]!r}: is this network converted from that ANN?")
    out: dict[str, list[torch.Tensor]] = {p: [] for p in paths}
    hooks = [modules[p].register_forward_hook(lambda _m, _i, y, p=p: out[p].append(y.detach())) for p in paths]
    was_training = ann.training
    ann.eval()
    try:
        for i in range(0, x.shape[0], batch_size):
            ann(x[i:i + batch_size])
    finally:
        for h in hooks:
            h.remove()
        ann.train(was_training)
    return {p: torch.cat(v) for p, v in out.items()}


class ActivationTargets:
    """What each spiking layer should output per step on average after step ``t``: the ANN
    activation it replaces, on what the SNN has seen by then, clipped to ``[0, theta]`` (a layer
    of IF neurons emits at most one spike of theta per step).

    Static inputs (shown at every step): the ANN on the input, the same at every step. Event
    frames ``(N, T, ...)``: the ANN on the mean of the frames ``1..t`` (the prefix mean), since a
    rate-coded network's first layer has integrated ``t`` times the prefix mean by step ``t``;
    at the last frame that is the mean frame the ANN was trained on (``snnexit.runs.ann.ann_view``).
    """

    def __init__(self, snn: SpikingNetwork, ann: nn.Module, inputs: torch.Tensor, temporal: bool):
        self.layers = dict(make_correctable(snn))
        self.ann, self.inputs, self.temporal = ann, inputs, temporal
        self._cached: tuple[int, dict[str, torch.Tensor]] | None = None

    def ann_inputs(self, t: int) -> torch.Tensor:
        """What the ANN sees for step ``t`` (0-based)."""
        return self.inputs[:, :t + 1].mean(1) if self.temporal else self.inputs

    def at(self, t: int) -> dict[str, torch.Tensor]:
        """``{path: (N, ...)}`` targets after step ``t`` (0-based)."""
        key = t if self.temporal else 0
        if self._cached is None or self._cached[0] != key:
            x = self.ann_inputs(key).to(next(self.ann.parameters()).device)
            acts = ann_activations(self.ann, list(self.layers), x)
            self._cached = (key, {p: acts[p].clamp(min=0).minimum(m.threshold.to(acts[p].dtype))
                                  for p, m in self.layers.items()})
        return self._cached[1]


def channel_sums(t: torch.Tensor) -> torch.Tensor:
    """``(N, C, ...) -> (C,)``: sums over the batch and every position of each channel."""
    return t.transpose(0, 1).reshape(t.shape[1], -1).sum(1) if t.dim() >= 2 else t.sum().reshape(1)


def frames_at(inputs: torch.Tensor, t: int, temporal: bool) -> torch.Tensor:
    """The input of step ``t`` (0-based): frame ``t`` of ``(N, T, ...)`` sequences, or the static input."""
    return inputs[:, t] if temporal else inputs


def report_steps(T: int) -> list[int]:
    """The steps at which a fix's effect is measured: 1, 2, 4, ... up to ``T``, and ``T``."""
    steps, t = [], 1
    while t < T:
        steps.append(t)
        t *= 2
    return steps + [T]


class RateErrors:
    """Forward hooks that measure, while a network runs, how far each spiking layer's rate code is
    from its :class:`ActivationTargets` after the steps of :func:`report_steps`: the root mean
    square over neurons and inputs of ``(mean output over steps 1..t - target) / theta``.
    ``errors[path]`` lists them in the order of the steps; :meth:`close` removes the hooks."""

    def __init__(self, layers: dict[str, CorrectedIF], targets: ActivationTargets, T: int):
        self.steps = report_steps(T)
        self.targets = targets
        self.errors: dict[str, list[float]] = {p: [] for p in layers}
        self._sums: dict[str, torch.Tensor] = {}
        self._handles = [m.register_forward_hook(self._hook(p)) for p, m in layers.items()]

    def _hook(self, path: str):
        def hook(module, _args, out):
            total = self._sums.get(path)
            self._sums[path] = total = out.clone() if total is None else total.add_(out)
            t = module.steps_done
            if t in self.steps:
                target = self.targets.at(t - 1)[path]
                err = (total / t - target.to(total.dtype)) / module.threshold.to(total.dtype)
                self.errors[path].append(float(err.pow(2).mean().sqrt()))
        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def simulate(snn: SpikingNetwork, inputs: torch.Tensor, T: int, temporal: bool) -> None:
    """Run ``snn`` for ``T`` steps on ``inputs`` from a fresh state (hooks do the measuring)."""
    snn.reset()
    try:
        for t in range(T):
            snn.step(frames_at(inputs, t, temporal))
    finally:
        snn.reset()


@torch.no_grad()
def layer_errors(snn: SpikingNetwork, targets: ActivationTargets, inputs: torch.Tensor, T: int,
                 temporal: bool, only: str | None = None) -> dict[str, list[float]]:
    """:class:`RateErrors` of every spiking layer (``only``: of that one) over a run of ``T`` steps."""
    layers = {p: m for p, m in make_correctable(snn) if only is None or p == only}
    meter = RateErrors(layers, targets, T)
    try:
        simulate(snn, inputs, T, temporal)
    finally:
        meter.close()
    return meter.errors


def apply_conversion_fix(snn: SpikingNetwork, ann: nn.Module, name: str, inputs: torch.Tensor, T: int,
                         temporal: bool = False, measure: bool = False) -> FixReport:
    """Correct ``snn`` in place with the fix ``name``, fitted on training ``inputs`` (what the SNN
    sees: static inputs, or ``(N, T', ...)`` frames with ``temporal``) over the first ``T`` steps
    (the ANN sees the input, or the prefix means of the frames: :class:`ActivationTargets`).
    Records the fix in ``snn.meta["conversion_fix"]`` and returns its :class:`FixReport`; with
    ``measure``, its facts hold each layer's :class:`RateErrors` on ``inputs`` before and after
    (two more runs of ``T`` steps, outside the seconds reported)."""
    fix = CONVERSION_FIXES.get(name)
    converter = snn.meta.get("converter")
    if converter is not None:
        check_fix(name, converter)
    if inputs.shape[0] < 1:
        raise SnnexitError("a conversion fix needs at least one training input")
    if temporal and inputs.shape[1] < T:
        raise SnnexitError(f"a conversion fix over T = {T} steps needs {T} frames per input, got {inputs.shape[1]}")
    layers = make_correctable(snn)
    snn.eval()
    targets = ActivationTargets(snn, ann, inputs, temporal) if measure else None
    before = layer_errors(snn, targets, inputs, T, temporal) if measure else None
    started = time.perf_counter()
    facts = fix(snn, ann, inputs, int(T), bool(temporal))
    seconds = time.perf_counter() - started
    if measure:
        after = layer_errors(snn, targets, inputs, T, temporal)
        facts["errors"] = {"steps": report_steps(T), "layers": [
            {"layer": p, "rms_error_before": before[p], "rms_error_after": after[p]} for p, _ in layers]}
    report = FixReport(name, seconds, int(inputs.shape[0]), int(T), facts)
    snn.meta["conversion_fix"] = {"name": name, "inputs": report.inputs, "horizon": report.horizon,
                                  "seconds": report.seconds}
    snn.reset()
    return report


def restore_conversion_fix(snn: SpikingNetwork, state: dict[str, torch.Tensor]) -> SpikingNetwork:
    """Give a freshly converted ``snn`` the layers of a fixed one whose ``state_dict`` is ``state``
    (before ``load_state_dict``): each spiking layer becomes a :class:`CorrectedIF` shaped like the
    saved one. A network saved without a fix is left as it is."""
    if not any(k.endswith(".current") for k in state):
        return snn
    for path, module in make_correctable(snn):
        prefix = f"body.{path}."
        for buffer in ("v_start", "current"):
            saved = state.get(prefix + buffer)
            if saved is None:
                raise SnnexitError(f"the saved network lacks {prefix + buffer}: it was fixed with another network")
            setattr(module, buffer, torch.zeros_like(saved))
    return snn
