"""Policies as estimators: parameters, the fitted check, the fitting target, and exact save/load."""

from __future__ import annotations

import copy
import inspect
import json
import math

import numpy as np
import pytest
import torch

from conftest import random_trace
from snnexit.errors import SnnexitError
from snnexit.exit import (POLICIES, ExitCurve, ExitPolicy, FitTarget, FixedT, MaxSoftmax, NotFittedError,
                          ThresholdPolicy, check_is_fitted, create_policy, load_policy, load_policy_with_extra,
                          policy_from_dict, save_policy)
from snnexit.exit.certify import CertifiedExit, certify_exit
from snnexit.exit.target import TARGET_KINDS
from snnexit.simulate.trace import Trace

NAMES = POLICIES.names()
THRESHOLDED = [n for n in NAMES if issubclass(POLICIES.get(n), ThresholdPolicy)]
T = 5


def _fit_trace(seed=0, N=60):
    return random_trace(T=T, N=N, C=4, seed=seed, meta={"alpha": "T", "T": T, "temperature": 1.3})


def _unlabelled(trace: Trace) -> Trace:
    return Trace(trace.outputs, None, None, dict(trace.meta))


def _settings(name):
    """(label, constructor kwargs, fit kwargs) for every way of fitting policy ``name``."""
    if name not in THRESHOLDED:
        return [("unfitted", {}, None), ("fitted", {}, {})]
    out = [("unfitted", {}, None), ("unfitted risk", {"target": "risk", "eps": 0.2, "delta": 0.2}, None),
           ("no_loss", {}, {}), ("max_drop", {"target": "max_drop", "eps": 0.05}, {}),
           ("max_steps", {"target": "max_steps", "max_steps": 3.0}, {}),
           ("fixed threshold", {"threshold": 0.4}, {}),
           ("risk", {"target": "risk", "eps": 0.3, "delta": 0.2}, {}),
           ("risk, calibration", {"target": "risk", "eps": 0.3, "delta": 0.2},
            {"calibration": _unlabelled(_fit_trace(seed=7, N=50))})]
    if "precision" in POLICIES.get(name).targets:
        out.append(("precision", {"target": "precision", "eps": 0.1}, {}))
    if "coverage" in POLICIES.get(name).targets:
        out.append(("coverage", {"target": "coverage", "eps": 0.2}, {}))
    return out


CASES = [(name, *s) for name in NAMES for s in _settings(name)]


def _strict_json(record) -> dict:
    """Through JSON text that a strict reader accepts (no NaN or Infinity tokens)."""
    text = json.dumps(record, allow_nan=False)

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _assert_same_value(a, b, what):
    assert type(a) is type(b), what
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), what
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), what
    elif isinstance(a, ExitCurve):
        for field in ("thresholds", "mean_steps", "correct", "agree", "n", "T"):
            x, y = getattr(a, field), getattr(b, field)
            if x is None or y is None:
                assert x is None and y is None, f"{what}.{field}"
            else:
                _assert_same_value(x, y, f"{what}.{field}")
    else:
        assert a == b or (math.isnan(a) and math.isnan(b)), what


def _assert_same_decisions(policy, loaded, traces):
    for tr in traces:
        if not isinstance(policy, ThresholdPolicy) and policy.uses_labels_at_test and not tr.labelled:
            continue
        assert torch.equal(policy.exit_steps(tr), loaded.exit_steps(tr))
        assert torch.equal(policy.predict(tr), loaded.predict(tr))
        if tr.labelled:
            assert policy.evaluate(tr) == loaded.evaluate(tr)
        if isinstance(policy, ThresholdPolicy):
            _assert_same_value(policy.curve(tr), loaded.curve(tr), "curve")
            for t in range(1, tr.T + 1):
                assert torch.equal(policy.decide(tr.outputs[t - 1], t, tr.meta),
                                   loaded.decide(tr.outputs[t - 1], t, tr.meta))


