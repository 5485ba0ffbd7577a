"""The main job as reusable stages: data -> ANN -> train -> calibrate -> convert -> trace -> fit -> evaluate.

``snnexit run`` calls :func:`run`; the stage functions are public so other commands (and
users) can run one stage at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from snnexit.calibrate import expected_calibration_error, fit_temperature
from snnexit.convert import CONVERTERS, convert
from snnexit.data import DATASETS, DataSplits, Split, load_dataset
from snnexit.errors import SnnexitError
from snnexit.exit import DynamicConfidence, FixedT, Oracle, summarize_curve
from snnexit.exit.base import learn_certify_indices, split_learn_certify
from snnexit.exit.certify import CERTIFY_CANDIDATES, certify_exit
from snnexit.io import load_tensors, save_tensors
from snnexit.models import MODELS, create_model
from snnexit.quant import LSQ, QCFS
from snnexit.simulate import Trace, record_trace
from snnexit.simulate.trace import concat
from snnexit.simulate.cost import cost_from_trace, fan_out
from snnexit.train import TrainConfig, evaluate_logits, train

ANN_FORMAT, ANN_VERSION = "ann", 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("SNNEXIT_CACHE", Path.home() / ".cache" / "snnexit"))


# Bump when a change to training, the models, the quantizers or the data splits changes what the
# same settings train: every cached ANN then trains afresh instead of being reused.
TRAINING_CODE_VERSION = 2


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
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            DATASETS.get(self.dataset)  # raises with the known names
        MODELS.get(self.model)
        CONVERTERS.get(self.converter)
        if self.T < 1:
            raise SnnexitError(f"T must be >= 1, got {self.T}")
        if self.epochs < 0:
            raise SnnexitError(f"epochs must be >= 0, got {self.epochs}")
        if self.levels < 1:
            raise SnnexitError(f"levels (L) must be >= 1, got {self.levels}")
        if self.quantizer not in QUANTIZERS:
            raise SnnexitError(f"Unknown quantizer {self.quantizer!r}. Known: {', '.join(QUANTIZERS)}")
        if self.bits < 1:
            raise SnnexitError(f"bits must be >= 1, got {self.bits}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise SnnexitError(f"device {self.device!r} requested but CUDA is not available")

    def train_key(self) -> str:
        """Hash of everything that determines the trained ANN (the cache key), the version of the
        training code included: a cache written by older code is not silently reused."""
        keys = ("dataset", "model", "epochs", "seed", "levels", "init_threshold", "batch_size", "lr", "width")
        settings = {k: getattr(self, k) for k in keys}
        settings["training_code"] = TRAINING_CODE_VERSION
        if self.quantizer != "qcfs":  # absent for QCFS: old cache keys stay valid
            settings.update(quantizer=self.quantizer, bits=self.bits)
        if self.data_dir is not None:  # another local copy may hold other images (absent: old keys stay valid)
            settings["data_dir"] = str(Path(self.data_dir).expanduser().resolve())
        blob = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
            return CERTIFY_CANDIDATES
        return tuple(name.strip() for name in self.policies.split(",") if name.strip())

    def validate(self) -> None:
        if self.eps is not None and not (isinstance(self.eps, (int, float)) and 0 < self.eps < 1):
            raise SnnexitError(f"certify eps must lie in (0, 1), got {self.eps!r}")
        if not (isinstance(self.delta, (int, float)) and 0 < self.delta < 1):
            raise SnnexitError(f"certify delta must lie in (0, 1), got {self.delta!r}")
        names = self.candidates()
        if not names:
            raise SnnexitError("certify policies is empty; give names or 'all'")
        for name in names:
            if name not in CERTIFY_CANDIDATES:
                raise SnnexitError(f"policy {name!r} cannot be certified. Certifiable: {', '.join(CERTIFY_CANDIDATES)}")
        if self.calibration_inputs is not None and not Path(self.calibration_inputs).is_file():
            raise SnnexitError(f"calibration inputs {self.calibration_inputs}: no such file (expected a .npy array)")

    def options(self) -> dict:
        """Keyword arguments of :func:`certified_exit`."""
        return {"eps": self.eps, "delta": self.delta, "candidates": self.candidates()}


def load_calibration_inputs(path: str | Path, data: DataSplits) -> torch.Tensor:
    """Unlabelled inputs ``(N, ...)`` from a ``.npy`` file, checked against the data set's input shape."""
    import numpy as np  # only runs that bring their own calibration inputs need it

    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SnnexitError(f"calibration inputs {path}: not a readable .npy array ({exc})") from None
    expected = tuple(data.val.x.shape[1:])
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected or x.shape[0] < 1:
        raise SnnexitError(f"calibration inputs {path}: shape {x.shape}, expected (N, {', '.join(map(str, expected))}) "
                           f"like the {data.name} inputs")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise SnnexitError(f"calibration inputs {path}: dtype {x.dtype} is not real-valued")
    x = torch.from_numpy(np.ascontiguousarray(x)).to(data.val.x.dtype)
    if not torch.isfinite(x).all():
        raise SnnexitError(f"calibration inputs {path}: contain NaN or infinite values")
    return x


