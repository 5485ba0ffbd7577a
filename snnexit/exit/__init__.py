"""Exit policies (estimators over traces), the exact curve, and the oracle bound."""

from snnexit.exit.base import (POLICIES, ExitPolicy, NotFittedError, ThresholdPolicy, fixed_t_accuracy,
                               predictions_at, register_policy, summarize_curve)
from snnexit.exit.curve import ExitCurve, exact_curve, exit_steps_from_scores
from snnexit.exit.policies import DynamicConfidence, FixedT, Oracle, alpha_at


def create_policy(name: str, **kwargs) -> ExitPolicy:
    return POLICIES.get(name)(**kwargs)


__all__ = ["POLICIES", "DynamicConfidence", "ExitCurve", "ExitPolicy", "FixedT", "NotFittedError", "Oracle",
           "ThresholdPolicy", "alpha_at", "create_policy", "exact_curve", "exit_steps_from_scores",
           "fixed_t_accuracy", "predictions_at", "register_policy", "summarize_curve"]