@pytest.mark.parametrize("name,label,kwargs,fit_kwargs", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_round_trip_gives_an_identical_policy(name, label, kwargs, fit_kwargs, tmp_path):
    policy = create_policy(name, **kwargs)
    if fit_kwargs is not None:
        policy.fit(_fit_trace(), **fit_kwargs)
    record = _strict_json(policy.to_dict())
    assert record["format"] == "snnexit-policy" and record["version"] == 3 and record["policy"] == name
    assert record["params"] == policy.get_params()
    fitted = {k for k in vars(policy) if k.endswith("_") and not k.startswith("_")}
    assert set(record["fitted"]) == fitted
    loaded = policy_from_dict(record)
    assert type(loaded) is type(policy) and loaded.get_params() == policy.get_params() and repr(loaded) == repr(policy)
    for key in fitted:
        _assert_same_value(getattr(policy, key), getattr(loaded, key), key)
    assert _strict_json(loaded.to_dict()) == record
    if fit_kwargs is None and policy.needs_fit:  # a record of its parameters, but never a policy file
        with pytest.raises(NotFittedError):
            check_is_fitted(loaded)
        with pytest.raises(NotFittedError):
            save_policy(tmp_path / "policy.json", policy)
        assert not (tmp_path / "policy.json").exists()
        return
    save_policy(tmp_path / "policy.json", policy, extra={"note": label})
    from_file, extra = load_policy_with_extra(tmp_path / "policy.json")
    assert extra == {"note": label} and from_file.to_dict() == policy.to_dict()
    others = [_fit_trace(seed=11, N=33), _fit_trace(seed=12, N=1), _unlabelled(_fit_trace(seed=13, N=20))]
    _assert_same_decisions(policy, loaded, [_fit_trace(), *others])
    _assert_same_decisions(policy, from_file, others[:1])


def test_infinite_values_are_written_as_strings_and_read_back_exactly():
    for threshold, token in [(1.0, "inf"), (0.0, "-inf")]:  # no precision above 1: never exit; all above 0: always
        policy = create_policy("topk_per_step", threshold=threshold).fit(_fit_trace())
        record = _strict_json(policy.to_dict())
        assert record["fitted"]["step_thresholds_"] == [token] * T
        loaded = policy_from_dict(record)
        _assert_same_value(policy.step_thresholds_, loaded.step_thresholds_, "step_thresholds_")
        _assert_same_decisions(policy, loaded, [_fit_trace(seed=4)])
    # threshold_ is read as a float that may be infinite, but no fit gives an infinite one: refused
    fixed = create_policy("dynamic_confidence").fit(_fit_trace()).to_dict()
    fixed["fitted"].update(threshold_="inf", point_=0)
    with pytest.raises(SnnexitError, match="threshold_ must be a finite number, got inf"):
        policy_from_dict(fixed)


# ---- bad records --------------------------------------------------------------------------
def _record(name="dynamic_confidence", **kwargs):
    return create_policy(name, **kwargs).fit(_fit_trace()).to_dict()


def _mutated(change, name="dynamic_confidence", **kwargs):
    record = copy.deepcopy(_record(name, **kwargs))
    change(record)
    return record


BAD = [
    ("no format", lambda r: r.pop("format"), "not a policy record: format None"),
    ("format", lambda r: r.update(format="snnexit-trace"), "not a policy record: format 'snnexit-trace'"),
    ("version 1", lambda r: r.update(version=1), "version 1 cannot be read: this snnexit reads version 3"),
    ("version 2", lambda r: r.update(version=2), "version 2 cannot be read: this snnexit reads version 3 .its softmax "
                                                 "thresholds were probabilities"),
    ("version bool", lambda r: r.update(version=True), "version True cannot be read"),
    ("unknown key", lambda r: r.update(fitted_on="val.pt"), "unknown keys 'fitted_on'"),
    ("unknown policy", lambda r: r.update(policy="dynamic"), "Unknown policy 'dynamic'. Known: conformal"),
    ("no policy", lambda r: r.update(policy=3), "names no policy"),
    ("unknown param", lambda r: r["params"].update(threshold_init=0.3), "has no parameter 'threshold_init'"),
    ("bool threshold", lambda r: r["params"].update(threshold=True), "threshold must be a finite number"),
    ("string threshold", lambda r: r["params"].update(threshold="inf"), "threshold must be a finite number"),
    ("bad target", lambda r: r["params"].update(target="fast"), "Unknown target 'fast'"),
    ("risk without delta", lambda r: r["params"].update(target="risk", eps=0.1), "delta must be a number"),
    ("bad temperature", lambda r: r["params"].update(temperature=-1.0), "temperature must be a positive number"),
    ("bad use_alpha", lambda r: r["params"].update(use_alpha="yes"), "use_alpha must be true or false"),
    ("params not a table", lambda r: r.update(params=[1]), "params and fitted must be tables"),
    ("unknown fitted", lambda r: r["fitted"].update(coef_=[1.0]), "has no fitted attribute 'coef_'"),
    ("missing fitted", lambda r: r["fitted"].pop("curve_"), "fitted attributes lack curve_"),
    ("T_ zero", lambda r: r["fitted"].update(T_=0), "T_ must be a positive integer"),
    ("T_ float", lambda r: r["fitted"].update(T_=5.0), "T_ must be an integer"),
    ("T_ bool", lambda r: r["fitted"].update(T_=True), "T_ must be an integer"),
    ("threshold_ nan", lambda r: r["fitted"].update(threshold_="nan"), "threshold_ must be a number, 'inf' or '-inf'"),
    ("threshold_ null", lambda r: r["fitted"].update(threshold_=None), "threshold_ must be a number"),
    ("threshold_ Infinity", lambda r: r["fitted"].update(threshold_=math.inf), "threshold_ must be a number"),
    ("point_ off", lambda r: r["fitted"].update(point_=r["fitted"]["point_"] + 1), "is not the point of curve_"),
    ("curve lengths", lambda r: r["fitted"]["curve_"]["mean_steps"].pop(), "curve_ arrays must have one length"),
    ("curve T", lambda r: r["fitted"]["curve_"].update(T=T + 1), "curve_ has T = 6, T_ = 5"),
    ("curve order", lambda r: r["fitted"]["curve_"]["thresholds"].reverse(), "strictly decreasing"),
    ("curve counts", lambda r: r["fitted"]["curve_"]["correct"].__setitem__(0, 10 ** 6), "must count between 0"),
    ("curve keys", lambda r: r["fitted"]["curve_"].pop("agree"), "curve_ must be a table with"),
    ("curve bool", lambda r: r["fitted"]["curve_"]["correct"].__setitem__(0, True), "curve_.correct entries"),
    ("risk attributes", lambda r: r["fitted"].update(learn_size_=0), "come together, and exactly when"),
]


@pytest.mark.parametrize("label,change,message", BAD, ids=[b[0] for b in BAD])
def test_bad_records_are_refused_in_one_line(label, change, message):
    with pytest.raises(SnnexitError, match=message.replace("(", r"\(")) as info:
        policy_from_dict(_mutated(change))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name,change,message", [
    ("topk_per_step", lambda r: r["fitted"]["score_table_"].pop(), "must be \\(T_, N\\) and \\(T_, N \\+ 1\\)"),
    ("topk_per_step", lambda r: r["fitted"]["score_table_"][0].pop(), "not a rectangular 2-dimensional array"),
    ("topk_per_step", lambda r: r["fitted"].update(score_table_=[1.0, 2.0]), "score_table_ must be a 2-dimensional"),
    ("topk_per_step", lambda r: r["fitted"]["step_thresholds_"].pop(), "step_thresholds_ has shape \\(4,\\)"),
    ("topk_per_step", lambda r: r["params"].update(k=1), "k \\(top-1 minus top-k\\) must be an integer >= 2"),
    ("step_calibrated_confidence", lambda r: r["fitted"]["step_temperatures_"].append(1.0),
     "step_temperatures_ has shape \\(6,\\)"),
    ("step_calibrated_confidence", lambda r: r["fitted"]["step_temperatures_"].__setitem__(0, -1.0),
     "step_temperatures_ must be positive"),
    ("step_calibrated_confidence", lambda r: r["params"].update(temperature=1.0), "has no parameter 'temperature'"),
    ("conformal", lambda r: r["fitted"].update(miscoverage_=1.5), "miscoverage_ must lie in"),
    ("conformal", lambda r: r["fitted"].pop("miscoverage_"), "lack miscoverage_"),
    ("max_softmax", lambda r: r["params"].update(use_alpha=True), "has no parameter 'use_alpha'"),
])
def test_bad_fitted_tables_are_refused(name, change, message):
    with pytest.raises(SnnexitError, match=message):
        policy_from_dict(_mutated(change, name))


