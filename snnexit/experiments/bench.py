"""Wall-clock time of fixed T against early exit, in the paper's Table 2 format.

The network is a workload's (``--workload``: ``default``, ``vgg16``, ``resnet20``, ``event_cnn``;
:mod:`snnexit.experiments.workloads`), trained once and cached like ``snnexit run``'s, or the one
``--dataset``/``--model`` name; the policy is fitted on the validation trace. Timed with the
time-chunked runtime (``ChunkedEngine``: its first chunk from the policy's exit steps on the
validation trace, the next ones from forecasts of each input's exit whose errors it learned on
that trace, its thread count chosen per batch size and load) and, for comparison, the
step-by-step one (``EarlyExitEngine``), at each thread count of ``--thread-counts``. Each
measurement is the median of interleaved repeats (the engines take turns, so a busy machine
slows all alike), beside the dense floor (the same layers as an ANN) on the same inputs:

* **latency** at batch size 1: seconds per inference over ``--latency-inputs`` test inputs,
  also split into easy inputs (exit in the first half of the run) and hard ones, with the chunked
  engine's plan from forecasts (``early_exit``) and without (``early_exit_static``), and with the
  policy asked once per step instead of once per chunk (``early_exit_per_step_calls``), and told
  each input's offline exit step in advance (``early_exit_known_exits``: one chunk to the exit,
  the best any chunk plan can do);
* **throughput** at each batch size of ``--batch-sizes`` (default ``--batch-size``): inferences
  per second, with compaction and, for comparison, with masking only (finished inputs keep being
  simulated, as when a cutoff is applied after running all T steps);
* the same on a **busy machine** (``--busy``): a competing process spins on one core while
  the engines run (fewer inputs: per-step kernels on an oversubscribed CPU are slow).

Beside the time, each row shows the time-step saving the policy predicts offline, the ratio of
the wall-clock saving to it (1.0: every saved step saves its full time), the steps the chunked
engine computed (a chunk may run past an exit) and the energy per inference (45 nm FP32: the
input layer's MACs plus one accumulate per delivered spike). The exit steps and answers of both
runtimes are checked against the offline policy on the test trace.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from snnexit.data import load_dataset
from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES, check_rule_fits, deployable_policy, load_exit_rule
from snnexit.experiments.bench_timing import (competing_process, floor_runners, make_engines,  # noqa: F401
                                              time_latency, time_throughput)
from snnexit.experiments.workloads import WORKLOADS, workload
from snnexit.report.bench import table2
from snnexit.runs.evaluation import certified_exit
from snnexit.runs.network import trace_snn, trained_snn
from snnexit.runs.settings import RunConfig, check_device, check_range
from snnexit.runtime.chunked import ChunkedEngine
from snnexit.runtime.engine import EarlyExitEngine
from snnexit.runtime.threads import LoadMeter, num_threads
from snnexit.simulate.cost import energy_model


MAX_INPUTS = 2 ** 31 - 1  # inputs and batch sizes: a slice of the test split (more: all of it)
MAX_REPEATS = 1000
MAX_THREADS = 1024


@dataclass
class BenchSettings:
    """What ``snnexit bench`` times (its flags)."""

    workload: str | None = None  # a registered workload (dataset, model, T, training); None: "default"
    dataset: str | None = None  # each None: the workload's
    model: str | None = None
    T: int | None = None  # time steps of the fixed-T baseline
    epochs: int | None = None  # training epochs of the (cached) ANN: the workload's, so its cache is reused
    seed: int = 0
    # exit policy: a registered name (fitted on the validation trace), "certified" (the certified exit
    # of the network, as `snnexit run` makes it) or a policy.json / certified.json file
    policy: str = "dynamic_confidence"
    latency_inputs: int = 200  # test inputs timed at batch size 1
    batch_size: int = 256  # batch size of the throughput run
    batch_sizes: list[int] | None = None  # throughput batch sizes (None: batch_size)
    throughput_inputs: int | None = None  # test inputs of the throughput run (None: the whole test split)
    check_inputs: int | None = None  # test inputs whose runtime decisions are checked (None: the whole test split)
    repeats: int = 5  # interleaved repeats (medians are reported)
    threads: int | None = None  # torch CPU threads (None: torch's choice)
    thread_counts: list[int] | None = None  # one row per thread count (None: threads)
    floor: bool = True  # time the dense floor beside the engines
    busy: bool = True  # also time with a competing process spinning on one core
    busy_inputs: int = 20  # test inputs timed at batch size 1 (and batches of the throughput run) when busy
    energy: str = "fp32"  # energy per operation: fp32, fp16, int8 (45 nm) or MAC_PJ,AC_PJ
    devices: list[str] | None = None  # devices to time (None: cpu, and cuda when available)
    device: str = "cpu"  # the device that traces and fits
    cache_dir: str | None = None
    command: str = ""  # the command line, recorded in the JSON

    def timed_devices(self) -> list[str]:
        return self.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))

    def run_config(self) -> RunConfig:
        """The run settings of the timed network: the workload's, with the flags given on top."""
        w = workload(self.workload or "default")
        given = {k: v for k, v in (("dataset", self.dataset), ("model", self.model), ("T", self.T),
                                   ("epochs", self.epochs)) if v is not None}
        return w.config(seed=self.seed, device=self.device, cache_dir=self.cache_dir, **given)

    def throughput_sizes(self) -> list[int]:
        return list(self.batch_sizes or [self.batch_size])

    def thread_rows(self) -> list[int | None]:
        return list(self.thread_counts or [self.threads])

    def validate(self) -> None:
        """Every setting, before any training or timing (a SnnexitError naming the first bad one)."""
        if self.workload is not None:
            WORKLOADS.get(self.workload)  # an unknown name lists the known ones
        config = self.run_config()
        config.validate()
        if self.policy not in POLICIES and self.policy != CERTIFIED:
            if not Path(self.policy).is_file():
                raise SnnexitError(f"Unknown policy {self.policy!r}. Known: {', '.join(POLICIES.names())}, "
                                   f"{CERTIFIED}, or a policy.json / certified.json file")
            rule, _ = load_exit_rule(self.policy)  # a readable rule of this T, before any training
            check_rule_fits(rule, config.T, None, self.policy)
        if self.policy in POLICIES:
            policy = POLICIES.get(self.policy)
            if not getattr(policy, "online", True):
                raise SnnexitError(f"policy {self.policy!r} has no online rule")
            if getattr(policy, "uses_labels_at_test", False):
                raise SnnexitError(f"policy {self.policy!r} needs labels at test time: it is a bound, not something "
                                   f"to time")
        counts = {"latency_inputs": self.latency_inputs, "batch_size": self.batch_size,
                  "throughput_inputs": self.throughput_inputs, "busy_inputs": self.busy_inputs,
                  "check_inputs": self.check_inputs}
        for key, value in counts.items():
            if value is not None:
                check_range(f"--{key.replace('_', '-')}", value, 1, MAX_INPUTS)
        for value in self.batch_sizes or []:
            check_range("--batch-sizes", value, 1, MAX_INPUTS)
        check_range("--repeats", self.repeats, 1, MAX_REPEATS)
        for value in ([self.threads] if self.threads is not None else []) + list(self.thread_counts or []):
            check_range("--threads", value, 1, MAX_THREADS)
        model = energy_model(self.energy)
        if not (math.isfinite(model.mac_pj) and math.isfinite(model.ac_pj)):
            raise SnnexitError(f"an energy pair is two finite numbers >= 0 (pJ per MAC, pJ per AC), got {self.energy!r}")
        if self.devices is not None and not self.devices:
            raise SnnexitError("devices is empty; give cpu, cuda, cuda:1, ...")
        for device in self.timed_devices():
            check_device(device, "timed device")


