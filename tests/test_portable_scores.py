"""Softmax scores whose thresholds keep their meaning in float32: checked against 1000-digit arithmetic.

A softmax probability saturates (1 - p_top underflows float64's resolution at logit gaps of about
37, float32's at about 17), so the same threshold is another rule in another precision. The
scores are the log-odds of the top class, -log of the normalised entropy and -log of the
runner-up's probability: the same order of inputs, computed without saturating.
"""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from snnexit.exit import create_policy
from snnexit.exit.curve import exit_steps_from_scores
from snnexit.exit.scores import (log_odds, minus_log_second_probability, neg_log_normalised_entropy,
                                 probability_from_log_odds, top_log_odds)
from snnexit.simulate.trace import Trace

EPS32 = float(torch.finfo(torch.float32).eps)


def exact_scores(z: list[float]) -> tuple[float, float, float]:
    """(log-odds of the top class, -log(H / log C), -log p_2) of softmax(z), in arithmetic with
    enough digits (1 - p_top down to 1e-900) from the definitions (probabilities first, as the
    papers write them)."""
    with mpmath.workdps(1000):
        return _exact_scores([mpmath.mpf(v) for v in z])


def _exact_scores(z):
    total = mpmath.fsum(mpmath.exp(v) for v in z)
    p = sorted((mpmath.exp(v) / total for v in z), reverse=True)
    entropy = -mpmath.fsum(q * mpmath.log(q) for q in p if q > 0)
    return (float(mpmath.log(p[0] / (1 - p[0]))), float(-mpmath.log(entropy / mpmath.log(len(z)))),
            float(-mpmath.log(p[1])))


def logits(n: int, C: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, C, generator=g, dtype=torch.float64) * scale


SCORES = (top_log_odds, neg_log_normalised_entropy, minus_log_second_probability)


@pytest.mark.parametrize("C", [2, 3, 10])
@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0, 300.0])
def test_scores_equal_the_high_precision_closed_form(C, scale):
    z = logits(40, C, scale, seed=C)
    got = [f(z) for f in SCORES]
    for i in range(z.shape[0]):
        expected = exact_scores(z[i].tolist())
        for name, g, e in zip(("log-odds", "entropy", "runner-up"), got, expected):
            # float64 rounding of the inputs' own size bounds the error (a difference of large logits)
            tolerance = 64 * 2.2e-16 * (float(z[i].abs().max()) + abs(e) + 1.0)
            assert abs(float(g[i]) - e) <= tolerance, (name, z[i].tolist(), float(g[i]), e)


@pytest.mark.parametrize("scale", [3.0, 30.0, 300.0])
def test_float32_scores_are_float64_scores_up_to_rounding(scale):
    z = logits(500, 10, scale, seed=7)
    z32 = z.float()  # what a float32 deployment holds
    for f in SCORES:
        s64, s32 = f(z32.double()), f(z32)
        assert s32.dtype == torch.float32 and torch.isfinite(s32).all()
        bound = 16 * EPS32 * (z32.abs().amax(-1).double() + s64.abs() + 1.0)
        assert bool(((s32.double() - s64).abs() <= bound).all()), f.__name__
    if scale >= 30:  # ... where the probability itself has run out of digits on many inputs in float32
        assert (torch.softmax(z32, -1).amax(-1) == 1.0).float().mean() > 0.3


def test_the_scores_order_inputs_as_the_published_probabilities_do():
    z = logits(300, 5, 1.5, seed=3)
    p = torch.softmax(z, -1)
    assert torch.allclose(probability_from_log_odds(top_log_odds(z)), p.amax(-1), rtol=1e-12)
    normalised_entropy = -(p * p.log()).sum(-1) / math.log(5)
    assert torch.allclose(1 - torch.exp(-neg_log_normalised_entropy(z)), 1 - normalised_entropy, atol=1e-12)
    assert torch.allclose(torch.exp(-minus_log_second_probability(z)), p.topk(2, -1).values[:, 1], rtol=1e-12)
    assert log_odds(0.99) == pytest.approx(math.log(99)) and float(probability_from_log_odds(
        torch.tensor(log_odds(0.75), dtype=torch.float64))) == pytest.approx(0.75)


def saturating_trace(N=600, T=12, C=10, seed=0) -> Trace:
    """Outputs that grow with t to logit gaps of tens: past float32's (and float64's) softmax resolution."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, C, (N,), generator=g)
    drive = torch.randn(N, C, generator=g) * 2 + 8 * torch.nn.functional.one_hot(label, C) * torch.rand(N, 1,
                                                                                                         generator=g)
    steps = drive.unsqueeze(0) + torch.randn(T, N, C, generator=g) * 3
    return Trace(steps.cumsum(0), label, None, {"alpha": 1.0, "temperature": 0.5})


@pytest.mark.parametrize("name", ["dynamic_confidence", "max_softmax", "entropy", "conformal",
                                  "step_calibrated_confidence", "topk", "topk_per_step", "mean_output_confidence"])
def test_float32_decisions_differ_only_within_rounding_of_the_threshold(name):
    """Fitted (and certified) in float64 at the cheapest certifiable point, the rule run in float32
    exits every input at the same step, unless one of its scores lies within float32 rounding
    of the threshold (those the test counts, and there are few)."""
    fit, test = saturating_trace(seed=1), saturating_trace(seed=2)
    policy = create_policy(name, target="risk", eps=0.05, delta=0.1).fit(fit)
    s64, s32 = policy.scores(test), policy.scores(test, torch.float32)
    steps64, steps32 = policy.exit_steps(test), policy.exit_steps(test, torch.float32)
    close = ((s64 - s32.double()).abs().amax(0) >= (s64 - policy.threshold_).abs().amin(0))  # (N,) near the threshold
    differ = steps64 != steps32
    assert not bool((differ & ~close).any()), f"{int((differ & ~close).sum())} decisions differ far from the threshold"
    assert differ.float().mean() <= 0.01


def test_the_published_probability_form_is_not_portable_on_the_same_trace():
    """The contrast: the certified Dynamic Confidence rule on the trace above, written as the paper
    writes it (top probability > p), takes other decisions in float32 on most inputs."""
    fit, test = saturating_trace(seed=1), saturating_trace(seed=2)
    policy = create_policy("dynamic_confidence", target="risk", eps=0.05, delta=0.1).fit(fit)
    p = float(probability_from_log_odds(torch.tensor(policy.threshold_, dtype=torch.float64)))
    assert p > 1 - 1e-6  # certified where the probability saturates
    prob32 = torch.stack([torch.softmax(policy.scaled(test.outputs[t], t + 1, test.meta), -1).amax(-1)
                          for t in range(test.T)])  # (T, N) float32
    assert (exit_steps_from_scores(prob32, p) != policy.exit_steps(test)).float().mean() > 0.3
    assert torch.equal(policy.exit_steps(test, torch.float32), policy.exit_steps(test))
