"""How many steps the time-chunked runtime computes at once: chunk plans.

A chunk of ``k`` steps costs less per step than ``k`` single steps (each layer runs once on
``k x n`` rows: weights are read once, kernels are larger), but an input that stops inside the
chunk was computed to its end. Two kinds of knowledge decide the next chunk's length:

* **where inputs like these exit**: the distribution of exit steps (the policy's on a validation
  trace, or the engine's own exits so far). :func:`plan_chunks` finds the schedule with the least
  expected time by a dynamic program over "steps done so far", given the measured time of a chunk
  of each length (:class:`~snnexit.runtime.chunk_timing.ChunkPlanner`).
* **where this input will exit** (:mod:`snnexit.runtime.forecasts`): the policy asked about each
  running input's output extrapolated to later steps, with a learned model of how far such
  forecasts miss; the next chunk is the first of the plan with the least expected time under that
  model (:func:`next_chunk`). An input forecast to stop at step 9 is then computed in one chunk to
  step 9, not in the short chunks a plan from the exit distribution alone needs where inputs stop.

A third, optional, input bounds what chunking may cost the inputs that do not stop early
(:class:`SlowdownBudget`): a run in which no input stops is planned within ``1 + max_slowdown``
of fixed T's time, and every chunk a run takes is checked against what is left of it.

Plans and forecasts change only how many steps run together, never a decision: every decision
is the policy's own, taken after its own step.
"""

from __future__ import annotations

import math

import torch

from snnexit.errors import SnnexitError


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


def exit_distribution(exit_steps: torch.Tensor, T: int) -> torch.Tensor:
    """``(T + 1,)`` survival ``P(exit step > s)`` for ``s = 0..T`` (exit steps clipped to [1, T])."""
    steps = torch.as_tensor(exit_steps).long().clamp(1, T).cpu()
    if steps.numel() == 0:
        raise SnnexitError("no exit steps to plan chunks from")
    counts = torch.bincount(steps, minlength=T + 1).double()  # counts[s]: inputs exiting at s
    return 1.0 - counts.cumsum(0) / steps.numel()


def _best_choices(T: int, start: int, runs_alive, chunk_time, penalty: list[float] | None = None,
                  first_allowed=None) -> list[int]:
    """``choice[s]`` for ``s = start..T-1``: the first chunk of the cheapest plan from ``s``.

    ``runs_alive(s)`` is ``(P(the chunk after s runs), E[inputs in it | it runs])``; the expected
    time of a plan is the sum over its chunks of ``P(run) * chunk_time(k, E[alive])``, plus
    ``penalty[k]`` for every chunk of ``k`` it holds whether it runs or not (a price on the time of
    a run in which no input stops: :func:`bounded_choices`). ``first_allowed(k)``: the chunks the
    plan may start with at ``start`` (all where None)."""
    best = [0.0] * (T + 1)
    choice = [0] * (T + 1)
    for s in range(T - 1, start - 1, -1):
        runs, alive = runs_alive(s)
        if runs <= 0.0 and penalty is None:
            best[s], choice[s] = 0.0, T - s  # nobody runs past s: the rest of the plan never executes
            continue
        cost, k_best = math.inf, 0
        for k in range(1, T - s + 1):
            if s == start and first_allowed is not None and not first_allowed(k):
                continue
            c = (runs * chunk_time(k, alive) if runs > 0.0 else 0.0) + best[s + k]
            if penalty is not None:
                c += penalty[k]
            if c < cost or k_best == 0:
                cost, k_best = c, k
        best[s], choice[s] = cost, k_best
    return choice


def walk(choice: list[int], start: int, T: int) -> tuple[int, ...]:
    """The chunks a plan whose next chunk from each step is ``choice[s]`` runs from ``start`` to T."""
    plan, s = [], start
    while s < T:
        plan.append(choice[s])
        s += choice[s]
    return tuple(plan)


def plan_chunks(survival: torch.Tensor, n: int, chunk_time) -> tuple[int, ...]:
    """The schedule of chunk lengths with the least expected time for a batch of ``n``.

    ``survival[s]`` is ``P(an input runs past step s)``; ``chunk_time(k, m)`` the time of a chunk of
    ``k`` steps on ``m`` inputs (``m`` may be fractional: an expectation). With inputs independent,
    the chunk after ``s`` steps runs if any input is still running (probability
    ``1 - (1 - p)^n``) on ``n p`` inputs on average; as ``chunk_time`` is affine in ``m`` between
    measured points, its expectation is ``P(run) * chunk_time(k, E[m | run])``. A dynamic program
    over ``s = T..0`` is exact for that model: O(T^2) evaluations.
    """
    return walk(static_choices(survival, n, chunk_time), 0, survival.shape[0] - 1)


def _batch_runs_alive(survival: torch.Tensor, n: int):
    """``runs_alive(s)`` for a batch of ``n`` independent inputs with this survival curve: the
    chunk after ``s`` runs unless all of them have stopped, on ``E[inputs running | it runs]``."""
    p = [float(v) for v in survival]

    def runs_alive(s):
        runs = 1.0 - (1.0 - p[s]) ** n
        return runs, (n * p[s] / runs if runs > 0 else 0.0)

    return runs_alive


