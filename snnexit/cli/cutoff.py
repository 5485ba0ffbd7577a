"""``snnexit cutoff-train``: train an SNN directly (BPTT) or fine-tune a converted one, with the
SNNCutoff cutoff regulariser (``--reg-weight``), and evaluate every exit policy on its traces.

Two modes:

* default: one network. Trains it, records validation and test traces (``trace_val`` /
  ``trace_test``, usable by every policy and by ``snnexit`` stages that read traces), fits every
  registered exit policy on validation and evaluates it on test (``results.json``, ``report.md``).
* ``--table``: the with/without-regulariser table. A shared network is trained for ``--epochs``
  without the regulariser (0: none), then one copy per arm trains ``--finetune-epochs`` more,
  with ``a = 0`` and with each ``--reg-weight``; so every arm sees the same data and the same
  number of epochs and only the regulariser differs. Per arm: fixed-T accuracy, Top-K cutoff
  (global and per-step thresholds) and Dynamic Confidence at no accuracy loss (threshold fitted
  on validation, reported on test) and the oracle; ``table.json`` and ``table.md``.

The functions :func:`train_arm`, :func:`evaluate_traces` and :func:`cutoff_table` are the same
steps for Python callers (``benchmarks/regulariser.py``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from snnexit.calibrate import fit_temperature
from snnexit.cli.common import add_device, non_negative_int, positive_int, progress_log
from snnexit.data import DATASETS, DataSplits, load_dataset
from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES, create_policy
from snnexit.io import write_json, write_text
from snnexit.simulate import SpikingNetwork, Trace, record_trace
from snnexit.train.direct import NEURONS, DirectConfig, build_direct_snn, train_snn, trainable_from_converted
from snnexit.train.losses import TASK_LOSSES

DEFAULT_DATASET = "event_mnist" if "event_mnist" in DATASETS else "mnist5k"
TABLE_POLICIES = ("topk", "topk_per_step", "dynamic_confidence", "oracle")


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
    progress: bool = False

    def validate(self) -> None:
        DATASETS.get(self.dataset)
        if self.init not in ("scratch", "converted"):
            raise SnnexitError(f"Unknown init {self.init!r}. Known: converted, scratch")
        if self.neuron not in NEURONS:
            raise SnnexitError(f"Unknown neuron {self.neuron!r}. Known: {', '.join(sorted(NEURONS))}")
        if self.loss not in TASK_LOSSES:
            raise SnnexitError(f"Unknown loss {self.loss!r}. Known: {', '.join(sorted(TASK_LOSSES))}")
        for a in [self.reg_weight, *self.table_reg_weights]:
            if not a >= 0:
                raise SnnexitError(f"regulariser weights must be >= 0, got {a}")


def settings_key(settings: CutoffSettings) -> str:
    """Checkpoint names carry a hash of every setting, so a rerun with other settings in the same
    folder starts afresh instead of resuming someone else's training."""
    blob = json.dumps({k: v for k, v in asdict(settings).items() if k != "progress"}, sort_keys=True)
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
    from snnexit.convert import convert
    from snnexit.pipeline import RunConfig, calibrate, trained_ann

    run = RunConfig(dataset=settings.dataset, model=settings.model, epochs=settings.ann_epochs, seed=settings.seed,
                    width=settings.width, device=settings.device, cache_dir=settings.cache_dir,
                    progress=settings.progress)
    ann = trained_ann(run, data, log)
    snn = convert(ann, "qcfs")
    snn.meta["temperature"] = calibrate(ann, data, settings.device)["temperature"]
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
    """Validation and test traces; the temperature (for Dynamic Confidence) is fitted on the
    validation mean output ``Y[T] / T`` unless the network already carries one (converted)."""
    kw = dict(T=T, device=device, temporal=data.temporal)
    val = record_trace(snn, data.val.batches(200), **kw)
    test = record_trace(snn, data.test.batches(200), **kw)
    if "temperature" not in snn.meta:
        temperature = fit_temperature(val.outputs[-1] / T, val.labels)
        for trace in (val, test):
            trace.meta["temperature"] = temperature
    return val, test


def evaluate_traces(val: Trace, test: Trace, policies=None) -> dict:
    """Fit each policy (all registered ones by default) on ``val`` (target: no accuracy loss),
    evaluate on ``test``."""
    results = {}
    for name in policies or POLICIES.names():
        policy = create_policy(name)
        if policy.needs_fit:
            policy.fit(val)
        res = policy.evaluate(test)
        if getattr(policy, "curve_", None) is not None and getattr(policy, "point_", None) is not None:
            res["val_acc"] = float(policy.curve_.accuracy[policy.point_])
            res["val_mean_steps"] = float(policy.curve_.mean_steps[policy.point_])
        results[name] = res
    return results


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


def markdown_table(rows: list[dict]) -> str:
    head = ("| arm | a | fixed-T acc | Top-K acc | Top-K steps | Top-K/step acc | Top-K/step steps "
            "| DC acc | DC steps | oracle acc | oracle steps |")
    lines = [head, "|" + "---|" * 11]
    f = lambda v, p=4: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['arm']} | {r['reg_weight']:g} | {f(r['fixed_T_acc'])} | {f(r.get('topk_acc'))} | "
                     f"{f(r.get('topk_mean_steps'), 2)} | {f(r.get('topk_per_step_acc'))} | "
                     f"{f(r.get('topk_per_step_mean_steps'), 2)} | {f(r.get('dynamic_confidence_acc'))} | "
                     f"{f(r.get('dynamic_confidence_mean_steps'), 2)} | {f(r.get('oracle_acc'))} | "
                     f"{f(r.get('oracle_mean_steps'), 2)} |")
    return "\n".join(lines)


