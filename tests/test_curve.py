"""The exact accuracy-vs-mean-steps curve and the oracle against brute force."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnexit.exit import DynamicConfidence, FixedT, Oracle, exact_curve, exit_steps_from_scores


def brute_force(scores, correct, tau):
    scores = scores.double().numpy()
    T, N = scores.shape
    steps, right = 0, 0
    for n in range(N):
        t_exit = T
        for t in range(T):
            if scores[t, n] > tau:
                t_exit = t + 1
                break
        steps += t_exit
        right += int(correct[t_exit - 1, n])
    return steps / N, right


@st.composite
def scores_and_correct(draw):
    T = draw(st.integers(1, 7))
    N = draw(st.integers(1, 12))
    levels = draw(st.integers(2, 6))  # few distinct values: many ties
    s = draw(st.lists(st.integers(0, levels), min_size=T * N, max_size=T * N))
    c = draw(st.lists(st.booleans(), min_size=T * N, max_size=T * N))
    return torch.tensor(s, dtype=torch.float32).view(T, N) / levels, torch.tensor(c).view(T, N)


@settings(max_examples=300, deadline=None)
@given(scores_and_correct())
def test_curve_equals_brute_force_at_every_threshold(data):
    scores, correct = data
    curve = exact_curve(scores, correct)
    # every point is realised by its threshold
    for tau, steps, right in zip(curve.thresholds, curve.mean_steps, curve.correct):
        assert brute_force(scores, correct, tau) == (steps, right)
        assert exit_steps_from_scores(scores, tau).double().mean().item() == steps
    # and every threshold's outcome is a point of the curve
    candidates = np.unique(np.concatenate([scores.numpy().ravel(), [-1.0, 2.0]]))
    points = set(zip(curve.mean_steps.tolist(), curve.correct.tolist()))
    for tau in candidates:
        assert brute_force(scores, correct, tau) in points
    assert curve.mean_steps[0] == scores.shape[0]
    assert np.all(np.diff(curve.thresholds) < 0)


def test_curve_on_continuous_scores_large(make_trace):
    tr = make_trace(T=10, N=300, C=5, seed=3)
    pol = DynamicConfidence()
    scores, correct = pol.scores(tr), tr.correct()
    curve = exact_curve(scores, correct)
    rng = np.random.default_rng(0)
    for k in rng.choice(len(curve.thresholds), 30, replace=False):
        assert brute_force(scores, correct, curve.thresholds[k]) == (curve.mean_steps[k], curve.correct[k])


@settings(max_examples=100, deadline=None)
@given(scores_and_correct())
def test_pareto_front_is_not_dominated(data):
    scores, correct = data
    curve = exact_curve(scores, correct)
    front = set(curve.pareto_front().tolist())
    for k in range(len(curve.thresholds)):
        dominated = any((curve.mean_steps[j] <= curve.mean_steps[k] and curve.correct[j] >= curve.correct[k]
                         and (curve.mean_steps[j] < curve.mean_steps[k] or curve.correct[j] > curve.correct[k]))
                        for j in range(len(curve.thresholds)))
        if k in front:
            assert not dominated


def test_oracle_against_loop(make_trace):
    tr = make_trace(T=8, N=200, seed=5)
    steps = Oracle().exit_steps(tr)
    correct = tr.correct()
    for n in range(tr.N):
        hits = [t for t in range(tr.T) if correct[t, n]]
        assert steps[n].item() == (hits[0] + 1 if hits else tr.T)
    res = Oracle().evaluate(tr)
    assert res["test_acc"] == correct.any(0).double().mean().item()
    assert FixedT().evaluate(tr)["mean_steps"] == tr.T


def test_dynamic_confidence_fit_picks_fewest_steps_at_no_loss(make_trace):
    val = make_trace(T=8, N=300, seed=7)
    pol = DynamicConfidence().fit(val)
    fixed_correct = int(val.correct()[-1].sum())
    scores, correct = pol.scores(val), val.correct()
    steps, right = brute_force(scores, correct, pol.threshold_)
    assert right >= fixed_correct
    candidates = np.unique(np.concatenate([scores.numpy().ravel(), [2.0]]))
    for tau in candidates:
        s, r = brute_force(scores, correct, tau)
        assert not (r >= fixed_correct and s < steps)


def test_dynamic_confidence_scores_closed_form(make_trace):
    tr = make_trace(T=3, N=5, meta={"alpha": "t", "temperature": 2.0})
    got = DynamicConfidence().scores(tr)
    for t in range(3):
        expected = torch.softmax(tr.outputs[t].double() / (t + 1) / 2.0, -1).max(-1).values
        assert torch.allclose(got[t], torch.logit(expected))  # the top probability as log-odds
    tr.meta["alpha"] = 3
    got = DynamicConfidence().scores(tr)
    assert torch.allclose(got[0], torch.logit(torch.softmax(tr.outputs[0].double() / 3 / 2.0, -1).max(-1).values))
