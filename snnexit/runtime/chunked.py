"""The time-chunked runtime: k steps layer by layer, every exit decision of the step engine.

:class:`~snnexit.runtime.engine.EarlyExitEngine` advances the whole network one step at a time,
so every convolution runs once per step: at batch size 1 that is a few hundred tiny kernel
launches per step. :class:`ChunkedEngine` runs a *chunk* of ``k`` steps at once
(``SpikingNetwork.step_chunk``): each convolution sees ``k x n`` inputs in one call and each
neuron steps through the chunk. Then, for ``t`` in the chunk, it asks the policy exactly what the
step engine asks after step ``t`` (the accumulated output of the inputs still running) and
records the exits; between chunks, finished inputs are dropped from the batch and the neuron
states. An input that stops inside a chunk was computed to the chunk's end: the result reports
both ``exit_steps`` (decided: the offline policy's, tested) and ``steps_computed``.

The chunk lengths come from a plan (:class:`ChunkPlanner`): with the distribution of exit steps
(from the policy on its fitting trace, or else what the engine has seen so far) and the measured
time of a chunk of each length on this machine, a dynamic program over "steps done so far" picks
the schedule of chunk lengths with the least expected time. Short chunks waste no steps, long
chunks launch fewer kernels; the plan weighs one against the other where the inputs really exit.

Memory: neuron states, ``(n, C)`` outputs, ``(n, L)`` spike counts and one chunk's activations,
whose length is capped by ``max_chunk_bytes``: it does not grow with T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch

from snnexit.checks import check_integer, check_range
from snnexit.errors import SnnexitError
from snnexit.exit.base import ExitPolicy
from snnexit.simulate.cost import Cost
from snnexit.simulate.stepper import chunk_frames, chunk_lengths
from snnexit.runtime.engine import EarlyExitEngine, ExitResult
from snnexit.runtime.forecasts import ExitForecaster
from snnexit.runtime.forecast_replay import replay_times
from snnexit.runtime.chunk_timing import ChunkPlanner, clock_for
from snnexit.runtime.chunk_sums import count_sums, running_sums
from snnexit.runtime.planning import (FixedPlan, RunPlan, SlowdownBudget,  # noqa: F401
                                      exit_distribution, exit_step_hint, plan_chunks, report_exits, run_lengths,
                                      schedule_time, static_choices, walk)
from snnexit.simulate.trace import Trace
from snnexit.runtime.threads import LoadMeter, num_threads


@dataclass
class ChunkedResult(ExitResult):
    """:class:`ExitResult` plus the steps each input was computed for and the plan used."""

    steps_computed: torch.Tensor | None = None  # (N,) int64 >= exit_steps
    schedule: tuple[int, ...] = ()  # the chunks run, then the static plan's rest from where the run ended
    threads: int = 0


class ChunkedEngine(EarlyExitEngine):
    """Early exit in chunks of time steps, with the step engine's decisions.

    Args (beyond :class:`EarlyExitEngine`'s ``snn``, ``policy``, ``T``, ``device``,
    ``count_spikes``, ``fan_out``):
        chunks: ``"auto"`` (plan from exit steps, forecasts and measured chunk times), an int
            ``k`` (chunks of k steps), or a sequence of chunk lengths summing to at least T.
        exit_steps: exit steps of the policy on data like the inputs to come (e.g.
            ``policy.exit_steps(val_trace)``), for the plan; without them the engine plans from
            the exits it has seen (a uniform guess before its first run).
        trace: a trace of inputs like those to come (the validation trace): its exit steps plan
            the first chunk (as ``exit_steps``), and its outputs teach the forecasts how far they
            miss. Without it they learn from the engine's own exits.
        forecast: with ``chunks="auto"``, plan each chunk after the first from where the running
            inputs' outputs say they will exit (:class:`~snnexit.runtime.forecasts.ExitForecaster`);
            False: one schedule from the exit distribution alone; None (default): with measured
            chunk times, forecasts at each batch size where replaying the ``trace`` says they pay
            (:mod:`~snnexit.runtime.forecast_replay`; always without a trace); none with a
            ``chunk_time`` model (its plan is then the same on every run) or a ``max_slowdown`` (a
            forecast costs time of its own, which the chunk times the budget counts leave out).
        threads: ``"auto"`` (one thread unless the run's schedule is measured to be faster with
            the cores other processes leave free: once per batch size), an int, or None (torch's).
        max_threads: with ``threads="auto"``, the most threads it may choose (default: torch's setting).
        max_chunk_bytes: memory cap for one chunk's activations; it bounds the chunk length.
        timing_repeats: repeats per measured chunk length when planning.
        chunk_time: a cost model ``(k, m) -> seconds`` of a chunk of k steps on m inputs, planned
            with instead of measured times: the same plan on every run and machine (a deployment
            whose traces are recorded with the engine's plan wants exactly that).
        max_slowdown: with ``chunks="auto"``, a bound on what early exit may cost the inputs that
            do not stop early: a run in which no input stops is planned to take at most
            ``1 + max_slowdown`` times fixed T's time (the fastest schedule of all T steps), by the
            chunk times the plan uses (:class:`~snnexit.runtime.planning.SlowdownBudget`; 0.05:
            at most 5% slower). None (default): no bound, the least expected time. The chunk
            times include the network, the running sums and the decisions, not a forecast's cost:
            with a budget, forecasts are off unless ``forecast=True``.

    Plans and forecasts choose only how many steps run together: every decision is the policy's
    own, taken after its own step, so the exits are the step engine's whatever the plan.
    """

    def __init__(self, snn, policy, T: int, device: str | torch.device = "cpu", chunks="auto",
                 exit_steps: torch.Tensor | None = None, threads="auto", count_spikes: bool = True,
                 fan_out: list[float] | None = None, max_chunk_bytes: int = 256 * 2 ** 20, timing_repeats: int = 3,
                 chunk_time=None, trace=None, forecast: bool | None = None, max_threads: int | None = None,
                 max_slowdown: float | None = None):
        super().__init__(snn, policy, T, device, compact=True, count_spikes=count_spikes, fan_out=fan_out)
        if isinstance(chunks, str):
            if chunks != "auto":
                raise SnnexitError(f"chunks must be 'auto', a positive int or a list of them, got {chunks!r}")
            self.fixed_schedule = None
        else:
            self.fixed_schedule = chunk_lengths(chunks, self.T)
        if not (threads in ("auto", None) or (isinstance(threads, int) and threads >= 1)):
            raise SnnexitError(f"threads must be 'auto', a positive int or None, got {threads!r}")
        self.threads = threads
        self.max_chunk_bytes = check_integer("max_chunk_bytes", max_chunk_bytes, 1)
        self.timing_repeats = check_integer("timing_repeats", timing_repeats, 1)
        if chunk_time is not None and not callable(chunk_time):
            raise SnnexitError(f"chunk_time must be a function (k, m) -> seconds, got {type(chunk_time).__name__}")
        self.chunk_time = chunk_time
        if max_slowdown is not None:
            check_range("max_slowdown", max_slowdown, 0.0, 100.0, " (0.05: at most 5% slower than fixed T) or None")
            if self.fixed_schedule is not None:
                raise SnnexitError("max_slowdown bounds a planned schedule: it needs chunks='auto', "
                                   f"got chunks={chunks!r}")
        self.max_slowdown = None if max_slowdown is None else float(max_slowdown)
        self._budgets: dict[tuple[int, int], SlowdownBudget] = {}  # (threads, n) -> the budget of a batch of n
        if forecast not in (None, True, False):
            raise SnnexitError(f"forecast must be True, False or None, got {forecast!r}")
        self.hint = None if exit_steps is None else exit_step_hint(exit_steps, self.T)
        self.seen: list[torch.Tensor] = []  # exit steps of earlier runs, when there is no hint
        self.planner = ChunkPlanner(self)
        self.load = LoadMeter()
        self._choices: dict[tuple[int, int], list[int]] = {}  # (threads, n) -> the static plan's chunk from each s
        self._most_threads = (torch.get_num_threads() if max_threads is None
                              else check_integer("max_threads", max_threads, 1))
        self._many_faster: dict[tuple[int, int], bool] = {}  # (n, threads) -> its plan faster than one thread's?
        self._plan_basis: int = 0  # inputs seen when the cached plans were made (no hint)
        self._chunk_times: dict[tuple[int, int], object] = {}  # (threads, n) -> chunk_time(k, m) planned with
        self._measured: dict[tuple[int, int], object] = {}  # (threads, n) -> chunk_time(k, m) measured
        self.forecaster = None
        self._replayed = forecast is None and chunk_time is None  # forecasts where a replay says they pay
        self.forecasts_pay: dict[tuple[int, int], bool] = {}  # (threads, n) -> do forecasts pay (the replay)?
        self._replay = None  # (outputs, exit steps) of the trace
        if forecast is None:  # forecasts cost time the chunk times leave out: none where a budget counts on them
            forecast = chunk_time is None and max_slowdown is None
        if forecast and self.fixed_schedule is None and not getattr(self.policy, "uses_labels_at_test", False):
            self.forecaster = ExitForecaster(self.policy, self.T)  # the run's meta comes with each run
        if trace is not None:
            self._learn_from(trace)

    def _learn_from(self, trace) -> None:
        if not isinstance(trace, Trace):
            raise SnnexitError(f"trace must be a Trace (the validation trace), got {type(trace).__name__}")
        if trace.T != self.T:
            raise SnnexitError(f"the planning trace has T = {trace.T} steps; this engine runs T = {self.T}")
        steps = self.policy.exit_steps(trace)
        self._replay = (trace.outputs, steps.long().cpu())
        if self.hint is None:
            self.hint = exit_step_hint(steps, self.T)
        if self.forecaster is not None:
            self.forecaster.learn(steps, trace.outputs, trace.meta)

    # ---- plans ------------------------------------------------------------------------------

    def _max_chunk(self, n: int) -> int:
        """The longest chunk whose activations fit ``max_chunk_bytes`` (at least 1 step)."""
        per_row = self._bytes_per_row
        return max(1, min(self.T, self.max_chunk_bytes // max(1, per_row * n)))

    def _survival(self) -> torch.Tensor:
        if self.hint is not None:
            return exit_distribution(self.hint, self.T)
        if self.seen:
            return exit_distribution(torch.cat(self.seen), self.T)
        return exit_distribution(torch.arange(1, self.T + 1), self.T)  # uniform before any run

    def _choose_threads(self, n: int, x: torch.Tensor, temporal: bool) -> int | None:
        if self.threads is None or isinstance(self.threads, int):
            return self.threads
        if self.device.type != "cpu":
            return None  # the accelerator computes: CPU threads only launch its kernels
        if self._most_threads <= 1:
            return 1  # nothing to choose: no load reading needed
        usable = min(self._most_threads, int(self.load.free_cores() + 0.5))
        if usable <= 1:
            return 1
        if (n, usable) not in self._many_faster:
            self._many_faster[(n, usable)] = (self._planned_time(n, usable, x, temporal)
                                              < self._planned_time(n, 1, x, temporal))
        return usable if self._many_faster[(n, usable)] else 1

    def _planned_time(self, n: int, threads: int, x: torch.Tensor, temporal: bool) -> float:
        """The expected time of the schedule a batch of ``n`` runs with ``threads`` threads, by
        chunk times measured with that many. Not one step timed with each count: at batch 1 a
        step's kernels are too small to share, and the two times differ by noise, while the k-row
        kernels of a chunk of k steps are shared. So fixed T (one chunk of T) and early exit (its
        plan) each take the count that is faster for what they run. The count changes no decision."""
        measured = self._measured_time(n, threads, x, temporal)
        return schedule_time(self.schedule(n, threads, x, temporal), self._survival(), n, measured)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _measured_time(self, n: int, threads: int | None, x: torch.Tensor, temporal: bool):
        """``chunk_time(k, m)`` at batch ``n`` with ``threads`` threads, measured on ``x`` (once)."""
        key = (threads or torch.get_num_threads(), n)
        if key not in self._measured:
            self._measure_rows(x, temporal)
            lengths = None if self.fixed_schedule is None else run_lengths(self.fixed_schedule, self.T)
            with num_threads(threads):
                self.planner.measure(x, key[0], self._max_chunk(n), temporal, lengths)
            self._measured[key] = self.planner.chunk_time(key[0], n)
        return self._measured[key]

    def _chunk_time(self, n: int, threads: int | None, x: torch.Tensor, temporal: bool):
        """``chunk_time(k, m)`` at batch ``n`` the plans use: measured or the given model (infinite
        past the memory cap)."""
        key = (threads or torch.get_num_threads(), n)
        if key not in self._chunk_times:
            self._measure_rows(x, temporal)
            max_k = self._max_chunk(n)
            fn = self._measured_time(n, threads, x, temporal) if self.chunk_time is None else self.chunk_time
            self._chunk_times[key] = lambda k, m: fn(k, m) if k <= max_k else math.inf
        return self._chunk_times[key]

    def choices(self, n: int, threads: int | None, x: torch.Tensor, temporal: bool) -> list[int]:
        """The static plan's next chunk from every step ``s`` for a batch of ``n`` (planned once per
        thread count and batch size, again as the exits seen double when there is no hint)."""
        if self.hint is None:
            seen = sum(len(s) for s in self.seen)
            if seen >= 2 * max(1, self._plan_basis):  # replan as the evidence doubles
                self._choices.clear()
                self._plan_basis = seen
        key = (threads or torch.get_num_threads(), n)
        if key not in self._choices:
            self._choices[key] = static_choices(self._survival(), n, self._chunk_time(n, threads, x, temporal),
                                                self.budget(n, threads, x, temporal))
        return self._choices[key]

    def budget(self, n: int, threads: int | None, x: torch.Tensor, temporal: bool) -> SlowdownBudget | None:
        """The slowdown budget of a batch of ``n`` (None without ``max_slowdown``)."""
        if self.max_slowdown is None:
            return None
        key = (threads or torch.get_num_threads(), n)
        if key not in self._budgets:
            self._budgets[key] = SlowdownBudget(self.T, n, self._chunk_time(n, threads, x, temporal), self.max_slowdown)
        return self._budgets[key]

    def _run_forecaster(self, n: int, threads: int | None, x: torch.Tensor, temporal: bool):
        """The forecaster a run of ``n`` plans with: where forecasts were left to the engine and a
        trace is at hand, only if replaying the trace says they pay at this batch size and thread
        count (:mod:`~snnexit.runtime.forecast_replay`: a forecast's own time against what it saves)."""
        if self.forecaster is None or not self._replayed or self._replay is None:
            return self.forecaster
        key = (threads or torch.get_num_threads(), n)
        if key not in self.forecasts_pay:
            outputs, steps = self._replay
            without, with_ = replay_times(self.forecaster, self.choices(n, threads, x, temporal),
                                          self._chunk_time(n, threads, x, temporal), outputs.to(self.device), steps,
                                          self.meta_after_first_step(), n, clock_for(threads))
            self.forecasts_pay[key] = with_ < without
        return self.forecaster if self.forecasts_pay[key] else None

    def schedule(self, n: int, threads: int | None, x: torch.Tensor, temporal: bool) -> tuple[int, ...]:
        """The static chunk lengths for a batch of ``n`` (forecasts may change them as a run goes)."""
        if self.fixed_schedule is not None:
            return self.fixed_schedule
        return walk(self.choices(n, threads, x, temporal), 0, self.T)

    # ---- running ----------------------------------------------------------------------------

    def _frames(self, x: torch.Tensor, t0: int, k: int, temporal: bool) -> torch.Tensor:
        """``(k, n, ...)`` inputs of steps ``t0 + 1 .. t0 + k``."""
        return chunk_frames(x, t0, k, temporal)

    def _measure_rows(self, x: torch.Tensor, temporal: bool) -> None:
        """Bytes one input-step of a chunk holds (for the memory cap), from one step of the network."""
        if not hasattr(self, "_bytes_per_row"):
            self.snn.reset()
            self.snn.step_chunk(self._frames(x[:1], 0, 1, temporal))
            largest = max(self.snn.neurons_per_layer(), default=1)
            self._bytes_per_row = 3 * largest * x.element_size()  # a layer's input, output and spikes
            self.snn.reset()

    @torch.no_grad()
    def run(self, x: torch.Tensor, labels: torch.Tensor | None = None, temporal: bool = False) -> ChunkedResult:
        """Run a batch (as :meth:`EarlyExitEngine.run`, the same input checks), chunk by chunk."""
        x = self.checked_inputs(x, temporal).to(self.device)
        n = x.shape[0]
        self._ensure_fan_out(x[:, 0] if temporal else x)
        threads = self._choose_threads(n, x, temporal)
        with num_threads(threads):
            if self.fixed_schedule is not None:
                plan = FixedPlan(self.fixed_schedule)
            else:
                plan = RunPlan(self.choices(n, threads, x, temporal), self._chunk_time(n, threads, x, temporal), n,
                               self._run_forecaster(n, threads, x, temporal), self.meta_after_first_step(),
                               self.budget(n, threads, x, temporal))
            result = self._run(x, labels, temporal, plan)
        result.threads = threads or torch.get_num_threads()
        if self.hint is None:
            self.seen.append(result.exit_steps)
        return result

    def _decisions(self, acc_steps: torch.Tensor, t0: int, labels, active: torch.Tensor, meta: dict) -> torch.Tensor:
        """``(k, m)`` bool: may each running input stop after each step ``t0 + 1 .. t0 + k`` of the
        chunk? The policy's decisions for the whole chunk in one call (``decide_steps``); after
        step T every input stops."""
        k, m = acc_steps.shape[:2]
        asked = k if t0 + k < self.T else k - 1  # after step T nothing is asked
        stop = torch.ones(k, m, dtype=torch.bool, device=acc_steps.device)
        if asked:
            rows = acc_steps[:asked]
            lab = None if labels is None else labels.index_select(0, active)
            decide_steps = getattr(self.policy, "decide_steps", None)  # a policy of one's own may have decide only
            if decide_steps is None:
                decide_steps = partial(ExitPolicy.decide_steps, self.policy)
            said = decide_steps(rows if rows.dtype == torch.float32 else rows.float(), t0 + 1, meta, lab)
            said = torch.as_tensor(said, dtype=torch.bool, device=acc_steps.device)
            if said.shape != (asked, m):
                raise SnnexitError(f"{type(self.policy).__name__}.decide_steps returned shape {tuple(said.shape)}, "
                                   f"expected {(asked, m)}")
            stop[:asked] = said
        return stop

    def _chunk(self, frames: torch.Tensor, acc, spk, t0: int, labels, active: torch.Tensor, meta: dict):
        """One chunk of a run, all that its length costs (the plans time exactly this): the
        network's ``k`` steps on ``frames`` ``(k, m, ...)``, the accumulated outputs ``(k, m, C)`` and
        spikes ``(k, m, L)`` (None without counting) after each step, and the policy's decisions
        ``(k, m)``; ``acc``, ``spk``: the sums before the chunk (None at the start)."""
        y = self.snn.step_chunk(frames)  # (k, m, C)
        counts = self.snn.chunk_spike_counts().to(torch.float64) if self.count_spikes else None
        acc_steps = running_sums(acc, y)
        spk_steps = None if counts is None else count_sums(spk, counts)
        return acc_steps, spk_steps, self._decisions(acc_steps, t0, labels, active, meta)

    def _run(self, x, labels, temporal: bool, plan) -> ChunkedResult:
        n, T, snn, policy = x.shape[0], self.T, self.snn, self.policy
        if labels is not None:
            labels = torch.as_tensor(labels).long().to(self.device)
            if labels.shape != (n,):
                raise SnnexitError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        exit_steps = torch.zeros(n, dtype=torch.long)
        computed = torch.zeros(n, dtype=torch.long)
        pred = torch.zeros(n, dtype=torch.long)
        out: torch.Tensor | None = None  # (n, C)
        spikes: torch.Tensor | None = None  # (n, L)
        active = torch.arange(n, device=self.device)  # original indices of the running inputs
        current = x
        acc = spk = None  # (m, C) accumulated output, (m, L) spikes, of the running inputs
        snn.reset()
        meta = self.meta_after_first_step()
        t0 = 0
        while t0 < T:
            k = min(plan.next(t0, acc, active), T - t0)
            acc_steps, spk_steps, stop = self._chunk(self._frames(current, t0, k, temporal), acc, spk, t0, labels,
                                                     active, meta)
            exits = stop.any(0)
            if bool(exits.any()):
                pos = exits.nonzero().flatten()  # in the chunk's batch
                first = stop.int().argmax(0).index_select(0, pos)  # the step in the chunk each one stops after
                idx = active.index_select(0, pos).cpu()
                o = acc_steps[first, pos].float().cpu()
                if out is None:
                    out = torch.zeros(n, o.shape[1])
                out[idx] = o
                pred[idx] = o.argmax(-1)
                steps = (first + t0 + 1).cpu()
                exit_steps[idx] = steps
                computed[idx] = t0 + k
                report_exits(plan, idx, steps)
                if spk_steps is not None:
                    if spikes is None:
                        spikes = torch.zeros(n, spk_steps.shape[2], dtype=torch.float64)
                    spikes[idx] = spk_steps[first, pos].cpu()
            acc = acc_steps[-1]
            spk = None if spk_steps is None else spk_steps[-1]
            t0 += k
            running = (~exits).nonzero().flatten()
            if running.numel() == 0:
                break
            if running.numel() < exits.numel():  # compact: drop the finished inputs before the next chunk
                snn.select(running)
                acc = acc.index_select(0, running)
                if spk is not None:
                    spk = spk.index_select(0, running)
                active = active.index_select(0, running)
                current = x.index_select(0, active)
        snn.reset()
        if spikes is None:
            spikes = torch.zeros(n, 0, dtype=torch.float64)
        neurons = list(meta.get("neurons_per_layer", [])) if self.count_spikes else []
        cost = Cost(exit_steps.clone(), spikes, neurons, self.fan_out if self.count_spikes else None,
                    self.input_macs if self.count_spikes else None)
        return ChunkedResult(exit_steps, pred, out, spikes, cost, steps_computed=computed,
                             schedule=plan.schedule())

