"""Exit policies (estimators over traces), the exact curve, risk control and the oracle bounds."""

from snnexit.errors import SnnexitError
from snnexit.exit.base import (POLICIES, POLICY_FORMAT, POLICY_VERSION, ExitPolicy, NotFittedError,
                               agreement_with_fixed_t, check_is_fitted, deployable_policy, check_trace, fixed_t_accuracy, policy_params,
                               predictions_at, register_policy, summarize_curve)
from snnexit.exit.curve import ExitCurve, exact_curve, exit_steps_from_scores
from snnexit.exit.target import TARGETS, FitTarget
from snnexit.exit.threshold import ThresholdPolicy
from snnexit.exit.policies import (DynamicConfidence, Entropy, FixedT, MaxSoftmax, MeanOutputConfidence, Oracle, OracleStable,
                                   StepCalibratedConfidence, alpha_at)
from snnexit.exit.topk import TopK, TopKPerStep
from snnexit.exit.conformal import Conformal  # noqa: I001  (registration order does not matter)
from snnexit.exit.persist import load_policy, load_policy_with_extra, policy_from_dict, save_policy
from snnexit.exit.evaluation import fit_and_evaluate, policy_name, validation_point
from snnexit.exit.risk import binomial_pvalues, ltt_select, zero_disagreement_bound
from snnexit.exit.certify import (CertifiedExit, certify_exit, check_rule_fits, describe_exit_rule,  # noqa: I001
                                  load_certified, load_exit_rule, save_certified)
from snnexit.exit.scores import log_odds


def online_policy_names() -> list[str]:
    """Registered policies with an online rule (all but ``oracle_stable``, which needs future steps)."""
    return [name for name in POLICIES.names() if POLICIES.get(name).online]


def create_policy(name: str, **kwargs) -> ExitPolicy:
    """``create_policy("topk", k=3)``; an unknown name lists the known ones, an unknown parameter the
    policy's own."""
    cls = POLICIES.get(name)
    unknown = [key for key in kwargs if key not in cls.param_names()]
    if unknown:
        raise SnnexitError(f"{name} has no parameter {', '.join(map(repr, unknown))}; its parameters: "
                           f"{', '.join(cls.param_names()) or 'none'}")
    return cls(**kwargs)


__all__ = ["POLICIES", "POLICY_FORMAT", "POLICY_VERSION", "TARGETS", "CertifiedExit", "Conformal", "DynamicConfidence",
           "Entropy", "certify_exit", "check_rule_fits", "deployable_policy", "describe_exit_rule", "load_certified", "load_exit_rule", "log_odds",
           "save_certified",
           "ExitCurve", "ExitPolicy", "FitTarget", "FixedT", "MaxSoftmax", "MeanOutputConfidence", "NotFittedError",
           "Oracle", "OracleStable", "StepCalibratedConfidence", "ThresholdPolicy", "TopK", "TopKPerStep",
           "agreement_with_fixed_t", "alpha_at", "binomial_pvalues", "check_is_fitted", "check_trace", "create_policy",
           "exact_curve", "exit_steps_from_scores", "fit_and_evaluate", "fixed_t_accuracy", "load_policy",
           "load_policy_with_extra", "ltt_select", "online_policy_names", "policy_from_dict", "policy_name",
           "policy_params", "predictions_at", "register_policy", "save_policy", "summarize_curve", "validation_point",
           "zero_disagreement_bound"]
