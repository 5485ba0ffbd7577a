"""Risk control: the Learn-then-Test threshold keeps its promise on many random draws."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

from snnexit.exit import DynamicConfidence, create_policy, exact_curve, zero_disagreement_bound
from snnexit.exit.base import agreement_with_fixed_t
from snnexit.simulate.trace import Trace


def population(N=6000, T=10, C=6, seed=0) -> Trace:
    """A synthetic trace whose predictions settle over time, some inputs late and some never."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (N,), generator=g)
    drift = torch.rand(N, generator=g) * 3.0  # per-input evidence for the label
    per_step = torch.randn(T, N, C, generator=g)
    per_step[:, torch.arange(N), labels] += drift
    return Trace(per_step.cumsum(0), labels, None, {"alpha": "t", "temperature": 1.0})


def test_accuracy_lost_never_exceeds_disagreement():
    pop = population(N=3000)
    pol = DynamicConfidence()
    curve = exact_curve(pol.scores(pop), pop.correct(), agreement_with_fixed_t(pop))
    lost = (curve.correct[0] - curve.correct) / curve.n
    assert np.all(lost <= curve.disagreement + 1e-12)
    assert curve.disagreement[0] == 0


def test_zero_disagreement_bound_is_the_binomial_edge():
    for n in (50, 500, 5000):
        eps = zero_disagreement_bound(n, 0.05)
        assert binom.cdf(0, n, eps) == pytest.approx(0.05)
        assert eps == pytest.approx(-math.log(0.05) / n, rel=0.05)  # the "3/n" rule of thumb


@pytest.mark.parametrize("name", ["dynamic_confidence", "topk"])
def test_violation_rate_stays_below_delta_on_many_draws(name):
    """Draw fitting sets i.i.d. from a finite population whose true risk is known exactly; the
    certified threshold's population disagreement exceeds eps in at most delta of the draws
    (plus 3 standard errors of sampling slack). The plug-in choice (empirical disagreement
    <= eps) violates far more often: the test can tell the two apart."""
    pop = population()
    eps, delta, draws, n = 0.04, 0.1, 150, 500
    probe = create_policy(name)
    pop_curve = exact_curve(probe.scores(pop), pop.correct(), agreement_with_fixed_t(pop))
    rng = np.random.default_rng(1)
    violations, plug_in_violations, savings = 0, 0, []
    for _ in range(draws):
        sample = pop.subset(torch.from_numpy(rng.integers(0, pop.N, n)))
        pol = create_policy(name, target="risk", eps=eps, delta=delta).fit(sample)
        k = pop_curve.at(pol.threshold_)
        violations += pop_curve.disagreement[k] > eps
        savings.append(1 - pop_curve.mean_steps[k] / pop.T)
        # plug-in: the cheapest point whose empirical disagreement is <= eps
        c = pol.curve_
        ok = np.flatnonzero(c.disagreement <= eps)
        plug = ok[np.argmin(c.mean_steps[ok])]
        plug_in_violations += pop_curve.disagreement[pop_curve.at(c.thresholds[plug])] > eps
    slack = 3 * math.sqrt(delta * (1 - delta) / draws)
    assert violations / draws <= delta + slack
    assert plug_in_violations / draws > delta + slack
    assert np.mean(savings) > 0.2  # the guarantee is not bought by never exiting early


def test_risk_fit_needs_no_correct_labels():
    """Disagreement is label-free: shuffling the labels leaves the certified threshold unchanged."""
    pop = population(N=800)
    shuffled = Trace(pop.outputs, pop.labels[torch.randperm(pop.N)], None, dict(pop.meta))
    a = DynamicConfidence(target="risk", eps=0.05, delta=0.1).fit(pop)
    b = DynamicConfidence(target="risk", eps=0.05, delta=0.1).fit(shuffled)
    assert a.threshold_ == b.threshold_