def test_bad_risk_records_are_refused():
    risk = {"target": "risk", "eps": 0.3, "delta": 0.2}
    with pytest.raises(SnnexitError, match="pvalues_ has shape"):
        policy_from_dict(_mutated(lambda r: r["fitted"]["pvalues_"].pop(), **risk))
    with pytest.raises(SnnexitError, match="certification_size_ = 1 must equal curve_.n"):
        policy_from_dict(_mutated(lambda r: r["fitted"].update(certification_size_=1), **risk))
    with pytest.raises(SnnexitError, match="come together"):
        policy_from_dict(_mutated(lambda r: r["fitted"].pop("pvalues_"), **risk))
    with pytest.raises(SnnexitError, match="differs from the fixed threshold"):
        policy_from_dict(_mutated(lambda r: r["fitted"].update(threshold_=0.5), threshold=0.4))


def test_policy_files_refuse_what_is_not_a_policy(tmp_path):
    with pytest.raises(SnnexitError, match="a policy record is a JSON object, got list"):
        policy_from_dict([1])
    with pytest.raises(SnnexitError, match="no such policy file"):
        load_policy(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('{"format": "snnexit-policy", ')
    with pytest.raises(SnnexitError, match="broken.json: not a readable JSON policy file"):
        load_policy(tmp_path / "broken.json")
    (tmp_path / "old.json").write_text(json.dumps({**_record(), "version": 1}))
    with pytest.raises(SnnexitError, match="old.json: policy record version 1"):
        load_policy(tmp_path / "old.json")
    with pytest.raises(SnnexitError, match="extra must be a table"):
        save_policy(tmp_path / "p.json", FixedT(), extra=[1])


def test_only_registered_policies_with_json_parameters_save():
    class Mine(ThresholdPolicy):
        def score_step(self, accumulated, t, meta):
            return accumulated.max(-1).values.double()

    with pytest.raises(SnnexitError, match="Mine is not a registered policy"):
        Mine().to_dict()
    with pytest.raises(SnnexitError, match="parameter temperature = inf cannot be saved"):
        create_policy("dynamic_confidence", temperature=math.inf).to_dict()


# ---- the fitted check -----------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_one_fitted_check_for_every_policy(name):
    policy = create_policy(name)
    if not policy.needs_fit:
        check_is_fitted(policy)  # nothing to fit: passes unfitted
        return
    with pytest.raises(NotFittedError, match=f"{type(policy).__name__} is not fitted .*call fit"):
        check_is_fitted(policy)
    policy.fit(_fit_trace())
    check_is_fitted(policy)
    with pytest.raises(NotFittedError, match="no missing_"):
        check_is_fitted(policy, "missing_")


def test_fitted_check_accepts_duck_typed_policies_and_a_failed_fit_leaves_none():
    class Rule:
        def decide(self, accumulated, t, meta, labels=None):
            return torch.ones(accumulated.shape[0], dtype=torch.bool)

    check_is_fitted(Rule())
    policy = create_policy("topk", k=5).fit(random_trace(T=T, N=30, C=6))
    check_is_fitted(policy)
    unreachable = random_trace(T=T, N=30, C=4)
    with pytest.raises(SnnexitError, match="k = 5 exceeds the number of classes C = 4"):
        policy.fit(unreachable)  # fails after fit has started: the previous fit is gone, no new one
    with pytest.raises(NotFittedError, match="not fitted"):
        check_is_fitted(policy)
    with pytest.raises(NotFittedError, match="not fitted"):
        policy.exit_steps(unreachable)


# ---- the fitting target ---------------------------------------------------------------------
def test_fit_target_validates_itself():
    assert FitTarget() == FitTarget("no_loss")
    assert FitTarget("risk", eps=0.1, delta=0.05).certifies and not FitTarget("max_drop", eps=0).certifies
    known = "Known: no_loss, max_drop, max_steps, risk, precision, coverage"
    for kwargs, message in [({"kind": "bogus"}, f"Unknown target 'bogus'. {known}"),
                            ({"kind": "max_drop"}, "eps must be a number in \\[0, 1\\]"),
                            ({"kind": "max_drop", "eps": True}, "eps must be a number"),
                            ({"kind": "precision", "eps": 1.5}, "eps must lie in \\[0, 1\\]"),
                            ({"kind": "coverage", "eps": 0.0}, "eps must lie in \\(0, 1\\)"),
                            ({"kind": "risk", "eps": 0.1}, "delta must be a number in \\(0, 1\\)"),
                            ({"kind": "risk", "eps": 0.1, "delta": 1.0}, "delta must lie in"),
                            ({"kind": "max_steps", "max_steps": 0.5}, "max_steps must be a number >= 1"),
                            ({"kind": "max_steps", "max_steps": math.nan}, "max_steps must be a number >= 1")]:
        with pytest.raises(SnnexitError, match=message):
            FitTarget(**kwargs)
    with pytest.raises(SnnexitError, match="Unknown target 'coverage'. Known: no_loss, max_drop, max_steps, risk$"):
        FitTarget.for_policy("coverage", eps=0.1)
    with pytest.raises(AttributeError):
        FitTarget().kind = "risk"  # frozen
    assert FitTarget("no_loss", eps=0.3).eps == 0.3  # settings the kind does not read are kept, unused


def test_fit_target_describes_itself_and_policies_build_it():
    texts = {kind: FitTarget(kind, eps=0.05, max_steps=3, delta=0.1).describe() for kind in TARGET_KINDS}
    assert texts["risk"] == "risk: disagreement with fixed T on new inputs <= 0.05 with probability >= 0.9"
    assert texts["max_steps"].endswith("mean steps <= 3") and "0.95" in texts["precision"]
    assert all(text.startswith(kind + ":") and "\n" not in text for kind, text in texts.items())
    policy = create_policy("topk", k=3, target="risk", eps=0.05, delta=0.1)
    assert policy.fit_target == FitTarget("risk", eps=0.05, max_steps=None, delta=0.1)
    assert create_policy("conformal", target="coverage", eps=0.1).fit_target.kind == "coverage"
    with pytest.raises(SnnexitError, match="Unknown target 'coverage'"):
        _ = create_policy("topk", target="coverage", eps=0.1).fit_target


# ---- parameters -------------------------------------------------------------------------------
OLD_KEYWORDS = {  # the keywords each policy accepted before the parameters became dataclass fields
    "dynamic_confidence": {"target", "threshold", "temperature", "use_alpha", "eps", "max_steps", "delta"},
    "mean_output_confidence": {"target", "threshold", "temperature", "use_alpha", "eps", "max_steps", "delta"},
    "entropy": {"target", "threshold", "temperature", "use_alpha", "eps", "max_steps", "delta"},
    "conformal": {"target", "threshold", "temperature", "use_alpha", "eps", "max_steps", "delta"},
    "max_softmax": {"target", "threshold", "temperature", "eps", "max_steps", "delta"},
    "step_calibrated_confidence": {"target", "threshold", "use_alpha", "eps", "max_steps", "delta"},
    "topk": {"target", "threshold", "k", "use_alpha", "eps", "max_steps", "delta"},
    "topk_per_step": {"target", "threshold", "k", "eps", "max_steps", "delta"},
    "fixed": set(), "oracle": set(), "oracle_stable": set(),
}


@pytest.mark.parametrize("name", NAMES)
def test_get_params_lists_every_parameter_under_its_own_name(name):
    cls = POLICIES.get(name)
    assert cls.name == name and set(cls.param_names()) == OLD_KEYWORDS[name]
    policy = cls()
    params = policy.get_params()
    assert list(params) == cls.param_names()
    assert all(params[key] is getattr(policy, key) for key in params)
    assert cls(**params).get_params() == params
    assert repr(policy) == f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"
    if issubclass(cls, ThresholdPolicy):  # target and threshold stay positional
        assert list(inspect.signature(cls).parameters)[:2] == ["target", "threshold"]
        assert cls("max_drop", 0.5).get_params()["threshold"] == 0.5
    with pytest.raises(SnnexitError, match="has no parameter 'bogus'"):
        policy.set_params(bogus=1)
    with pytest.raises(TypeError):
        cls(bogus=1)


def test_set_params_and_the_fixed_parameters():
    policy = create_policy("topk", k=3, target="risk", eps=0.05, delta=0.1)
    assert policy.set_params(k=4, threshold=0.2) is policy and (policy.k, policy.threshold) == (4, 0.2)
    assert repr(policy) == ("TopK(target='risk', threshold=0.2, eps=0.05, max_steps=None, delta=0.1, k=4, "
                            "use_alpha=False)")
    soft = MaxSoftmax()
    assert soft.temperature == 1.0 and soft.use_alpha is False and "use_alpha" not in soft.get_params()
    step = create_policy("step_calibrated_confidence")
    assert step.temperature is None and "temperature" not in step.get_params()


def test_every_class_that_declares_parameters_is_a_dataclass():
    """A policy class with annotated class attributes but no @policy_params would silently keep
    its parent's constructor: guard against forgetting the decorator."""
    for name in NAMES:
        for klass in POLICIES.get(name).__mro__:
            own = {k for k, v in vars(klass).get("__annotations__", {}).items() if "ClassVar" not in str(v)}
            if own and klass not in (object,):
                assert "__dataclass_fields__" in vars(klass), klass


# ---- fitted attributes ------------------------------------------------------------------------
@pytest.mark.parametrize("name", THRESHOLDED)
@pytest.mark.parametrize("kwargs", [{"threshold": 0.4}, {"target": "precision", "eps": 0.1},
                                    {"target": "coverage", "eps": 0.2}], ids=["fixed", "precision", "coverage"])
def test_fit_sets_curve_and_point_for_every_threshold_it_does_not_choose(name, kwargs):
    if kwargs.get("target", "no_loss") not in POLICIES.get(name).targets:
        return
    trace = _fit_trace()
    policy = create_policy(name, **kwargs).fit(trace)
    curve = policy.curve(trace)
    _assert_same_value(policy.curve_, curve, "curve_")
    assert policy.point_ == int((curve.thresholds[:-1] > policy.threshold_).sum())  # the formula the pipeline used
    assert set(policy.fitted_attributes) <= set(vars(policy))


def test_only_fit_sets_fitted_attributes():
    for name in NAMES:
        policy = create_policy(name)
        assert not [k for k in vars(policy) if k.endswith("_")], name


# ---- the certified exit -----------------------------------------------------------------------
def test_certified_exit_round_trips_and_refuses_inconsistent_records():
    learn, calibration, test = _fit_trace(seed=1, N=80), _unlabelled(_fit_trace(seed=2, N=120)), _fit_trace(seed=3)
    cert = certify_exit(learn, calibration, eps=0.2, delta=0.2, candidates=("dynamic_confidence", "topk_per_step"))
    record = _strict_json(cert.to_dict())
    loaded = CertifiedExit.from_dict(record)
    assert (loaded.name, loaded.eps, loaded.delta, loaded.calibration_size, loaded.learn_size, loaded.candidates) == \
           (cert.name, cert.eps, cert.delta, cert.calibration_size, cert.learn_size, cert.candidates)
    assert loaded.evaluate(test) == cert.evaluate(test)
    assert torch.equal(loaded.exit_steps(test), cert.exit_steps(test))
    for change, message in [(lambda r: r.update(format="x"), "not a certified-exit record"),
                            (lambda r: r.update(version=1), "version 1 cannot be read"),
                            (lambda r: r.update(name="entropy"), "names 'entropy' but holds"),
                            (lambda r: r.update(eps=0.1), "differ from its policy's"),
                            (lambda r: r.update(calibration_size=3), "calibration_size equal to the policy's"),
                            (lambda r: r.update(candidates={}), "candidates must map"),
                            (lambda r: r.pop("learn_size"), "needs exactly the keys"),
                            (lambda r: r["policy"].update(version=1), "policy record version 1")]:
        bad = copy.deepcopy(record)
        change(bad)
        with pytest.raises(SnnexitError, match=message):
            CertifiedExit.from_dict(bad)
    plain = copy.deepcopy(record)
    plain["policy"] = create_policy(cert.name).fit(learn).to_dict()
    with pytest.raises(SnnexitError, match="target 'risk' and no fixed threshold"):
        CertifiedExit.from_dict(plain)
    assert isinstance(loaded.policy, ExitPolicy)
