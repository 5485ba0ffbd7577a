"""A certified exit: pick an exit policy and certify its threshold on inputs it never learned from.

The promise. With probability at least ``1 - delta`` over the calibration inputs, the rate at
which the exit answer differs from the fixed-T answer on new inputs from the same distribution
is at most ``eps``; the accuracy lost against fixed T is at most that rate (an input can only
turn wrong by changing its answer). No labels are needed to certify.

Why it holds for every policy and for the pick among them. Everything data-dependent besides the
threshold (per-step tables, per-step temperatures, conformal scores, the choice of policy) is
learned on the *learning* trace; the threshold is then certified by Learn then Test
(:mod:`snnexit.exit.risk`) on the *calibration* trace, which played no part in any of it. Given
the learning trace, the chosen score is a fixed function, and the calibration inputs are i.i.d.
draws exchangeable with new inputs, which is all the binomial test needs. Calibration inputs
must therefore be exchangeable with deployment inputs: the validation split, or unlabelled
inputs from the deployment stream; never the training inputs (the network fits them, so it
agrees with itself on them more than on new inputs: measured in ``benchmarks/seeds.py``). The
ANN's temperature, which Dynamic Confidence's score divides by, must not have been fitted on
the calibration inputs either (``snnexit run`` fits it on the learning half of validation).

How the pick is made. Each candidate is cross-fitted on two halves of the learning trace (fit
on one half, score the other) and judged by the mean steps of the point that certification
would accept if the calibration inputs looked like the held-out half: the cheapest threshold,
walking down from fixed T, before the held-out disagreement rate first exceeds the rate that a
calibration pool of this size can certify at ``eps``. Candidates tied on those steps are ranked
by how finely their scores release inputs (:func:`cross_fitted_coarseness`), then by their order.
The pick is a heuristic; the guarantee does not depend on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import binom

from snnexit.errors import SnnexitError
from snnexit.exit.base import (POLICIES, agreement_with_fixed_t, check_is_fitted, check_other_inputs, check_trace,
                               deployable_policy, split_learn_certify)
from snnexit.exit.curve import exact_curve
from snnexit.exit.persist import load_policy_with_extra, policy_from_dict, read_record
from snnexit.exit.risk import zero_disagreement_bound
from snnexit.exit.target import check_fraction
from snnexit.exit.threshold import ThresholdPolicy
from snnexit.io import write_json
from snnexit.simulate.trace import Trace

CERTIFIED_FORMAT, CERTIFIED_VERSION = "snnexit-certified-exit", 2  # 2: policy records of version 3  # the record of CertifiedExit.to_dict

def certifiable_policies() -> tuple[str, ...]:
    """Every registered policy a certificate can cover: thresholded, with an online rule, and no
    labels needed at test (the registry's order: a policy registered anywhere joins)."""
    return tuple(name for name in POLICIES.names() if _certifiable(POLICIES.get(name)))


def _certifiable(cls) -> bool:
    return issubclass(cls, ThresholdPolicy) and not cls.uses_labels_at_test and cls.online


def smallest_certifiable_eps(n: int, delta: float) -> float:
    """The smallest eps that ``n`` calibration inputs can certify (with zero disagreements):
    ``1 - delta**(1/n)``, nudged up by 1e-9 relative so that the binomial test accepts it."""
    return zero_disagreement_bound(n, delta) * (1 + 1e-9)


def certifiable_disagreement_rate(n: int, eps: float, delta: float) -> float:
    """The largest empirical disagreement rate k/n on ``n`` calibration inputs that Learn then
    Test still certifies at ``eps`` (``P(Binomial(n, eps) <= k) <= delta``); raises when not even
    zero disagreements can (eps below :func:`smallest_certifiable_eps`)."""
    k = np.arange(n + 1)
    ok = np.flatnonzero(binom.cdf(k, n, eps) <= delta)
    if ok.size == 0:
        raise SnnexitError(f"eps = {eps:.4g} cannot be certified with {n} calibration inputs at delta = {delta:g}: "
                           f"the smallest certifiable is {smallest_certifiable_eps(n, delta):.4g} (more inputs "
                           f"certify smaller eps)")
    return float(ok[-1] / n)


def _create(name: str, kwargs: dict, **settings) -> ThresholdPolicy:
    cls = POLICIES.get(name)
    if not _certifiable(cls):
        raise SnnexitError(f"policy {name!r} has no certifiable threshold; certifiable: "
                           f"{', '.join(certifiable_policies())}")
    if not isinstance(kwargs, dict):
        raise SnnexitError(f"policy_kwargs[{name!r}] must be a table of {name}'s parameters, got {kwargs!r:.60}")
    known = cls.param_names()
    bad = [key for key in kwargs if key not in known or key in settings]
    if bad:
        raise SnnexitError(f"policy_kwargs[{name!r}]: {name} takes no {', '.join(map(repr, bad))} here; its own "
                           f"parameters: {', '.join(k for k in known if k not in settings)}")
    return cls(**settings, **kwargs)


def _held_out_curves(name: str, learn: Trace, kwargs: dict | None):
    """The exact curves of policy ``name`` fitted on one half of ``learn`` and scored on the other,
    for both ways round."""
    halves = split_learn_certify(learn)
    for fit_part, held in (halves, halves[::-1]):
        policy = _create(name, kwargs or {}, target="no_loss").fit(fit_part)
        yield exact_curve(policy.scores(held), None, agreement_with_fixed_t(held))


def cross_fitted_steps(name: str, learn: Trace, rate: float, kwargs: dict | None = None) -> float:
    """Mean steps the certified threshold of policy ``name`` would have, estimated on ``learn``
    alone: fit on one half, walk the other half's curve down from fixed T while its disagreement
    rate stays <= ``rate``; the average over both halves."""
    steps = []
    for curve in _held_out_curves(name, learn, kwargs):
        within = (curve.n - curve.agree) <= rate * curve.n + 1e-9
        within[0] = True
        steps.append(float(curve.mean_steps[np.logical_and.accumulate(within)].min()))
    return float(np.mean(steps))


def cross_fitted_coarseness(name: str, learn: Trace, kwargs: dict | None = None) -> float:
    """The largest share of the held-out saving (fixed T down to the cheapest threshold) that a
    single threshold of policy ``name`` releases at once, the larger of both halves: 1.0 for a
    score that ties every input (all exit together or none does), near 1 / N for one that ranks
    inputs one by one. The tie-break of the pick: when the learning inputs cannot tell candidates
    apart by steps (on an easy task every candidate reaches step 1 without a disagreement there),
    a coarse score is the one whose certificate falls back to fixed T as soon as one calibration
    input among those it releases together disagrees."""
    shares = []
    for curve in _held_out_curves(name, learn, kwargs):
        saving = curve.mean_steps[0] - curve.mean_steps.min()
        shares.append(float(np.max(-np.diff(curve.mean_steps)) / saving) if saving > 0 else 1.0)
    return max(shares)


@dataclass
class CertifiedExit:
    """A policy whose score was learned on ``learn_size`` labelled inputs and whose threshold was
    certified on ``calibration_size`` other inputs: with probability >= 1 - ``delta``, its answers
    differ from the fixed-T answers on at most a share ``eps`` of new inputs."""

    name: str
    policy: ThresholdPolicy
    eps: float
    delta: float
    calibration_size: int
    learn_size: int
    candidates: dict = field(default_factory=dict)  # name -> cross-fitted mean steps on the learning trace

    def evaluate(self, test: Trace) -> dict:
        """The certified row of ``results.json`` on held-out ``test`` inputs."""
        res = self.policy.evaluate(test)
        curve, point = self.policy.curve_, self.policy.point_
        row = {
            "policy": self.name, "eps": self.eps, "delta": self.delta,
            "calibration_size": self.calibration_size, "learn_size": self.learn_size,
            "threshold": res["threshold"], "score": res["score"], "alpha": res["alpha"],
            "temperature": res["temperature"],
            "test_acc": res["test_acc"], "test_disagreement": res["disagreement"],
            "disagreement": res["disagreement"], "mean_steps": res["mean_steps"], "saving": res["saving"],
            "n": res["n"], "exit_step_counts": res["exit_step_counts"],
            "calibration_disagreement": float(curve.disagreement[point]),
            "calibration_mean_steps": float(curve.mean_steps[point]),
            "pvalue": float(self.policy.pvalues_[point]),
            "candidates": dict(self.candidates),
            "holds_on_test": bool(res["disagreement"] <= self.eps),
        }
        if test.labelled:
            row["acc_change"] = res["test_acc"] - float(test.correct()[-1].double().mean())
        return row

    def exit_steps(self, trace: Trace):
        return self.policy.exit_steps(trace)

    def predict(self, trace: Trace):
        return self.policy.predict(trace)

    def describe(self, meta: dict) -> str:
        """The rule to deploy, in words, with every number it needs (exact digits) for a network
        whose traces carry ``meta`` (its alpha and temperature)."""
        return (f"{self.policy.describe_rule(meta)}. Certified: with probability >= {1 - self.delta:g} over "
                f"{self.calibration_size} calibration inputs, the exit answer differs from the fixed-T answer on at "
                f"most {self.eps:g} of new inputs.")

    def to_dict(self) -> dict:
        """JSON-able record of the certified exit, its fitted policy included (exact floats)."""
        return {"format": CERTIFIED_FORMAT, "version": CERTIFIED_VERSION, "name": self.name, "eps": self.eps,
                "delta": self.delta, "calibration_size": self.calibration_size, "learn_size": self.learn_size,
                "candidates": dict(self.candidates), "policy": self.policy.to_dict()}

    @classmethod
    def from_dict(cls, record) -> "CertifiedExit":
        """The certified exit a :meth:`to_dict` record describes; refuses an inconsistent one.
        (An ``extra`` table, as :func:`save_certified` adds, is the caller's and is ignored.)"""
        if not isinstance(record, dict) or record.get("format") != CERTIFIED_FORMAT:
            raise SnnexitError(f"not a certified-exit record (format {CERTIFIED_FORMAT!r} expected)")
        if isinstance(record.get("version"), bool) or record.get("version") != CERTIFIED_VERSION:
            raise SnnexitError(f"certified-exit record version {record.get('version')!r} cannot be read: this "
                               f"snnexit reads version {CERTIFIED_VERSION}")
        keys = {"format", "version", "name", "eps", "delta", "calibration_size", "learn_size", "candidates", "policy"}
        if set(record) - {"extra"} != keys:
            raise SnnexitError(f"certified-exit record needs exactly the keys {', '.join(sorted(keys))} (and "
                               f"optionally extra)")
        policy = policy_from_dict(record["policy"])
        name, candidates = record["name"], record["candidates"]
        if policy.name != name:
            raise SnnexitError(f"certified-exit record names {name!r} but holds a {policy.name!r} policy")
        if not isinstance(policy, ThresholdPolicy) or not policy.certifies:
            raise SnnexitError("a certified exit's policy has target 'risk' and no fixed threshold")
        check_is_fitted(policy)
        eps = check_fraction("eps", record["eps"], low_open=True, high_open=True)
        delta = check_fraction("delta", record["delta"], low_open=True, high_open=True)
        if (eps, delta) != (policy.eps, policy.delta):
            raise SnnexitError(f"certified-exit record: eps, delta = {eps}, {delta} differ from its policy's "
                               f"{policy.eps}, {policy.delta}")
        sizes = (record["calibration_size"], record["learn_size"])
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes) or \
                sizes[0] != policy.certification_size_:
            raise SnnexitError(f"certified-exit record: calibration_size and learn_size must be positive integers, "
                               f"calibration_size equal to the policy's certification_size_ "
                               f"({policy.certification_size_}), got {sizes}")
        if not isinstance(candidates, dict) or name not in candidates or not all(
                isinstance(k, str) and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      and math.isfinite(v))) for k, v in candidates.items()):
            raise SnnexitError("certified-exit record: candidates must map policy names (the pick among them) to "
                               "finite mean steps or null")
        return cls(name, policy, eps, delta, sizes[0], sizes[1], dict(candidates))


