"""The conformance matrix: every network kind x engine x chunk plan x batch size x online policy
takes the offline decisions, on static and temporal inputs, in float32 and float64.

The product's promise is that the runtime takes exactly the decisions that were certified on
traces. Here every path is checked against the offline evaluation of the same policy on the
trace: exit steps, answers, the accumulated output and the spikes at each exit, and with fixed T
the whole step-by-step simulation. Kinds, policies and engines come from the registries and the
tables below, so a new converter, neuron, imported network kind or policy joins the matrix
without an edit here. The networks' arithmetic is exact (tests/conformance_kinds.py): any
difference is a bug in a path.

The default suite runs every engine, chunk plan, batch size, policy and input mode in float32
(the default precision) on few inputs, for every converted and directly trained kind and three
imported ones (a feed-forward graph, a recurrent loop, a multi-spike reader); ``-m slow`` runs
every kind (every NIR reader, feed-forward and recurrent) in float64, with more inputs and a
longer T.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conformance_kinds import C, inputs, network_kinds
from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES, ThresholdPolicy, online_policy_names
from snnexit.runtime.chunked import ChunkedEngine
from snnexit.runtime.engine import EarlyExitEngine
from snnexit.simulate import record_trace

KINDS = {kind.name: kind for kind in network_kinds()}
# one test per kind: the default suite's kinds there, the others with the slow matrix
EACH_KIND = [pytest.param(name, marks=() if kind.default else pytest.mark.slow) for name, kind in KINDS.items()]
BATCH_SIZES = (1, 7, 256)
FAST = dict(T=8, n_val=200, n_test=256, n_one=3, n_seven=7)  # batch 1 on n_one inputs, batch 7 on n_seven
SLOW = dict(T=16, n_val=400, n_test=256, n_one=4, n_seven=14)


def chunk_plans(T: int) -> dict[str, object]:
    """The chunk plans of the matrix: auto, single steps, chunks of 4, one chunk, uneven."""
    uneven, left, k = [], T, 3
    while left > 0:  # 3, 1, 2, 3, 1, 2, ... : chunk ends fall on every phase of a window
        uneven.append(min(k, left))
        left -= uneven[-1]
        k = k % 3 + 1
    return {"auto": "auto", "ones": [1] * T, "fours": [4] * (T // 4), "whole": [T], "uneven": uneven}


ENGINES = ["step", "masked", "stream", *(f"chunked-{p}" for p in chunk_plans(8))]


def CHUNK_TIME(k: int, m: float) -> float:
    """The auto plan's cost model here: overhead per chunk and per step, work per input-step (so the
    plans mix lengths), instead of timing every engine (test_chunked tests the measured plans)."""
    return 1.0 + 0.3 * k + 0.2 * k * m


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny convolutions: thread start-up would dominate (and the CPU is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Case:
    """One network kind in one precision and input mode: its network, traces and fitted policies."""

    def __init__(self, kind, dtype: torch.dtype, temporal: bool, sizes: dict):
        self.T, self.temporal, self.sizes = sizes["T"], temporal, sizes
        self.snn = kind.build(dtype, 0)
        T = self.T if temporal else None
        x_val, self.x = inputs(sizes["n_val"], 1, T, dtype), inputs(sizes["n_test"], 2, T, dtype)
        self.y_val, self.y = self.labels(x_val, 3), self.labels(self.x, 4)
        # the references: traces recorded in batches of another size than any engine's
        self.val = record_trace(self.snn, [(x_val[i:i + 64], self.y_val[i:i + 64]) for i in range(0, len(x_val), 64)],
                                T=self.T, temporal=temporal)
        self.test = record_trace(self.snn, [(self.x[i:i + 100], self.y[i:i + 100]) for i in range(0, len(self.x), 100)],
                                 T=self.T, temporal=temporal)
        self.policies = {name: self.fit(name) for name in online_policy_names()}

    def labels(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """The network's own fixed-T answer for 85% of inputs, a random class for the rest: waiting
        can gain something and stopping early can lose something."""
        trace = record_trace(self.snn, [(x, None)], T=self.T, temporal=self.temporal)
        g = torch.Generator().manual_seed(seed)
        noisy = torch.rand(len(x), generator=g) < 0.15
        return torch.where(noisy, torch.randint(0, C, (len(x),), generator=g), trace.predictions()[-1])

    def fit(self, name: str):
        cls = POLICIES.get(name)
        if issubclass(cls, ThresholdPolicy):  # half the steps on validation: exits spread over the run
            return cls(target="max_steps", max_steps=self.T / 2).fit(self.val)
        return cls().fit(self.val)

    def rows(self, batch_size: int) -> int:
        return {1: self.sizes["n_one"], 7: self.sizes["n_seven"]}.get(batch_size, len(self.x))


_CASES: dict[tuple, Case] = {}


def case(kind_name: str, dtype: torch.dtype, temporal: bool, sizes: dict) -> Case:
    key = (kind_name, dtype, temporal, sizes["T"])
    if key not in _CASES:
        _CASES[key] = Case(KINDS[kind_name], dtype, temporal, sizes)
    return _CASES[key]


def make_engine(engine_name: str, c: Case, policy):
    """The named engine for ``policy`` on the case's network (one engine serves every batch of a cell)."""
    if engine_name.startswith("chunked-"):
        plan = chunk_plans(c.T)[engine_name.removeprefix("chunked-")]
        hint = None if policy.uses_labels_at_test else policy.exit_steps(c.val)
        return ChunkedEngine(c.snn, policy, c.T, chunks=plan, exit_steps=hint, threads=None, chunk_time=CHUNK_TIME)
    return EarlyExitEngine(c.snn, policy, c.T, compact=engine_name != "masked")


