"""Exit policies whose score needs no fitting, the baseline, and the two oracles."""

from __future__ import annotations

import math
from dataclasses import field

import torch

from snnexit.calibrate import fit_temperature
from snnexit.errors import SnnexitError
from snnexit.exit.codec import Fitted
from snnexit.exit.base import (ExitPolicy, check_is_fitted, check_step_range, check_trace, policy_params,
                               register_policy)
from snnexit.exit.scores import ScaledOutputSettings, alpha_at, neg_log_normalised_entropy, top_log_odds
from snnexit.exit.threshold import ThresholdPolicy
from snnexit.simulate.trace import Trace

__all__ = ["DynamicConfidence", "Entropy", "FixedT", "MaxSoftmax", "MeanOutputConfidence", "Oracle", "OracleStable",
           "StepCalibratedConfidence", "alpha_at"]


@register_policy("fixed")
class FixedT(ExitPolicy):
    """Run every input for all T steps: the baseline."""

    def exit_steps(self, trace: Trace) -> torch.Tensor:
        check_trace(trace)
        return torch.full((trace.N,), trace.T, dtype=torch.long)

    def decide(self, accumulated, t, meta, labels=None):
        return torch.zeros(accumulated.shape[0], dtype=torch.bool, device=accumulated.device)


@register_policy("dynamic_confidence")
@policy_params
class DynamicConfidence(ScaledOutputSettings, ThresholdPolicy):
    """Li, Jones & Furber (ICCV 2023): ``c_t = max softmax(Y[t] / alpha / T_cal)``.

    The score is ``c_t`` as log-odds, ``log(c_t / (1 - c_t))`` (:func:`~snnexit.exit.scores.top_log_odds`):
    the same order of inputs, so the same exits, but a threshold that keeps its meaning in
    float32 and fixed point where ``c_t`` itself rounds to 1. A threshold of 4.595 is the
    paper's ``tau = 0.99`` (:func:`~snnexit.exit.scores.log_odds`).

    alpha is the network's own (``meta["alpha"]``): the simulation length T of the run for
    QCFS (the paper's Sec. 5.2; a constant, so the confidence rises with t and meets the ANN's
    at t = T), the same for the other rate-coded networks (data-normalised conversion, direct
    training), and ``2**b - 1`` for QFFS. The online runtime passes its own T.

    Args:
        temperature: T_cal from temperature scaling of the ANN; None reads
            ``trace.meta["temperature"]`` (1.0 if absent).
        use_alpha: False drops alpha (plain max-softmax of the accumulated output, for Fig. 2).
        target, threshold, eps, max_steps, delta: see :class:`ThresholdPolicy` (also for the
            fitted attributes).
    """

    score_range = None  # log-odds: any real number
    score_meaning = "the log-odds of the top softmax probability, log(p / (1 - p))"

    def score_step(self, accumulated, t, meta):
        return top_log_odds(self.scaled(accumulated, t, meta))

    def score_depends_on_step(self, meta):
        return self.scaling_for(meta).alpha == "t"  # else alpha is T or a constant: the same divisor every step

    def score_formula(self, meta):
        return f"z_top - logsumexp(z_rest) (the top class's log-odds) of {self.scaling_formula(meta)}"


@register_policy("mean_output_confidence")
class MeanOutputConfidence(DynamicConfidence):
    """Dynamic Confidence with alpha = t: ``max softmax(Y[t] / t / T_cal)``, the softmax of the
    mean output. Not the paper's rule (it divides by the run length T); kept because on some
    networks it exits sooner (on digits it did), and as the contrast to the published alpha."""

    alpha_rule = "t"


@register_policy("max_softmax")
@policy_params
class MaxSoftmax(DynamicConfidence):
    """SEENN-I (Li et al., NeurIPS 2023): max softmax of the accumulated output, no alpha,
    no temperature unless given (``temperature`` defaults to 1.0, not to the trace's). It
    saturates as Y[t] grows with t: the contrast that motivates Dynamic Confidence's alpha."""

    temperature: float | None = 1.0
    use_alpha: bool = field(default=False, init=False)  # not a parameter: SEENN-I never divides by alpha