CERTIFIED = "certified"  # --policy certified: the network's certified exit


def timed_policy(name: str, val, snn, T: int):
    """The policy ``snnexit bench --policy`` times: a registered one fitted on ``val``, the certified
    exit of ``val`` (``certified``), or the rule in a policy.json / certified.json file."""
    if name in POLICIES:
        return POLICIES.create(name).fit(val)
    if name == CERTIFIED:
        return certified_exit(val).policy
    rule, extra = load_exit_rule(name)
    policy = deployable_policy(rule)
    check_rule_fits(policy, T, snn.meta.get("network"), name, extra)
    return policy


def _check(engine, batches, offline_steps, offline_pred, temporal: bool) -> dict:
    """The runtime's exit steps and answers on ``batches`` (the first test inputs, in order)
    against the offline policy's."""
    got = [engine.run(xb, temporal=temporal) for xb in batches]
    steps = torch.cat([g.exit_steps for g in got])
    pred = torch.cat([g.predictions for g in got])
    n = len(steps)
    return {"exit_steps_equal": int((steps == offline_steps[:n]).sum()), "predictions_equal":
            int((pred == offline_pred[:n]).sum()), "n": n}


def _log_case(log, device: str, threads, busy: bool, lat: dict, thr: list[dict]) -> None:
    where = f"[{device}, {threads or torch.get_num_threads()} threads{', busy' if busy else ''}]"
    sec = lat["seconds_per_inference"]
    log(f"{where} batch 1: fixed T {1e3 * sec['fixed']:.2f} ms (step engine {1e3 * sec['fixed_step']:.2f}), early "
        f"exit {1e3 * sec['early_exit']:.2f} ms (without forecasts {1e3 * sec['early_exit_static']:.2f}, one policy "
        f"call per step {1e3 * sec['early_exit_per_step_calls']:.2f}, step engine "
        f"{1e3 * sec['early_exit_step']:.2f}); wall saving {100 * lat['wall_saving_early_exit']:.1f}% for a step saving "
        f"of {100 * lat['step_saving']:.1f}%")
    for t in thr:
        ips = t["inferences_per_second"]
        log(f"{where} batch {t['batch_size']}: fixed T {ips['fixed']:.1f}/s (step engine {ips['fixed_step']:.1f}), "
            f"early exit {ips['early_exit']:.1f}/s (step engine {ips['early_exit_step']:.1f}); wall saving "
            f"{100 * t['wall_saving_early_exit']:.1f}% for a step saving of {100 * t['step_saving']:.1f}%")


