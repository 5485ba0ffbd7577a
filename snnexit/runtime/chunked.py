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
import statistics
import time
from dataclasses import dataclass

import torch

from snnexit.checks import check_integer
from snnexit.errors import SnnexitError
from snnexit.simulate.cost import Cost
from snnexit.simulate.inputs import check_inputs
from snnexit.simulate.stepper import chunk_frames, chunk_lengths
from snnexit.runtime.engine import EarlyExitEngine, ExitResult
from snnexit.runtime.threads import LoadMeter, num_threads


@dataclass
class ChunkedResult(ExitResult):
    """:class:`ExitResult` plus the steps each input was computed for and the plan used."""

    steps_computed: torch.Tensor | None = None  # (N,) int64 >= exit_steps
    schedule: tuple[int, ...] = ()
    threads: int = 0


def exit_distribution(exit_steps: torch.Tensor, T: int) -> torch.Tensor:
    """``(T + 1,)`` survival ``P(exit step > s)`` for ``s = 0..T`` (exit steps clipped to [1, T])."""
    steps = torch.as_tensor(exit_steps).long().clamp(1, T).cpu()
    if steps.numel() == 0:
        raise SnnexitError("no exit steps to plan chunks from")
    counts = torch.bincount(steps, minlength=T + 1).double()  # counts[s]: inputs exiting at s
    return 1.0 - counts.cumsum(0) / steps.numel()


def plan_chunks(survival: torch.Tensor, n: int, chunk_time) -> tuple[int, ...]:
    """The schedule of chunk lengths with the least expected time for a batch of ``n``.

    ``survival[s]`` is ``P(an input runs past step s)``; ``chunk_time(k, m)`` the time of a chunk of
    ``k`` steps on ``m`` inputs (``m`` may be fractional: an expectation). With inputs independent,
    the chunk after ``s`` steps runs if any input is still running (probability
    ``1 - (1 - p)^n``) on ``n p`` inputs on average; as ``chunk_time`` is affine in ``m`` between
    measured points, its expectation is ``P(run) * chunk_time(k, E[m | run])``. A dynamic program
    over ``s = T..0`` is exact for that model: O(T^2) evaluations.
    """
    T = survival.shape[0] - 1
    best = [0.0] * (T + 1)
    choice = [0] * (T + 1)
    for s in range(T - 1, -1, -1):
        p = float(survival[s])
        if p <= 0.0:
            best[s], choice[s] = 0.0, T - s  # nobody runs past s: the rest of the plan never executes
            continue
        runs = 1.0 - (1.0 - p) ** n
        alive = n * p / runs  # expected inputs in the chunk, given that it runs
        options = []
        for k in range(1, T - s + 1):
            cost = runs * chunk_time(k, alive) + best[s + k]
            options.append((cost, k))
        best[s], choice[s] = min(options)
    plan, s = [], 0
    while s < T:
        plan.append(choice[s])
        s += choice[s]
    return tuple(plan)


def exit_step_hint(exit_steps, T: int) -> torch.Tensor:
    """Exit steps given as a hint for the plan, checked: whole numbers in 1..T, at least one."""
    try:
        steps = torch.as_tensor(exit_steps)
    except (TypeError, ValueError, RuntimeError):
        raise SnnexitError(f"exit_steps must be a sequence of steps in 1..{T}, got {type(exit_steps).__name__}") from None
    if steps.dim() != 1 or steps.numel() == 0 or steps.is_complex() or steps.dtype == torch.bool:
        raise SnnexitError(f"exit_steps must be a non-empty 1-d sequence of steps in 1..{T}, got shape "
                           f"{tuple(steps.shape)} of {steps.dtype}")
    if steps.is_floating_point() and not bool((torch.isfinite(steps) & (steps == steps.round())).all()):
        raise SnnexitError(f"exit_steps must be whole steps in 1..{T}: NaN, infinite or fractional values given")
    steps = steps.long().cpu()
    if int(steps.min()) < 1 or int(steps.max()) > T:
        raise SnnexitError(f"exit_steps must lie in 1..{T}, got values in {int(steps.min())}..{int(steps.max())}")
    return steps