def trace_unlabelled(snn, x: torch.Tensor, config: RunConfig, batch_size: int = 250, temporal: bool = False) -> Trace:
    """The trace of unlabelled inputs ``x`` (no labels: enough to certify an exit; ``temporal``:
    event frames ``(N, T, 2, H, W)``, frame t at step t)."""
    batches = [(x[i:i + batch_size], None) for i in range(0, x.shape[0], batch_size)]
    return record_trace(snn, batches, T=config.T, device=config.device, progress=config.progress,
                        desc="trace calibration", temporal=temporal)


def check_writable(out: str | Path) -> Path:
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SnnexitError(f"output folder {out} is not writable: {exc.strerror or exc}") from None
    return out


QUANTIZERS = ("qcfs", "lsq", "relu", "clip")


def activation_factory(config: RunConfig):
    """The ANN's activation for ``config.quantizer``. LSQ's step starts at ``init_threshold / Q``
    so that its SNN threshold ``s * Q`` starts where QCFS's ``lam`` does (1.0 for [0, 1] inputs)."""
    if config.quantizer == "lsq":
        return lambda: LSQ(config.bits, init_step=config.init_threshold / (2 ** config.bits - 1))
    if config.quantizer == "relu":
        return nn.ReLU
    if config.quantizer == "clip":
        return lambda: nn.Hardtanh(0.0, config.init_threshold)
    return lambda: QCFS(config.levels, config.init_threshold)


def needs_calibration_data(converter: str) -> bool:
    """Converters that set thresholds from data (max, robust normalisation) need inputs to run."""
    return bool(getattr(CONVERTERS.get(converter), "needs_calibration", False))


def converter_inputs(converter: str, data: DataSplits) -> dict:
    """Extra arguments of ``converter``: the training inputs for those that calibrate on data."""
    return {"calibration_data": ann_view(data).train.x} if needs_calibration_data(converter) else {}


def ann_view(data: DataSplits) -> DataSplits:
    """What the ANN sees: the data itself, or for event data ``(N, T, 2, H, W)`` the mean frame
    ``(N, 2, H, W)`` of each recording.

    The converted SNN is then fed one frame per step. Its first layer is affine, so over T steps
    it integrates ``T * layer(mean of the frames seen)``: the rate code of the ANN on the mean
    frame, which is what conversion needs. (Direct training on the frames is ``cutoff-train``.)
    """
    if not data.temporal:
        return data
    mean = lambda split: Split(split.x.mean(1), split.y)  # noqa: E731  (N, T, C, H, W) -> (N, C, H, W)
    view = DataSplits(data.name, mean(data.train), mean(data.val), mean(data.test), data.num_classes)
    if getattr(data, "augment", None) is not None:
        view.augment = data.augment
    return view