def time_case(args: BenchSettings, T: int, snn, policy, val, hint, data, offline_steps, device: str, threads,
              busy: bool):
    """Latency and throughput at one thread count, quiet or busy: ``(latency, [throughput per batch size])``."""
    temporal = data.temporal
    repeats = args.repeats if not busy else max(1, min(args.repeats, 3))
    n_lat = args.busy_inputs if busy else args.latency_inputs
    sizes = args.throughput_sizes()
    n_thr = max(args.busy_inputs, max(sizes)) if busy else args.throughput_inputs
    floors = floor_runners(snn, T, temporal) if args.floor and not busy else None
    with competing_process(busy), num_threads(threads):
        names = ["fixed", "early_exit", "fixed_step", "early_exit_step"]
        x_lat = data.test.x[:n_lat]
        lat = time_latency(make_engines(snn, policy, T, device, hint,
                                        names + ["early_exit_static", "early_exit_per_step_calls",
                                                 "early_exit_known_exits"], val, threads),
                           x_lat, T, device, repeats, args.energy, temporal, floors, offline_steps[:len(x_lat)])
        lat["agrees_with_offline"] = int((torch.tensor(lat["exit_steps"]) == offline_steps[:len(x_lat)]).sum())
        names = names + (["early_exit_masked"] if not busy else [])
        thr = [time_throughput(make_engines(snn, policy, T, device, hint, names, val, threads), data.test.x[:n_thr], T,
                               size, device, repeats, args.energy, temporal, floors) for size in sizes]
    return lat, thr