def run_engine(engine_name: str, engine, c: Case, x: torch.Tensor, labels):
    """One batch through the engine: exit steps, answers, outputs and spikes at the exits."""
    if engine_name != "stream":
        r = engine.run(x, labels, temporal=c.temporal)
        if engine_name.startswith("chunked-"):
            assert bool((r.steps_computed >= r.exit_steps).all()) and bool((r.steps_computed <= c.T).all())
        return r.exit_steps, r.predictions, r.outputs, r.spikes
    frames = (x[:, t] if c.temporal else x for t in range(c.T))  # a camera: one frame per step
    n = x.shape[0]
    steps, pred = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    outputs, spikes = torch.zeros(n, C), None
    for d in engine.stream(frames, labels=labels):
        steps[d.index], pred[d.index], outputs[d.index] = d.step, d.prediction, d.output
        spikes = torch.zeros(n, d.spikes.shape[0], dtype=torch.float64) if spikes is None else spikes
        spikes[d.index] = d.spikes
    return steps, pred, outputs, spikes


def check_cell(c: Case, engine_name: str, batch_size: int) -> None:
    n = c.rows(batch_size)
    trace_spikes = c.test.spikes.double().cumsum(0)  # (T, N, L) spikes up to each step
    for name, policy in c.policies.items():
        labels = c.y if policy.uses_labels_at_test else None
        engine = make_engine(engine_name, c, policy)
        got = [run_engine(engine_name, engine, c, c.x[i:i + batch_size],
                          None if labels is None else labels[i:i + batch_size]) for i in range(0, n, batch_size)]
        steps, pred, outputs, spikes = (torch.cat(parts) for parts in zip(*got))
        expected = policy.exit_steps(c.test)[:n]
        where = f"{engine_name}, batch {batch_size}, policy {name}"
        assert torch.equal(steps, expected), f"{where}: exit steps differ from the offline ones"
        assert torch.equal(pred, policy.predict(c.test)[:n]), f"{where}: answers differ"
        at_exit = (expected - 1).view(1, -1, 1)
        assert torch.equal(outputs, c.test.outputs[:, :n].gather(0, at_exit.expand(1, n, C))[0].float()), \
            f"{where}: accumulated outputs at the exits differ from the trace's"
        L = trace_spikes.shape[2]
        assert torch.equal(spikes, trace_spikes[:, :n].gather(0, at_exit.expand(1, n, L))[0]), \
            f"{where}: spikes up to the exits differ from the trace's"


def matrix(sizes: dict, dtypes, every_kind: bool) -> list:
    return [pytest.param(kind, dtype, temporal, engine, batch, id=f"{kind}-{str(dtype)[6:]}-"
                         f"{'temporal' if temporal else 'static'}-{engine}-b{batch}")
            for kind in KINDS if every_kind or KINDS[kind].default for dtype in dtypes
            for temporal in ((False, True) if KINDS[kind].temporal else (False,))
            for engine in ENGINES for batch in BATCH_SIZES]


def run_matrix_cell(kind, dtype, temporal, engine, batch, sizes):
    check_cell(case(kind, dtype, temporal, sizes), engine, batch)


@pytest.mark.parametrize("kind", [name for name, kind in KINDS.items() if not kind.temporal])
def test_a_kind_that_takes_no_frames_refuses_them_on_every_path(kind):
    """A kind that cannot run a sequence of frames (QFFS: input and biases switched off after its
    window) refuses them in one line, in every engine, instead of running something else."""
    T = FAST["T"]
    snn = KINDS[kind].build(torch.float32, 0)
    x = inputs(2, 0, T, torch.float32)
    fixed = POLICIES.get("fixed")()
    val = record_trace(snn, [(x[:, 0], None)], T=T)
    for engine in ENGINES:
        c = SimpleNamespace(snn=snn, T=T, temporal=True, val=val)
        with pytest.raises(SnnexitError, match="cannot take a sequence of frames"):
            run_engine(engine, make_engine(engine, c, fixed), c, x, None)
    # the same frame at every step is a static input, which the stream runs
    c = SimpleNamespace(snn=snn, T=T, temporal=True, val=val)
    steps, *_ = run_engine("stream", make_engine("stream", c, fixed), c, x[:, :1].expand(-1, T, *x.shape[2:]), None)
    assert torch.equal(steps, torch.full((2,), T))