class ChunkPlanner:
    """Times chunks of each length on the network and plans schedules from exit distributions.

    ``times[(k, m)]`` are measured seconds for a chunk of ``k`` steps on ``m`` inputs, for ``k``
    in powers of two up to the longest chunk memory allows and ``m`` in ``{1, n}``; other
    ``(k, m)`` are interpolated linearly (and extrapolated from the last two points in ``k``).
    """

    def __init__(self, engine: "ChunkedEngine"):
        self.engine = engine
        self.times: dict[tuple[int, int], dict[int, float]] = {}  # (threads, m) -> {k: seconds}

    def lengths(self, n: int, max_k: int) -> list[int]:
        ks, k = [], 1
        while k <= max_k:
            ks.append(k)
            k *= 2
        if ks[-1] != max_k:
            ks.append(max_k)
        return ks

    def measure(self, x: torch.Tensor, threads: int, max_k: int, temporal: bool) -> None:
        """Time a chunk of every candidate length on the first ``m`` rows of ``x``, m in {1, n}."""
        n = x.shape[0]
        for m in sorted({1, n}):
            key = (threads, m)
            if key in self.times:
                continue
            rows = x[:m]
            table = {}
            for k in self.lengths(m, max_k):
                frames = self.engine._frames(rows, 0, k, temporal)
                runs = []
                for _ in range(self.engine.timing_repeats + 1):  # the first run warms up
                    self.engine.snn.reset()
                    started = time.perf_counter()
                    self.engine.snn.step_chunk(frames)
                    runs.append(time.perf_counter() - started)
                table[k] = statistics.median(runs[1:])
            self.engine.snn.reset()
            self.times[key] = table

    def chunk_time(self, threads: int, n: int):
        lo, hi = self.times[(threads, 1)], self.times[(threads, n)]

        def in_k(table: dict[int, float], k: int) -> float:
            ks = sorted(table)
            if k in table:
                return table[k]
            if k > ks[-1]:  # extrapolate along the last segment (longer chunks are refused anyway)
                a, b = ks[-2:] if len(ks) > 1 else (ks[-1], ks[-1])
            else:
                b = next(v for v in ks if v > k)
                a = max(v for v in ks if v < k)
            if a == b:
                return table[a] * k / a
            return table[a] + (table[b] - table[a]) * (k - a) / (b - a)

        def fn(k: int, m: float) -> float:
            t1 = in_k(lo, k)
            if n == 1:
                return t1
            return t1 + (in_k(hi, k) - t1) * (m - 1) / (n - 1)

        return fn


