"""Chunk plans from exit forecasts (snnexit.runtime.planning): never a decision changed, the
cheapest chunk by brute force, forecast errors learned as the closed form says.

The network is test_runtime's dyadic float64 one (every sum exact: any difference is a bug).
"""

import itertools

import pytest
import torch

from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES
from snnexit.runtime.chunked import ChunkedEngine
from snnexit.runtime.engine import EarlyExitEngine
from snnexit.runtime.forecasts import ExitForecaster, ForecastErrors
from snnexit.runtime.planning import (RunPlan, SlowdownBudget, exit_distribution, next_chunk, plan_chunks,
                                      static_choices, walk)
from test_runtime import T, _one_thread, dyadic_inputs, dyadic_network, fitted, setup, spread_dc  # noqa: F401


def chunky(k, m):
    """A cost model where a chunk pays (a large fixed cost per chunk) and rows cost alike."""
    return 1.0 + 0.05 * k * m


@pytest.mark.parametrize("batch_size", [1, 5, 64])
@pytest.mark.parametrize("name", [n for n in POLICIES.names() if n not in ("oracle", "oracle_stable")])
def test_forecast_plans_take_the_step_engines_decisions(setup, name, batch_size):
    snn, val, test, x, _ = setup
    policy = fitted(name, val)
    if not policy.online:
        return
    engine = ChunkedEngine(snn, policy, T, trace=val, forecast=True, chunk_time=chunky, threads=None)
    assert engine.forecaster is not None
    n = 24 if batch_size == 1 else len(x)
    step = EarlyExitEngine(snn, policy, T).run(x[:n])
    runs = [engine.run(x[i:i + batch_size]) for i in range(0, n, batch_size)]
    assert torch.equal(torch.cat([r.exit_steps for r in runs]), step.exit_steps)
    assert torch.equal(torch.cat([r.predictions for r in runs]), step.predictions)
    assert torch.equal(torch.cat([r.outputs for r in runs]), step.outputs)
    for r in runs:  # the chunks run reach the last exit; the schedule goes on to T
        assert sum(r.schedule) >= T and r.steps_computed.max() <= T
        assert bool((r.steps_computed >= r.exit_steps).all())


def test_forecasts_learn_from_the_trace_and_from_every_exit(setup):
    snn, val, _, x, _ = setup
    policy = spread_dc(val)
    engine = ChunkedEngine(snn, policy, T, trace=val, forecast=True, chunk_time=chunky, threads=None)
    learned = engine.forecaster.errors.total
    assert learned == int((policy.exit_steps(val) - 1).sum())  # one forecast per input and step s before its exit
    made = 0
    for i in range(8):
        r = engine.run(x[i:i + 1])
        ran = list(itertools.accumulate(r.schedule))
        chunks_run = next(c for c, end in enumerate(ran, 1) if end >= int(r.steps_computed[0]))
        made += chunks_run - 1  # a forecast before every chunk but the first, each recorded at the exit
    assert engine.forecaster.errors.total - learned == made


def test_without_forecasts_or_with_a_cost_model_the_plan_is_the_static_one(setup):
    snn, val, _, x, _ = setup
    policy = spread_dc(val)
    engine = ChunkedEngine(snn, policy, T, trace=val, chunk_time=chunky, threads=None)  # a model: no forecasts
    assert engine.forecaster is None
    r = engine.run(x[:7])
    assert r.schedule == plan_chunks(exit_distribution(policy.exit_steps(val), T), 7, chunky)


def compositions(n: int):
    """Every way to split n steps into chunks, in order."""
    for cuts in itertools.product([0, 1], repeat=n - 1):
        plan, k = [], 1
        for c in cuts:
            if c:
                plan.append(k)
                k = 1
            else:
                k += 1
        yield tuple(plan + [k])


