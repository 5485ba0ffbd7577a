"""Dynamic Confidence as published (alpha = T) and the certified exit's promise.

The promise is statistical, so it is tested the way it is stated: a known population (a pool of
synthetic SNN-like inputs whose disagreement rate at any threshold is known exactly), many
independent draws of fitting and calibration inputs from it, and the share of draws whose
certified threshold breaks the promise on the population, against delta plus sampling slack.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import softmax

from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES, ThresholdPolicy, create_policy, exact_curve, ltt_select
from snnexit.exit.base import agreement_with_fixed_t, split_learn_certify
from snnexit.exit.scores import probability_from_log_odds
from snnexit.exit.certify import (certifiable_disagreement_rate, certifiable_policies, certify_exit,
                                  smallest_certifiable_eps)
from snnexit.simulate.trace import Trace

CERTIFIABLE = [name for name in POLICIES.names()
               if issubclass(POLICIES.get(name), ThresholdPolicy) and not POLICIES.get(name).uses_labels_at_test]


# ---- Dynamic Confidence's alpha ------------------------------------------------------------
def confidence(name: str, trace: Trace) -> np.ndarray:
    """The paper's c_t: the top softmax probability, which the policy's score holds as log-odds."""
    return probability_from_log_odds(create_policy(name).scores(trace)).numpy()


def _hand_trace(alpha, T=4, temperature=1.7):
    per_step = torch.tensor([[[2.0, 0.5, -1.0], [0.1, 0.3, 0.2]],
                             [[1.5, 1.0, -0.5], [0.4, -0.2, 0.9]],
                             [[0.7, 0.2, 0.1], [-0.3, 0.6, 1.2]],
                             [[1.1, -0.4, 0.3], [0.2, 0.1, 1.4]]], dtype=torch.float64)[:T]
    return Trace(per_step.cumsum(0), torch.tensor([0, 2]), None, {"alpha": alpha, "temperature": temperature})


def test_dynamic_confidence_for_qcfs_is_softmax_of_output_over_run_length_and_temperature():
    tr = _hand_trace("T")
    Y = tr.outputs.numpy()
    expected = np.stack([softmax(Y[t] / 4 / 1.7, axis=-1).max(-1) for t in range(4)])
    np.testing.assert_allclose(confidence("dynamic_confidence", tr), expected, rtol=1e-12)
    # alpha = T is the run's own length: the same outputs stopped after 3 steps divide by 3
    short = tr.truncate(3)
    expected3 = np.stack([softmax(Y[t] / 3 / 1.7, axis=-1).max(-1) for t in range(3)])
    np.testing.assert_allclose(confidence("dynamic_confidence", short), expected3, rtol=1e-12)


def test_mean_output_confidence_divides_by_the_step_and_qffs_by_its_constant():
    tr = _hand_trace("T")
    Y = tr.outputs.numpy()
    expected = np.stack([softmax(Y[t] / (t + 1) / 1.7, axis=-1).max(-1) for t in range(4)])
    np.testing.assert_allclose(confidence("mean_output_confidence", tr), expected, rtol=1e-12)
    qffs = _hand_trace(3)
    expected = np.stack([softmax(Y[t] / 3 / 1.7, axis=-1).max(-1) for t in range(4)])
    np.testing.assert_allclose(confidence("dynamic_confidence", qffs), expected, rtol=1e-12)


def test_evaluate_records_alpha_and_temperature():
    tr = _hand_trace("T")
    res = create_policy("dynamic_confidence", threshold=0.5).fit(tr).evaluate(tr)
    assert res["alpha"] == {"rule": "T", "value": 4.0} and res["temperature"] == 1.7
    res = create_policy("mean_output_confidence", threshold=0.5, temperature=2.0).fit(tr).evaluate(tr)
    assert res["alpha"] == {"rule": "t", "value": None} and res["temperature"] == 2.0
    assert create_policy("topk", threshold=0.5).fit(tr).evaluate(tr)["alpha"] is None


# ---- a known population ------------------------------------------------------------------
def population(N=2000, T=8, C=5, seed=0) -> Trace:
    """SNN-like inputs: each has a class and a difficulty; per-step outputs are noisy around
    logits that favour the class by a margin that shrinks with difficulty, so early answers
    often differ from the final one and some final answers are wrong."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (N,), generator=g)
    margin = 2.5 * torch.rand(N, generator=g) ** 2
    base = 0.6 * torch.randn(N, C, generator=g)
    base[torch.arange(N), labels] += margin
    per_step = base + 1.5 * torch.randn(T, N, C, generator=g)
    return Trace(per_step.cumsum(0).double(), labels, None, {"alpha": "T", "temperature": 1.3})