class ChunkedEngine(EarlyExitEngine):
    """Early exit in chunks of time steps, with the step engine's decisions.

    Args (beyond :class:`EarlyExitEngine`'s ``snn``, ``policy``, ``T``, ``device``,
    ``count_spikes``, ``fan_out``):
        chunks: ``"auto"`` (plan from exit steps and measured chunk times), an int ``k`` (chunks
            of k steps), or a sequence of chunk lengths summing to at least T.
        exit_steps: exit steps of the policy on data like the inputs to come (e.g.
            ``policy.exit_steps(val_trace)``), for the plan; without them the engine plans from
            the exits it has seen (a uniform guess before its first run).
        threads: ``"auto"`` (one thread unless more are measured to be faster at this batch size
            and other processes leave the cores free), an int, or None (torch's setting).
        max_chunk_bytes: memory cap for one chunk's activations; it bounds the chunk length.
        timing_repeats: repeats per measured chunk length when planning.
        chunk_time: a cost model ``(k, m) -> seconds`` of a chunk of k steps on m inputs, planned
            with instead of measured times: the same plan on every run and machine (a deployment
            whose traces are recorded with the engine's plan wants exactly that).
    """

    def __init__(self, snn, policy, T: int, device: str | torch.device = "cpu", chunks="auto",
                 exit_steps: torch.Tensor | None = None, threads="auto", count_spikes: bool = True,
                 fan_out: list[float] | None = None, max_chunk_bytes: int = 256 * 2 ** 20, timing_repeats: int = 3,
                 chunk_time=None):
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
        self.hint = None if exit_steps is None else exit_step_hint(exit_steps, self.T)
        self.seen: list[torch.Tensor] = []  # exit steps of earlier runs, when there is no hint
        self.planner = ChunkPlanner(self)
        self.load = LoadMeter()
        self._plans: dict[tuple[int, int], tuple[int, ...]] = {}  # (threads, n) -> schedule
        self._most_threads = torch.get_num_threads()
        self._many_faster: dict[tuple[int, int], bool] = {}  # (n, threads) -> faster than one thread?
        self._plan_basis: int = 0  # inputs seen when the cached plans were made (no hint)

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

    def _choose_threads(self, n: int) -> int | None:
        if self.threads is None or isinstance(self.threads, int):
            return self.threads
        usable = min(self._most_threads, int(self.load.free_cores() + 0.5))
        if usable <= 1:
            return 1
        if (n, usable) not in self._many_faster:
            self._many_faster[(n, usable)] = self._probe_threads(n, usable)
        return usable if self._many_faster[(n, usable)] else 1

    def _probe_threads(self, n: int, usable: int) -> bool:
        """Time one step at batch ``n`` with 1 and with ``usable`` threads: is ``usable`` faster?"""
        frames = self._frames(self._probe_x[:n], 0, 1, self._probe_temporal)
        best = {}
        for threads in (1, usable):
            with num_threads(threads):
                runs = []
                for _ in range(self.timing_repeats + 1):
                    self.snn.reset()
                    started = time.perf_counter()
                    self.snn.step_chunk(frames)
                    runs.append(time.perf_counter() - started)
            best[threads] = statistics.median(runs[1:])
        self.snn.reset()
        return best[usable] < best[1]

    def schedule(self, n: int, threads: int | None, x: torch.Tensor, temporal: bool) -> tuple[int, ...]:
        """The chunk lengths for a batch of ``n`` (planned once per thread count and batch size)."""
        if self.fixed_schedule is not None:
            return self.fixed_schedule
        if self.hint is None:
            seen = sum(len(s) for s in self.seen)
            if seen >= 2 * max(1, self._plan_basis):  # replan as the evidence doubles
                self._plans.clear()
                self._plan_basis = seen
        key = (threads or torch.get_num_threads(), n)
        if key not in self._plans:
            self._measure_rows(x, temporal)
            max_k = self._max_chunk(n)
            if self.chunk_time is None:
                self.planner.measure(x, key[0], max_k, temporal)
                fn = self.planner.chunk_time(key[0], n)
            else:
                fn = self.chunk_time
            self._plans[key] = plan_chunks(self._survival(), n, lambda k, m: fn(k, m) if k <= max_k else math.inf)
        return self._plans[key]

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
        x = check_inputs(self.snn, x, temporal=temporal, T=self.T, probe=True).to(self.device)
        n = x.shape[0]
        self._ensure_fan_out(x[:, 0] if temporal else x)
        self._probe_x, self._probe_temporal = x, temporal
        threads = self._choose_threads(n)
        with num_threads(threads):
            plan = self.schedule(n, threads, x, temporal)
            result = self._run(x, labels, temporal, plan)
        result.threads = threads or torch.get_num_threads()
        if self.hint is None:
            self.seen.append(result.exit_steps)
        return result

    def _run(self, x, labels, temporal: bool, plan: tuple[int, ...]) -> ChunkedResult:
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
        for k in plan:
            k = min(k, T - t0)
            y = snn.step_chunk(self._frames(current, t0, k, temporal))  # (k, m, C)
            counts = snn.chunk_spike_counts().to(torch.float64) if self.count_spikes else None  # (k, m, L)
            running = None  # positions (in the chunk's batch) still undecided; None: all of them
            for j in range(k):
                t = t0 + j + 1
                acc = y[0].clone() if acc is None else acc.add_(y[j])
                if counts is not None:
                    spk = counts[0].clone() if spk is None else spk.add_(counts[j])
                rows = acc if running is None else acc.index_select(0, running)
                if t >= T:
                    stop = torch.ones(rows.shape[0], dtype=torch.bool, device=rows.device)
                else:
                    lab = None if labels is None else labels.index_select(
                        0, active if running is None else active.index_select(0, running))
                    stop = policy.decide(rows if rows.dtype == torch.float32 else rows.float(), t, meta, lab)
                    stop = torch.as_tensor(stop, dtype=torch.bool, device=rows.device)
                    if stop.shape != (rows.shape[0],):
                        raise SnnexitError(f"{type(policy).__name__}.decide returned shape {tuple(stop.shape)}, "
                                           f"expected ({rows.shape[0]},)")
                if bool(stop.any()):
                    where = stop.nonzero().flatten()
                    pos = where if running is None else running.index_select(0, where)  # in the chunk's batch
                    idx = active.index_select(0, pos).cpu()
                    o = rows.index_select(0, where).float().cpu()
                    if out is None:
                        out = torch.zeros(n, o.shape[1])
                    out[idx] = o
                    pred[idx] = o.argmax(-1)
                    exit_steps[idx] = t
                    computed[idx] = t0 + k
                    if spk is not None:
                        if spikes is None:
                            spikes = torch.zeros(n, spk.shape[1], dtype=torch.float64)
                        spikes[idx] = spk.index_select(0, pos).cpu()
                    keep = (~stop).nonzero().flatten()
                    running = keep if running is None else running.index_select(0, keep)
                    if running.numel() == 0:
                        break
            t0 += k
            if running is not None and running.numel() == 0:
                break
            if running is not None:  # compact: drop the finished inputs before the next chunk
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
        return ChunkedResult(exit_steps, pred, out, spikes, cost, steps_computed=computed, schedule=plan)
