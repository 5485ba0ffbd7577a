"""Exit policies as estimators (scikit-learn style).

* ``__init__`` only stores each parameter under its own name (``get_params`` reads them back
  from its signature; ``set_params`` sets them);
* ``fit(trace)`` validates the parameters and the trace, learns attributes ending in ``_``
  (and only ``fit`` sets them) and returns ``self``;
* ``exit_steps(trace)`` gives each input's 1-based exit step, ``predict(trace)`` its answer;
* ``decide(accumulated, t, meta, labels=None)`` is the online twin of ``exit_steps``: it
  takes exactly the same decisions, one step at a time, on any subset of the inputs;
* a policy that needs fitting raises :class:`NotFittedError` until it is fitted
  (:func:`check_is_fitted`, the one check every caller uses);
* ``to_dict()`` is a JSON-able record of the parameters and the fitted attributes;
  :func:`snnexit.exit.persist.policy_from_dict` rebuilds the identical policy.

Thresholded policies (:class:`snnexit.exit.threshold.ThresholdPolicy`) pick their threshold
for a :class:`snnexit.exit.target.FitTarget`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from snnexit.errors import SnnexitError
from snnexit.exit.codec import Fitted, encode_fitted, encode_param
from snnexit.exit.curve import ExitCurve
from snnexit.registry import Registry
from snnexit.simulate.trace import Trace

POLICIES: Registry = Registry("policy")
POLICY_FORMAT, POLICY_VERSION = "snnexit-policy", 3  # the record of ExitPolicy.to_dict
# version 3: softmax scores are log-odds / log-entropies (portable thresholds); 2 held probabilities


def register_policy(name: str | None = None):
    """Class decorator: register the policy under ``name`` (default: the class name) and set the
    class attribute ``name`` (its name in saved records)."""

    def decorator(cls):
        cls.name = name or cls.__name__
        return POLICIES.register(cls.name)(cls)

    return decorator


def policy_params(cls):
    """Class decorator: the annotated class attributes a policy declares are its parameters.

    The class becomes a dataclass (no generated ``__eq__``/``__repr__``) whose ``__init__``
    takes the inherited parameters and then its own, keyword-only (unless a field says
    ``kw_only=False``), and stores each under its own name, so a subclass lists only what
    it adds or changes; ``field(default=..., init=False)`` fixes an inherited parameter.
    """
    return dataclass(eq=False, repr=False, kw_only=True)(cls)


class NotFittedError(SnnexitError):
    pass


def check_is_fitted(policy, attributes: str | tuple[str, ...] | None = None) -> None:
    """Raise :class:`NotFittedError` unless ``policy`` is fitted.

    ``attributes``: the fitted attributes to look for (default: all of the policy's
    ``fitted_attributes``, and nothing for a policy that needs no fit, such as ``fixed``).
    Accepts any object with ``decide`` (a policy without ``needs_fit`` needs no fit).
    """
    if attributes is None:
        if not getattr(policy, "needs_fit", False):
            return
        attributes = policy.fitted_attributes
    elif isinstance(attributes, str):
        attributes = (attributes,)
    missing = [name for name in attributes if not hasattr(policy, name)]
    if missing:
        raise NotFittedError(f"{type(policy).__name__} is not fitted (no {', '.join(missing)}): call "
                             f"fit(validation_trace) first")


def deployable_policy(rule):
    """The exit policy a runtime runs for ``rule``: a policy itself, or the fitted policy that a
    certified exit (:class:`~snnexit.exit.certify.CertifiedExit`) certified."""
    inner = getattr(rule, "policy", None)
    return inner if isinstance(inner, ExitPolicy) else rule


def check_step_range(policy, n_steps: int, t: int) -> None:
    """Refuse scoring step ``t`` with per-step tables learnt on ``n_steps`` steps (a range
    check: whether the tables exist is :func:`check_is_fitted`'s)."""
    if not 1 <= t <= n_steps:
        raise SnnexitError(f"{type(policy).__name__} was fitted on {n_steps} steps; it cannot score step {t}")


def check_fitted_T(policy, trace: Trace) -> None:
    """Refuse applying a policy fitted on traces of ``T_`` steps to a trace of another T: its
    threshold (and any per-step table) was chosen for runs of ``T_`` steps."""
    fitted_T = getattr(policy, "T_", None)
    if fitted_T is not None and trace.T != fitted_T:
        raise SnnexitError(f"{type(policy).__name__} was fitted on traces of T_ = {fitted_T} steps; this trace has "
                           f"T = {trace.T}: fit it on a trace of {trace.T} steps")


def check_trace(trace) -> Trace:
    if not isinstance(trace, Trace):
        raise SnnexitError(f"expected a Trace, got {type(trace).__name__}")
    trace.validate()
    return trace


def check_other_inputs(learn: Trace, calibration: Trace) -> None:
    """Refuse certifying on the learning trace itself (or a copy of it): a threshold certified on the
    inputs that learned the scores certifies nothing. (Single inputs cannot be told apart by their
    outputs: different inputs of a quantized network often give identical outputs; and a trace whose
    inputs all give the same outputs, an untrained network's, says nothing about where it came from.)"""
    varied = bool((learn.outputs != learn.outputs[:, :1]).any())
    if calibration is learn or (varied and calibration.N == learn.N and torch.equal(calibration.outputs, learn.outputs)):
        raise SnnexitError("the calibration trace is the learning trace: a threshold certified on the inputs that "
                           "learned the scores certifies nothing; certify on other inputs (split_learn_certify)")


def predictions_at(trace: Trace, exit_steps: torch.Tensor) -> torch.Tensor:
    """(N,) the argmax of the accumulated output at each input's exit step."""
    idx = (exit_steps.long() - 1).view(1, -1, 1).expand(1, -1, trace.C).to(trace.outputs.device)
    return trace.outputs.gather(0, idx)[0].argmax(-1)


CERTIFY_SPLIT_SEED = 0


def learn_certify_indices(n: int, learn_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the learning and the certifying part of ``n`` inputs: a fixed random permutation
    (independent of the data, so both parts stay exchangeable with new inputs)."""
    if n < 2:
        raise SnnexitError(f"need at least 2 inputs to split into learning and certification parts, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(CERTIFY_SPLIT_SEED))
    k = min(max(int(round(learn_fraction * n)), 1), n - 1)
    return perm[:k], perm[k:]


def split_learn_certify(trace: Trace, learn_fraction: float = 0.5) -> tuple[Trace, Trace]:
    """``trace`` split into a part that learns and a part that certifies (:func:`learn_certify_indices`)."""
    learn, certify = learn_certify_indices(trace.N, learn_fraction)
    return trace.subset(learn), trace.subset(certify)


def agreement_with_fixed_t(trace: Trace) -> torch.Tensor:
    """(T, N) bool: does the prediction after each step equal the prediction at T?"""
    pred = trace.predictions()
    return pred == pred[-1:]


class ExitPolicy:
    """Base class. Subclasses implement ``exit_steps`` and ``decide``; ``fit`` only records T.

    Fitted attributes: ``T_`` (the fitting trace's number of steps).

    **A policy declares itself once.** Its parameters are its ``__init__`` arguments
    (:func:`policy_params`); its fitted state is ``declare_fitted``, a table of the attributes
    its own ``fit`` adds (name -> :class:`~snnexit.exit.codec.Fitted`: kind, whether learned
    from labelled data, whether optional). From the declarations of a class and its bases,
    ``__init_subclass__`` derives ``fitted_state`` (all of them), ``fitted_attributes`` and
    ``optional_fitted_attributes`` (what :func:`check_is_fitted` looks for and what a fit may
    forget), and ``learns_score`` (any state learned from labels: the risk target then certifies
    on other inputs); saving and loading read the same table (:mod:`snnexit.exit.persist`), and a
    policy checks what it loads in ``_check_fitted_state`` (each class its own). Registration
    (:func:`register_policy`) makes it known to every stage, to certification (all registered
    online thresholded policies without labels at test are candidates) and to the CLI.
    """

    name: ClassVar[str | None] = None  # the registry name (set by register_policy)
    needs_fit = False
    uses_labels_at_test = False  # oracles peek at labels: an upper bound, not a deployable policy
    online = True  # False: decide() would need future steps (oracle_stable)
    declare_fitted: ClassVar[dict[str, Fitted]] = {"T_": Fitted("int")}  # what this class's fit adds
    # derived from the declarations (never set by hand): see __init_subclass__
    fitted_state: ClassVar[dict[str, Fitted]] = dict(declare_fitted)
    fitted_attributes: ClassVar[tuple[str, ...]] = ("T_",)
    optional_fitted_attributes: ClassVar[tuple[str, ...]] = ()
    learns_score: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        state: dict[str, Fitted] = {}
        for klass in reversed(cls.__mro__):
            state.update(klass.__dict__.get("declare_fitted", {}))
        cls.fitted_state = state
        cls.fitted_attributes = tuple(k for k, spec in state.items() if not spec.optional)
        cls.optional_fitted_attributes = tuple(k for k, spec in state.items() if spec.optional)
        cls.learns_score = any(spec.learned for spec in state.values())

    def _check_fitted_state(self, values: dict) -> None:
        """Refuse loaded fitted attributes (decoded as declared) that one ``fit`` could not have left:
        each class checks what it declares, after its bases."""
        missing = [key for key in self.fitted_attributes if key not in values]
        if missing:
            raise SnnexitError(f"fitted attributes lack {', '.join(missing)}")
        if values["T_"] < 1:
            raise SnnexitError(f"T_ must be a positive integer, got {values['T_']}")

    # --- scikit-learn conveniences -----------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """The parameters: the named arguments of ``__init__``, in its order."""
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict:
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params) -> "ExitPolicy":
        """Set parameters by name (validated at the next fit, as in ``__init__``); returns ``self``."""
        names = self.param_names()
        for key in params:
            if key not in names:
                raise SnnexitError(f"{type(self).__name__} has no parameter {key!r}; its parameters: "
                                   f"{', '.join(names) or 'none'}")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def check_settings(self) -> None:
        """Validate the parameters (``fit`` does first); raise SnnexitError naming the problem."""

    # --- estimator API --------------------------------------------------------------------
    def fit(self, trace: Trace) -> "ExitPolicy":
        self.check_settings()
        check_trace(trace)
        self._forget_fit()
        self.T_ = trace.T
        return self

    def _forget_fit(self) -> None:
        """Drop every fitted attribute (a refit starts afresh)."""
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            del self.__dict__[key]

    def exit_steps(self, trace: Trace) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, trace: Trace) -> torch.Tensor:
        return predictions_at(trace, self.exit_steps(trace))

    def fitted_threshold(self) -> float | None:
        """The threshold ``fit`` chose (None: the policy has no threshold)."""
        return None

    def decide(self, accumulated: torch.Tensor, t: int, meta: dict, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Online rule: (N,) bool, may each input stop after step ``t`` (1-based), given its
        accumulated output ``(N, C)``? Must take exactly the decisions of ``exit_steps`` on a
        trace (a runtime stops at T regardless). ``labels`` only for oracles."""
        raise NotImplementedError(f"{type(self).__name__} has no online decision rule")

    def decide_steps(self, accumulated: torch.Tensor, t_first: int, meta: dict,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`decide` after each of ``k`` consecutive steps ``t_first .. t_first + k - 1`` at once:
        ``(k, N)`` bool from the accumulated outputs ``(k, N, C)`` after those steps. The same
        decisions as ``k`` calls of :meth:`decide` (this default makes them); a policy whose score
        does not change with the step overrides it with one call (a chunked runtime decides a
        whole chunk of steps so)."""
        return torch.stack([torch.as_tensor(self.decide(acc, t_first + j, meta, labels), dtype=torch.bool,
                                            device=acc.device).reshape(acc.shape[0])
                            for j, acc in enumerate(accumulated)])

    def check_output(self, meta: dict, classes: int | None = None) -> None:
        """Refuse a network or trace whose outputs this fitted policy cannot decide on (another
        number of classes, another stated output scaling); a policy that learned nothing takes any."""

    def output_scaling(self, meta: dict) -> dict | None:
        """The alpha and temperature the score divides the accumulated output by (None: no softmax)."""
        return None

    def evaluate(self, trace: Trace) -> dict:
        """Accuracy, mean steps, saving and disagreement with fixed T on ``trace`` (plus the
        alpha and temperature a softmax score used)."""
        check_trace(trace)
        steps = self.exit_steps(trace)
        pred = predictions_at(trace, steps)
        mean_steps = steps.double().mean().item()
        scaling = self.output_scaling(trace.meta) or {"alpha": None, "temperature": None}
        return {
            "threshold": self.fitted_threshold(),
            "score": getattr(self, "score_meaning", None) if self.fitted_threshold() is not None else None,
            **scaling,
            "test_acc": (pred == trace.labels).double().mean().item() if trace.labelled else None,
            "mean_steps": mean_steps,
            "saving": 1.0 - mean_steps / trace.T,
            "disagreement": (pred != trace.predictions()[-1]).double().mean().item(),
            "n": trace.N,
            "exit_step_counts": torch.bincount(steps.cpu(), minlength=trace.T + 1)[1:].tolist(),
        }

    # --- persistence ------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able record: format, version, registry name, ``get_params()`` and every fitted
        attribute (floats exact; ``inf``/``-inf`` as strings). :func:`policy_from_dict` reads it."""
        if self.name is None or POLICIES.get(self.name) is not type(self):
            raise SnnexitError(f"{type(self).__name__} is not a registered policy: it cannot be saved by name")
        fitted = {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}
        undeclared = [k for k in fitted if k not in self.fitted_state]
        if undeclared:
            raise TypeError(f"{type(self).__name__} sets {', '.join(undeclared)} without declaring it "
                            f"(declare_fitted)")
        return {"format": POLICY_FORMAT, "version": POLICY_VERSION, "policy": self.name,
                "params": {k: encode_param(k, v) for k, v in self.get_params().items()},
                "fitted": {k: encode_fitted(k, v, self.fitted_state[k]) for k, v in fitted.items()}}


def fixed_t_accuracy(trace: Trace) -> float:
    return trace.correct()[-1].double().mean().item()


def summarize_curve(curve: ExitCurve, max_points: int | None = None) -> dict:
    """JSON-able curve with its Pareto front (for plots and results.json).

    ``max_points`` keeps only the Pareto front (plus fixed T) when the curve is longer, so a
    50,000-input curve does not bloat a JSON file.
    """
    front = curve.pareto_front()
    keep = np.arange(curve.thresholds.size)
    if max_points is not None and keep.size > max_points:
        keep = np.union1d(front, [0])
    pos = np.full(curve.thresholds.size, -1)
    pos[keep] = np.arange(keep.size)
    th = curve.thresholds[keep]
    out = {
        "thresholds": np.where(np.isfinite(th), th, None).tolist(),
        "mean_steps": curve.mean_steps[keep].tolist(),
        "accuracy": curve.accuracy[keep].tolist(),
        "pareto_front": pos[front].tolist(),
    }
    if curve.agree is not None:
        out["disagreement"] = curve.disagreement[keep].tolist()
    return out
