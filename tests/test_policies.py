"""One shared battery over every registered exit policy, plus each score against its closed form."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnexit.errors import SnnexitError
from snnexit.exit import (POLICIES, Conformal, DynamicConfidence, NotFittedError, ThresholdPolicy, TopKPerStep,
                          create_policy, ltt_select)
from snnexit.simulate.trace import Trace
from snnexit.exit.base import split_learn_certify

NAMES = POLICIES.names()
THRESHOLDED = [n for n in NAMES if issubclass(POLICIES.get(n), ThresholdPolicy)]


@st.composite
def traces(draw, min_n=1, T=None, like=None):
    """Small traces with integer outputs (many ties) and a random alpha/temperature (T steps:
    drawn when None); ``like``: another trace of the same network (its C, alpha and temperature)."""
    T = draw(st.integers(1, 6)) if T is None else T
    N = draw(st.integers(min_n, 12))
    C = draw(st.integers(2, 4)) if like is None else like.C
    y = draw(st.lists(st.integers(-3, 3), min_size=T * N * C, max_size=T * N * C))
    labels = draw(st.lists(st.integers(0, C - 1), min_size=N, max_size=N))
    meta = {"alpha": draw(st.sampled_from(["t", 2])), "temperature": draw(st.sampled_from([1.0, 0.5]))}
    if like is not None:
        meta = {key: like.meta[key] for key in meta}
    outputs = torch.tensor(y, dtype=torch.float32).view(T, N, C).cumsum(0)
    return Trace(outputs, torch.tensor(labels), None, meta)


def brute_exit_steps(policy, trace):
    """The first step whose score (computed one input at a time) exceeds the threshold; oracles by loop."""
    T, N = trace.T, trace.N
    correct = trace.correct()
    steps = []
    for n in range(N):
        if policy.__class__.__name__ == "FixedT":
            steps.append(T)
            continue
        if policy.__class__.__name__ == "Oracle":
            hits = [t for t in range(T) if correct[t, n]]
            steps.append(hits[0] + 1 if hits else T)
            continue
        if policy.__class__.__name__ == "OracleStable":
            stable = [t for t in range(T) if all(correct[u, n] for u in range(t, T))]
            steps.append(stable[0] + 1 if stable else T)
            continue
        exit_at = T
        for t in range(T):
            score = policy.score_step(trace.outputs[t, n:n + 1].double(), t + 1, trace.meta).item()  # decided in float64
            if score > policy.threshold_:
                exit_at = t + 1
                break
        steps.append(exit_at)
    return torch.tensor(steps)


def run_online(policy, trace, batch_order=None):
    """What a runtime does: call decide step by step on a compacted batch of the still-running inputs."""
    active = torch.arange(trace.N) if batch_order is None else batch_order
    steps = torch.full((trace.N,), trace.T, dtype=torch.long)
    for t in range(1, trace.T + 1):
        if active.numel() == 0:
            break
        stop = policy.decide(trace.outputs[t - 1, active], t, trace.meta, labels=trace.labels[active])
        assert stop.shape == (active.numel(),) and stop.dtype == torch.bool
        steps[active[stop]] = t
        active = active[~stop]
    return steps


def fitted(name, trace, **kwargs):
    return create_policy(name, **kwargs).fit(trace)


# ---------------------------------------------------------------------------------------
# the shared battery
# ---------------------------------------------------------------------------------------
def test_registry_has_every_policy_and_unknown_names_list_them():
    for name in ("dynamic_confidence", "max_softmax", "entropy", "topk", "topk_per_step", "conformal", "fixed",
                 "oracle", "oracle_stable"):
        assert name in POLICIES
    with pytest.raises(SnnexitError, match="Unknown policy 'conf'. Known: conformal, dynamic_confidence"):
        create_policy("conf")


@pytest.mark.parametrize("name", NAMES)
def test_rejects_malformed_traces(name, make_trace):
    policy = create_policy(name)
    with pytest.raises(SnnexitError, match="expected a Trace"):
        policy.fit(torch.zeros(3, 4, 2))
    bad = make_trace(T=4, N=10)
    bad.outputs[2, 3, 1] = float("nan")
    with pytest.raises(SnnexitError, match="NaN"):
        create_policy(name).fit(bad)
    wrong_labels = make_trace(T=4, N=10, C=3)
    wrong_labels.labels[0] = 7
    with pytest.raises(SnnexitError, match="labels must lie"):
        create_policy(name).fit(wrong_labels)
    empty = make_trace(T=4, N=10)
    empty.outputs = empty.outputs[:, :0]
    with pytest.raises(SnnexitError, match="N >= 1"):
        create_policy(name).fit(empty)
    fit_ok = create_policy(name).fit(make_trace(T=4, N=30))
    with pytest.raises(SnnexitError, match="NaN"):
        fit_ok.exit_steps(bad)


@pytest.mark.parametrize("name", THRESHOLDED)
def test_rejects_bad_settings(name, make_trace):
    tr = make_trace(T=4, N=30)
    for kwargs, message in [({"target": "bogus"}, "Unknown target 'bogus'. Known: no_loss, max_drop, max_steps, risk"),
                            ({"target": "max_drop"}, "eps must be a number"),
                            ({"target": "max_drop", "eps": 1.5}, "eps must lie in"),
                            ({"target": "max_steps"}, "max_steps must be a number >= 1"),
                            ({"target": "max_steps", "max_steps": 0.5}, "max_steps must be"),
                            ({"target": "risk", "eps": 0.1}, "delta must be a number"),
                            ({"target": "risk", "eps": 0.0, "delta": 0.1}, "eps must lie in"),
                            ({"target": "risk", "eps": 0.1, "delta": 1.0}, "delta must lie in"),
                            ({"threshold": float("nan")}, "threshold must be a finite number")]:
        with pytest.raises(SnnexitError, match=message):
            create_policy(name, **kwargs).fit(tr)


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_policy_raises_a_clear_error(name, make_trace):
    policy, tr = create_policy(name), make_trace(T=4, N=20)
    if not policy.needs_fit:
        policy.exit_steps(tr)  # works without fit
        return
    for call in (lambda: policy.exit_steps(tr), lambda: policy.predict(tr), lambda: policy.fitted_threshold(),
                 lambda: policy.decide(tr.outputs[0], 1, tr.meta)):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=20, deadline=None)
@given(fit_trace=traces(min_n=2), data=st.data())
def test_exit_steps_decide_and_predict_against_brute_force(name, fit_trace, data):
    policy = create_policy(name)
    eval_trace = data.draw(traces(T=fit_trace.T, like=fit_trace))  # the same network: its T, C and scaling
    policy.fit(fit_trace)
    for tr in (fit_trace, eval_trace):
        steps = policy.exit_steps(tr)
        assert steps.dtype == torch.long and steps.shape == (tr.N,)
        assert torch.equal(steps, brute_exit_steps(policy, tr))
        pred = policy.predict(tr)
        assert torch.equal(pred, tr.outputs[steps - 1, torch.arange(tr.N)].argmax(-1))
        if policy.online:
            assert torch.equal(run_online(policy, tr), steps)
            assert torch.equal(run_online(policy, tr, torch.randperm(tr.N)), steps)  # any batch order
        else:
            with pytest.raises(SnnexitError, match="no online rule"):
                policy.decide(tr.outputs[0], 1, tr.meta, tr.labels)


@pytest.mark.parametrize("name", ["oracle"])
def test_oracle_decide_needs_labels(name, make_trace):
    tr = make_trace(T=3, N=5)
    with pytest.raises(SnnexitError, match="needs the labels"):
        create_policy(name).decide(tr.outputs[0], 1, tr.meta)


def sweep(policy, trace):
    """(threshold, mean steps, correct, disagreements) for every candidate threshold, by brute force."""
    scores = policy.scores(trace).double().numpy()  # (T, N)
    pred = trace.predictions().numpy()  # (T, N)
    labels = trace.labels.numpy()
    candidates = np.unique(np.concatenate([scores.ravel(), [scores.min() - 1]]))
    rows = []
    for tau in candidates:
        above = scores > tau
        steps = np.where(above.any(0), above.argmax(0), trace.T - 1)  # 0-based
        exit_pred = pred[steps, np.arange(trace.N)]
        rows.append((tau, (steps + 1).mean(), int((exit_pred == labels).sum()), int((exit_pred != pred[-1]).sum())))
    return rows


@pytest.mark.parametrize("name", THRESHOLDED)
@settings(max_examples=15, deadline=None)
@given(trace=traces(min_n=2), eps=st.sampled_from([0.0, 0.1, 0.3]), m=st.sampled_from([1.0, 1.5, 3.0]))
def test_fitting_targets_against_a_brute_force_sweep(name, trace, eps, m):
    if getattr(create_policy(name), "k", 2) > trace.C:
        return
    fixed_correct = int(trace.correct()[-1].sum())
    base = create_policy(name).fit(trace)  # learns the score tables, if any
    rows = sweep(base, trace)

    def realised(policy):
        steps = policy.exit_steps(trace)
        pred = policy.predict(trace)
        return steps.double().mean().item(), int((pred == trace.labels).sum())

    # no loss: accuracy >= fixed T, and no threshold does so with fewer steps
    steps, right = realised(base)
    assert right >= fixed_correct
    assert min(s for _, s, r, _ in rows if r >= fixed_correct) == pytest.approx(steps)
    # max drop eps
    pol = create_policy(name, target="max_drop", eps=eps).fit(trace)
    steps, right = realised(pol)
    need = math.ceil(fixed_correct - eps * trace.N - 1e-9)
    assert right >= need
    assert min(s for _, s, r, _ in rows if r >= need) == pytest.approx(steps)
    # max steps m: the most correct answers within the budget
    pol = create_policy(name, target="max_steps", max_steps=m).fit(trace)
    steps, right = realised(pol)
    assert steps <= m + 1e-9
    assert right == max(r for _, s, r, _ in rows if s <= m + 1e-9)
    # the curve the policy fitted is the brute-force sweep
    points = set(zip(np.round(pol.curve_.mean_steps, 9).tolist(), pol.curve_.correct.tolist()))
    assert {(round(s, 9), r) for _, s, r, _ in rows} == points


@pytest.mark.parametrize("name", THRESHOLDED)
@settings(max_examples=15, deadline=None)
@given(trace=traces(min_n=4), eps=st.sampled_from([0.05, 0.2, 0.5]), delta=st.sampled_from([0.1, 0.5]))
def test_risk_target_is_the_last_point_of_the_certified_prefix(name, trace, eps, delta):
    from scipy.stats import binom

    if getattr(create_policy(name), "k", 2) > trace.C:
        return
    pol = create_policy(name, target="risk", eps=eps, delta=delta).fit(trace)
    # a policy that learns its score certifies on the half it did not learn from
    certify = split_learn_certify(trace)[1] if pol.learns_score else trace
    curve = pol.curve_
    assert curve.n == certify.N
    chosen = 0
    for k in range(1, len(curve.thresholds)):  # fixed-sequence testing, from fixed T downwards
        disagreements = curve.n - curve.agree[k]
        if binom.cdf(disagreements, curve.n, eps) > delta:
            break
        if curve.mean_steps[k] < curve.mean_steps[chosen]:
            chosen = k
    assert curve.mean_steps[pol.point_] == curve.mean_steps[chosen]
    # the disagreement counts are the brute force's
    fixed_pred = certify.predictions()[-1]
    pred = pol.predict(certify)
    assert int((pred != fixed_pred).sum()) == curve.n - curve.agree[pol.point_]


@pytest.mark.parametrize("name", THRESHOLDED)
def test_given_threshold_is_used_as_is(name, make_trace):
    tr = make_trace(T=5, N=40)
    pol = create_policy(name, threshold=0.5).fit(tr)
    assert pol.threshold_ == 0.5
    # fit still records the fitting trace's curve and the point the fixed threshold realises on it
    assert np.array_equal(pol.curve_.thresholds, pol.curve(tr).thresholds)
    assert pol.point_ == int((pol.curve_.thresholds[:-1] > 0.5).sum())


# ---------------------------------------------------------------------------------------
# scores against closed forms
# ---------------------------------------------------------------------------------------
def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("alpha", ["t", 3])
def test_scores_closed_form(make_trace, alpha):
    tr = make_trace(T=4, N=30, C=5, meta={"alpha": alpha, "temperature": 1.7})
    Y = tr.outputs.double().numpy()
    a = np.arange(1, 5)[:, None, None] if alpha == "t" else 3.0
    p = np_softmax(Y / a / 1.7)
    log_odds = lambda q: np.log(q.max(-1)) - np.log1p(-q.max(-1))  # noqa: E731  (moderate logits: no saturation)
    np.testing.assert_allclose(create_policy("dynamic_confidence").scores(tr).numpy(), log_odds(p), atol=1e-12)
    np.testing.assert_allclose(create_policy("max_softmax").scores(tr).numpy(), log_odds(np_softmax(Y)), atol=1e-12)
    entropy = -(p * np.log(p)).sum(-1) / np.log(5)
    np.testing.assert_allclose(create_policy("entropy").scores(tr).numpy(), -np.log(entropy), rtol=1e-12)
    srt = np.sort(Y, -1)
    np.testing.assert_allclose(create_policy("topk").scores(tr).numpy(), srt[..., -1] - srt[..., -2], atol=1e-12)
    np.testing.assert_allclose(create_policy("topk", k=4).scores(tr).numpy(), srt[..., -1] - srt[..., -4], atol=1e-12)
    np.testing.assert_allclose(create_policy("topk", use_alpha=True).scores(tr).numpy(),
                               (srt[..., -1] - srt[..., -2]) / (a if alpha == "t" else 3.0)[..., 0]
                               if alpha == "t" else (srt[..., -1] - srt[..., -2]) / 3.0, atol=1e-12)


def test_topk_rejects_k_beyond_classes(make_trace):
    tr = make_trace(T=3, N=10, C=3)
    with pytest.raises(SnnexitError, match="exceeds the number of classes"):
        create_policy("topk", k=4).fit(tr)
    with pytest.raises(SnnexitError, match="integer >= 2"):
        create_policy("topk_per_step", k=1).fit(tr)


@settings(max_examples=30, deadline=None)
@given(trace=traces(min_n=2), eps=st.sampled_from([0.0, 0.1, 0.25, 0.5]))
def test_topk_per_step_thresholds_are_snncutoffs(trace, eps):
    """tau_t is the lowest gap threshold whose cut-off calibration inputs at step t are correct
    with rate >= 1 - eps (brute force over every candidate), and exits are ``gap > tau_t``."""
    pol = TopKPerStep(target="precision", eps=eps).fit(trace)
    gaps = pol.raw_scores(trace).numpy()
    correct = trace.correct().numpy()
    for t in range(trace.T):
        g, c = gaps[t], correct[t]
        valid = [tau for tau in np.concatenate([np.unique(g), [-np.inf]])
                 if (g > tau).sum() == 0 or c[g > tau].mean() >= 1 - eps]
        assert pol.step_thresholds_[t] == min(valid)
    expected = []
    for n in range(trace.N):
        hits = [t for t in range(trace.T) if gaps[t, n] > pol.step_thresholds_[t]]
        expected.append(hits[0] + 1 if hits else trace.T)
    assert pol.exit_steps(trace).tolist() == expected


@settings(max_examples=30, deadline=None)
@given(fit_trace=traces(min_n=2), data=st.data(), a=st.sampled_from([0.05, 0.2, 0.5, 0.8]))
def test_conformal_exits_when_the_prediction_set_has_at_most_one_class(fit_trace, data, a):
    eval_trace = data.draw(traces(T=fit_trace.T, like=fit_trace))
    pol = Conformal(target="coverage", eps=a).fit(fit_trace)
    assert pol.miscoverage_ == pytest.approx(1 - math.ceil((fit_trace.N + 1) * (1 - a)) / (fit_trace.N + 1))
    n = fit_trace.N
    k = math.ceil((n + 1) * (1 - a))

    def probs(tr, t):
        return torch.softmax(tr.outputs[t].double() / ((t + 1 if tr.meta["alpha"] == "t" else 2) *
                                                         tr.meta["temperature"]), -1).numpy()

    quantiles = []
    for t in range(eval_trace.T):
        cal = probs(fit_trace, t)
        s = sorted(1.0 - cal[i, int(fit_trace.labels[i])] for i in range(n))
        quantiles.append(s[k - 1] if k <= n else np.inf)
    eval_probs = [probs(eval_trace, t) for t in range(eval_trace.T)]
    expected = []
    for m in range(eval_trace.N):
        sizes = [sum(1.0 - p <= quantiles[t] for p in eval_probs[t][m]) for t in range(eval_trace.T)]
        small = [t for t in range(eval_trace.T) if sizes[t] <= 1]
        expected.append(small[0] + 1 if small else eval_trace.T)
    assert pol.exit_steps(eval_trace).tolist() == expected


def test_conformal_set_covers_at_the_promised_rate():
    """Split-conformal coverage on exchangeable data: the set at level a holds the label >= 1 - a."""
    g = torch.Generator().manual_seed(0)
    T, N, C = 1, 4000, 5
    labels = torch.randint(0, C, (N,), generator=g)
    logits = torch.randn(T, N, C, generator=g) * 1.5
    logits[0, torch.arange(N), labels] += 1.0
    tr = Trace(logits, labels, None, {"alpha": 1, "temperature": 1.0})
    cal, new = tr.subset(torch.arange(0, 2000)), tr.subset(torch.arange(2000, 4000))
    pol = Conformal(target="coverage", eps=0.1).fit(cal)
    q = pol.sorted_values_[0, math.ceil(2001 * 0.9) - 1].item()
    p = torch.softmax(new.outputs[0].double(), -1)
    covered = (1 - p[torch.arange(2000), new.labels] <= q).double().mean().item()
    assert covered >= 0.9 - 3 * math.sqrt(0.09 / 2000)


def test_dynamic_confidence_keeps_the_pipeline_interface(make_trace):
    pol = DynamicConfidence().fit(make_trace(T=6, N=100))
    assert {"curve_", "point_", "threshold_", "T_"} <= set(vars(pol))
    assert pol.threshold_ == pol.curve_.thresholds[pol.point_]


def test_refit_forgets_the_previous_fit(make_trace):
    pol = DynamicConfidence(target="risk", eps=0.1, delta=0.1).fit(make_trace(T=6, N=100))
    assert hasattr(pol, "pvalues_")
    pol.threshold = 0.3
    second = make_trace(T=6, N=100, seed=2)
    pol.fit(second)
    assert pol.threshold_ == 0.3 and not hasattr(pol, "pvalues_") and not hasattr(pol, "certification_size_")
    assert np.array_equal(pol.curve_.thresholds, pol.curve(second).thresholds)  # the new trace's curve


def test_ltt_select_requires_agreement_counts(make_trace):
    from snnexit.exit import exact_curve

    tr = make_trace(T=4, N=20)
    curve = exact_curve(DynamicConfidence().scores(tr), tr.correct())
    with pytest.raises(SnnexitError, match="agreement"):
        ltt_select(curve, 0.1, 0.1)


# ---------------------------------------------------------------------------------------
# step-calibrated confidence
# ---------------------------------------------------------------------------------------
def _overconfident_first_step_trace(N=400, C=5, T=6, seed=0):
    """Step 1 answers class 0 for 60% of the inputs with large logits (confidently wrong for
    most of them); later steps drift towards the label: the pattern seen in converted SNNs."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (N,), generator=g)
    per_step = torch.randn(T, N, C, generator=g) * 0.5
    per_step[:, torch.arange(N), labels] += 1.5
    biased = torch.rand(N, generator=g) < 0.6
    per_step[0, biased, 0] += 8.0
    return Trace(per_step.cumsum(0), labels, None, {"alpha": "t", "temperature": 1.0})