def event_steps(config: RunConfig, data: DataSplits) -> None:
    """Refuse a T longer than the recordings of event data: the SNN sees one frame per step."""
    if data.temporal and config.T > data.train.x.shape[1]:
        frames = data.train.x.shape[1]
        raise SnnexitError(f"T = {config.T} exceeds the {frames} frames of {data.name}: the converted SNN sees one "
                           f"frame per step; pass --T {frames} or fewer")


def build_ann(config: RunConfig, data: DataSplits) -> nn.Module:
    kwargs = {} if config.width is None else {"width": config.width}
    torch.manual_seed(config.seed)
    return create_model(config.model, num_classes=data.num_classes, in_channels=data.in_channels,
                        input_size=data.input_size, activation=activation_factory(config), **kwargs)


def ann_cache_paths(config: RunConfig) -> tuple[Path, str, Path]:
    """(cache folder, training key, path of the cached weights) of the ANN ``config`` trains."""
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    key = config.train_key()
    return cache, key, cache / f"ann-{config.dataset}-{config.model}-{key}.safetensors"


def load_cached_ann(model: nn.Module, weights: Path, config: RunConfig) -> bool:
    """Load ``weights`` into ``model`` when the file exists (False when it does not)."""
    if not weights.exists():
        return False
    tensors, _ = load_tensors(weights, fmt=ANN_FORMAT, version=ANN_VERSION)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise SnnexitError(f"{weights}: checkpoint does not fit model {config.model!r}: {str(exc)[:200]}") from None
    return True


def trained_ann(config: RunConfig, data: DataSplits, log=print) -> nn.Module:
    """Train the QCFS ANN, or load it from the cache when the same settings were trained before
    (event data: on the mean frame of each recording, see :func:`ann_view`)."""
    data = ann_view(data)
    model = build_ann(config, data)
    cache, key, weights = ann_cache_paths(config)
    if load_cached_ann(model, weights, config):
        log(f"reusing trained ANN {weights}")
        return model.to(config.device).eval()
    log(f"training {config.model} on {config.dataset} for {config.epochs} epochs")
    tc = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed)
    checkpoint = cache / f"train-{key}.pt"
    train(model, data.train, tc, device=config.device, checkpoint=checkpoint, progress=config.progress,
          augment=getattr(data, "augment", None), log=log)
    save_tensors(weights, model.state_dict(), fmt=ANN_FORMAT, version=ANN_VERSION, meta={"key": key})
    checkpoint.unlink(missing_ok=True)  # the cached weights replace it: a finished run leaves no checkpoint
    return model.eval()


def calibrate(model: nn.Module, data: DataSplits, device: str) -> dict:
    """Temperature scaling on the learning half of the validation split; ECE before and after
    (validation and test).

    Only the learning half (:func:`snnexit.exit.base.learn_certify_indices`): the other half
    certifies the exit, and a certificate holds only on inputs that shaped no part of the
    score, Dynamic Confidence's temperature included."""
    data = ann_view(data)
    val_logits = evaluate_logits(model, data.val, device)
    test_logits = evaluate_logits(model, data.test, device)
    learn, _ = learn_certify_indices(val_logits.shape[0])
    temperature = fit_temperature(val_logits[learn], data.val.y[learn])
    ece = lambda logits, y, t: expected_calibration_error(torch.softmax(logits.double() / t, -1), y)  # noqa: E731
    return {
        "temperature": temperature,
        "temperature_fit_size": int(learn.numel()),
        "val_acc": (val_logits.argmax(1) == data.val.y).double().mean().item(),
        "test_acc": (test_logits.argmax(1) == data.test.y).double().mean().item(),
        "ece_val_before": ece(val_logits, data.val.y, 1.0),
        "ece_val_after": ece(val_logits, data.val.y, temperature),
        "ece_test_before": ece(test_logits, data.test.y, 1.0),
        "ece_test_after": ece(test_logits, data.test.y, temperature),
    }


def converted_snn(model: nn.Module, data: DataSplits, config: RunConfig, temperature: float):
    """The SNN of ``model`` under ``config.converter``, carrying the ANN's temperature."""
    snn = convert(model, config.converter, **converter_inputs(config.converter, data))
    snn.meta["temperature"] = temperature
    return snn