def cutoff_table(settings: CutoffSettings, out: Path | None = None, log=print) -> dict:
    """Shared training without the regulariser, then one arm per weight in
    ``[0] + table_reg_weights``; see the module docstring."""
    settings.validate()
    started = time.perf_counter()
    data = load_dataset(settings.dataset, settings.seed, root=settings.data_dir, cache_dir=settings.cache_dir)
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
        write_text(out / "table.md", _table_report(result))
        for checkpoint in out.glob(f"*-{settings_key(settings)}.pt"):  # done: nothing left to resume
            checkpoint.unlink(missing_ok=True)
    return result


def _table_report(result: dict) -> str:
    s = result["settings"]
    return (f"# Cutoff regulariser on {result['dataset']}\n\n"
            f"{s['model']} (width {s['width']}), {s['neuron']} neurons ({s['reset']} reset), init {s['init']}, "
            f"{s['loss']} loss, T = {result['T']}; shared training {s['epochs']} epochs without the regulariser, "
            f"then {s['finetune_epochs']} epochs per arm. Policies fitted on validation "
            f"({result['data']['val']} inputs) for no accuracy loss, reported on test ({result['data']['test']} "
            f"inputs). Steps are mean steps per input.\n\n{markdown_table(result['rows'])}\n\n"
            f"Top-K mean steps on the test curve at the common accuracy {result['common_accuracy']:.4f} "
            f"(threshold chosen on test): "
            + ", ".join(f"{r['arm']}: {r['topk_steps_at_common_acc']}" for r in result["rows"]) + "\n")


def single_run(settings: CutoffSettings, out: Path, log=print) -> dict:
    settings.validate()
    started = time.perf_counter()
    data = load_dataset(settings.dataset, settings.seed, root=settings.data_dir, cache_dir=settings.cache_dir)
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


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def register(sub) -> None:
    d = CutoffSettings()
    p = sub.add_parser("cutoff-train", help="direct SNN training / converted fine-tuning with the cutoff regulariser",
                       description=__doc__.split("\n\n")[0] + " Event data (event_mnist, cifar10_dvs with "
                       "--data-dir, ...) is trained and run one frame per step; --init converted needs static "
                       "images (for converting on event frames use `snnexit run`).")
    p.add_argument("--dataset", default=d.dataset, help=f"data set (default {d.dataset})")
    p.add_argument("--model", default=d.model)
    p.add_argument("--width", type=positive_int, default=d.width)
    p.add_argument("--init", choices=("scratch", "converted"), default=d.init,
                   help="train from scratch (direct) or fine-tune a QCFS-converted SNN")
    p.add_argument("--neuron", default=d.neuron, help="if or lif (default lif)")
    p.add_argument("--reset", default=d.reset, help="soft or hard (default soft)")
    p.add_argument("--tau", type=float, default=d.tau, help="LIF time constant in steps")
    p.add_argument("--surrogate", default=d.surrogate, help="triangle, sigmoid or atan")
    p.add_argument("--T", type=positive_int, default=None, help="steps (default: all frames; 8 for static data)")
    p.add_argument("--epochs", type=non_negative_int, default=d.epochs,
                   help="training epochs (--table: shared epochs without the regulariser)")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=d.finetune_epochs,
                   help="--table: epochs per arm; --init converted: fine-tuning epochs")
    p.add_argument("--loss", default=d.loss, help="tet or mean (default tet)")
    p.add_argument("--reg-weight", type=_float_list, default=None,
                   help="cutoff regulariser weight a (default 0; --table: comma-separated weights, default 0.1)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--finetune-lr", type=float, default=d.finetune_lr)
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--ann-epochs", type=non_negative_int, default=d.ann_epochs, help="--init converted: ANN epochs")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--table", action="store_true", help="the with/without-regulariser table")
    p.add_argument("--out", default="runs/cutoff", help="output folder (default runs/cutoff)")
    p.add_argument("--cache-dir", default=None, help="where trained ANNs and event frames are cached")
    p.add_argument("--data-dir", default=None, help="local folder of a real data set (cifar10_dvs, dvs_gesture, "
                   "ncaltech101, cifar10, ...)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    add_device(p)
    p.set_defaults(func=main)


def main(args) -> int:
    from snnexit.pipeline import check_writable

    weights = args.reg_weight
    if weights is not None and not args.table and len(weights) != 1:
        raise SnnexitError("--reg-weight takes one number without --table")
    settings = CutoffSettings(
        dataset=args.dataset, model=args.model, width=args.width, init=args.init, neuron=args.neuron,
        reset=args.reset, tau=args.tau, surrogate=args.surrogate, T=args.T, epochs=args.epochs,
        finetune_epochs=args.finetune_epochs, loss=args.loss, lr=args.lr, finetune_lr=args.finetune_lr,
        batch_size=args.batch_size, ann_epochs=args.ann_epochs, seed=args.seed, device=args.device,
        cache_dir=args.cache_dir, data_dir=args.data_dir,
        progress=args.progress and sys.stderr.isatty() and not getattr(args, "quiet", False))
    if args.table:
        settings = replace(settings, table_reg_weights=[w for w in (weights or [0.1]) if w > 0] or [0.1])
    else:
        settings = replace(settings, reg_weight=(weights or [0.0])[0])
    settings.validate()
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise SnnexitError(f"device {settings.device!r} requested but CUDA is not available")
    out = check_writable(args.out)
    log = progress_log(args)
    if args.table:
        result = cutoff_table(settings, out, log)
        print(markdown_table(result["rows"]))
        print(f"\nWrote {out}/table.json and table.md.")
    else:
        result = single_run(settings, out, log)
        print(markdown_table([result["summary"]]))
        print(f"\nWrote {out}/results.json, report.md and the traces.")
    return 0