@register_policy("step_calibrated_confidence")
@policy_params
class StepCalibratedConfidence(DynamicConfidence):
    """Dynamic Confidence with one temperature per time step, fitted on the validation trace
    (snnexit's extension; the paper calibrates the ANN once).

    After t steps a converted SNN is a coarser network than the ANN (after one step every
    neuron has fired at most once), and its confidence means something different at every t:
    one model's first step can be confidently wrong on most inputs. Temperature scaling of
    ``Y[t] / alpha_t`` at every step (``step_temperatures_``, by NLL, like the ANN's T_cal)
    puts the scores of all steps on one scale, so one threshold suits every step. The
    threshold is then chosen from the exact curve as for Dynamic Confidence.

    Fitted attributes besides the shared ones: ``step_temperatures_`` ``(T_,)`` float64.
    """

    temperature: float | None = field(default=None, init=False)  # not a parameter: fitted per step instead

    declare_fitted = {"step_temperatures_": Fitted("tensor", "float64", 1, learned=True)}

    def _check_fitted_state(self, values):
        super()._check_fitted_state(values)
        temps, T = values["step_temperatures_"], values["T_"]
        if tuple(temps.shape) != (T,):
            raise SnnexitError(f"step_temperatures_ has shape {tuple(temps.shape)}, expected (T_,) = ({T},)")
        if not bool((temps > 0).all()):
            raise SnnexitError("step_temperatures_ must be positive")

    def resolved_scaling(self, meta):
        """alpha as Dynamic Confidence's; no T_cal: the per-step temperatures take its place."""
        return super().resolved_scaling(meta).with_(temperature=1.0)

    def meta_keys(self):
        return tuple(key for key in super().meta_keys() if key != "temperature")

    def _fit_scores(self, trace: Trace) -> None:
        temps = []
        for t in range(trace.T):
            logits = self.scaled(trace.outputs[t].double(), t + 1, trace.meta)
            temp = fit_temperature(logits, trace.labels)
            # constant logits leave the NLL flat (any temperature) or minimal at infinity (uniform)
            temps.append(min(max(temp, 1e-3), 1e6) if math.isfinite(temp) else 1e6)
        self.step_temperatures_ = torch.tensor(temps, dtype=torch.float64)

    def score_step(self, accumulated, t, meta):
        check_is_fitted(self, "step_temperatures_")
        check_step_range(self, self.step_temperatures_.shape[0], t)
        return top_log_odds(self.scaled(accumulated, t, meta) / float(self.step_temperatures_[t - 1]))

    def score_formula(self, meta):
        check_is_fitted(self, "step_temperatures_")
        temps = ", ".join(repr(float(v)) for v in self.step_temperatures_)
        alpha = self.output_scaling(meta)["alpha"]
        value = "t" if alpha["rule"] == "t" else repr(float(alpha["value"]))
        return (f"z_top - logsumexp(z_rest) of z = Y[t] / (alpha * T_t), alpha = {value}, per-step temperatures "
                f"T_t = [{temps}]")


@register_policy("entropy")
class Entropy(DynamicConfidence):
    """DT-SNN (Li et al., DAC 2023): exit when the normalised entropy of the output's softmax is
    low. Score ``-log(H(p) / log C)`` with ``p = softmax(Y[t] / alpha / T_cal)`` scaled as Dynamic
    Confidence scales it (the network's alpha), so "score > tau" means "normalised entropy <
    exp(-tau)" (:func:`~snnexit.exit.scores.neg_log_normalised_entropy`: ``1 - H / log C``, the
    published form, saturates at 1 as the softmax does)."""

    score_range = (0.0, math.inf)
    score_meaning = "-log of the normalised entropy"

    def score_step(self, accumulated, t, meta):
        return neg_log_normalised_entropy(self.scaled(accumulated, t, meta))

    score_depends_on_step = DynamicConfidence.score_depends_on_step  # the same scaling

    def score_formula(self, meta):
        return f"-log(H(softmax(z)) / log C) of {self.scaling_formula(meta)}"


@register_policy("oracle")
class Oracle(ExitPolicy):
    """Upper bound: exit at the first step whose prediction is correct (never: T, wrong)."""

    uses_labels_at_test = True

    def exit_steps(self, trace: Trace) -> torch.Tensor:
        check_trace(trace)
        correct = trace.correct()  # (T, N)
        first = correct.int().argmax(0)
        return torch.where(correct.any(0), first, torch.full_like(first, trace.T - 1)).long() + 1

    def decide(self, accumulated, t, meta, labels=None):
        if labels is None:
            raise SnnexitError("the oracle needs the labels to decide (it is an upper bound, not a deployable policy)")
        return accumulated.argmax(-1) == labels.to(accumulated.device)


@register_policy("oracle_stable")
class OracleStable(ExitPolicy):
    """SNNCutoff's stable oracle: exit at the first step after which the prediction stays
    correct up to T (wrong at T: exit at T, counted wrong).

    Not causal: whether a prediction *stays* correct depends on steps not yet simulated, so
    it has no online rule (``online = False``); compare it offline only.
    """

    uses_labels_at_test = True
    online = False

    def exit_steps(self, trace: Trace) -> torch.Tensor:
        check_trace(trace)
        correct = trace.correct()  # (T, N)
        stays = correct.flip(0).int().cummin(0).values.flip(0).bool()  # (T, N) correct from t to T
        first = stays.int().argmax(0)
        return torch.where(stays.any(0), first, torch.full_like(first, trace.T - 1)).long() + 1

    def decide(self, accumulated, t, meta, labels=None):
        raise SnnexitError("oracle_stable looks at future steps (does the prediction stay correct?), so it has no "
                           "online rule; use 'oracle' online or evaluate oracle_stable on a trace")