def brute_force_first_chunk(survivals: torch.Tensor, start: int, chunk_time) -> float:
    """The least expected time over every composition of T - start into chunks (the model of next_chunk)."""
    T = survivals.shape[1] - 1
    stopped = (1.0 - survivals.double()).clamp_min(0.0)
    runs = 1.0 - stopped.prod(0)
    alive = survivals.double().sum(0)
    best = float("inf")
    for plan in compositions(T - start):
        s, cost = start, 0.0
        for k in plan:
            p = float(runs[s])
            if p > 0:
                cost += p * chunk_time(k, float(alive[s]) / p)
            s += k
        best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_next_chunk_is_the_first_of_the_cheapest_plan(seed):
    g = torch.Generator().manual_seed(seed)
    T, m, start = 7, 3, 1 + seed % 3
    exits = torch.randint(start + 1, T + 1, (m,), generator=g)
    errors = ForecastErrors(T)
    errors.add(torch.full((20,), start), torch.randint(-1, 2, (20,), generator=g))
    surv = errors.survival(start, exits)
    cost = (lambda k, mm: 1.0 + 0.4 * k * mm) if seed % 2 else (lambda k, mm: 0.2 + k * mm)
    k = next_chunk(surv, start, cost)
    stopped = (1.0 - surv.double()).clamp_min(0.0)
    runs, alive = 1.0 - stopped.prod(0), surv.double().sum(0)
    first = float(runs[start]) * cost(k, float(alive[start]) / float(runs[start]))
    rest = brute_force_first_chunk(surv, start + k, cost) if start + k < T else 0.0
    assert first + rest == pytest.approx(brute_force_first_chunk(surv, start, cost))


def test_forecast_errors_shift_a_forecast_into_a_survival_curve():
    T = 6
    errors = ForecastErrors(T)
    assert torch.equal(errors.survival(2, torch.tensor([4]))[0],  # nothing learned: the forecast is the exit
                       torch.tensor([1, 1, 1, 1, 0, 0, 0], dtype=torch.float64))
    errors.add(torch.full((16,), 2), torch.tensor([1] * 8 + [-1] * 8))  # half one step late, half early
    s = errors.survival(2, torch.tensor([4, 6]))
    assert torch.allclose(s[0], torch.tensor([1, 1, 1, 0.5, 0.5, 0, 0], dtype=torch.float64))
    assert torch.allclose(s[1], torch.tensor([1, 1, 1, 1, 1, 0.5, 0], dtype=torch.float64))  # late is cut at T


def test_one_input_forecast_by_bisection_matches_the_scan(setup):
    _, val, _, _, _ = setup
    policy = spread_dc(val)
    forecaster = ExitForecaster(policy, T)
    for s in (1, 3, 6):
        acc = val.outputs[s - 1, :40]
        together = forecaster.forecast(acc, s, val.meta)
        alone = torch.cat([forecaster.forecast(acc[i:i + 1], s, val.meta) for i in range(len(acc))])
        assert torch.equal(together, alone)
        assert bool((together > s).all()) and bool((together <= T).all())


def test_run_plan_without_a_paying_chunk_drops_the_forecaster(setup):
    _, val, _, _, _ = setup
    forecaster = ExitForecaster(spread_dc(val), T)
    per_step = lambda k, m: k * (1.0 + m)  # noqa: E731  (k steps cost k single steps)
    choices = static_choices(exit_distribution(torch.arange(1, T + 1), T), 4, per_step)
    assert RunPlan(choices, per_step, 4, forecaster).forecaster is None
    assert RunPlan(choices, chunky, 4, forecaster).forecaster is forecaster


def test_a_fresh_network_learns_forecasts_without_fixing_its_layer_sizes(setup):
    """Forecasts learned from a trace before the engine's network ever stepped: the run's cost
    still counts every layer's neurons (the meta is taken after a step, not at construction)."""
    _, val, _, x, _ = setup
    policy = spread_dc(val)
    fresh = dyadic_network()
    engine = ChunkedEngine(fresh, policy, T, trace=val, forecast=True, chunk_time=chunky, threads=None)
    got = engine.run(x[:5])
    want = EarlyExitEngine(dyadic_network(), policy, T).run(x[:5])
    assert got.cost.neurons_per_layer == want.cost.neurons_per_layer and all(got.cost.neurons_per_layer)
    assert torch.equal(got.exit_steps, want.exit_steps) and torch.equal(got.spikes, want.spikes)