def bench(args: "BenchSettings", log=print) -> dict:
    """Time the engines on the workload's network (see the module docstring); the JSON record."""
    args.validate()  # every setting, the devices and the energy model fail before any training
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.timed_devices()
    config = args.run_config()
    data = load_dataset(config.dataset, config.seed)
    snn, calibration = trained_snn(config, data, log)
    val, test = trace_snn(snn, data, config)
    policy = timed_policy(args.policy, val, snn, config.T)
    if not getattr(policy, "online", True):
        raise SnnexitError(f"policy {args.policy!r} has no online rule")
    labels_needed = getattr(policy, "uses_labels_at_test", False)
    if labels_needed:
        raise SnnexitError(f"policy {args.policy!r} needs labels at test time: it is a bound, not something to time")
    offline_steps, offline_pred = policy.exit_steps(test), policy.predict(test)
    hint = policy.exit_steps(val)  # the chunk plan learns where inputs exit from validation, never from test
    setting = f"{config.dataset}, {config.model}, {config.converter}, T={config.T}, {args.policy}"
    load_before = LoadMeter(probe_s=1.0).other_busy()  # is the "quiet" case quiet? (other processes' cores)
    log(f"other processes keep {load_before:.2f} cores busy; load average {os.getloadavg()}")
    rows = []
    for device in devices:
        # equivalence on the real network: each runtime's decisions against the offline policy
        checked = len(data.test.x) if args.check_inputs is None else min(args.check_inputs, len(data.test.x))
        batches = [data.test.x[i:min(i + args.batch_size, checked)] for i in range(0, checked, args.batch_size)]
        agree = {"step": _check(EarlyExitEngine(snn, policy, config.T, device), batches, offline_steps, offline_pred,
                                data.temporal),
                 "chunked": _check(ChunkedEngine(snn, policy, config.T, device, exit_steps=hint, trace=val), batches,
                                   offline_steps, offline_pred, data.temporal)}
        for name, a in agree.items():
            log(f"[{device}] {name} runtime vs offline: {a['exit_steps_equal']}/{a['n']} exit steps and "
                f"{a['predictions_equal']}/{a['n']} answers equal")
        for threads in args.thread_rows():
            row = {"setting": setting, "device": device, "threads": threads or torch.get_num_threads(),
                   "runtime_vs_offline": agree}
            cases = [("", False)] + ([("busy_", True)] if args.busy and device == "cpu" else [])
            for prefix, busy in cases:
                others = LoadMeter(probe_s=0.5)
                others.other_busy()
                lat, thr = time_case(args, config.T, snn, policy, val, hint, data, offline_steps, device, threads,
                                     busy)
                row[f"{prefix}latency"], row[f"{prefix}throughput"] = lat, thr[-1]
                row[f"{prefix}throughputs"] = thr
                row[f"{prefix}other_processes_busy_cores"] = others.other_busy()
                _log_case(log, device, threads, busy, lat, thr)
            rows.append(row)
    acc = (offline_pred == test.labels).double().mean().item()
    return {"benchmark": "bench", "command": args.command,
            "machine": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
                        "cpu_count": os.cpu_count(), "other_processes_busy_cores": load_before,
                        "load_average": list(os.getloadavg())},
            "workload": {"name": args.workload or "default", "dataset": config.dataset, "model": config.model,
                         "T": config.T, "input_shape": list(data.test.x.shape[1:]), "temporal": data.temporal,
                         "ann_test_acc": calibration["test_acc"]},
            "setting": setting, "threshold": policy.fitted_threshold(), "test_acc_early_exit": acc,
            "test_acc_fixed": (test.predictions()[-1] == test.labels).double().mean().item(),
            "offline_mean_steps": offline_steps.double().mean().item(),
            "energy_model": energy_model(args.energy).as_dict(),
            "rows": rows, "table2": table2(rows)}