def certify_exit(learn: Trace, calibration: Trace, *, eps: float | None = None, delta: float = 0.05,
                 candidates: tuple[str, ...] | list[str] | None = None,
                 policy_kwargs: dict | None = None) -> CertifiedExit:
    """Pick the candidate that should certify the fewest steps (judged on ``learn`` alone), learn
    its score on ``learn`` and certify its threshold on ``calibration``.

    Args:
        learn: labelled trace that learns the scores and the pick (e.g. half the validation split).
        calibration: trace of other inputs, labelled or not, exchangeable with deployment inputs.
        eps: the disagreement rate to certify; None: the smallest ``calibration`` can certify.
        delta: the probability allowed for the guarantee to fail.
        candidates: registered policy names to choose from (one name: no choice; None: every
            certifiable one, :func:`certifiable_policies`).
        policy_kwargs: extra settings per policy name.
    """
    check_trace(learn)
    check_trace(calibration)
    if not learn.labelled:
        raise SnnexitError("the learning trace needs labels (policies learn their scores from them)")
    if (learn.T, learn.C) != (calibration.T, calibration.C):
        raise SnnexitError(f"learning and calibration traces differ: (T, C) = {(learn.T, learn.C)} vs "
                           f"{(calibration.T, calibration.C)}")
    check_other_inputs(learn, calibration)
    candidates = certifiable_policies() if candidates is None else candidates
    if isinstance(candidates, str) or not isinstance(candidates, (list, tuple)) or not candidates or \
            not all(isinstance(name, str) for name in candidates):
        raise SnnexitError(f"candidates must be a non-empty list of policy names, got {candidates!r:.80}")
    least = ThresholdPolicy.min_fit_inputs
    if calibration.N < least:
        raise SnnexitError(f"certify_exit needs at least {least} calibration inputs, got {calibration.N}")
    several = len(set(candidates)) > 1  # the pick cross-fits every candidate on halves of the learning trace
    if learn.N < (2 * least if several else least):
        raise SnnexitError(f"certify_exit needs at least {least} learning inputs"
                           + (f" per half ({2 * least} in all) to pick among {len(set(candidates))} candidates"
                              if several else "") + f", got {learn.N}")
    delta = check_fraction("delta", delta, low_open=True, high_open=True)
    n = calibration.N
    eps = smallest_certifiable_eps(n, delta) if eps is None else check_fraction("eps", eps, low_open=True,
                                                                                 high_open=True)
    rate = certifiable_disagreement_rate(n, eps, delta)
    kwargs = {} if policy_kwargs is None else policy_kwargs
    if not isinstance(kwargs, dict):
        raise SnnexitError(f"policy_kwargs must map policy names to their settings, got {kwargs!r:.60}")
    names = list(dict.fromkeys(candidates))
    if len(names) == 1:
        _create(names[0], kwargs.get(names[0], {}), target="risk", eps=eps, delta=delta)  # refuse early
        scores = {names[0]: None}
    else:
        scores = {name: cross_fitted_steps(name, learn, rate, kwargs.get(name)) for name in names}
    least_steps = min(scores[k] or 0.0 for k in names)
    tied = [k for k in names if (scores[k] or 0.0) <= least_steps + 1e-9]
    if len(tied) > 1:  # the finer score; then the earlier candidate
        coarseness = {k: cross_fitted_coarseness(k, learn, kwargs.get(k)) for k in tied}
        tied.sort(key=lambda k: (coarseness[k], names.index(k)))
    best = tied[0]
    policy = _create(best, kwargs.get(best, {}), target="risk", eps=eps, delta=delta).fit(learn, calibration)
    return CertifiedExit(best, policy, float(eps), float(delta), n, learn.N, scores)