def trace_splits(model: nn.Module, data: DataSplits, config: RunConfig, temperature: float,
                 batch_size: int = 250) -> tuple[Trace, Trace]:
    return trace_snn(converted_snn(model, data, config, temperature), data, config, batch_size)


def trace_snn(snn, data: DataSplits, config: RunConfig, batch_size: int = 250) -> tuple[Trace, Trace]:
    """Record the validation and test traces of a converted SNN (``batch_size`` inputs at once)."""
    event_steps(config, data)
    # event data (N, T, 2, H, W): frame t at step t; static data: the same input at every step
    kw = dict(T=config.T, device=config.device, progress=config.progress, temporal=data.temporal)
    val = record_trace(snn, data.val.batches(batch_size), desc="trace val", **kw)
    test = record_trace(snn, data.test.batches(batch_size), desc="trace test", **kw)
    try:  # synaptic fan-out per spiking layer, for SynOps in the cost table
        fan = fan_out(snn, data.test.x[:1, 0] if data.temporal else data.test.x[:1])
    except (SnnexitError, RuntimeError):
        fan = None  # a layer the probe cannot follow: spikes are still counted, SynOps are not
    if fan is not None:
        val.meta["fan_out_per_layer"] = test.meta["fan_out_per_layer"] = fan
    return val, test


def fit_policy(val: Trace, policy: DynamicConfidence | None = None) -> DynamicConfidence:
    """Fit Dynamic Confidence (default settings unless ``policy`` is given) on ``val``.

    A policy with a fixed threshold learns nothing from ``val``; it still gets the validation
    curve (``curve_``) and its point on it (``point_``: the number of curve thresholds above
    tau), so the report can show where it sits.
    """
    dc = (policy if policy is not None else DynamicConfidence()).fit(val)
    if not hasattr(dc, "curve_"):
        dc.curve_ = dc.curve(val)
        dc.point_ = int((dc.curve_.thresholds[:-1] > dc.threshold_).sum())
    return dc


def certified_exit(val: Trace, calibration: Trace | None = None, *, eps: float | None = None, delta: float = 0.05,
                   candidates=CERTIFY_CANDIDATES):
    """The certified exit of a run: its learning half of ``val`` learns the scores and picks the
    policy; the other half, plus the unlabelled ``calibration`` inputs if any, certifies it."""
    learn, certify = split_learn_certify(val)
    pool = certify if calibration is None else concat([certify, calibration])
    return certify_exit(learn, pool, eps=eps, delta=delta, candidates=candidates)


def evaluate_policies(val: Trace, test: Trace, dc: DynamicConfidence | None = None, *, certify: dict | None = None,
                      calibration: Trace | None = None) -> tuple[dict, dict]:
    """Fit Dynamic Confidence on ``val`` (or take the fitted ``dc``); certify an exit
    (:func:`certified_exit` with the settings ``certify``: eps, delta, candidates, and the
    unlabelled ``calibration`` trace); evaluate fixed T, DC, the certified exit and the oracle
    on ``test``."""
    dc = fit_policy(val) if dc is None else dc
    certified = certified_exit(val, calibration, **(certify or {}))
    chosen = {"fixed": FixedT(), "dynamic_confidence": dc, "certified": certified.policy, "oracle": Oracle()}
    results = {name: policy.evaluate(test) for name, policy in chosen.items()}
    results["certified"] = certified.evaluate(test)
    if test.spikes is not None and test.meta.get("neurons_per_layer"):
        for name, policy in chosen.items():  # the paper's Table 3: spikes up to each input's exit step
            results[name]["cost"] = cost_from_trace(test, policy.exit_steps(test)).summary()
    results["dynamic_confidence"]["val_acc"] = float(dc.curve_.accuracy[dc.point_])
    results["dynamic_confidence"]["val_mean_steps"] = float(dc.curve_.mean_steps[dc.point_])
    results["dynamic_confidence"]["val_size"] = val.N
    extras = {"dc_val_curve": summarize_curve(dc.curve_), "dc_test_curve": summarize_curve(dc.curve(test)),
              "dc_val_point": dc.point_, "certified_test_curve": summarize_curve(certified.policy.curve(test))}
    return results, extras


