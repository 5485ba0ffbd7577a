"""The time-chunked runtime takes the step engine's (= the offline) decisions, and plans its chunks well.

The network is test_runtime's dyadic float64 one: every sum is exact, so a chunk of k steps on
k x n inputs computes bit for bit what k single steps compute, and any difference is a bug.
"""

import gc
import itertools
import warnings

import pytest
import torch

from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES, FixedT
from snnexit.runtime.chunked import ChunkedEngine, exit_distribution, plan_chunks, schedule_time
from snnexit.simulate.cost import cost_from_trace, fan_out
from snnexit.runtime.engine import EarlyExitEngine
from snnexit.runtime.threads import LoadMeter
from test_runtime import T, _one_thread, dyadic_inputs, dyadic_network, fitted, setup, spread_dc  # noqa: F401

CHUNKS = ["auto", 3, [2, 5, 5]]


def chunked_run(snn, policy, x, y, batch_size, **kw):
    engine = ChunkedEngine(snn, policy, T, **kw)
    labels = y if getattr(policy, "uses_labels_at_test", False) else None
    results = [engine.run(x[i:i + batch_size], None if labels is None else labels[i:i + batch_size])
               for i in range(0, len(x), batch_size)]
    return (torch.cat([r.exit_steps for r in results]), torch.cat([r.predictions for r in results]),
            torch.cat([r.steps_computed for r in results]), results)


@pytest.mark.parametrize("chunks", CHUNKS, ids=str)
@pytest.mark.parametrize("batch_size", [1, 7, 256])
@pytest.mark.parametrize("name", POLICIES.names())
def test_chunked_engine_takes_the_offline_decisions(setup, name, batch_size, chunks):
    snn, val, test, x, y = setup
    policy = fitted(name, val)
    if not policy.online:
        with pytest.raises(SnnexitError, match="no online rule"):
            ChunkedEngine(snn, policy, T)
        return
    n = 32 if batch_size == 1 else len(x)
    hint = policy.exit_steps(val) if not getattr(policy, "uses_labels_at_test", False) else None
    steps, pred, computed, _ = chunked_run(snn, policy, x[:n], y[:n], batch_size, chunks=chunks, exit_steps=hint,
                                           timing_repeats=1)
    assert torch.equal(steps, policy.exit_steps(test)[:n])
    assert torch.equal(pred, policy.predict(test)[:n])
    assert bool((computed >= steps).all()) and bool((computed <= T).all())


def test_steps_computed_end_at_the_chunk_boundary(setup):
    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    steps, _, computed, results = chunked_run(snn, policy, x, None, 7, chunks=[2, 5, 5])
    bounds = torch.tensor([2, 7, 12])
    expected = bounds[torch.searchsorted(bounds, steps)]  # the first boundary at or after the exit step
    assert torch.equal(computed, expected)
    assert results[0].schedule == (2, 5, 5)
    k1 = chunked_run(snn, policy, x, None, 7, chunks=1)[2]
    assert torch.equal(k1, steps)  # chunks of one step compute exactly the decided steps


def test_outputs_spikes_and_cost_match_the_step_engine(setup):
    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    step = EarlyExitEngine(snn, policy, T).run(x)
    chunked = ChunkedEngine(snn, policy, T, chunks=4).run(x)
    assert torch.equal(chunked.outputs, step.outputs)
    assert torch.equal(chunked.spikes, step.spikes)
    offline = cost_from_trace(test, policy.exit_steps(test), fan_out=fan_out(snn, x[:1]))
    assert torch.equal(chunked.cost.spikes, offline.spikes)
    assert chunked.cost.summary()["energy_pj_per_inference"] == pytest.approx(
        step.cost.summary()["energy_pj_per_inference"])


def test_temporal_input_in_chunks():
    from snnexit.exit import DynamicConfidence
    from snnexit.simulate import record_trace

    snn = dyadic_network(5)
    g = torch.Generator().manual_seed(6)
    seq = (torch.rand(40, T, 1, 8, 8, generator=g, dtype=torch.float64) * 16).round() / 16
    trace = record_trace(snn, [(seq, torch.zeros(40, dtype=torch.long))], T=T, temporal=True)
    policy = DynamicConfidence(threshold=0.6).fit(trace)
    r = ChunkedEngine(snn, policy, T, chunks=5).run(seq, temporal=True)
    assert torch.equal(r.exit_steps, policy.exit_steps(trace))
    assert torch.equal(r.predictions, policy.predict(trace))