def draw(pool: Trace, n: int, rng: np.random.Generator, labelled: bool = True) -> Trace:
    tr = pool.subset(torch.from_numpy(rng.integers(0, pool.N, n)))
    return tr if labelled else Trace(tr.outputs, None, None, tr.meta)


def violation_rate(fit_once, pool: Trace, eps: float, draws: int, seed: int) -> float:
    """Share of draws whose fitted policy disagrees with fixed T on more than eps of the pool."""
    rng = np.random.default_rng(seed)
    bad = sum(fit_once(rng).evaluate(pool)["disagreement"] > eps for _ in range(draws))
    return bad / draws


def slack(delta: float, draws: int) -> float:
    return 3 * math.sqrt(delta * (1 - delta) / draws)


@pytest.fixture(scope="module")
def pool():
    return population()


def _risk_population_check(name, pool, draws):
    eps, delta, n = 0.04, 0.1, 300
    fit_once = lambda rng: create_policy(name, target="risk", eps=eps, delta=delta).fit(draw(pool, n, rng))  # noqa: E731
    rate = violation_rate(fit_once, pool, eps, draws, seed=1)
    assert rate <= delta + slack(delta, draws), f"{name}: violation rate {rate:.3f} > delta {delta}"


@pytest.mark.parametrize("name", CERTIFIABLE)
def test_risk_target_keeps_its_promise_on_a_known_population(pool, name):
    _risk_population_check(name, pool, draws=40)


@pytest.mark.slow
@pytest.mark.parametrize("name", CERTIFIABLE)
def test_risk_target_keeps_its_promise_on_a_known_population_long(pool, name):
    _risk_population_check(name, pool, draws=300)


def _certify_population_check(pool, draws, labelled):
    delta, n_learn, n_cal = 0.1, 200, 300
    eps = 0.04

    def fit_once(rng):
        learn, cal = draw(pool, n_learn, rng), draw(pool, n_cal, rng, labelled=labelled)
        return certify_exit(learn, cal, eps=eps, delta=delta).policy

    rate = violation_rate(fit_once, pool, eps, draws, seed=2)
    assert rate <= delta + slack(delta, draws), f"certified exit with the pick: violation rate {rate:.3f}"


def test_certified_exit_with_its_pick_of_policy_keeps_its_promise(pool):
    _certify_population_check(pool, draws=25, labelled=False)


@pytest.mark.slow
def test_certified_exit_with_its_pick_of_policy_keeps_its_promise_long(pool):
    _certify_population_check(pool, draws=200, labelled=True)


# ---- the certificate's mechanics -----------------------------------------------------------
def test_certifiable_rate_is_the_binomial_tail_by_brute_force():
    for n, eps, delta in [(50, 0.1, 0.05), (200, 0.02, 0.1), (500, 0.01, 0.05)]:
        k_max = max(k for k in range(n + 1)
                    if sum(math.comb(n, i) * eps ** i * (1 - eps) ** (n - i) for i in range(k + 1)) <= delta)
        assert certifiable_disagreement_rate(n, eps, delta) == k_max / n
    n, delta = 500, 0.05
    eps = smallest_certifiable_eps(n, delta)
    assert (1 - eps) ** n <= delta and (1 - eps / (1 + 1e-6)) ** n > delta * (1 - 1e-3)
    assert certifiable_disagreement_rate(n, eps, delta) == 0.0
    with pytest.raises(SnnexitError, match="cannot be certified"):
        certifiable_disagreement_rate(n, eps / 2, delta)


