"""Replaying the trace to decide whether exit forecasts pay (snnexit.runtime.forecast_replay):
the replay of the static plan is the plan's expected time, the replay with forecasts runs the
chunks the engine runs, and the engine forecasts only where the replay says they pay.

The network is test_runtime's dyadic float64 one: the trace's outputs are the engine's, exactly.
"""

import itertools

import pytest
import torch

import snnexit.runtime.chunked as chunked
from snnexit.exit import DynamicConfidence
from snnexit.runtime.chunked import ChunkedEngine
from snnexit.runtime.forecast_replay import replay_batches, replay_times, replayed_run
from snnexit.runtime.forecasts import ExitForecaster
from snnexit.simulate.trace import Trace
from snnexit.runtime.planning import RunPlan, exit_distribution, schedule_time, static_choices, walk
from test_runtime import T, _one_thread, setup, spread_dc  # noqa: F401


def balanced(k, m):
    """A cost model where a chunk's fixed cost is two steps' time: plans split runs, and where a
    chunk ends matters."""
    return 0.2 + 0.1 * k * m


def still():
    """A clock that never moves: the replay then prices only the chunks."""
    return 0.0


def test_replay_batches_take_every_input_once_before_any_twice():
    assert sorted(torch.cat(replay_batches(10, 1)).tolist()) == list(range(10))  # batch 1: each input once
    batches = replay_batches(300, 16)
    assert len(batches) == 256 // 16 and all(b.numel() == 16 for b in batches)
    assert torch.cat(batches).unique().numel() == 256  # 256 of 300 inputs, none twice
    big = replay_batches(100, 256)  # a batch larger than the trace: every input, then again
    assert len(big) == 1 and big[0].numel() == 256 and torch.bincount(big[0]).min() >= 2


def test_the_static_replay_at_batch_1_is_the_plans_expected_time(setup):
    """Over every input of the trace once, the replayed static plan's mean time is the closed form
    the plan minimises (planning.schedule_time on the trace's exit distribution)."""
    _, _, test, _, _ = setup
    policy = spread_dc(test)
    steps = policy.exit_steps(test)
    survival = exit_distribution(steps, T)
    choices = static_choices(survival, 1, balanced)
    without, _ = replay_times(ExitForecaster(policy, T), choices, balanced, test.outputs, steps, test.meta, 1, still)
    assert without == pytest.approx(schedule_time(walk(choices, 0, T), survival, 1, balanced), rel=1e-12)


def test_the_replay_with_forecasts_runs_the_chunks_the_engine_runs(setup):
    """The engine runs the trace's inputs one by one with forecasts; the replay, from a fork of its
    forecaster taken before, replays the same inputs in the same order: the same chunks, input
    by input (both learn each exit's forecast errors as they go)."""
    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    engine = ChunkedEngine(snn, policy, T, trace=val, forecast=True, chunk_time=balanced, threads=None)
    twin = engine.forecaster.fork()
    steps = policy.exit_steps(test)
    ran = []
    for i in range(40):
        r = engine.run(x[i:i + 1])
        ends = list(itertools.accumulate(r.schedule))
        chunks = r.schedule[:next(c for c, end in enumerate(ends, 1) if end >= int(r.steps_computed[0]))]
        ran.append(sum(balanced(k, 1) for k in chunks))
    choices, meta = engine.choices(1, None, x[:1], False), engine.meta_after_first_step()
    assert len(set(ran)) > 2  # the runs differ: a test that could fail
    for i in range(40):
        plan = RunPlan(choices, balanced, 1, twin, meta)
        assert replayed_run(plan, torch.tensor([i]), test.outputs, steps, balanced, still) == ran[i], i
    assert twin.errors.total == engine.forecaster.errors.total  # the fork learned apart, the same errors


def linear_trace(N: int, seed: int) -> Trace:
    """Outputs that grow exactly linearly in t (each input's own rate): a forecast ``Y_s * t / s``
    is then the output at t itself, so forecasts never miss."""
    g = torch.Generator().manual_seed(seed)
    rates = torch.randn(N, 10, generator=g) * torch.rand(N, 1, generator=g).mul(0.6)
    return Trace(torch.arange(1, T + 1, dtype=torch.float32).view(T, 1, 1) * rates, torch.randint(0, 10, (N,), generator=g))


