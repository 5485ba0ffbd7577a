"""The early-exit runtime takes exactly the offline decisions, compacts, streams, and keeps no history.

The network under test has dyadic weights, thresholds and inputs and runs in float64, so every
sum is exact whatever the batch size or summation order: a batch of 1 and a batch of 256 compute
bit-identical outputs, and any difference between the runtime and the trace is a real bug.
"""

import gc
import warnings

import pytest
import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES, DynamicConfidence, FixedT, Oracle, online_policy_names
from snnexit.neurons import IFNeuron
from snnexit.simulate import SpikingNetwork, record_trace
from snnexit.runtime.engine import EarlyExitEngine

T = 12
C = 5


def dyadic(t: torch.Tensor, scale: int = 16, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    return (t.clamp(lo, hi) * scale).round() / scale


def dyadic_network(seed: int = 0) -> SpikingNetwork:
    g = torch.Generator().manual_seed(seed)
    body = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), IFNeuron(threshold=1.0), nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), IFNeuron(threshold=0.75),
        nn.Flatten(), nn.Linear(6 * 4 * 4, 16), IFNeuron(threshold=1.5), nn.Linear(16, C),
    ).double()
    with torch.no_grad():
        for p in body.parameters():
            p.copy_(dyadic(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5))
    return SpikingNetwork(body, meta={"converter": "test", "alpha": "T", "temperature": 1.0}).eval()


def dyadic_inputs(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return dyadic(torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64), lo=0.0)