def test_threshold_is_learn_then_test_on_the_calibration_inputs_only(pool):
    rng = np.random.default_rng(3)
    learn, cal = draw(pool, 200, rng), draw(pool, 400, rng)
    for name in ("dynamic_confidence", "topk_per_step"):
        cert = certify_exit(learn, cal, eps=0.05, delta=0.1, candidates=[name])
        policy = cert.policy
        # brute force: this policy's score (learned on ``learn``) on the calibration inputs, LTT
        curve = exact_curve(policy.scores(cal), None, agreement_with_fixed_t(cal))
        point, _ = ltt_select(curve, 0.05, 0.1)
        assert policy.threshold_ == curve.thresholds[point]
        assert cert.calibration_size == cal.N and cert.learn_size == learn.N
    # the labels of the calibration inputs play no part
    unlabelled = Trace(cal.outputs, None, None, cal.meta)
    a = certify_exit(learn, cal, eps=0.05, delta=0.1)
    b = certify_exit(learn, unlabelled, eps=0.05, delta=0.1)
    assert (a.name, a.policy.threshold_) == (b.name, b.policy.threshold_)


def test_default_eps_is_the_smallest_the_pool_certifies_and_the_pick_is_the_cheapest_estimate(pool):
    rng = np.random.default_rng(4)
    learn, cal = draw(pool, 300, rng), draw(pool, 600, rng, labelled=False)
    cert = certify_exit(learn, cal)
    assert cert.eps == pytest.approx(1 - 0.05 ** (1 / 600), rel=1e-6) and cert.delta == 0.05
    assert set(cert.candidates) == set(certifiable_policies()) == set(CERTIFIABLE)
    assert cert.name == min(cert.candidates, key=cert.candidates.get)
    # zero disagreements on the calibration inputs at the certified threshold
    assert cert.policy.curve_.disagreement[cert.policy.point_] == 0.0


def test_certified_row_reports_what_results_json_needs(pool):
    rng = np.random.default_rng(5)
    learn, cal, test = draw(pool, 200, rng), draw(pool, 300, rng), draw(pool, 500, rng)
    row = certify_exit(learn, cal, eps=0.05, delta=0.1).evaluate(test)
    for key in ("policy", "eps", "delta", "calibration_size", "threshold", "test_acc", "test_disagreement",
                "mean_steps", "saving", "alpha", "temperature"):
        assert key in row
    steps = create_policy(row["policy"], threshold=row["threshold"])
    assert row["calibration_size"] == 300 and 0 <= row["saving"] <= 1 and steps is not None


def test_learned_scores_never_certify_on_the_inputs_they_learned_from(pool):
    tr = draw(pool, 100, np.random.default_rng(6))
    for name in CERTIFIABLE:
        pol = create_policy(name, target="risk", eps=0.2, delta=0.2).fit(tr)
        if pol.learns_score:
            learn, certify = split_learn_certify(tr)
            assert pol.learn_size_ == learn.N and pol.certification_size_ == certify.N == pol.curve_.n
        else:
            assert pol.learn_size_ == 0 and pol.certification_size_ == tr.N


def test_bad_certification_requests_are_refused(pool):
    tr, cal = draw(pool, 100, np.random.default_rng(7)), draw(pool, 100, np.random.default_rng(8))
    with pytest.raises(SnnexitError, match="labels"):
        certify_exit(Trace(tr.outputs, None, None, tr.meta), cal)
    with pytest.raises(SnnexitError, match="cannot be certified"):
        certify_exit(tr, cal, eps=1e-4)
    with pytest.raises(SnnexitError, match="certifiable"):
        certify_exit(tr, cal, candidates=["oracle"])
    with pytest.raises(SnnexitError, match="target='risk'"):
        create_policy("dynamic_confidence").fit(tr, calibration=cal)
    with pytest.raises(SnnexitError, match="the calibration trace is the learning trace"):
        create_policy("dynamic_confidence", target="risk", eps=0.2, delta=0.1).fit(tr, calibration=tr)


