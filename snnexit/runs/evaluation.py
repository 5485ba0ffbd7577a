"""A run's numbers: the fitted policy, the certified exit, fixed T and the oracle on test, and
the layout of ``results.json``."""

from __future__ import annotations

from dataclasses import asdict

from snnexit.exit import FixedT, Oracle, policy_name, summarize_curve, validation_point
from snnexit.exit.base import split_learn_certify
from snnexit.exit.certify import CertifiedExit, certify_exit
from snnexit.runs.settings import RunConfig
from snnexit.simulate import Trace
from snnexit.simulate.cost import cost_from_trace
from snnexit.simulate.trace import concat

DEFAULT_POLICY = "dynamic_confidence"
ROWS_BESIDE = ("fixed", "certified", "oracle")  # the rows every run has besides its fitted policy


def curve_prefix(name: str) -> str:
    """Key prefix of the fitted policy's curves in ``results["curves"]`` (``dc`` for Dynamic Confidence)."""
    return "dc" if name == DEFAULT_POLICY else name


def fitted_policy_name(results: dict) -> str:
    """The registry name of the policy a run fitted (absent from ``results.json``: Dynamic Confidence)."""
    return results.get("fitted_policy", DEFAULT_POLICY)


def certified_exit(val: Trace, calibration: Trace | None = None, *, eps: float | None = None, delta: float = 0.05,
                   candidates=None) -> CertifiedExit:
    """The certified exit of a run: its learning half of ``val`` learns the scores and picks the
    policy; the other half, plus the unlabelled ``calibration`` inputs if any, certifies it."""
    learn, certify = split_learn_certify(val)
    pool = certify if calibration is None else concat([certify, calibration])
    return certify_exit(learn, pool, eps=eps, delta=delta, candidates=candidates)


def evaluate_policies(val: Trace, test: Trace, policy, *, certify: dict | None = None,
                      calibration: Trace | None = None, certified: CertifiedExit | None = None) -> tuple[dict, dict]:
    """Evaluate on ``test``: fixed T, ``policy`` (fitted on ``val``), the certified exit
    (``certified``, or :func:`certified_exit` with the settings ``certify``: eps, delta,
    candidates, and the unlabelled ``calibration`` trace) and the oracle. Returns the rows and the
    curves."""
    name = policy_name(policy)
    if certified is None:
        certified = certified_exit(val, calibration, **(certify or {}))
    chosen = {"fixed": FixedT(), name: policy, "certified": certified.policy, "oracle": Oracle()}
    results = {key: p.evaluate(test) for key, p in chosen.items()}
    results["certified"] = certified.evaluate(test)
    if test.spikes is not None and test.meta.get("neurons_per_layer"):
        for key, p in chosen.items():  # the paper's Table 3: spikes up to each input's exit step
            results[key]["cost"] = cost_from_trace(test, p.exit_steps(test)).summary()
    results[name].update(validation_point(policy))
    prefix = curve_prefix(name)
    extras = {"certified_test_curve": summarize_curve(certified.policy.curve(test))}
    if getattr(policy, "curve_", None) is not None:
        extras = {f"{prefix}_val_curve": summarize_curve(policy.curve_),
                  f"{prefix}_test_curve": summarize_curve(policy.curve(test)),
                  f"{prefix}_val_point": policy.point_, **extras}
    return results, extras


def assemble_results(config: RunConfig, data_sizes: dict, cal: dict, val: Trace, test: Trace, policies: dict,
                     extras: dict, seconds: float | None = None, fitted: str = DEFAULT_POLICY) -> dict:
    """The ``results.json`` of a run (the evaluate stage builds it here)."""
    T = config.T
    oracle_saving = T - policies["oracle"]["mean_steps"]
    capture = (lambda name: (T - policies[name]["mean_steps"]) / oracle_saving if oracle_saving > 0 else None)
    results = {
        "config": asdict(config),
        "data": dict(data_sizes),
        "ann": {"test_acc": cal["test_acc"], "val_acc": cal["val_acc"]},
        "calibration": cal,
        "snn": {"T": T, "converter": config.network_source(), "conversion_fix": test.meta.get("conversion_fix"),
                "test_acc_per_step": test.accuracy_per_step().tolist(),
                "val_acc_per_step": val.accuracy_per_step().tolist(),
                "spikes_per_input_per_step": test.spikes.sum(2).mean(1).tolist(),
                "neurons": int(sum(test.meta["neurons_per_layer"]))},
        "policies": policies,
        "oracle_capture": capture(fitted),
        "certified_oracle_capture": capture("certified") if "certified" in policies else None,
        "curves": extras,
        "seconds": seconds,
    }
    if fitted != DEFAULT_POLICY:  # absent for Dynamic Confidence: results of earlier versions read the same
        results["fitted_policy"] = fitted
    return results