@pytest.mark.parametrize("kind, dtype, temporal, engine, batch", matrix(FAST, (torch.float32,), every_kind=False))
def test_every_path_takes_the_offline_decisions(kind, dtype, temporal, engine, batch):
    run_matrix_cell(kind, dtype, temporal, engine, batch, FAST)


@pytest.mark.slow
@pytest.mark.parametrize("kind, dtype, temporal, engine, batch", matrix(SLOW, (torch.float64,), every_kind=True))
def test_every_path_takes_the_offline_decisions_longer(kind, dtype, temporal, engine, batch):
    run_matrix_cell(kind, dtype, temporal, engine, batch, SLOW)


@pytest.mark.parametrize("kind", EACH_KIND)
@pytest.mark.parametrize("temporal", [False, True], ids=["static", "temporal"])
def test_fixed_T_runs_are_the_step_by_step_simulation(kind, temporal):
    """With fixed T every engine's outputs and spikes are the trace's last step, and a trace
    recorded in batches of 1, 7 or 256 is the reference trace bit for bit."""
    if temporal and not KINDS[kind].temporal:
        pytest.skip("the kind refuses frames (test_a_kind_that_takes_no_frames_refuses_them_on_every_path)")
    c = case(kind, torch.float32, temporal, FAST)
    for batch in BATCH_SIZES:
        n = c.rows(batch)
        again = record_trace(c.snn, [(c.x[i:i + batch], c.y[i:i + batch]) for i in range(0, n, batch)], T=c.T,
                             temporal=temporal)
        assert torch.equal(again.outputs, c.test.outputs[:, :n]) and torch.equal(again.spikes, c.test.spikes[:, :n])
    fixed = POLICIES.get("fixed")()
    for engine in ENGINES:
        steps, _, outputs, spikes = run_engine(engine, make_engine(engine, c, fixed), c, c.x, None)
        assert torch.equal(steps, torch.full((len(c.x),), c.T)), engine
        assert torch.equal(outputs, c.test.outputs[-1].float()), engine
        assert torch.equal(spikes, c.test.spikes.double().sum(0)), engine


@pytest.mark.parametrize("kind", EACH_KIND)
def test_the_matrix_is_not_trivial(kind):
    """The equality means something: on every kind, the policies' exits spread over several steps
    and the network's outputs change over time."""
    c = case(kind, torch.float32, False, FAST)
    for name, policy in c.policies.items():
        if name == "fixed":
            continue
        distinct = policy.exit_steps(c.test).unique().numel()
        assert distinct >= 2, f"{name} exits at a single step on {kind}: the matrix would test nothing"
    assert not torch.equal(c.test.predictions()[0], c.test.predictions()[-1])
    assert c.test.spikes.sum() > 0


@pytest.mark.parametrize("kind", ["qcfs-qcfs", "qffs-lsq", "direct-lif"])
def test_a_trace_recorded_with_the_engines_arithmetic_gives_its_decisions_in_float(kind):
    """Real float sums (weights and inputs off the dyadic grid): a kernel sums in an order that
    depends on the rows it sees, so a trace recorded in batches of 64 need not be what an engine
    computes one input at a time. Recorded one input at a time with the engine's own plan
    (``record_trace(..., chunks=plan)``), it is, bit for bit, and so are the decisions."""
    T = FAST["T"]
    snn = KINDS[kind].build(torch.float32, 0)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in snn.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 1e-3)  # off the grid: every sum rounds
    x_val, x = (inputs(n, s, dtype=torch.float32) + torch.rand(n, 1, 8, 8, generator=g) * 1e-3 for n, s in ((64, 1), (24, 2)))
    labels = torch.randint(0, C, (64,), generator=g)
    one_by_one = lambda xs, chunks: record_trace(snn, [(xs[i:i + 1], labels[i:i + 1]) for i in range(len(xs))],  # noqa: E731
                                                 T=T, chunks=chunks)
    policy = POLICIES.get("dynamic_confidence")(target="max_steps", max_steps=T / 2).fit(one_by_one(x_val, None))
    for chunks, engine in ((None, EarlyExitEngine(snn, policy, T)),
                           ([3, 5], ChunkedEngine(snn, policy, T, chunks=[3, 5], threads=None))):
        trace = one_by_one(x, chunks)  # (whether a batched trace differs depends on this CPU's kernels)
        expected = policy.exit_steps(trace)
        for i in range(len(x)):
            r = engine.run(x[i:i + 1])
            assert r.exit_steps.item() == expected[i], (chunks, i)
            assert torch.equal(r.outputs[0], trace.outputs[expected[i] - 1, i]), (chunks, i)