def test_certifying_on_the_learning_trace_is_refused():
    learn = population(N=200, seed=4)
    for calibration in (learn, Trace(learn.outputs.clone(), None, None, learn.meta)):
        with pytest.raises(SnnexitError, match="the calibration trace is the learning trace"):
            certify_exit(learn, calibration, eps=0.2)


def test_two_splits_of_an_untrained_network_are_not_taken_for_one_trace():
    """An untrained network gives every input the same outputs: two disjoint splits of it then hold
    equal outputs, which must not be refused as the learning trace copied."""
    from snnexit.exit.base import check_other_inputs

    flat = torch.zeros(4, 6, 3).cumsum(0)
    learn = Trace(flat, torch.arange(6) % 3, None, {"alpha": "T"})
    check_other_inputs(learn, Trace(flat.clone(), torch.arange(6) % 2, None, {"alpha": "T"}))
    with pytest.raises(SnnexitError, match="the calibration trace is the learning trace"):
        check_other_inputs(learn, learn)


# ---- the pick's tie-break --------------------------------------------------------------------
def _easy_trace(N: int, T: int, late_deciders: int, seed: int) -> Trace:
    """An easy task: every input's class leads by a wide margin at every step, except
    ``late_deciders`` inputs whose first step leads with another class by a hair. With the tiny
    temperature a run fits on such a task, every softmax saturates."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (N,), generator=g)
    per_step = torch.randn(T, N, 4, generator=g) * 0.1
    per_step[:, torch.arange(N), labels] += 5 + torch.rand(N, generator=g)
    per_step[0, :late_deciders] = 0.0
    per_step[0, torch.arange(late_deciders), (labels[:late_deciders] + 1) % 4] = 0.01 * (1 + torch.arange(late_deciders))
    return Trace(per_step.cumsum(0).double(), labels, None, {"alpha": "T", "temperature": 0.001})


def test_a_tie_in_the_pick_goes_to_the_score_that_ranks_inputs_not_to_the_first_name():
    """On an easy task every candidate reaches step 1 on the learning halves without a disagreement,
    so the estimated steps tie; conformal's saturated score then releases every input at once, and
    one calibration input that changes its answer keeps all of them to T. The finer score wins."""
    from snnexit.exit.certify import cross_fitted_coarseness

    learn, cal = _easy_trace(200, 8, 0, seed=1), _easy_trace(300, 8, 2, seed=2)
    cert = certify_exit(learn, cal, candidates=["conformal", "max_softmax"])  # eps: no disagreement
    assert cert.candidates["conformal"] == cert.candidates["max_softmax"] == 1.0
    assert cross_fitted_coarseness("conformal", learn) == 1.0 > cross_fitted_coarseness("max_softmax", learn)
    assert cert.name == "max_softmax"
    assert cert.policy.curve_.mean_steps[cert.policy.point_] < 1.1  # the two late deciders wait, the rest exit
    alone = certify_exit(learn, cal, candidates=["conformal"])  # what the first name would have given
    assert alone.policy.curve_.mean_steps[alone.policy.point_] == 8.0


def test_coarseness_is_the_largest_share_of_the_saving_one_threshold_releases():
    from snnexit.exit.certify import _held_out_curves, cross_fitted_coarseness

    trace = population(N=400, T=6, seed=3)
    shares = []
    for curve in _held_out_curves("max_softmax", trace, None):  # brute force over the curve's points
        steps = list(curve.mean_steps)
        jumps = [steps[i] - steps[i + 1] for i in range(len(steps) - 1)]
        shares.append(max(jumps) / (steps[0] - min(steps)))
    assert cross_fitted_coarseness("max_softmax", trace) == pytest.approx(max(shares))
    assert 0 < max(shares) < 0.2