def test_a_batch_of_one_runs_one_convolution_per_chunk(setup):
    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    expected = policy.exit_steps(test)
    calls = []
    handle = snn.body[0].register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    try:
        engine = ChunkedEngine(snn, policy, T, chunks=3)
        for i in range(8):
            calls.clear()
            r = engine.run(x[i:i + 1])
            chunks_run = -(-int(expected[i]) // 3)
            assert calls == [3] * chunks_run  # one call per chunk, on 3 steps x 1 input
            assert r.steps_computed.item() == 3 * chunks_run
    finally:
        handle.remove()


def test_memory_does_not_grow_with_T():
    snn = dyadic_network(7)
    x = dyadic_inputs(16, 8)
    sizes, calls = [], []

    def live_bytes(*_):
        calls.append(1)
        if len(calls) not in (2, 6, 20):
            return
        gc.collect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sizes.append(sum(o.untyped_storage().nbytes() for o in gc.get_objects() if torch.is_tensor(o)))

    handle = snn.body[3].register_forward_hook(live_bytes)  # mid-network, once per chunk
    try:
        r = ChunkedEngine(snn, FixedT(), 400, chunks=20).run(x)
    finally:
        handle.remove()
    assert len(calls) == 20 and sizes[0] == sizes[1] == sizes[2]
    assert r.exit_steps.tolist() == [400] * 16


def expected_time_brute_force(plan, dist, n, chunk_time):
    """Exact expected time of ``plan`` by enumerating every outcome of n inputs' exit steps."""
    T = len(dist)
    total = 0.0
    for outcome in itertools.product(range(1, T + 1), repeat=n):
        prob = 1.0
        for s in outcome:
            prob *= dist[s - 1]
        done = 0
        for k in plan:
            alive = sum(s > done for s in outcome)
            if alive == 0:
                break
            total += prob * chunk_time(k, alive)
            done += k
    return total


@pytest.mark.parametrize("n", [1, 2, 3])
def test_plan_is_the_best_schedule_by_brute_force(n):
    T = 6
    g = torch.Generator().manual_seed(n)
    steps = torch.randint(1, T + 1, (40,), generator=g)
    dist = (torch.bincount(steps, minlength=T + 1)[1:].double() / 40).tolist()

    def chunk_time(k, m):  # affine in m, overhead per chunk and per step: long chunks pay off somewhere
        return 1.0 + 0.3 * k + 0.2 * k * m

    plan = plan_chunks(exit_distribution(steps, T), n, chunk_time)
    assert sum(plan) == T
    compositions = [c for r in range(1, T + 1) for c in itertools.product(range(1, T + 1), repeat=r) if sum(c) == T]
    best = min(expected_time_brute_force(c, dist, n, chunk_time) for c in compositions)
    assert expected_time_brute_force(plan, dist, n, chunk_time) == pytest.approx(best)
    for c in compositions:  # what the thread choice compares: any schedule's expected time, in closed form
        assert schedule_time(c, exit_distribution(steps, T), n, chunk_time) == pytest.approx(
            expected_time_brute_force(c, dist, n, chunk_time))


def test_plan_follows_the_exits():
    T = 16
    flat = lambda k, m: 1.0 + 0.01 * k * m  # noqa: E731  per-chunk overhead dominates
    assert plan_chunks(exit_distribution(torch.full((50,), T), T), 1, flat) == (T,)  # fixed T: one chunk
    step_cost = lambda k, m: 0.01 + 1.0 * k * m  # noqa: E731  work dominates
    assert plan_chunks(exit_distribution(torch.arange(1, T + 1), T), 1, step_cost) == (1,) * T


def test_auto_threads_take_one_thread_when_the_machine_is_busy(setup):
    snn, val, _, x, _ = setup
    policy = spread_dc(val)
    engine = ChunkedEngine(snn, policy, T, chunks=2)
    engine._most_threads = 4
    engine.load.free_cores = lambda cores=None: 0.6  # another process holds (nearly) every core
    assert engine.run(x[:5]).threads == 1
    assert ChunkedEngine(snn, policy, T, chunks=2, threads=1).run(x[:5]).threads == 1


def test_auto_threads_take_the_count_whose_schedule_is_faster(setup, monkeypatch):
    """The thread count is chosen by the time of what the run computes: a second thread that
    does not pay on a single step at batch 1 (a tiny kernel) but does on a chunk of T steps (T-row
    kernels) is taken by fixed T and left by a schedule of single steps."""
    import snnexit.runtime.chunk_timing as chunk_timing

    snn, val, _, x, _ = setup
    now = [0.0]

    def chunk(self, frames, m):  # two threads: more overhead per chunk, half the work per row
        k = frames.shape[0]
        now[0] += 1.0 + k * m if torch.get_num_threads() == 1 else 1.6 + 0.5 * k * m

    monkeypatch.setattr(chunk_timing, "clock_for", lambda threads: (lambda: now[0]))
    monkeypatch.setattr(chunk_timing.ChunkPlanner, "_chunk", chunk)

    def threads_taken(policy, batch, **kw):
        engine = ChunkedEngine(snn, policy, T, timing_repeats=1, **kw)
        engine._most_threads = 2
        engine.load.free_cores = lambda cores=None: 2.0
        return engine.run(x[:batch]).threads

    assert threads_taken(FixedT(), 1, exit_steps=torch.full((1,), T)) == 2
    assert threads_taken(FixedT(), 1, chunks=[T]) == 2
    assert threads_taken(FixedT(), 1, chunks=[T - 1, 5, 5]) == 2  # chunks past step T are never timed
    assert threads_taken(spread_dc(val), 1, chunks=1) == 1
    assert threads_taken(spread_dc(val), 5, chunks=1) == 2  # 5-row kernels: the second thread pays


def test_load_meter_does_not_count_our_own_cpu_time(monkeypatch):
    import snnexit.runtime.threads as threads

    clock = {"wall": 0.0, "busy": 0.0, "own": 0.0}
    monkeypatch.setattr(threads, "_busy_seconds", lambda: clock["busy"])
    monkeypatch.setattr(threads, "_own_seconds", lambda: clock["own"])
    monkeypatch.setattr(threads.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(threads.time, "sleep", lambda s: clock.update(wall=clock["wall"] + s))
    meter = LoadMeter(probe_s=0.1, min_interval_s=0.5)
    assert meter.other_busy() == 0.0
    clock.update(wall=1.1, busy=1.8, own=0.8)  # we used 0.8 core-seconds of the 1.8 in 1 s: others 1 core
    assert meter.other_busy() == pytest.approx(1.0)
    assert meter.free_cores(2) == pytest.approx(1.0)
    clock.update(wall=1.2, busy=5.0)  # too soon: the previous reading
    assert meter.other_busy() == pytest.approx(1.0)


def test_bad_arguments_are_refused(setup):
    snn, val, _, x, _ = setup
    policy = spread_dc(val)
    with pytest.raises(SnnexitError, match="chunks must be"):
        ChunkedEngine(snn, policy, T, chunks="fast")
    with pytest.raises(SnnexitError, match="positive integers"):
        ChunkedEngine(snn, policy, T, chunks=[2, 0])
    with pytest.raises(SnnexitError, match="fewer than T"):
        ChunkedEngine(snn, policy, T, chunks=[2, 3])
    with pytest.raises(SnnexitError, match="threads must be"):
        ChunkedEngine(snn, policy, T, threads=0)
    with pytest.raises(SnnexitError, match="no exit steps"):
        exit_distribution(torch.zeros(0), T)


def test_a_cost_model_gives_the_same_plan_without_timing(setup):
    """chunk_time replaces the measured chunk times: the plan is the model's optimum, on every run."""
    snn, val, _, x, _ = setup
    policy = spread_dc(val)
    model = lambda k, m: 1.0 + 0.3 * k + 0.2 * k * m  # noqa: E731
    engine = ChunkedEngine(snn, policy, T, exit_steps=policy.exit_steps(val), chunk_time=model, threads=None)
    r = engine.run(x[:7])
    assert r.schedule == plan_chunks(exit_distribution(policy.exit_steps(val), T), 7, model)
    assert not engine.planner.times  # nothing was timed
    with pytest.raises(SnnexitError, match="chunk_time must be a function"):
        ChunkedEngine(snn, policy, T, chunk_time=3)


def test_told_each_exit_in_advance_the_engine_computes_no_step_past_it(setup):
    """The bound ``snnexit bench`` times beside early exit (``early_exit_known_exits``): one chunk to
    the offline exit step, the policy's own decision there, nothing computed past it."""
    from snnexit.experiments.bench_timing import KnownExitPlan

    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    expected = policy.exit_steps(test)
    known = KnownExitPlan(snn, policy, T, "cpu", threads=1)
    for i in range(16):
        r = known.run(x[i:i + 1], exit_step=int(expected[i]))
        assert r.exit_steps.item() == r.steps_computed.item() == int(expected[i])
        assert r.schedule[0] == int(expected[i]) and sum(r.schedule) == T
        assert r.predictions.item() == int(policy.predict(test)[i])


def test_the_bench_builds_every_known_exit_engine_before_it_times(setup):
    """``KnownExitPlan`` builds (and calibrates) one engine per exit step on first use: the bench's
    warm-up must meet every exit step, or the first timed repeat pays that calibration."""
    from snnexit.experiments.bench_timing import KnownExitPlan, time_latency

    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    exits = policy.exit_steps(test)[:12]
    known = KnownExitPlan(snn, policy, T, "cpu", threads=1)
    built_while_timing = []

    class Watched:
        needs_exit_step = True

        def run(self, xi, temporal=False, exit_step=None):
            if timing[0] and exit_step not in known._engines:
                built_while_timing.append(exit_step)
            return known.run(xi, temporal=temporal, exit_step=exit_step)

    class Clock:  # the fixed-T engine's first timed run marks the end of the warm-up
        calls = 0

        def run(self, xi, temporal=False):
            Clock.calls += 1
            timing[0] = Clock.calls > 1
            return fixed.run(xi, temporal=temporal)

    timing = [False]
    fixed = ChunkedEngine(snn, FixedT(), T, exit_steps=torch.full((1,), T), threads=1)
    time_latency({"fixed": Clock(), "early_exit_known_exits": Watched()}, x[:12], T, "cpu", 1, exits=exits)
    assert timing[0] and len(set(exits.tolist())) > 1
    assert built_while_timing == []