def test_step_temperatures_minimise_each_steps_nll_as_scipy_does():
    from scipy.optimize import minimize_scalar

    trace = _overconfident_first_step_trace()
    policy = create_policy("step_calibrated_confidence").fit(trace)
    assert policy.step_temperatures_.shape == (trace.T,)
    for t in range(trace.T):
        mean = trace.outputs[t].double() / (t + 1)  # alpha = t

        def nll(temp):
            return torch.nn.functional.cross_entropy(mean / temp, trace.labels).item()

        ref = minimize_scalar(nll, bounds=(0.01, 100), method="bounded", options={"xatol": 1e-8}).x
        assert abs(policy.step_temperatures_[t].item() - ref) < 1e-3 * max(1.0, ref)
    # the confidently wrong first step gets the hottest temperature
    assert policy.step_temperatures_[0] > 2 * policy.step_temperatures_[1:].max()


def test_step_calibration_stops_trusting_an_overconfident_first_step():
    val, test = _overconfident_first_step_trace(seed=1), _overconfident_first_step_trace(seed=2)
    plain = create_policy("dynamic_confidence").fit(val)
    calibrated = create_policy("step_calibrated_confidence").fit(val)
    # both keep validation accuracy at fixed T's; the calibrated scores allow a lower threshold
    for policy in (plain, calibrated):
        assert policy.curve_.correct[policy.point_] >= policy.curve_.correct[0]
    assert calibrated.evaluate(val)["mean_steps"] < plain.evaluate(val)["mean_steps"]
    with pytest.raises(SnnexitError, match="fitted on 6 steps"):
        calibrated.decide(test.outputs[0], 7, test.meta)
