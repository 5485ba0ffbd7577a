"""SNNCutoff's experiments: direct SNN training (BPTT) or fine-tuning of a converted SNN, with the
cutoff regulariser, and every exit policy on the traces (``snnexit cutoff-train``).

* :func:`single_run`: one network. Trains it, records validation and test traces, fits every
  registered exit policy on validation and evaluates it on test (``results.json``, ``report.md``).
* :func:`cutoff_table`: the with/without-regulariser table. A shared network is trained for
  ``epochs`` without the regulariser (0: none), then one copy per arm trains ``finetune_epochs``
  more, with ``a = 0`` and with each ``table_reg_weights``; so every arm sees the same data and
  the same number of epochs and only the regulariser differs. Per arm: fixed-T accuracy, Top-K
  cutoff (global and per-step thresholds) and Dynamic Confidence at no accuracy loss (threshold
  fitted on validation, reported on test) and the oracle; ``table.json`` and ``table.md``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


from snnexit.calibrate import fit_temperature
from snnexit.data import DATASETS, DataSplits, is_built_in, load_dataset
from snnexit.data.sources import check_downloadable
from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES, create_policy, fit_and_evaluate
from snnexit.io import write_json, write_text
from snnexit.report.cutoff import cutoff_report, markdown_table
from snnexit.runs.network import attach_temperature, trained_snn
from snnexit.models import MODELS
from snnexit.neurons.functional import RESETS
from snnexit.neurons.surrogate import SURROGATES
from snnexit.runs.settings import (MAX_BATCH, MAX_EPOCHS, MAX_LR, MAX_SEED, MAX_T, RunConfig, check_device,
                                   check_model_memory, check_positive, check_range)
from snnexit.simulate import SpikingNetwork, Trace, record_trace
from snnexit.train.direct import NEURONS, DirectConfig, build_direct_snn, train_snn, trainable_from_converted
from snnexit.train.losses import TASK_LOSSES

DEFAULT_DATASET = "event_mnist" if "event_mnist" in DATASETS else "mnist5k"
TABLE_POLICIES = ("topk", "topk_per_step", "dynamic_confidence", "oracle")
MAX_TAU = 1e6  # LIF time constant in steps (tau -> infinity is IF)
MAX_REG_WEIGHT = 1e6


@dataclass
class CutoffSettings:
    dataset: str = DEFAULT_DATASET
    model: str = "vgg_small"
    width: int | None = 8  # small: BPTT on 2 CPU cores
    init: str = "scratch"  # "scratch" (direct training) or "converted" (fine-tune a QCFS-converted SNN)
    neuron: str = "lif"
    reset: str = "soft"
    tau: float = 2.0
    surrogate: str = "triangle"
    T: int | None = None  # None: all frames of a temporal data set, 8 for static data
    epochs: int = 3  # direct training (table: the shared part, without the regulariser)
    finetune_epochs: int = 2  # table: epochs of each arm
    loss: str = "tet"
    reg_weight: float = 0.0
    table_reg_weights: list[float] = field(default_factory=lambda: [0.1])
    lr: float = 1e-2
    finetune_lr: float = 2e-3
    batch_size: int = 64
    ann_epochs: int = 15  # init=converted: QCFS ANN training epochs (cached)
    seed: int = 0
    device: str = "cpu"
    cache_dir: str | None = None
    data_dir: str | None = None  # local folder of a real data set (cifar10_dvs, dvs_gesture, ncaltech101, ...)
    download: bool = False  # fetch the data set into data_dir (or the cache) first, unless it is there
    progress: bool = False

    def validate(self) -> None:
        """Every setting, the device and the model's size, before any data is loaded or trained."""
        DATASETS.get(self.dataset)
        MODELS.get(self.model)
        if self.data_dir is not None and is_built_in(self.dataset):
            raise SnnexitError(f"data set {self.dataset!r} is built in: --data-dir does not apply")
        if self.download:
            check_downloadable(self.dataset)
        if self.init not in ("scratch", "converted"):
            raise SnnexitError(f"Unknown init {self.init!r}. Known: converted, scratch")
        NEURONS.get(self.neuron)  # each raises with the known names
        TASK_LOSSES.get(self.loss)
        SURROGATES.get(self.surrogate)
        if self.reset not in RESETS:
            raise SnnexitError(f"Unknown reset {self.reset!r}. Known: {', '.join(RESETS)}")
        check_range("--tau", self.tau, 1.0, MAX_TAU, " (the LIF time constant in steps)")
        if self.T is not None:
            check_range("--T", self.T, 1, MAX_T)
        check_range("--epochs", self.epochs, 0, MAX_EPOCHS)
        check_range("--finetune-epochs", self.finetune_epochs, 0, MAX_EPOCHS)
        check_range("--ann-epochs", self.ann_epochs, 1 if self.init == "converted" else 0, MAX_EPOCHS,
                    " (--init converted trains the ANN for them)" if self.init == "converted" else "")
        check_positive("--lr", self.lr, MAX_LR, " (the learning rate)")
        check_positive("--finetune-lr", self.finetune_lr, MAX_LR, " (the learning rate)")
        check_range("--batch-size", self.batch_size, 1, MAX_BATCH)
        check_range("--seed", self.seed, 0, MAX_SEED)
        for a in [self.reg_weight, *self.table_reg_weights]:
            if not (isinstance(a, (int, float)) and math.isfinite(a) and a >= 0):
                raise SnnexitError(f"regulariser weights must be finite numbers >= 0, got {a}")
            check_range("--reg-weight", a, 0.0, MAX_REG_WEIGHT)
        check_device(self.device)
        check_model_memory(self.model, self.width, "--width")