def labelled(snn, x, seed):
    """Labels = the network's own fixed-T answer for 85% of inputs, random for the rest: a
    policy then has something to gain by waiting and something to lose by stopping early."""
    tr = record_trace(snn, [(x, torch.zeros(len(x), dtype=torch.long))], T=T)
    g = torch.Generator().manual_seed(seed)
    y = tr.outputs[-1].argmax(1)
    noisy = torch.rand(len(x), generator=g) < 0.15
    return torch.where(noisy, torch.randint(0, C, (len(x),), generator=g), y)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny float64 convolutions: thread start-up would dominate (and the CPU is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup():
    snn = dyadic_network()
    x_val, x_test = dyadic_inputs(300, 1), dyadic_inputs(256, 2)
    y_val, y_test = labelled(snn, x_val, 3), labelled(snn, x_test, 4)
    val = record_trace(snn, [(x_val[:150], y_val[:150]), (x_val[150:], y_val[150:])], T=T)
    test = record_trace(snn, [(x_test[i:i + 100], y_test[i:i + 100]) for i in range(0, 256, 100)], T=T)
    return snn, val, test, x_test, y_test


_FITTED = {}


def fitted(name, val):
    if name not in _FITTED:
        _FITTED[name] = POLICIES.create(name).fit(val)
    return _FITTED[name]


def engine_run(snn, policy, x, y, batch_size, **kw):
    engine = EarlyExitEngine(snn, policy, T, **kw)
    labels = y if getattr(policy, "uses_labels_at_test", False) else None
    steps, preds = [], []
    for i in range(0, len(x), batch_size):
        r = engine.run(x[i:i + batch_size], None if labels is None else labels[i:i + batch_size])
        steps.append(r.exit_steps)
        preds.append(r.predictions)
    return torch.cat(steps), torch.cat(preds)


@pytest.mark.parametrize("batch_size", [1, 7, 256])
@pytest.mark.parametrize("name", POLICIES.names())
def test_engine_takes_the_offline_decisions(setup, name, batch_size):
    snn, val, test, x, y = setup
    policy = fitted(name, val)
    if not policy.online:  # needs future steps: the engine must refuse it, clearly
        with pytest.raises(SnnexitError, match="no online rule"):
            EarlyExitEngine(snn, policy, T)
        return
    expected_steps, expected_pred = policy.exit_steps(test), policy.predict(test)
    n = 64 if batch_size == 1 else len(x)  # batch size 1 on a quarter of the inputs keeps the test fast
    steps, pred = engine_run(snn, policy, x[:n], y[:n], batch_size)
    assert torch.equal(steps, expected_steps[:n])
    assert torch.equal(pred, expected_pred[:n])


def spread_dc(val):
    """Dynamic Confidence (without alpha: on this random network the confidence then grows with t)
    with a threshold at the median score of step T/2: exits spread over many steps."""
    scores = DynamicConfidence(threshold=0.0, use_alpha=False).fit(val).scores(val)
    return DynamicConfidence(threshold=float(scores[T // 2].median()), use_alpha=False).fit(val)


def test_the_fixture_is_not_trivial(setup):
    """The equivalence test means something: most online policies exit at many different steps here."""
    _, val, test, _, _ = setup
    varied = [name for name in online_policy_names()
              if len(fitted(name, val).exit_steps(test).unique()) >= 3]
    assert len(varied) >= 4, varied
    steps = spread_dc(val).exit_steps(test)
    assert len(steps.unique()) >= 5 and steps.float().mean() < T - 1


def test_masking_instead_of_compaction_gives_the_same_answers(setup):
    snn, val, test, x, y = setup
    policy = spread_dc(val)
    a = EarlyExitEngine(snn, policy, T, compact=True).run(x)
    b = EarlyExitEngine(snn, policy, T, compact=False).run(x)
    assert torch.equal(a.exit_steps, b.exit_steps) and torch.equal(a.predictions, b.predictions)
    assert torch.equal(a.outputs, b.outputs) and torch.equal(a.spikes, b.spikes)


def test_outputs_and_spikes_at_exit_match_the_trace(setup):
    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    r = EarlyExitEngine(snn, policy, T).run(x)
    k = r.exit_steps - 1
    assert torch.equal(r.outputs, test.outputs[k, torch.arange(len(x))])
    cum = test.spikes.double().cumsum(0)
    assert torch.equal(r.spikes, cum[k, torch.arange(len(x))])


def test_stream_yields_each_decision_when_it_is_made(setup):
    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    expected = policy.exit_steps(test)
    engine = EarlyExitEngine(snn, policy, T)
    fed = []

    def frames():
        for t in range(1, T + 1):
            fed.append(t)
            yield x  # a static input shown at every step: (n, ...) rows for every input

    seen = {}
    for d in engine.stream(frames()):
        assert d.step == fed[-1]  # yielded right after the step that decided it
        seen[d.index] = (d.step, d.prediction)
    assert sorted(seen) == list(range(len(x)))
    assert [seen[i][0] for i in range(len(x))] == expected.tolist()
    assert len(fed) == int(expected.max())  # the source is not read past the last exit


def test_session_accepts_rows_of_running_inputs_only(setup):
    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    engine = EarlyExitEngine(snn, policy, T)
    session = engine.session(len(x))
    while not session.done:
        session.feed(x[session.active])
    assert torch.equal(session.result().exit_steps, policy.exit_steps(test))
    with pytest.raises(SnnexitError, match="already stopped"):
        session.feed(x)


def test_temporal_input_matches_its_trace():
    snn = dyadic_network(5)
    g = torch.Generator().manual_seed(6)
    seq = dyadic(torch.rand(40, T, 1, 8, 8, generator=g, dtype=torch.float64), lo=0.0)
    y = torch.randint(0, C, (40,), generator=g)
    trace = record_trace(snn, [(seq, y)], T=T, temporal=True)
    mid = DynamicConfidence(threshold=0.0).fit(trace).scores(trace)[T // 2].median()  # half exit by mid-run
    policy = DynamicConfidence(threshold=float(mid)).fit(trace)
    r = EarlyExitEngine(snn, policy, T).run(seq, temporal=True)
    assert torch.equal(r.exit_steps, policy.exit_steps(trace))
    assert torch.equal(r.predictions, policy.predict(trace))
    assert len(r.exit_steps.unique()) > 1


def test_batch_of_one_really_stops(setup):
    """At batch size 1 the network is stepped exactly exit_step times."""
    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    expected = policy.exit_steps(test)
    calls = []
    handle = snn.body[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        engine = EarlyExitEngine(snn, policy, T)
        for i in range(8):
            calls.clear()
            r = engine.run(x[i:i + 1])
            assert len(calls) == r.exit_steps.item() == expected[i].item()
    finally:
        handle.remove()


def test_compaction_shrinks_the_batch(setup):
    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    steps = policy.exit_steps(test)
    sizes = []
    handle = snn.body[0].register_forward_hook(lambda m, inp, out: sizes.append(inp[0].shape[0]))
    try:
        EarlyExitEngine(snn, policy, T).run(x)
    finally:
        handle.remove()
    assert sizes == [int((steps >= t).sum()) for t in range(1, len(sizes) + 1)]
    assert sum(sizes) == int(steps.sum())  # work done = sum of exit steps, not N * T


def test_memory_does_not_grow_with_T():
    """The engine keeps no per-step history: live tensor memory after 20 steps equals that after 400."""
    snn = dyadic_network(7)
    x = dyadic_inputs(16, 8)
    engine = EarlyExitEngine(snn, FixedT(), 400)
    session = engine.session(len(x))

    def live_bytes():
        gc.collect()
        with warnings.catch_warnings():  # scanning every object touches deprecated torch aliases
            warnings.simplefilter("ignore")
            return sum(o.untyped_storage().nbytes() for o in gc.get_objects() if torch.is_tensor(o))

    sizes = {}
    while not session.done:
        session.feed(x)
        if session.t in (20, 100, 399):
            sizes[session.t] = live_bytes()
    assert sizes[20] == sizes[100] == sizes[399]
    assert session.result().exit_steps.tolist() == [400] * 16


def test_oracle_needs_labels_and_bad_input_is_refused(setup):
    snn, val, test, x, y = setup
    with pytest.raises(SnnexitError, match="labels"):
        EarlyExitEngine(snn, Oracle(), T).run(x[:4])
    with pytest.raises(SnnexitError, match="not fitted"):
        EarlyExitEngine(snn, DynamicConfidence(), T)
    with pytest.raises(SnnexitError, match="T must be"):
        EarlyExitEngine(snn, FixedT(), 0)
    engine = EarlyExitEngine(snn, FixedT(), T)
    session = engine.session(4)
    with pytest.raises(SnnexitError, match="rows"):
        session.feed(x[:3])
    with pytest.raises(SnnexitError, match="ended after"):
        list(engine.stream([x[:4]] * 3))


def test_cost_of_the_run_matches_the_trace(setup):
    from snnexit.simulate.cost import cost_from_trace, fan_out

    snn, val, test, x, _ = setup
    policy = spread_dc(val)
    r = EarlyExitEngine(snn, policy, T).run(x)
    offline = cost_from_trace(test, policy.exit_steps(test), fan_out=fan_out(snn, x[:1]))
    assert torch.equal(r.cost.spikes, offline.spikes)
    assert torch.equal(r.cost.steps, offline.steps)
    assert torch.allclose(r.cost.synops(), offline.synops())


def test_channels_last_layout_computes_the_same_network(setup):
    """``optimize()`` only changes the memory layout; with exact (dyadic) sums the outputs and
    spikes must be bit-identical to the default layout's, batch for batch."""
    import copy

    snn, _, _, x_test, y_test = setup
    fast = copy.deepcopy(snn).optimize()
    plain_trace = record_trace(snn, [(x_test, y_test)], T=T)
    fast_trace = record_trace(fast, [(x_test, y_test)], T=T)
    assert torch.equal(plain_trace.outputs, fast_trace.outputs)
    assert torch.equal(plain_trace.spikes, fast_trace.spikes)
    assert fast.optimize(channels_last=False) is fast
    assert torch.equal(record_trace(fast, [(x_test, y_test)], T=T).outputs, plain_trace.outputs)


def test_a_policy_carries_its_output_scaling_and_classes(setup, tmp_path):
    """Saved and loaded onto the network rebuilt without its temperature, a policy decides as it was
    fitted (it carries the scaling); a network or trace that states another scaling, or outputs of
    another number of classes, is refused, offline and in the engines."""
    from snnexit.exit import load_policy, save_policy
    from snnexit.simulate import Trace

    snn, val, test, x, _ = setup
    hot = dict(snn.meta, temperature=0.5)
    val_hot, test_hot = Trace(val.outputs, val.labels, val.spikes, {**val.meta, **hot}), \
        Trace(test.outputs, test.labels, test.spikes, {**test.meta, **hot})
    policy = DynamicConfidence(target="max_steps", max_steps=T / 2).fit(val_hot)
    assert policy.scaling_.temperature == 0.5
    save_policy(tmp_path / "p.json", policy)
    loaded = load_policy(tmp_path / "p.json")
    assert loaded.scaling_ == policy.scaling_ and loaded.classes_ == C
    expected = policy.exit_steps(test_hot)
    bare = {k: v for k, v in test_hot.meta.items() if k != "temperature"}  # rebuilt without its temperature
    assert torch.equal(loaded.exit_steps(Trace(test.outputs, test.labels, None, bare)), expected)
    rebuilt = SpikingNetwork(snn.body, meta={k: v for k, v in snn.meta.items() if k != "temperature"})
    assert torch.equal(EarlyExitEngine(rebuilt, loaded, T).run(x).exit_steps, expected)
    with pytest.raises(SnnexitError, match="fitted with temperature = 0.5; this network or trace has temperature = 2.0"):
        loaded.exit_steps(Trace(test.outputs, None, None, {**bare, "temperature": 2.0}))
    other = SpikingNetwork(snn.body, meta={**snn.meta, "temperature": 2.0})
    with pytest.raises(SnnexitError, match="fitted with temperature = 0.5"):
        EarlyExitEngine(other, loaded, T)
    with pytest.raises(SnnexitError, match="fitted on outputs of 5 classes; these have 3"):
        loaded.exit_steps(Trace(test.outputs[..., :3], None, None, bare))