class Clock:
    """The replay's clock: it moves only by the price of each forecast."""
    now, calls = 0.0, 0

    def __call__(self):
        return self.now


class PricedForecasts(ExitForecaster):
    def __init__(self, policy, T, clock, price):
        super().__init__(policy, T)
        self.clock, self.price = clock, price

    def forecast(self, acc, s, meta):
        self.clock.now += self.price
        self.clock.calls += 1
        return super().forecast(acc, s, meta)


@pytest.mark.parametrize("batch_size", [1, 16])
def test_forecasts_pay_while_their_price_is_below_what_they_save(batch_size):
    """With forecasts that never miss they save time; priced at half of that saving (per run, over
    the forecasts a run makes) they still pay, at twice it they do not: the replay adds their
    price to the run, as the closed form says."""
    val, test = linear_trace(300, 1), linear_trace(256, 2)
    scores = DynamicConfidence(threshold=0.0, use_alpha=False).fit(val).scores(val)
    policy = DynamicConfidence(threshold=float(scores[T // 2].median()), use_alpha=False).fit(val)
    steps = policy.exit_steps(test)
    choices = static_choices(exit_distribution(policy.exit_steps(val), T), batch_size, balanced)
    clock = Clock()
    forecaster = PricedForecasts(policy, T, clock, 0.0)
    forecaster.learn(policy.exit_steps(val), val.outputs, val.meta)
    learned = forecaster.errors.total
    runs = len(replay_batches(test.N, batch_size))
    clock.calls = 0
    without, with_ = replay_times(forecaster, choices, balanced, test.outputs, steps, test.meta, batch_size, clock)
    saving, per_run = without - with_, clock.calls / runs
    assert saving > 0 and per_run > 0
    for share in (0.5, 2.0):
        forecaster.price = share * saving / per_run  # forecasts costing `share` of what they save
        priced = replay_times(forecaster, choices, balanced, test.outputs, steps, test.meta, batch_size, clock)
        assert priced[0] == without and priced[1] == pytest.approx(without + (share - 1.0) * saving, rel=1e-9)
    assert forecaster.errors.total == learned  # the replays taught the forecaster nothing


@pytest.mark.parametrize("pays", [True, False])
def test_the_engine_forecasts_where_the_replay_says_they_pay(setup, monkeypatch, pays):
    snn, val, _, x, _ = setup
    policy = spread_dc(val)
    asked, planned_with = [], []

    def verdict(forecaster, choices, chunk_time, outputs, steps, meta, n, clock, **_):
        asked.append(n)
        return (2.0, 1.0) if pays else (1.0, 2.0)

    def run_plan(choices, chunk_time, n, forecaster=None, *args):
        planned_with.append(forecaster)
        return RunPlan(choices, chunk_time, n, forecaster, *args)

    monkeypatch.setattr(chunked, "replay_times", verdict)
    monkeypatch.setattr(chunked, "RunPlan", run_plan)
    engine = ChunkedEngine(snn, policy, T, trace=val, threads=None)  # measured chunk times, forecasts left to it
    for i in range(3):
        engine.run(x[i:i + 1])
    engine.run(x[:16])
    assert asked == [1, 16]  # once per batch size
    assert engine.forecasts_pay == {(torch.get_num_threads(), 1): pays, (torch.get_num_threads(), 16): pays}
    assert planned_with == [engine.forecaster if pays else None] * 4 and engine.forecaster is not None
    for kw in ({"forecast": True}, {"forecast": False}, {"chunk_time": balanced}):  # not left to it: no replay
        ChunkedEngine(snn, policy, T, trace=val, threads=None, **kw).run(x[:3])
    ChunkedEngine(snn, policy, T, threads=None).run(x[:3])  # no trace to replay: forecasts as they learn
    assert asked == [1, 16]
    assert [f is not None for f in planned_with[4:]] == [True, False, False, True]
