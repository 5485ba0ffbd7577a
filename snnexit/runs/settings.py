"""What a run is made of: the run config and the settings of each stage (plain dataclasses).

Reading them from TOML files is :mod:`snnexit.runs.config_file`; command-line flags are
:mod:`snnexit.cli.config_args`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from snnexit.convert import CONVERTERS
from snnexit.convert.fixes import check_fix, default_fix
from snnexit.data import DATASETS, default_frames, is_built_in
from snnexit.data.sources import check_downloadable
from snnexit.checks import (DEVICE_TYPES, MAX_SEED, check_device, check_positive, check_range,  # noqa: F401
                            memory_bytes)
from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES, create_policy
from snnexit.exit.certify import certifiable_policies
from snnexit.exit.target import target_readers
from snnexit import models
from snnexit.models import MODELS
from snnexit.names import ANN_EVENT_INPUTS  # the names table is the single source of these
from snnexit.quant import MAX_BITS, QUANTIZERS

# Bump when a change to training, the models, the quantizers or the data splits changes what the
# same settings train: every cached ANN then trains afresh instead of being reused.
TRAINING_CODE_VERSION = 2
MAX_T = 100_000  # far beyond any converted SNN's latency; a trace this long still fits in memory for small splits
MAX_EPOCHS = 100_000  # the paper trains 300
MAX_LEVELS = 2 ** 16  # QCFS L (an LSQ activation of b bits has L = 2**b - 1)
MAX_BATCH = 2 ** 20  # inputs per batch (training, tracing)
MAX_WIDTH = 2 ** 20  # far beyond what fits in memory for every built-in model; the memory check is finer
MAX_LR = 10.0
MAX_INIT_THRESHOLD = 1e6
# ANN_EVENT_INPUTS (snnexit.names), event data: what the ANN trains on (snnexit.runs.ann.ann_training_split); its
# tests and calibration see mean frames


def parameter_count(model: str, width: int | None = None) -> int:
    """Parameters of ``model`` at ``width`` for the smallest input (one channel, 8x8, 10 classes):
    a lower bound for every data set, counted without allocating memory."""
    kwargs = {} if width is None else {"width": width}
    return models.parameter_count(model, num_classes=10, in_channels=1, input_size=8, **kwargs)


def check_model_memory(model: str, width: int | None, what: str = "width") -> None:
    """Refuse a ``width`` whose model cannot train in this machine's memory: its parameters times
    4 bytes times 4 (weights, gradients, Adam's two moments) against the physical memory."""
    if width is None:
        return
    check_range(what, width, 1, MAX_WIDTH, " (the model width)")
    memory = memory_bytes()
    if memory is None:
        return
    count = parameter_count(model, width)
    need = count * 4 * 4
    if need > memory:
        raise SnnexitError(f"{what} = {width} makes {model} too large to train here: {count:.3g} parameters need "
                           f"about {need / 2 ** 30:.3g} GiB (weights, gradients, Adam moments), this machine has "
                           f"{memory / 2 ** 30:.3g} GiB")


@dataclass
class RunConfig:
    dataset: str = "mnist5k"
    model: str = "vgg_small"
    T: int = 32  # simulation steps of the fixed-T baseline (and the trace length)
    epochs: int = 30  # 15 gave a slower-converging SNN (DC saved 49% vs 76% at no loss, seed 0)
    seed: int = 0
    out: str = "runs/default"
    levels: int = 4  # QCFS L
    init_threshold: float = 1.0  # QCFS lam at init; 1 suits inputs in [0, 1] (the paper uses 8 on CIFAR)
    converter: str = "qcfs"
    # a correction of the converted SNN fitted on training inputs after conversion (snnexit.convert.fixes):
    # none, step_bias (FTBC), mean_bias (Li et al. 2021); None: the converter's default (fix_name()).
    # The ANN and its cache stay as they are.
    conversion_fix: str | None = None
    conversion_fix_inputs: int = 256  # training inputs the fix is fitted on (a seeded draw)
    # event data only: the ANN trains on prefix_means (the mean of the first k frames, k drawn per input: what the
    # converted SNN has integrated after k steps) or mean_frame (each recording's mean frame, as before)
    ann_event_input: str = "prefix_means"
    # the ANN's activation: qcfs (L = levels), lsq (b = bits, L = 2**b - 1; converts with qcfs or qffs),
    # relu or clip (ReLU clipped at init_threshold; for the data-normalisation converters max/robust)
    quantizer: str = "qcfs"
    bits: int = 2  # LSQ bit width b (the Dynamic Confidence paper's 2)
    batch_size: int = 64
    lr: float = 2e-3
    width: int | None = None  # model width (None: the model's default)
    device: str = "cpu"
    cache_dir: str | None = None
    data_dir: str | None = None  # local folder of a real data set (cifar10, cifar100, imagefolder)
    download: bool = False  # fetch the data set into data_dir (or the cache) first, unless it is there
    progress: bool = True
    # a NIR graph to run instead of training and converting an ANN (snnexit.runs.imported), read as
    # `semantics` says (nir, snnexit, snntorch, sinabs, norse, spikingjelly) with `dt` seconds per step
    nir: str | None = None
    semantics: str = "snnexit"
    dt: float | None = None  # None: the reader's own step
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        DATASETS.get(self.dataset)  # each raises with the known names
        MODELS.get(self.model)
        QUANTIZERS.get(self.quantizer)
        if self.conversion_fix is not None:
            check_fix(self.conversion_fix, self.converter)
        if self.ann_event_input not in ANN_EVENT_INPUTS:
            raise SnnexitError(f"Unknown ann_event_input {self.ann_event_input!r}. Known: {', '.join(ANN_EVENT_INPUTS)}")
        takes = getattr(CONVERTERS.get(self.converter), "quantizers", None)
        if self.nir is None and takes is not None and self.quantizer not in takes:
            raise SnnexitError(f"converter {self.converter!r} converts ANNs with {' or '.join(takes)} activations, not "
                               f"--quantizer {self.quantizer!r}: pass --quantizer {takes[0]} (or another converter)")
        if not str(self.out).strip():
            raise SnnexitError("out must name a run folder, got an empty string")
        if not (isinstance(self.T, int) and 1 <= self.T <= MAX_T):
            raise SnnexitError(f"T must lie in 1..{MAX_T} (steps of the fixed-T baseline), got {self.T}")
        if not (isinstance(self.epochs, int) and 1 <= self.epochs):
            raise SnnexitError(f"epochs must be >= 1 (0 would convert an untrained ANN), got {self.epochs}")
        check_range("config key 'epochs'", self.epochs, 1, MAX_EPOCHS)
        check_range("config key 'seed'", self.seed, 0, MAX_SEED)
        check_range("config key 'levels' (L)", self.levels, 1, MAX_LEVELS)
        check_range("config key 'bits'", self.bits, 1, MAX_BITS, " (LSQ bit width)")
        check_range("config key 'batch_size'", self.batch_size, 1, MAX_BATCH)
        check_range("config key 'conversion_fix_inputs'", self.conversion_fix_inputs, 1, MAX_BATCH,
                    " (training inputs the conversion fix is fitted on)")
        check_positive("config key 'lr'", self.lr, MAX_LR, " (the learning rate)")
        check_positive("config key 'init_threshold'", self.init_threshold, MAX_INIT_THRESHOLD,
                       " (QCFS lam at initialisation)")
        check_device(self.device)
        check_model_memory(self.model, self.width, "config key 'width'")
        if self.data_dir is not None and is_built_in(self.dataset):
            raise SnnexitError(f"data set {self.dataset!r} is built in: --data-dir does not apply")
        if self.download:
            check_downloadable(self.dataset)
        self._validate_nir()

    def _validate_nir(self) -> None:
        if self.dt is not None:
            check_positive("config key 'dt'", self.dt, 1e6, " (seconds per step of the NIR file's time constants)")
        if self.nir is None and self.semantics == "snnexit":
            return
        # the readers' registry lives with the NIR importer (h5py): loaded only when a run names a reader
        from snnexit.nir import SEMANTICS, import_nir

        SEMANTICS.get(self.semantics)  # raises with the known names
        if self.nir is None:
            return
        if not isinstance(self.nir, str) or not Path(self.nir).is_file():
            raise SnnexitError(f"NIR file {self.nir}: no such file")
        import_nir(self.nir, self.semantics, dt=self.dt)  # a node, dt or shape it cannot run: refused before any work

    @property
    def imported(self) -> bool:
        """Does the run take its network from a NIR file (no ANN to train or convert)?"""
        return self.nir is not None

    def network_source(self) -> str:
        """What made the run's network: its converter, or ``nir`` (traces record it as their converter)."""
        return "nir" if self.imported else self.converter

    def labels(self) -> tuple[str, str]:
        """``(model, converter)`` as tables show them: for an imported network, the file and its reader."""
        if self.imported:
            return Path(self.nir).name, f"nir ({self.semantics})"
        return self.model, self.converter

    def fix_name(self) -> str:
        """The conversion fix this run applies: the one it names, or the converter's default."""
        return default_fix(self.converter) if self.conversion_fix is None else self.conversion_fix

    def train_key(self) -> str:
        """Hash of everything that determines the trained ANN (the cache key), the version of the
        training code included: a cache written by older code is not silently reused."""
        conditional = ("quantizer", "bits", "ann_event_input", "data_dir")  # in the key only where set below
        settings = {k: getattr(self, k) for k in ANN_SETTINGS if k not in conditional}
        settings["training_code"] = TRAINING_CODE_VERSION
        if self.quantizer != "qcfs":  # absent for QCFS: old cache keys stay valid
            settings.update(quantizer=self.quantizer, bits=self.bits)
        if self.ann_event_input != "mean_frame" and self.dataset in DATASETS and default_frames(self.dataset):
            settings["ann_event_input"] = self.ann_event_input  # event data (absent for mean frames: old keys stay)
        if self.data_dir is not None:  # another local copy may hold other images (absent: old keys stay valid)
            settings["data_dir"] = str(Path(self.data_dir).expanduser().resolve())
        blob = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# the settings that determine the trained ANN: its cache key (RunConfig.train_key), and the settings
# a stage that reads ann.safetensors or snn.safetensors uses (snnexit.runs.resolve)
ANN_SETTINGS = ("dataset", "model", "epochs", "seed", "levels", "init_threshold", "quantizer", "bits", "batch_size",
                "lr", "width", "data_dir", "ann_event_input")


@dataclass
class TraceSettings:
    batch_size: int = 250  # inputs simulated at once: memory against speed

    def validate(self) -> None:
        if isinstance(self.batch_size, int) and self.batch_size < 1:
            raise SnnexitError(f"config key 'trace.batch_size' must be >= 1, got {self.batch_size}")
        check_range("config key 'trace.batch_size'", self.batch_size, 1, MAX_BATCH)


# the fitting targets (snnexit.exit.target) that read each of their settings
@dataclass
class FitSettings:
    """The exit policy fitted on the validation trace: a registered name, the fitting target and
    the policy's own options (``[fit.options]`` in a config file, e.g. ``k = 3`` for ``topk``)."""

    target: str = "no_loss"  # how the threshold is chosen on the validation trace
    threshold: float | None = None  # a fixed threshold tau: skip the choice
    temperature: float | None = None  # T_cal; None: the ANN's fitted temperature (trace meta)
    eps: float | None = None  # allowed accuracy drop (max_drop) or risk (risk)
    max_steps: float | None = None  # mean-steps budget (max_steps)
    delta: float | None = None  # failure probability of the risk guarantee (risk)
    policy: str = "dynamic_confidence"  # any registered exit policy
    options: dict = field(default_factory=dict)  # further keyword arguments of the policy

    def policy_kwargs(self) -> dict:
        """Keyword arguments of the policy: the settings it takes, given ones only. A setting given
        to a policy without that parameter (``--eps`` for ``fixed``) is an error."""
        accepted = set(POLICIES.get(self.policy).param_names())
        given = {k: v for k, v in asdict(self).items() if k not in ("policy", "options") and v is not None}
        if given.get("target") == "no_loss" and "target" not in accepted:
            given.pop("target")  # the default, for a policy without a fitting target (fixed, oracle)
        kwargs = {**given, **self.options}
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            takes = ", ".join(sorted(accepted)) or "no parameters"
            raise SnnexitError(f"policy {self.policy!r} has no parameter {', '.join(map(repr, unknown))} "
                               f"(it takes {takes})")
        return kwargs

    def create_policy(self):
        return create_policy(self.policy, **self.policy_kwargs())

    def check_used(self) -> None:
        """Refuse a setting that the target (or a fixed threshold) makes idle: ``--eps`` with
        ``no_loss`` would be ignored, not obeyed."""
        if self.threshold is not None and self.target != "no_loss":
            raise SnnexitError(f"fit.target (--target) {self.target!r} does nothing with a fixed threshold "
                               f"(--threshold {self.threshold!r} skips the choice); drop one of them")
        for key, flag in (("eps", "--eps"), ("max_steps", "--max-steps"), ("delta", "--delta")):
            readers = target_readers(key)
            if getattr(self, key) is not None and self.target not in readers:
                why = "a fixed threshold" if self.threshold is not None else f"target {self.target!r}"
                raise SnnexitError(f"fit.{key} ({flag}) does nothing with {why}: only the targets "
                                   f"{', '.join(readers)} read it; drop it, or choose one of them (--target)")

    def validate(self) -> None:
        for key, value in asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise SnnexitError(f"config key 'fit.{key}' must be a finite number, got {value}")
        # the ranges of every target that reads them, checked whatever the target (a value no target
        # could use is a mistake even where this target ignores it)
        if self.eps is not None:
            check_range("config key 'fit.eps'", self.eps, 0.0, 1.0, " (an accuracy drop or a risk)")
        if self.delta is not None and not 0 < self.delta < 1:
            raise SnnexitError(f"config key 'fit.delta' must lie in (0, 1) (a failure probability), got {self.delta}")
        if self.max_steps is not None:
            check_range("config key 'fit.max_steps'", self.max_steps, 1.0, float(MAX_T), " (mean steps per input)")
        try:
            policy = self.create_policy()
            if hasattr(policy, "check_settings"):
                policy.check_settings()
        except SnnexitError as exc:
            raise SnnexitError(f"config table [fit]: {exc}") from None
        except TypeError as exc:  # a policy's constructor refused an option
            raise SnnexitError(f"config table [fit]: {exc}") from None
        self.check_used()  # after the policy's own checks: a parameter it lacks is named as such


@dataclass
class CertifySettings:
    """The certified exit of a run (:mod:`snnexit.exit.certify`): with probability >= 1 - delta,
    its answers differ from the fixed-T answers on at most a share eps of new inputs."""

    eps: float | None = None  # the disagreement rate to certify; None: the smallest the calibration pool can
    delta: float = 0.05  # the probability allowed for the guarantee to fail
    policies: str = "all"  # candidate policies, comma-separated, or "all" (every certifiable one)
    # a .npy file of unlabelled inputs (N, ...) shaped like the data set's, drawn like the deployment
    # inputs (never training inputs): they join the certifying half of the validation split
    calibration_inputs: str | None = None

    def candidates(self) -> tuple[str, ...]:
        if self.policies.strip() == "all":
            return certifiable_policies()
        return tuple(name.strip() for name in self.policies.split(",") if name.strip())

    def validate(self) -> None:
        if self.eps is not None and not (isinstance(self.eps, (int, float)) and 0 < self.eps < 1):
            raise SnnexitError(f"config table [certify]: eps must lie in (0, 1), got {self.eps!r}")
        if not (isinstance(self.delta, (int, float)) and 0 < self.delta < 1):
            raise SnnexitError(f"config table [certify]: delta must lie in (0, 1), got {self.delta!r}")
        names = self.candidates()
        if not names:
            raise SnnexitError("config table [certify]: policies is empty; give names or 'all'")
        for name in names:
            if name not in certifiable_policies():
                raise SnnexitError(f"config table [certify]: policy {name!r} cannot be certified. "
                                   f"Certifiable: {', '.join(certifiable_policies())}")
        if self.calibration_inputs is not None:
            if not Path(self.calibration_inputs).is_file():
                raise SnnexitError(f"calibration inputs {self.calibration_inputs}: no such file (expected a .npy array)")
            from snnexit.runs.network import check_calibration_file  # network imports these settings

            check_calibration_file(self.calibration_inputs)  # its header: the data is checked when the data set is loaded

    def options(self) -> dict:
        """Keyword arguments of :func:`snnexit.runs.evaluation.certified_exit`."""
        return {"eps": self.eps, "delta": self.delta, "candidates": self.candidates()}


SECTIONS: dict[str, type] = {"trace": TraceSettings, "fit": FitSettings, "certify": CertifySettings}


@dataclass
class Settings:
    """Everything a stage needs: the run config and every stage's settings."""

    run: RunConfig = field(default_factory=RunConfig)
    trace: TraceSettings = field(default_factory=TraceSettings)
    fit: FitSettings = field(default_factory=FitSettings)
    certify: CertifySettings = field(default_factory=CertifySettings)

    def to_dict(self) -> dict:
        """JSON-able, in the file layout (run fields on top, a table per stage)."""
        out = asdict(self.run)
        for name in SECTIONS:
            out[name] = asdict(getattr(self, name))
        return out

    def validate(self) -> None:
        self.run.validate()
        for name in SECTIONS:
            getattr(self, name).validate()