def test_bad_planning_arguments_are_refused(setup):
    snn, val, _, _, _ = setup
    policy = spread_dc(val)
    with pytest.raises(SnnexitError, match="trace must be a Trace"):
        ChunkedEngine(snn, policy, T, trace=val.outputs)
    with pytest.raises(SnnexitError, match="forecast must be"):
        ChunkedEngine(snn, policy, T, forecast="yes")
    with pytest.raises(SnnexitError, match="max_threads"):
        ChunkedEngine(snn, policy, T, max_threads=0)
    for bad in (-0.1, float("nan"), float("inf"), True, "5%"):
        with pytest.raises(SnnexitError, match="max_slowdown must lie in"):
            ChunkedEngine(snn, policy, T, max_slowdown=bad)
    with pytest.raises(SnnexitError, match="max_slowdown bounds a planned schedule"):
        ChunkedEngine(snn, policy, T, chunks=4, max_slowdown=0.1)


# ---- the slowdown budget: what early exit may cost an input that does not stop -----------------

def expected_time(plan, survival: torch.Tensor, n: int, chunk_time) -> float:
    """plan_chunks's model, computed directly: a chunk runs if any of n inputs is still running."""
    s, total = 0, 0.0
    for k in plan:
        p = float(survival[s])
        runs = 1.0 - (1.0 - p) ** n
        if runs > 0:
            total += runs * chunk_time(k, n * p / runs)
        s += k
    return total


def lumpy(k, m):
    """Chunks pay, with a bump at 4 steps (measured tables are not affine)."""
    return 0.8 + 0.3 * k * m + (0.6 if k == 4 else 0.0)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("cost", [chunky, lumpy], ids=["chunky", "lumpy"])
def test_the_fastest_way_to_the_end_is_the_least_over_every_plan(n, cost):
    T_ = 8
    budget = SlowdownBudget(T_, n, cost, 0.0)
    for s in range(T_):
        plans = list(compositions(T_ - s))
        assert budget.rest[s] == pytest.approx(min(sum(cost(k, n) for k in p) for p in plans))
        assert budget.planned(walk(budget.fallback, s, T_)) == pytest.approx(budget.rest[s])


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("slowdown", [0.0, 0.1, 0.3, 1.0])
def test_a_bounded_plan_keeps_its_budget_and_costs_no_more_than_it_must(seed, slowdown):
    """Against brute force over all 2^(T-1) plans: the plan keeps the budget; its expected time lies
    between the least of the plans that keep it and that of the fastest way to T (which keeps any);
    with the budget slack enough for the unbounded plan, it is the unbounded plan."""
    T_, n = 9, 1 + seed % 3
    g = torch.Generator().manual_seed(seed)
    survival = exit_distribution(torch.randint(1, T_ + 1, (40,), generator=g), T_)
    cost = chunky if seed % 2 else lumpy
    budget = SlowdownBudget(T_, n, cost, slowdown)
    plan = walk(static_choices(survival, n, cost, budget), 0, T_)
    assert sum(plan) == T_
    assert budget.kept_by(plan) and budget.planned(plan) <= budget.limit * (1 + 1e-9)
    keeping = [p for p in compositions(T_) if budget.kept_by(p)]
    least = min(expected_time(p, survival, n, cost) for p in keeping)
    fastest = expected_time(walk(budget.fallback, 0, T_), survival, n, cost)
    assert least - 1e-9 <= expected_time(plan, survival, n, cost) <= fastest + 1e-9
    free = plan_chunks(survival, n, cost)
    if budget.planned(free) <= budget.limit:
        assert plan == free


class Hopeful:
    """A policy sure every input stops at the next step (it never does): forecasts then ask for
    one-step chunks forever, the worst case for an input that does not stop."""

    def decide(self, accumulated, t, meta, labels=None):
        return torch.ones(accumulated.shape[0], dtype=torch.bool)


