"""The runtime that really stops: step an SNN and drop each input as soon as its policy says so.

``EarlyExitEngine(snn, policy, T)`` runs inputs step by step. After step ``t`` it asks
``policy.decide(Y_t, t, meta, labels)`` for every input still running (``Y_t`` the accumulated
output ``(n, C)``, exactly what a trace records) and finishes those that may stop; at ``t = T``
every input stops. Finished inputs are then dropped from the batch and from every neuron's state
(``SpikingNetwork.select``), so later steps cost only what still runs; at batch size 1 the loop
simply ends. The decisions are the offline ones: on the trace of the same inputs,
``policy.exit_steps(trace)`` and ``policy.predict(trace)`` give the same exit steps and answers.

Two ways in:

* ``engine.run(x)`` for a batch of static inputs ``(N, ...)`` (direct encoding), or sequences
  ``(N, T, ...)`` with ``temporal=True`` (frames, event bins);
* ``engine.session(n)`` / ``engine.stream(frames)`` feed one step at a time (a camera, an event
  sensor) and hand out each decision as it is made.

The engine holds no per-step history: memory is the neuron states plus ``(n, C)`` accumulated
outputs and ``(n, L)`` spike counts, whatever T is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

from snnexit.checks import check_device, check_integer
from snnexit.errors import SnnexitError
from snnexit.exit.base import check_is_fitted, deployable_policy
from snnexit.simulate.cost import Cost
from snnexit.simulate.structure import structural_counts
from snnexit.simulate.inputs import check_inputs
from snnexit.simulate.network import SpikingNetwork


@dataclass
class ExitDecision:
    """One finished input: its index in the batch, exit step (1-based), answer and spikes."""

    index: int
    step: int
    prediction: int
    output: torch.Tensor  # (C,) accumulated output at the exit step
    spikes: torch.Tensor  # (L,) spikes per spiking layer up to the exit step


@dataclass
class ExitResult:
    """Per-input results of :meth:`EarlyExitEngine.run`."""

    exit_steps: torch.Tensor  # (N,) int64, 1-based
    predictions: torch.Tensor  # (N,) int64
    outputs: torch.Tensor  # (N, C) accumulated output at each exit step
    spikes: torch.Tensor  # (N, L) spikes per layer up to each exit step
    cost: Cost

    @property
    def N(self) -> int:
        return self.exit_steps.shape[0]


class StreamSession:
    """``n`` inputs that receive one step of input per :meth:`feed` until all have stopped.

    ``feed(frame)`` takes the step's input for all ``n`` inputs ``(n, ...)`` or only for those
    still running ``(len(session.active), ...)``, advances the network by one step and returns
    the decisions made at that step (possibly none). After every input has stopped,
    :attr:`done` is true and :meth:`result` gathers everything.
    """

    def __init__(self, engine: "EarlyExitEngine", n: int, labels: torch.Tensor | None = None):
        if n < 1:
            raise SnnexitError(f"a session needs at least one input, got n = {n}")
        self.engine = engine
        self.n = n
        device = engine.device
        self.labels = None if labels is None else torch.as_tensor(labels).long().to(device)
        if self.labels is not None and self.labels.shape != (n,):
            raise SnnexitError(f"labels must have shape ({n},), got {tuple(self.labels.shape)}")
        self.active = torch.arange(n, device=device)  # original indices of the running inputs
        self.t = 0
        self._acc: torch.Tensor | None = None  # (n_active, C) accumulated output
        self._spk: torch.Tensor | None = None  # (n_active, L) spikes so far
        self._exit_steps = torch.zeros(n, dtype=torch.long)
        self._pred = torch.zeros(n, dtype=torch.long)
        self._out: torch.Tensor | None = None  # (n, C)
        self._spikes: torch.Tensor | None = None  # (n, L)
        self._finished = torch.zeros(n, dtype=torch.bool)  # for masking without compaction
        engine.snn.reset()

    @property
    def done(self) -> bool:
        return self.active.numel() == 0

    def _rows(self, frame: torch.Tensor) -> torch.Tensor:
        frame = frame.to(self.engine.device, non_blocking=True)
        n_run = self._running_rows()
        if frame.shape[0] == n_run:
            return frame
        if frame.shape[0] == self.n:
            return frame if n_run == self.n else frame.index_select(0, self._row_index())
        raise SnnexitError(f"a step's input must have {self.n} rows (all inputs) or {n_run} (the running ones), "
                           f"got {frame.shape[0]}")

    def _running_rows(self) -> int:
        return self.active.numel() if self.engine.compact else self.n

    def _row_index(self) -> torch.Tensor:
        return self.active if self.engine.compact else torch.arange(self.n, device=self.engine.device)

    @torch.no_grad()
    def feed(self, frame: torch.Tensor) -> list[ExitDecision]:
        """Advance by one step with ``frame`` as input; return the inputs that stopped now.
        ``frame`` is checked first (:func:`~snnexit.simulate.inputs.check_inputs`)."""
        if self.done:
            raise SnnexitError("every input of this session has already stopped")
        return self._advance(check_inputs(self.engine.snn, frame, what="a step's input"))

    @torch.no_grad()
    def _advance(self, frame: torch.Tensor) -> list[ExitDecision]:
        """:meth:`feed` without the input check (the caller checked the whole batch)."""
        engine = self.engine
        y = engine.snn.step(self._rows(frame))  # (rows, C)
        self.t += 1
        t = self.t
        if self._acc is None:
            self._acc = y.clone()
            self._meta = engine.meta_after_first_step()
        else:
            self._acc.add_(y)
        if engine.count_spikes:
            counts = engine.snn.spike_counts()  # (rows, L)
            self._spk = counts.to(torch.float64) if self._spk is None else self._spk.add_(counts)
        acc = self._acc
        if not engine.compact and self._finished.any():  # masking: decide only for the running rows
            rows = self.active
            acc = acc.index_select(0, rows)
        else:
            rows = None
        if t >= engine.T:
            stop = torch.ones(acc.shape[0], dtype=torch.bool, device=acc.device)
        else:
            labels = None if self.labels is None else self.labels.index_select(0, self.active)
            stop = engine.policy.decide(acc if acc.dtype == torch.float32 else acc.float(), t, self._meta, labels)
            stop = torch.as_tensor(stop, dtype=torch.bool, device=acc.device)
            if stop.shape != (acc.shape[0],):
                raise SnnexitError(f"{type(engine.policy).__name__}.decide returned shape {tuple(stop.shape)}, "
                                   f"expected ({acc.shape[0]},)")
        if not bool(stop.any()):
            return []
        return self._finish(stop, acc, rows)

    def _finish(self, stop: torch.Tensor, acc: torch.Tensor, rows: torch.Tensor | None) -> list[ExitDecision]:
        engine = self.engine
        where = stop.nonzero().flatten()  # positions among the running inputs
        idx = self.active.index_select(0, where).cpu()  # original indices
        out = acc.index_select(0, where).float().cpu()  # (k, C)
        pred = out.argmax(-1)
        if self._out is None:
            self._out = torch.zeros(self.n, out.shape[1])
        self._out[idx] = out
        self._pred[idx] = pred
        self._exit_steps[idx] = self.t
        if self._spk is not None:
            spk_rows = where if rows is None else rows.index_select(0, where)
            spk = self._spk.index_select(0, spk_rows).cpu()
            if self._spikes is None:
                self._spikes = torch.zeros(self.n, spk.shape[1], dtype=torch.float64)
            self._spikes[idx] = spk
        else:
            spk = torch.zeros(len(idx), 0, dtype=torch.float64)
        keep = (~stop).nonzero().flatten()
        if engine.compact:
            if keep.numel():
                engine.snn.select(keep)
                self._acc = self._acc.index_select(0, keep)
                if self._spk is not None:
                    self._spk = self._spk.index_select(0, keep)
            else:
                engine.snn.reset()
                self._acc = self._spk = None
        else:
            self._finished[idx] = True
            if keep.numel() == 0:
                engine.snn.reset()
        self.active = self.active.index_select(0, keep)
        return [ExitDecision(int(i), self.t, int(p), o, s) for i, p, o, s in zip(idx.tolist(), pred, out, spk)]

    def result(self) -> ExitResult:
        if not self.done:
            raise SnnexitError(f"{self.active.numel()} inputs are still running after {self.t} steps")
        spikes = self._spikes if self._spikes is not None else torch.zeros(self.n, 0, dtype=torch.float64)
        neurons = self.engine.snn.neurons_per_layer() if self._spikes is not None else []
        counted = self._spikes is not None
        cost = Cost(self._exit_steps.clone(), spikes, list(self._meta.get("neurons_per_layer", neurons)) if counted
                    else [], self.engine.fan_out if counted else None, self.engine.input_macs if counted else None)
        return ExitResult(self._exit_steps.clone(), self._pred.clone(), self._out, spikes, cost)


class EarlyExitEngine:
    """Run a :class:`SpikingNetwork` step by step and stop each input when ``policy`` says so.

    Args:
        snn: the converted network.
        policy: a fitted exit policy (any ``ExitPolicy`` with ``decide``), or a certified exit
            (``certify_exit(...)``, ``load_certified("certified.json")``).
        T: the most steps any input runs (the fixed-T budget).
        device: where to simulate ("cpu", "cuda", ...).
        compact: drop finished inputs from the batch and the neuron states (True), or keep
            simulating them and only mask their results (False; SNNCutoff-style, for comparison).
        count_spikes: accumulate spikes per layer for cost accounting (a small per-step cost).
        fan_out: synaptic fan-out per spiking layer for SynOps (None: computed from the network
            at the first run when ``count_spikes``).
    """

    def __init__(self, snn: SpikingNetwork, policy, T: int, device: str | torch.device = "cpu",
                 compact: bool = True, count_spikes: bool = True, fan_out: list[float] | None = None):
        if not isinstance(snn, SpikingNetwork):
            raise SnnexitError(f"expected a SpikingNetwork, got {type(snn).__name__}")
        policy = deployable_policy(policy)  # a certified exit runs the policy it certified
        T = check_integer("T", T, 1)
        device = check_device(str(device) if isinstance(device, torch.device) else device)
        if not hasattr(policy, "decide"):
            raise SnnexitError(f"{type(policy).__name__} is not an exit policy (it has no decide method)")
        if not getattr(policy, "online", True):
            raise SnnexitError(f"{type(policy).__name__} has no online rule (it needs future steps): evaluate it on a "
                               f"trace instead")
        check_is_fitted(policy)
        if hasattr(policy, "check_output"):
            policy.check_output(snn.meta)  # the network states the scaling the policy was fitted with
        fitted_T = getattr(policy, "T_", None) if getattr(policy, "needs_fit", False) else None
        if fitted_T is not None and fitted_T != int(T):
            raise SnnexitError(f"{type(policy).__name__} was fitted on traces of T_ = {fitted_T} steps; this engine "
                               f"runs T = {int(T)}: fit the policy on a trace of {int(T)} steps")
        self.device = torch.device(device)
        self.snn = snn.to(self.device).eval()
        self.policy = policy
        self.T = T
        self.compact = bool(compact)
        self.count_spikes = bool(count_spikes)
        self.fan_out = None if fan_out is None else list(fan_out)
        self.input_macs: float | None = None  # MACs per step of the layers reading the analog input
        self._meta: dict | None = None
        self._probed: set = set()  # input shapes a probe step has shown the network takes

    def checked_inputs(self, x, temporal: bool) -> torch.Tensor:
        """``x`` checked (:func:`~snnexit.simulate.inputs.check_inputs`), with a probe step the
        first time this engine sees inputs of its shape (a whole step: at batch size 1 it would
        cost a run of a few steps a sizeable share)."""
        shape = getattr(x, "shape", None)
        key = None if shape is None else (temporal, tuple(shape[2 if temporal else 1:]))
        x = check_inputs(self.snn, x, temporal=temporal, T=self.T, probe=key is None or key not in self._probed)
        self._probed.add(key)
        return x

    def meta_after_first_step(self) -> dict:
        """The meta a trace of this network records (``snn.meta`` plus T and layer facts)."""
        if self._meta is None:
            # T is this engine's run length (Dynamic Confidence's alpha = T reads it from meta)
            self._meta = {**self.snn.meta, "T": self.T, "neurons_per_layer": self.snn.neurons_per_layer(),
                          "layer_names": [n for n, _ in self.snn.spiking_layers()]}
        return self._meta

    def _ensure_fan_out(self, example: torch.Tensor) -> None:
        """Fan-out per layer (SynOps) and the input layer's MACs (energy), once per engine; the
        counts are remembered on the network for its structure (:func:`structural_counts`), so
        engines made one after another on the same network do not copy it again."""
        if not self.count_spikes or (self.fan_out is not None and self.input_macs is not None):
            return
        fan, macs = structural_counts(self.snn, example[:1])
        self.fan_out = fan if self.fan_out is None else self.fan_out
        self.input_macs = macs if self.input_macs is None else self.input_macs

    def session(self, n: int, labels: torch.Tensor | None = None) -> StreamSession:
        """Start ``n`` inputs that will be fed one step at a time."""
        return StreamSession(self, n, labels)

    def stream(self, frames: Iterable[torch.Tensor], labels: torch.Tensor | None = None,
               n: int | None = None) -> Iterator[ExitDecision]:
        """Feed ``frames`` (one ``(n, ...)`` tensor per step) and yield each decision when it is made.

        Stops reading frames once every input has stopped (after at most T frames); a source
        that ends before that raises :class:`SnnexitError`, and so does a frame that differs from
        the first for a network that takes no sequence of frames (QFFS: ``temporal_input``).
        """
        session, first = None, None
        static_only = not getattr(self.snn, "temporal_input", True)
        for frame in frames:
            frame = check_inputs(self.snn, frame, what="a step's input", probe=session is None)
            if session is None:
                session = self.session(n or frame.shape[0], labels)
                self._ensure_fan_out(frame)
                first = frame if static_only else None
            elif static_only and not torch.equal(frame, first):
                # the network reads its input in a fixed window only: a changing frame would be ignored
                check_inputs(self.snn, frame.unsqueeze(1), temporal=True, what="the stream")
            yield from session._advance(frame)
            if session.done:
                return
        if session is None:
            raise SnnexitError("the stream gave no frames")
        raise SnnexitError(f"the stream ended after {session.t} steps with {session.active.numel()} inputs running")

    @torch.no_grad()
    def run(self, x: torch.Tensor, labels: torch.Tensor | None = None, temporal: bool = False) -> ExitResult:
        """Run a batch: static inputs ``(N, ...)`` shown at every step, or with ``temporal=True``
        sequences ``(N, T', ...)`` with T' >= T whose step ``t`` is shown at step ``t``; a torch
        tensor or numpy array of floats, checked first
        (:func:`~snnexit.simulate.inputs.check_inputs`: shape, dtype, NaN)."""
        x = self.checked_inputs(x, temporal).to(self.device)
        self._ensure_fan_out(x[:, 0] if temporal else x)
        session = self.session(x.shape[0], labels)
        current = x
        for t in range(self.T):
            frame = current[:, t] if temporal else current
            session._advance(frame)
            if session.done:
                break
            if self.compact and current.shape[0] != session.active.numel():
                current = x.index_select(0, session.active)
        return session.result()