def assemble_results(config: RunConfig, data_sizes: dict, cal: dict, val: Trace, test: Trace, policies: dict,
                     extras: dict, seconds: float | None = None) -> dict:
    """The ``results.json`` of a run (``snnexit run`` and ``snnexit evaluate`` both build it here)."""
    T = config.T
    oracle_saving = T - policies["oracle"]["mean_steps"]
    capture = (lambda name: (T - policies[name]["mean_steps"]) / oracle_saving if oracle_saving > 0 else None)
    return {
        "config": asdict(config),
        "data": dict(data_sizes),
        "ann": {"test_acc": cal["test_acc"], "val_acc": cal["val_acc"]},
        "calibration": cal,
        "snn": {"T": T, "converter": config.converter,
                "test_acc_per_step": test.accuracy_per_step().tolist(),
                "val_acc_per_step": val.accuracy_per_step().tolist(),
                "spikes_per_input_per_step": test.spikes.sum(2).mean(1).tolist(),
                "neurons": int(sum(test.meta["neurons_per_layer"]))},
        "policies": policies,
        "oracle_capture": capture("dynamic_confidence"),
        "certified_oracle_capture": capture("certified") if "certified" in policies else None,
        "curves": extras,
        "seconds": seconds,
    }


def run(config: RunConfig, log=print, settings=None) -> dict:
    """The main job. Writes ``results.json``, ``report.md``, the traces and the figures to ``config.out``.

    ``settings`` (a :class:`snnexit.config.Settings`) supplies the stage settings of a config
    file (trace batch size, Dynamic Confidence's fitting); its ``run`` part is ignored here.
    """
    from snnexit.report import write_report

    config.validate()
    certify = settings.certify if settings is not None else CertifySettings()
    certify.validate()
    out = check_writable(config.out)
    started = time.perf_counter()
    data = load_dataset(config.dataset, config.seed, root=config.data_dir, cache_dir=config.cache_dir)
    event_steps(config, data)
    log(f"loaded {config.dataset}: {len(data.train)} train, {len(data.val)} val, {len(data.test)} test inputs")
    extra = None if certify.calibration_inputs is None else load_calibration_inputs(certify.calibration_inputs, data)
    model = trained_ann(config, data, log)
    cal = calibrate(model, data, config.device)
    log(f"ANN test accuracy {cal['test_acc']:.4f}; temperature {cal['temperature']:.3f}, "
        f"test ECE {cal['ece_test_before']:.4f} -> {cal['ece_test_after']:.4f}")
    trace_batch = settings.trace.batch_size if settings is not None else 250
    log(f"tracing validation and test ({len(data.val)} + {len(data.test)} inputs, T = {config.T})")
    snn = converted_snn(model, data, config, cal["temperature"])
    val, test = trace_snn(snn, data, config, batch_size=trace_batch)
    val.save(out / "trace_val.safetensors")
    test.save(out / "trace_test.safetensors")
    log(f"traced: SNN test accuracy {float(test.accuracy_per_step()[-1]):.4f} at T = {config.T}")
    calibration = None
    if extra is not None:
        calibration = trace_unlabelled(snn, extra, config, batch_size=trace_batch, temporal=data.temporal)
        calibration.save(out / "trace_calibration.safetensors")
    dc = fit_policy(val, DynamicConfidence(**asdict(settings.fit)) if settings is not None else None)
    policies, extras = evaluate_policies(val, test, dc, certify=certify.options(), calibration=calibration)
    log(f"fitted Dynamic Confidence on validation: {policies['dynamic_confidence']['mean_steps']:.2f} mean test steps; "
        f"certified exit ({policies['certified']['policy']}): {policies['certified']['mean_steps']:.2f}")
    sizes = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    results = assemble_results(config, sizes, cal, val, test, policies, extras)
    results["seconds"] = time.perf_counter() - started
    write_report(out, results, val, test)
    log(f"wrote the report to {out}")
    return results