def run_lengths(chunks, T: int) -> list[int]:
    """The chunks a run of T steps computes: ``chunks`` up to step T, the last cut there."""
    lengths, s = [], 0
    for k in chunks:
        if s >= T:
            break
        lengths.append(min(k, T - s))
        s += k
    return lengths


def schedule_time(chunks, survival: torch.Tensor, n: int, chunk_time) -> float:
    """The expected time of running ``chunks`` (:func:`run_lengths`) on a batch of ``n``: the
    objective :func:`plan_chunks` minimises, for any schedule."""
    runs_alive = _batch_runs_alive(survival, n)
    total, s = 0.0, 0
    for k in run_lengths(chunks, survival.shape[0] - 1):
        runs, alive = runs_alive(s)
        total += runs * chunk_time(k, alive) if runs > 0.0 else 0.0
        s += k
    return total


def static_choices(survival: torch.Tensor, n: int, chunk_time, budget: "SlowdownBudget | None" = None) -> list[int]:
    """:func:`plan_chunks`'s first chunk from every ``s`` (the plan from wherever a run stands);
    with a ``budget``, the cheapest plan found that keeps it (:func:`bounded_choices`)."""
    T = survival.shape[0] - 1
    runs_alive = _batch_runs_alive(survival, n)
    if budget is None:
        return _best_choices(T, 0, runs_alive, chunk_time)
    return bounded_choices(T, runs_alive, chunk_time, budget)


class SlowdownBudget:
    """The promise that no input is much slower than fixed T: a run in which no input stops (the
    hardest inputs' case) is planned to take at most ``(1 + max_slowdown)`` times the fastest
    schedule of all T steps, by the chunk times on ``n`` inputs (fixed T's own time: one chunk of
    T where memory allows).

    ``rest[s]`` is the least time of steps ``s + 1 .. T`` with every input running. A chunk of ``k``
    after ``s`` steps, with ``spent`` planned so far, keeps the promise iff ``spent + time(k) +
    rest[s + k] <= limit`` (:meth:`allows`). :class:`RunPlan` checks every chunk a run takes, so
    the promise holds whatever proposes the chunks (the static plan or forecasts); a chunk it
    refuses is replaced by the first of the fastest way to T (:attr:`fallback`), always allowed
    as long as every earlier chunk was.
    """

    def __init__(self, T: int, n: int, chunk_time, max_slowdown: float):
        self.T, self.max_slowdown = T, float(max_slowdown)
        self.time = [0.0] + [float(chunk_time(k, n)) for k in range(1, T + 1)]  # every input running
        self.rest, self.fallback = [0.0] * (T + 1), [0] * (T + 1)
        for s in range(T - 1, -1, -1):
            self.rest[s], self.fallback[s] = min((self.time[k] + self.rest[s + k], k) for k in range(1, T - s + 1))
        self.limit = (1.0 + self.max_slowdown) * self.rest[0]
        self._slack = 1e-9 * self.limit  # the same sums added in another order round differently

    def allows(self, s: int, spent: float, k: int) -> bool:
        return spent + self.time[k] + self.rest[s + k] <= self.limit + self._slack

    def planned(self, chunks) -> float:
        """The planned time of ``chunks`` with every input running."""
        return sum(self.time[k] for k in chunks)

    def kept_by(self, chunks) -> bool:
        """Do ``chunks``, run to T with every input running, keep the budget?"""
        return self.planned(chunks) <= self.limit + self._slack


def bounded_choices(T: int, runs_alive, chunk_time, budget: SlowdownBudget) -> list[int]:
    """The static plan with the least expected time among those found to keep ``budget``.

    A Lagrangian search: every chunk of a plan is priced ``lam * time(k)`` on top of its expected
    time (all of a plan's chunks run when no input stops), and ``lam`` is bisected to the least
    price whose cheapest plan keeps the budget. ``lam = 0`` is the unbounded plan; a price high
    enough gives the fastest way to T, which keeps any budget. (The search may miss a plan that
    keeps the budget at a lower expected time: a Lagrangian's duality gap; it never returns one
    that breaks it.)"""
    def plan(lam: float) -> list[int]:
        return _best_choices(T, 0, runs_alive, chunk_time, penalty=[lam * t for t in budget.time])

    def keeps(choice: list[int]) -> bool:
        return budget.kept_by(walk(choice, 0, T))

    choice = _best_choices(T, 0, runs_alive, chunk_time)
    if keeps(choice):
        return choice
    lo, hi = 0.0, 1.0
    while not keeps(kept := plan(hi)):
        lo, hi = hi, hi * 16.0
        if hi > 1e12:  # the fastest way to T keeps every budget: reached long before this
            return list(budget.fallback)
    for _ in range(40):  # kept: the plan at the least price known to keep the budget (hi)
        mid = (lo + hi) / 2.0
        if keeps(candidate := plan(mid)):
            hi, kept = mid, candidate
        else:
            lo = mid
    return kept