def save_certified(path, certified: CertifiedExit, extra: dict | None = None):
    """Write ``certified.to_dict()`` (plus ``extra``, a JSON-able table for the caller: the network
    and traces it belongs to) to ``path`` atomically; :func:`load_certified` reads it back."""
    record = certified.to_dict()
    if extra is not None:
        if not isinstance(extra, dict):
            raise SnnexitError(f"extra must be a table (dict), got {type(extra).__name__}")
        record["extra"] = extra
    write_json(path, record)
    return path


def load_certified_with_extra(path) -> tuple[CertifiedExit, dict]:
    """The certified exit saved at ``path`` and the ``extra`` table saved with it ({} if none)."""
    record = read_record(path, "certified-exit")
    try:
        certified = CertifiedExit.from_dict(record)
    except SnnexitError as exc:
        raise SnnexitError(f"{path}: {exc}") from None
    extra = record.get("extra", {})
    if not isinstance(extra, dict):
        raise SnnexitError(f"{path}: extra must be a table")
    return certified, extra


def load_certified(path) -> CertifiedExit:
    """The certified exit saved at ``path`` by :func:`save_certified`: the same decisions, bit for bit."""
    return load_certified_with_extra(path)[0]


def load_exit_rule(path):
    """The exit rule in a file that holds either a certified exit (``certified.json``: a
    :class:`CertifiedExit`) or a fitted policy (``policy.json``: an ``ExitPolicy``), and the
    file's ``extra`` table. Both run in the engines as they are
    (:func:`~snnexit.exit.base.deployable_policy` gives the policy inside)."""
    record = read_record(path, "policy or certified-exit")
    if isinstance(record, dict) and record.get("format") == CERTIFIED_FORMAT:
        return load_certified_with_extra(path)
    return load_policy_with_extra(path)


def check_rule_fits(rule, T: int, network: str | None, where: str, extra: dict | None = None) -> None:
    """Refuse a loaded exit rule (a policy or a certified exit) made for runs of another T or (when its
    file's ``extra`` names one) another network."""
    rule = deployable_policy(rule)
    if getattr(rule, "T_", T) != T:
        raise SnnexitError(f"{where} was fitted on traces of T = {rule.T_} steps; this run has T = {T}")
    made_for = (extra or {}).get("network")
    if network is not None and made_for is not None and made_for != network:
        raise SnnexitError(f"{where} was made for another network than this one (other weights or settings)")


def describe_exit_rule(rule, meta: dict) -> str:
    """What :meth:`CertifiedExit.describe` or a policy's ``describe_rule`` says about ``rule``."""
    return rule.describe(meta) if isinstance(rule, CertifiedExit) else rule.describe_rule(meta)