def settings_key(settings: CutoffSettings) -> str:
    """Checkpoint names carry a hash of every setting, so a rerun with other settings in the same
    folder starts afresh instead of resuming someone else's training."""
    blob = json.dumps({k: v for k, v in asdict(settings).items() if k not in ("progress", "download")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def steps_for(settings: CutoffSettings, data: DataSplits) -> int:
    if data.temporal:
        frames = data.train.x.shape[1]
        T = settings.T or frames
        if T > frames:
            raise SnnexitError(f"T = {T} exceeds the {frames} frames of {data.name}")
        return T
    return settings.T or 8


def initial_network(settings: CutoffSettings, data: DataSplits, log=print) -> SpikingNetwork:
    """A fresh direct SNN, or the trainable twin of a converted QCFS network."""
    kw = {} if settings.width is None else {"width": settings.width}
    if settings.init == "scratch":
        return build_direct_snn(settings.model, num_classes=data.num_classes, in_channels=data.in_channels,
                                input_size=data.input_size, neuron=settings.neuron, reset=settings.reset,
                                tau=settings.tau, surrogate=settings.surrogate, seed=settings.seed, **kw)
    if data.temporal:
        raise SnnexitError("--init converted needs a static data set (the QCFS ANN sees single images)")
    # no conversion fix: fine-tuning trains the plain IF network's twin (BPTT is this path's correction)
    run = RunConfig(dataset=settings.dataset, model=settings.model, epochs=settings.ann_epochs, seed=settings.seed,
                    width=settings.width, device=settings.device, cache_dir=settings.cache_dir,
                    progress=settings.progress, conversion_fix="none")
    snn, _ = trained_snn(run, data, log)
    return trainable_from_converted(snn, surrogate=settings.surrogate)


def arm_config(settings: CutoffSettings, T: int, reg_weight: float, epochs: int, lr: float, seed: int) -> DirectConfig:
    converted = settings.init == "converted"
    return DirectConfig(T=T, epochs=epochs, batch_size=settings.batch_size, lr=lr, loss=settings.loss,
                        reg_weight=reg_weight, freeze_bn=converted, seed=seed)


def train_arm(snn: SpikingNetwork, data: DataSplits, config: DirectConfig, settings: CutoffSettings,
              checkpoint: Path | None, log=print) -> SpikingNetwork:
    def epoch_log(epoch, stats):
        log(f"  epoch {epoch}/{config.epochs}: loss {stats['loss']:.4f} (task {stats['task']:.4f}, "
            f"RCS {stats['reg']:.4f}), train acc {stats['train_acc']:.4f}")

    return train_snn(snn, data.train, config, temporal=data.temporal, device=settings.device, checkpoint=checkpoint,
                     progress=settings.progress, log=epoch_log, note=log)


def record_traces(snn: SpikingNetwork, data: DataSplits, T: int, device: str) -> tuple[Trace, Trace]:
    """Validation and test traces; a network without a temperature (directly trained) gets the one
    fitted on the validation mean output ``Y[T] / T`` (converted ones carry their ANN's)."""
    kw = dict(T=T, device=device, temporal=data.temporal)
    val = record_trace(snn, data.val.batches(200), **kw)
    test = record_trace(snn, data.test.batches(200), **kw)
    if "temperature" not in snn.meta:
        attach_temperature(snn, fit_temperature(val.outputs[-1] / T, val.labels))
        for trace in (val, test):  # recorded before the temperature was known: they copy it now
            trace.meta["temperature"] = snn.meta["temperature"]
    return val, test


def evaluate_traces(val: Trace, test: Trace, policies=None) -> dict:
    """Fit each policy (all registered ones by default) on ``val`` (target: no accuracy loss),
    evaluate on ``test``."""
    rows = {}
    for name in policies or POLICIES.names():
        row = fit_and_evaluate(create_policy(name), val, test)
        row.pop("val_size", None)
        rows[name] = row
    return rows


def steps_at_accuracy(trace: Trace, policy_name: str, min_accuracy: float) -> float | None:
    """Fewest mean steps at which ``policy_name``'s exact curve on ``trace`` reaches ``min_accuracy``
    (the threshold is chosen on this trace itself: an optimistic, equal-accuracy comparison)."""
    policy = create_policy(policy_name)
    if policy.needs_fit:
        policy.fit(trace)  # per-step score tables, where the policy has them
    curve = policy.curve(trace)
    need = int(round(min_accuracy * curve.n))
    ok = curve.correct >= need
    return float(curve.mean_steps[ok].min()) if ok.any() else None


def _summary(name: str, a: float, val: Trace, test: Trace, policies: dict) -> dict:
    row = {"arm": name, "reg_weight": a, "T": test.T, "val_size": val.N, "test_size": test.N,
           "fixed_T_acc": float(test.accuracy_per_step()[-1]),
           "acc_per_step": [round(float(v), 4) for v in test.accuracy_per_step()],
           "spikes_per_input": float(test.spikes.sum(2).sum(0).mean()) if test.spikes is not None else None}
    for p in TABLE_POLICIES:
        if p in policies:
            row[f"{p}_acc"] = policies[p]["test_acc"]
            row[f"{p}_mean_steps"] = policies[p]["mean_steps"]
    return row


def cutoff_table(settings: CutoffSettings, out: Path | None = None, log=print) -> dict:
    """Shared training without the regulariser, then one arm per weight in
    ``[0] + table_reg_weights``; see the module docstring."""
    settings.validate()
    started = time.perf_counter()
    data = load_dataset(settings.dataset, settings.seed, root=settings.data_dir, cache_dir=settings.cache_dir,
                        download=settings.download, log=log, progress=settings.progress)
    T = steps_for(settings, data)
    base = initial_network(settings, data, log)
    timings = {}
    if settings.epochs > 0:
        log(f"shared training: {settings.epochs} epochs, T = {T}, no regulariser")
        t0 = time.perf_counter()
        cfg = arm_config(settings, T, 0.0, settings.epochs, settings.lr, settings.seed)
        train_arm(base, data, cfg, settings, out / f"shared-{settings_key(settings)}.pt" if out else None, log)
        timings["shared_train_s"] = time.perf_counter() - t0
    # fine-tuning starts lower than scratch training, unless nothing was trained before
    arm_lr = settings.finetune_lr if (settings.epochs > 0 or settings.init == "converted") else settings.lr
    rows, arms = [], {}
    for a in [0.0, *settings.table_reg_weights]:
        name = "baseline" if a == 0 else f"rcs a={a:g}"
        log(f"arm {name}: {settings.finetune_epochs} epochs")
        snn = copy.deepcopy(base)
        t0 = time.perf_counter()
        cfg = arm_config(settings, T, a, settings.finetune_epochs, arm_lr, settings.seed + 1)
        ckpt = out / f"arm-{a:g}-{settings_key(settings)}.pt" if out else None
        train_arm(snn, data, cfg, settings, ckpt, log)
        timings[f"{name}_train_s"] = time.perf_counter() - t0
        val, test = record_traces(snn, data, T, settings.device)
        if out:
            val.save(out / f"trace_val_a{a:g}.safetensors")
            test.save(out / f"trace_test_a{a:g}.safetensors")
        policies = evaluate_traces(val, test)
        rows.append(_summary(name, a, val, test, policies))
        arms[name] = {"policies": policies, "val": val, "test": test}
    # equal accuracy: the test-curve steps each arm needs to reach the lower fixed-T accuracy of all arms
    common = min(r["fixed_T_acc"] for r in rows)
    for r in rows:
        test = arms[r["arm"]]["test"]
        r["topk_steps_at_common_acc"] = steps_at_accuracy(test, "topk", common)
        r["topk_per_step_steps_at_common_acc"] = steps_at_accuracy(test, "topk_per_step", common)
    result = {
        "settings": asdict(settings), "T": T, "dataset": data.name,
        "data": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "rows": rows, "common_accuracy": common,
        "policies": {name: arm["policies"] for name, arm in arms.items()},
        "timings": timings, "seconds": time.perf_counter() - started,
    }
    if out:
        write_json(out / "table.json", result)
        write_text(out / "table.md", cutoff_report(result))
        for checkpoint in out.glob(f"*-{settings_key(settings)}.pt"):  # done: nothing left to resume
            checkpoint.unlink(missing_ok=True)
    return result


def single_run(settings: CutoffSettings, out: Path, log=print) -> dict:
    settings.validate()
    started = time.perf_counter()
    data = load_dataset(settings.dataset, settings.seed, root=settings.data_dir, cache_dir=settings.cache_dir,
                        download=settings.download, log=log, progress=settings.progress)
    T = steps_for(settings, data)
    snn = initial_network(settings, data, log)
    converted = settings.init == "converted"
    epochs = settings.finetune_epochs if converted else settings.epochs
    lr = settings.finetune_lr if converted else settings.lr
    log(f"training {settings.init} {settings.model} on {settings.dataset}: {epochs} epochs, T = {T}, "
        f"a = {settings.reg_weight:g}")
    train_arm(snn, data, arm_config(settings, T, settings.reg_weight, epochs, lr, settings.seed), settings,
              out / f"train-{settings_key(settings)}.pt", log)
    val, test = record_traces(snn, data, T, settings.device)
    val.save(out / "trace_val.safetensors")
    test.save(out / "trace_test.safetensors")
    policies = evaluate_traces(val, test)
    row = _summary("this run", settings.reg_weight, val, test, policies)
    result = {"settings": asdict(settings), "T": T, "dataset": data.name, "summary": row, "policies": policies,
              "seconds": time.perf_counter() - started}
    write_json(out / "results.json", result)
    write_text(out / "report.md", f"# cutoff-train on {data.name}\n\n{markdown_table([row])}\n")
    (out / f"train-{settings_key(settings)}.pt").unlink(missing_ok=True)  # done: nothing left to resume
    return result