def next_chunk(survivals: torch.Tensor, start: int, chunk_time, first_allowed=None) -> int:
    """The first chunk of the cheapest plan from step ``start`` for inputs with their own
    survival curves ``survivals`` ``(m, T + 1)`` (``survivals[i, s] = P(input i runs past s)``):
    the chunk after ``s`` runs unless every input has stopped, on the expected number still running.
    ``first_allowed(k)``: the chunks it may be (all where None)."""
    T = survivals.shape[1] - 1
    surv = survivals.double()
    stopped = (1.0 - surv).clamp_min(0.0)
    runs = (1.0 - stopped.prod(0)).tolist()  # (T + 1,)
    alive = surv.sum(0).tolist()

    def runs_alive(s):
        return runs[s], (alive[s] / runs[s] if runs[s] > 0 else 0.0)

    return _best_choices(T, start, runs_alive, chunk_time, first_allowed=first_allowed)[start]


def report_exits(plan, idx: torch.Tensor, steps: torch.Tensor) -> None:
    """Tell ``plan`` that inputs ``idx`` stopped at ``steps`` (both ``(k,)``, on the CPU), one exit
    step at a time in step order, as they were decided (a forecaster learns its errors in that
    order: a run and a replay of it must report alike)."""
    for t in steps.unique().tolist():
        plan.exited(idx[steps == t], t)


class FixedPlan:
    """The chunk lengths the caller gave, in order (one run's view, as :class:`RunPlan`)."""

    def __init__(self, lengths: tuple[int, ...]):
        self.lengths, self._next = tuple(lengths), 0

    def next(self, t0: int, acc, active) -> int:
        self._next += 1
        return self.lengths[self._next - 1]

    def exited(self, idx: torch.Tensor, t: int) -> None:
        pass

    def schedule(self) -> tuple[int, ...]:
        return self.lengths


class RunPlan:
    """The chunk after each step ``s`` of one run: the static plan's (``choices[s]``) for the first
    chunk, and for every later one too unless a ``forecaster`` is given and chunking pays at this
    batch size; then the cheapest given where the running inputs are forecast to exit. Each
    forecast's error is recorded when its input exits (the forecaster learns as the engine runs).
    With a ``budget`` (:class:`SlowdownBudget`), every chunk keeps it: forecasts choose among the
    chunks it allows, and a static choice it refuses gives way to the fastest way to T."""

    def __init__(self, choices: list[int], chunk_time, n: int, forecaster: "ExitForecaster | None" = None,
                 meta: dict | None = None, budget: SlowdownBudget | None = None):
        self.choices, self.chunk_time, self.taken, self.meta = choices, chunk_time, [], meta
        self.T = len(choices) - 1
        self.budget, self.spent = budget, 0.0  # the planned time of the chunks taken, every input running
        self.forecaster = forecaster if forecaster is not None and self._chunking_pays(n) else None
        # forecasts[i, s]: the exit step forecast for input i after s steps (0: none made)
        self.forecasts = torch.zeros(n, self.T + 1, dtype=torch.long) if self.forecaster is not None else None

    def _chunking_pays(self, n: int) -> bool:
        """Is any chunk of k > 1 steps faster than k single steps at this batch size? (If not, one
        step per chunk is the fastest plan whatever the exits, and forecasts would only cost.)"""
        one = self.chunk_time(1, n)
        return any(self.chunk_time(k, n) < k * one for k in range(2, self.T + 1))

    def next(self, t0: int, acc: torch.Tensor | None, active: torch.Tensor) -> int:
        """The next chunk's length after ``t0`` steps, for the running inputs ``active`` (their
        original indices) with accumulated outputs ``acc``."""
        budget = self.budget
        if self.forecaster is None or t0 == 0 or acc is None:
            k = self.choices[t0]
            if budget is not None and not budget.allows(t0, self.spent, k):
                k = budget.fallback[t0]
        else:
            p = self.forecaster.forecast(acc, t0, self.meta)
            self.forecasts[active.cpu(), t0] = p
            allowed = None if budget is None else tuple(
                k for k in range(1, self.T - t0 + 1) if budget.allows(t0, self.spent, k))
            k = self.forecaster.next_chunk(t0, p, self.chunk_time, allowed)
        if budget is not None:
            self.spent += budget.time[k]
        self.taken.append(k)
        return k

    def exited(self, idx: torch.Tensor, t: int) -> None:
        """Inputs ``idx`` (original indices, on the CPU) stopped at step ``t``."""
        if self.forecasts is None:
            return
        made = self.forecasts.index_select(0, idx)  # (k, T + 1): the forecasts made for these inputs
        s, p = (made > 0).nonzero(as_tuple=True)[1], made[made > 0]  # both in row-major order
        if s.numel():
            self.forecaster.errors.add(s, t - p)

    def schedule(self) -> tuple[int, ...]:
        """The chunks run, then the static plan's rest from where the run ended (so the lengths
        sum to T at least; without forecasts, the static plan itself)."""
        done = sum(self.taken)
        return tuple(self.taken) + (walk(self.choices, done, self.T) if done < self.T else ())