@pytest.mark.parametrize("slowdown", [0.0, 0.25, 1.0, 2.0, 4.0, None])
def test_every_chunk_a_run_takes_keeps_the_budget_whatever_the_forecasts_say(slowdown):
    """Forecasts that are always wrong (exit next step) drive a run to T one chunk at a time when
    nothing bounds it; with a budget, the chunks taken by an input that never stops sum to at most
    its limit, and the spare part of the budget is still spent on the chunks the forecasts ask for."""
    T_, n = 12, 1
    forecaster = ExitForecaster(Hopeful(), T_)
    budget = None if slowdown is None else SlowdownBudget(T_, n, chunky, slowdown)
    choices = static_choices(exit_distribution(torch.ones(5), T_), n, chunky, budget)  # "all stop at step 1"
    plan = RunPlan(choices, chunky, n, forecaster, {}, budget)
    s, acc = 0, torch.ones(n, 3)
    while s < T_:
        s += plan.next(s, acc if s else None, torch.arange(n))
    fixed = chunky(T_, n)
    taken = sum(chunky(k, n) for k in plan.taken)
    if slowdown is None:
        assert plan.taken[1:] == [1] * (len(plan.taken) - 1) and taken > 2 * fixed
        return
    assert taken <= (1 + slowdown) * fixed * (1 + 1e-12)
    extra_chunks = int(slowdown * fixed / 1.0 + 1e-9)  # chunky: each chunk beyond one costs 1.0 more
    assert len(plan.taken) == 1 + extra_chunks


def steppy(k, m):
    """A cost model where a chunk costs a little (short chunks pay where inputs stop)."""
    return 0.3 + 0.2 * k * m


@pytest.mark.parametrize("batch_size, slowdown", [(1, 0.2), (4, 0.03)])
def test_a_bounded_engine_takes_the_step_engines_decisions_and_keeps_the_budget(setup, batch_size, slowdown):
    snn, val, _, x, _ = setup
    policy = spread_dc(val)
    engine = ChunkedEngine(snn, policy, T, trace=val, forecast=True, chunk_time=steppy, threads=None,
                           max_slowdown=slowdown)
    step = EarlyExitEngine(snn, policy, T).run(x[:48])
    runs = [engine.run(x[i:i + batch_size]) for i in range(0, 48, batch_size)]
    assert torch.equal(torch.cat([r.exit_steps for r in runs]), step.exit_steps)
    assert torch.equal(torch.cat([r.outputs for r in runs]), step.outputs)
    assert torch.equal(torch.cat([r.spikes for r in runs]), step.spikes)
    limit = (1 + slowdown) * steppy(T, batch_size)  # one chunk of T: the fastest way to T in this model
    to_the_end = [r for r in runs if int(r.steps_computed.max()) == T]
    assert to_the_end  # some batch ran all T steps: every chunk it took is in its schedule
    for r in to_the_end:
        assert sum(r.schedule) == T and sum(steppy(k, batch_size) for k in r.schedule) <= limit * (1 + 1e-12)
    unbounded = ChunkedEngine(snn, policy, T, trace=val, forecast=True, chunk_time=steppy, threads=None)
    worst = max(sum(steppy(k, batch_size) for k in unbounded.run(x[i:i + batch_size]).schedule)
                for i in range(0, 48, batch_size))
    assert worst > limit  # without the budget some run breaks it: the test above is not vacuous


def test_chunk_lengths_take_turns_when_timed_so_a_busy_moment_slows_no_length_throughout(setup, monkeypatch):
    """A clock of our own: each chunk of k steps takes 1 + k units, except for four timed chunks in a
    row during which something else holds the core (+100 each). Timed length after length, those four
    could be every run of one length; taking turns, each length has at least one quiet run."""
    import snnexit.runtime.chunk_timing as chunk_timing

    snn, val, _, x, _ = setup
    engine = ChunkedEngine(snn, spread_dc(val), T, threads=None, timing_repeats=3)
    now, chunks_timed = [0.0], [0]

    def chunk(self, frames, m):
        chunks_timed[0] += 1
        now[0] += 1 + frames.shape[0] + (100.0 if 5 <= chunks_timed[0] <= 8 else 0.0)

    monkeypatch.setattr(chunk_timing, "clock_for", lambda threads: (lambda: now[0]))
    monkeypatch.setattr(chunk_timing.ChunkPlanner, "_chunk", chunk)
    engine.planner.measure(x[:1], 1, T, False)
    table = engine.planner.times[(1, 1)]
    assert sorted(table) == [1, 2, 4, 8, T] and chunks_timed[0] == 4 * len(table)
    assert table == {k: 1.0 + k for k in table}
