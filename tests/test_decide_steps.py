"""A whole chunk of steps decided in one call (``decide_steps``): the decisions of one ``decide``
per step, for every registered online policy, on float32 and float64 outputs, and the guard
that makes a new ``score_step`` count as step-dependent until its class says otherwise."""

import pytest
import torch

from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES, DynamicConfidence, ThresholdPolicy
from snnexit.simulate.trace import Trace


def _trace(alpha="T", T=12, N=300, C=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (N,), generator=g)
    per_step = 0.8 * torch.randn(T, N, C, generator=g)
    per_step[:, torch.arange(N), labels] += torch.rand(N, generator=g)
    return Trace(per_step.cumsum(0).double(), labels, None, {"alpha": alpha, "temperature": 1.3, "T": T})


ONLINE = [n for n in POLICIES.names() if getattr(POLICIES.get(n), "online", True) and n != "oracle_stable"]


@pytest.mark.parametrize("alpha", ["T", 7.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ONLINE)
def test_one_call_for_a_chunk_decides_as_one_call_per_step(name, dtype, alpha):
    val, test = _trace(alpha, seed=1), _trace(alpha, seed=2)
    policy = POLICIES.create(name)
    if getattr(policy, "needs_fit", False):
        policy = policy.fit(val)
    labels = test.labels if getattr(policy, "uses_labels_at_test", False) else None
    for t_first, k in [(1, 1), (1, 5), (4, 8), (11, 1)]:
        acc = test.outputs[t_first - 1:t_first - 1 + k].to(dtype)
        one_by_one = torch.stack([torch.as_tensor(policy.decide(acc[j], t_first + j, test.meta, labels))
                                  for j in range(k)])
        assert torch.equal(policy.decide_steps(acc, t_first, test.meta, labels), one_by_one), (name, t_first, k)
    if name not in ("fixed", "oracle"):  # the rule decides as the offline exits say
        steps = policy.exit_steps(test)
        stop = policy.decide_steps(test.outputs[:-1].float(), 1, test.meta)
        first = torch.where(stop.any(0), stop.int().argmax(0) + 1, torch.full_like(steps, test.T))
        assert torch.equal(first, steps)


def test_which_scores_depend_on_the_step():
    meta = {"alpha": "T", "temperature": 1.0, "T": 12}
    val = _trace()
    depends = {n: POLICIES.create(n).fit(val).score_depends_on_step(meta) for n in POLICIES.names()
               if issubclass(POLICIES.get(n), ThresholdPolicy)}
    assert not depends["dynamic_confidence"] and not depends["max_softmax"] and not depends["entropy"]
    assert not depends["topk"]
    assert depends["mean_output_confidence"]  # alpha = t
    assert depends["step_calibrated_confidence"] and depends["topk_per_step"] and depends["conformal"]  # per-step tables


def test_a_new_score_step_counts_as_step_dependent_until_its_class_says_otherwise():
    class Halved(DynamicConfidence):  # a score that changes with t, inheriting a step-free parent
        def score_step(self, accumulated, t, meta):
            return super().score_step(accumulated, t, meta) / t

    class Declared(Halved):
        def score_depends_on_step(self, meta):
            return False

    meta = {"alpha": "T", "temperature": 1.0, "T": 12}
    val = _trace()
    assert Halved(threshold=0.5).fit(val).score_depends_on_step(meta)
    assert not Declared(threshold=0.5).fit(val).score_depends_on_step(meta)
    policy, test = Halved(threshold=0.5).fit(val), _trace(seed=3)
    acc = test.outputs[:6].float()
    assert torch.equal(policy.decide_steps(acc, 1, test.meta),
                       torch.stack([policy.decide(acc[j], j + 1, test.meta) for j in range(6)]))


def test_decide_steps_wants_a_chunk_of_outputs():
    policy = POLICIES.create("dynamic_confidence").fit(_trace())
    with pytest.raises(SnnexitError, match=r"\(k, N, C\)"):
        policy.decide_steps(torch.zeros(4, 6), 1, {"alpha": "T", "temperature": 1.0, "T": 12})


def test_a_rule_of_ones_own_with_decide_only_runs_chunked_as_step_by_step():
    from snnexit.runtime.chunked import ChunkedEngine
    from snnexit.runtime.engine import EarlyExitEngine
    from test_runtime import T, dyadic_inputs, dyadic_network

    class GapRule:  # not an ExitPolicy: only decide
        def decide(self, accumulated, t, meta, labels=None):
            top2 = accumulated.topk(2, dim=-1).values
            return (top2[:, 0] - top2[:, 1]) > 0.75 * t

    snn, x = dyadic_network(), dyadic_inputs(40, 5)
    step = EarlyExitEngine(snn, GapRule(), T).run(x)
    assert len(step.exit_steps.unique()) >= 2  # not all at one step
    for chunks in (4, "auto"):
        got = ChunkedEngine(snn, GapRule(), T, chunks=chunks, threads=None,
                            chunk_time=lambda k, m: 1.0 + 0.05 * k * m).run(x)
        assert torch.equal(got.exit_steps, step.exit_steps) and torch.equal(got.outputs, step.outputs)
