"""Wall-clock time of fixed T against early exit, in the paper's Table 2 format.

The network is the pipeline's (trained once and cached, like ``snnexit run``); the policy is
fitted on the validation trace. Timed with the time-chunked runtime (``ChunkedEngine``: its
chunk plan from the policy's exit steps on the validation trace, its thread count chosen per
batch size and load) and, for comparison, the step-by-step one (``EarlyExitEngine``, torch's
thread setting). Each measurement is the median of interleaved repeats (the engines take turns,
so a busy machine slows all alike):

* **latency** at batch size 1: seconds per inference over ``--latency-inputs`` test inputs;
* **throughput** at batch size ``--batch-size``: inferences per second over the test split,
  with compaction and, for comparison, with masking only (finished inputs keep being
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

import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from snnexit.data import load_dataset
from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES, FixedT, check_rule_fits, deployable_policy, load_exit_rule
from snnexit.report.bench import table2
from snnexit.runs.evaluation import certified_exit
from snnexit.runs.network import trace_snn, trained_snn
from snnexit.runs.settings import RunConfig, check_device, check_range
from snnexit.runtime.chunked import ChunkedEngine
from snnexit.simulate.cost import Cost, energy_model
from snnexit.runtime.engine import EarlyExitEngine
from snnexit.runtime.threads import LoadMeter


MAX_INPUTS = 2 ** 31 - 1  # inputs and batch sizes: a slice of the test split (more: all of it)
MAX_REPEATS = 1000
MAX_THREADS = 1024


@dataclass
class BenchSettings:
    """What ``snnexit bench`` times (its flags)."""

    dataset: str = "mnist5k"
    model: str = "vgg_small"
    T: int = 32  # time steps of the fixed-T baseline
    epochs: int = RunConfig().epochs  # training epochs of the (cached) ANN: the same as `snnexit run`, so its cache is reused
    seed: int = 0
    # exit policy: a registered name (fitted on the validation trace), "certified" (the certified exit
    # of the network, as `snnexit run` makes it) or a policy.json / certified.json file
    policy: str = "dynamic_confidence"
    latency_inputs: int = 200  # test inputs timed at batch size 1
    batch_size: int = 256  # batch size of the throughput run
    throughput_inputs: int | None = None  # test inputs of the throughput run (None: the whole test split)
    repeats: int = 5  # interleaved repeats (medians are reported)
    threads: int | None = None  # torch CPU threads of the step engine (None: torch's choice)
    busy: bool = True  # also time with a competing process spinning on one core
    busy_inputs: int = 20  # test inputs timed at batch size 1 (and batches of the throughput run) when busy
    energy: str = "fp32"  # energy per operation: fp32, fp16, int8 (45 nm) or MAC_PJ,AC_PJ
    devices: list[str] | None = None  # devices to time (None: cpu, and cuda when available)
    device: str = "cpu"  # the device that traces and fits
    cache_dir: str | None = None
    command: str = ""  # the command line, recorded in the JSON

    def timed_devices(self) -> list[str]:
        return self.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))

    def validate(self) -> None:
        """Every setting, before any training or timing (a SnnexitError naming the first bad one)."""
        config = RunConfig(dataset=self.dataset, model=self.model, T=self.T, epochs=self.epochs, seed=self.seed,
                           device=self.device, cache_dir=self.cache_dir, progress=False)
        config.validate()
        if self.policy not in POLICIES and self.policy != CERTIFIED:
            if not Path(self.policy).is_file():
                raise SnnexitError(f"Unknown policy {self.policy!r}. Known: {', '.join(POLICIES.names())}, "
                                   f"{CERTIFIED}, or a policy.json / certified.json file")
            rule, _ = load_exit_rule(self.policy)  # a readable rule of this T, before any training
            check_rule_fits(rule, self.T, None, self.policy)
        if self.policy in POLICIES:
            policy = POLICIES.get(self.policy)
            if not getattr(policy, "online", True):
                raise SnnexitError(f"policy {self.policy!r} has no online rule")
            if getattr(policy, "uses_labels_at_test", False):
                raise SnnexitError(f"policy {self.policy!r} needs labels at test time: it is a bound, not something "
                                   f"to time")
        counts = {"latency_inputs": self.latency_inputs, "batch_size": self.batch_size,
                  "throughput_inputs": self.throughput_inputs, "busy_inputs": self.busy_inputs}
        for key, value in counts.items():
            if value is not None:
                check_range(f"--{key.replace('_', '-')}", value, 1, MAX_INPUTS)
        check_range("--repeats", self.repeats, 1, MAX_REPEATS)
        if self.threads is not None:
            check_range("--threads", self.threads, 1, MAX_THREADS)
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


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def competing_process(active: bool = True):
    """A process that keeps one core busy (a Python spin loop) for the duration of the block."""
    if not active:
        yield None
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        yield proc
    finally:
        proc.kill()
        proc.wait()


def make_engines(snn, policy, T: int, device: str, hint: torch.Tensor, names: list[str]) -> dict:
    """The engines a row times: fixed T and early exit, chunked and step by step."""
    makers = {
        "fixed": lambda: ChunkedEngine(snn, FixedT(), T, device, exit_steps=torch.full((1,), T)),
        "early_exit": lambda: ChunkedEngine(snn, policy, T, device, exit_steps=hint),
        "fixed_step": lambda: EarlyExitEngine(snn, FixedT(), T, device),
        "early_exit_step": lambda: EarlyExitEngine(snn, policy, T, device),
        "early_exit_masked": lambda: EarlyExitEngine(snn, policy, T, device, compact=False),
    }
    return {name: makers[name]() for name in names}


def time_latency(engines: dict, x, T: int, device: str, repeats: int, energy_model="fp32") -> dict:
    """Seconds per inference at batch size 1 for every engine (interleaved, rotating order)."""
    x = x.to(device)
    steps = torch.zeros(len(x), dtype=torch.long)
    computed = torch.zeros(len(x), dtype=torch.long)
    energy, threads = {}, {}
    for name, engine in engines.items():  # warm-up (fan-out, chunk plans, thread probes)
        engine.run(x[:1])
    totals = {name: [] for name in engines}
    names = list(engines)
    for r in range(repeats):
        spent = {name: 0.0 for name in engines}
        for i in range(len(x)):
            shift = (i + r) % len(names)
            for name in names[shift:] + names[:shift]:
                _sync(device)
                started = time.perf_counter()
                result = engines[name].run(x[i:i + 1])
                _sync(device)
                spent[name] += time.perf_counter() - started
                if r == 0:
                    energy.setdefault(name, []).append(result.cost)
                    threads[name] = getattr(result, "threads", None) or torch.get_num_threads()
                if name == "early_exit":
                    steps[i] = result.exit_steps[0]
                    computed[i] = result.steps_computed[0]
        for name in engines:
            totals[name].append(spent[name] / len(x))
    out = _summary(totals, steps, T, len(x))
    out["mean_steps_computed"] = computed.double().mean().item()
    out["exit_steps"] = steps.tolist()
    out["energy"] = {name: _energy(costs, energy_model) for name, costs in energy.items()}
    out["threads"] = threads
    return out


def time_throughput(engines: dict, x, T: int, batch_size: int, device: str, repeats: int,
                    energy_model="fp32") -> dict:
    """Inferences per second at ``batch_size`` for every engine (interleaved, rotating order)."""
    x = x.to(device)
    batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    first = {name: [engine.run(b) for b in batches] for name, engine in engines.items()}  # warm-up
    steps = torch.cat([r.exit_steps for r in first["early_exit"]])
    computed = torch.cat([r.steps_computed for r in first["early_exit"]])
    totals = {name: [] for name in engines}
    names = list(engines)
    for r in range(repeats):
        spent = {name: 0.0 for name in engines}
        for b in batches:
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                _sync(device)
                started = time.perf_counter()
                engines[name].run(b)
                _sync(device)
                spent[name] += time.perf_counter() - started
        for name in engines:
            totals[name].append(spent[name] / len(x))
    out = _summary(totals, steps, T, len(x))
    out["batch_size"] = batch_size
    out["inferences_per_second"] = {name: 1.0 / s for name, s in out["seconds_per_inference"].items()}
    out["mean_steps_computed"] = computed.double().mean().item()
    out["schedule"] = list(first["early_exit"][0].schedule)
    out["threads"] = {name: getattr(first[name][0], "threads", None) or torch.get_num_threads() for name in engines}
    out["energy"] = {name: _energy([r.cost for r in results], energy_model) for name, results in first.items()}
    return out


def _energy(costs: list, model="fp32") -> dict | None:
    """Energy per inference (pJ, mean over the inputs) of a list of per-run costs."""
    if not costs or costs[0].input_macs is None or costs[0].fan_out is None:
        return None
    merged = Cost(torch.cat([c.steps for c in costs]), torch.cat([c.spikes for c in costs]),
                  costs[0].neurons_per_layer, costs[0].fan_out, costs[0].input_macs, model)
    s = merged.energy_summary()
    return {k: s[k] for k in ("energy_pj_per_inference", "energy_mac_pj_per_inference", "energy_ac_pj_per_inference",
                              "energy_model")}


def _summary(totals: dict, steps: torch.Tensor, T: int, n: int) -> dict:
    med = {name: statistics.median(v) for name, v in totals.items()}
    step_saving = 1.0 - steps.double().mean().item() / T
    out = {"inputs": n, "repeats": len(next(iter(totals.values()))), "mean_steps": steps.double().mean().item(),
           "step_saving": step_saving, "seconds_per_inference": med, "all_seconds_per_inference": totals}
    for name in med:
        if name != "fixed":
            saving = 1.0 - med[name] / med["fixed"]
            out[f"wall_saving_{name}"] = saving
            out[f"wall_over_step_saving_{name}"] = saving / step_saving if step_saving > 0 else None
    return out


def _check(engine, batches, offline_steps, offline_pred) -> dict:
    got = [engine.run(xb) for xb in batches]
    steps = torch.cat([g.exit_steps for g in got])
    pred = torch.cat([g.predictions for g in got])
    return {"exit_steps_equal": int((steps == offline_steps).sum()), "predictions_equal":
            int((pred == offline_pred).sum()), "n": len(steps)}


def bench(args: "BenchSettings", log=print) -> dict:
    """Time the engines on the pipeline's network (see the module docstring); the JSON record."""
    args.validate()  # every setting, the devices and the energy model fail before any training
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.timed_devices()
    config = RunConfig(dataset=args.dataset, model=args.model, T=args.T, epochs=args.epochs, seed=args.seed,
                       device=args.device, cache_dir=args.cache_dir, progress=False)
    data = load_dataset(config.dataset, config.seed)
    snn, _ = trained_snn(config, data, log)
    val, test = trace_snn(snn, data, config)
    policy = timed_policy(args.policy, val, snn, args.T)
    if not getattr(policy, "online", True):
        raise SnnexitError(f"policy {args.policy!r} has no online rule")
    labels_needed = getattr(policy, "uses_labels_at_test", False)
    if labels_needed:
        raise SnnexitError(f"policy {args.policy!r} needs labels at test time: it is a bound, not something to time")
    offline_steps, offline_pred = policy.exit_steps(test), policy.predict(test)
    hint = policy.exit_steps(val)  # the chunk plan learns where inputs exit from validation, never from test
    setting = f"{config.dataset}, {config.model}, {config.converter}, T={args.T}, {args.policy}"
    load_before = LoadMeter(probe_s=1.0).other_busy()  # is the "quiet" case quiet? (other processes' cores)
    log(f"other processes keep {load_before:.2f} cores busy")
    rows = []
    for device in devices:
        # equivalence on the real network: each runtime's decisions against the offline policy
        batches = [xb for xb, _ in data.test.batches(args.batch_size)]
        agree = {"step": _check(EarlyExitEngine(snn, policy, args.T, device), batches, offline_steps, offline_pred),
                 "chunked": _check(ChunkedEngine(snn, policy, args.T, device, exit_steps=hint), batches,
                                   offline_steps, offline_pred)}
        for name, a in agree.items():
            log(f"[{device}] {name} runtime vs offline: {a['exit_steps_equal']}/{a['n']} exit steps and "
                f"{a['predictions_equal']}/{a['n']} answers equal")
        row = {"setting": setting, "device": device, "runtime_vs_offline": agree}
        cases = [("", data.test.x[:args.latency_inputs], data.test.x[:args.throughput_inputs], False)]
        if args.busy and device == "cpu":
            n_busy = args.busy_inputs
            cases.append(("busy_", data.test.x[:n_busy], data.test.x[:max(n_busy, args.batch_size)], True))
        for prefix, x_lat, x_thr, busy in cases:
            with competing_process(busy):
                names = ["fixed", "early_exit", "fixed_step", "early_exit_step"]
                lat = time_latency(make_engines(snn, policy, args.T, device, hint, names), x_lat, args.T, device,
                                   args.repeats if not busy else max(1, min(args.repeats, 3)), args.energy)
                lat["agrees_with_offline"] = int((torch.tensor(lat["exit_steps"]) == offline_steps[:len(x_lat)]).sum())
                names = names + (["early_exit_masked"] if not busy else [])
                thr = time_throughput(make_engines(snn, policy, args.T, device, hint, names), x_thr, args.T,
                                      args.batch_size, device, args.repeats if not busy else max(1, min(args.repeats, 3)),
                                      args.energy)
            row[f"{prefix}latency"], row[f"{prefix}throughput"] = lat, thr
            sec = lat["seconds_per_inference"]
            log(f"[{device}{', busy' if busy else ''}] batch 1: fixed T {1e3 * sec['fixed']:.2f} ms "
                f"(step engine {1e3 * sec['fixed_step']:.2f}), early exit {1e3 * sec['early_exit']:.2f} ms "
                f"(step engine {1e3 * sec['early_exit_step']:.2f}); wall saving {100 * lat['wall_saving_early_exit']:.1f}% "
                f"for a step saving of {100 * lat['step_saving']:.1f}%")
            ips = thr["inferences_per_second"]
            log(f"[{device}{', busy' if busy else ''}] batch {args.batch_size}: fixed T {ips['fixed']:.0f}/s "
                f"(step engine {ips['fixed_step']:.0f}), early exit {ips['early_exit']:.0f}/s (step engine "
                f"{ips['early_exit_step']:.0f}); wall saving {100 * thr['wall_saving_early_exit']:.1f}% for a step "
                f"saving of {100 * thr['step_saving']:.1f}%")
        rows.append(row)
    acc = (offline_pred == test.labels).double().mean().item()
    return {"benchmark": "bench", "command": args.command,
            "machine": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
                        "cpu_count": os.cpu_count(), "other_processes_busy_cores": load_before},
            "setting": setting, "threshold": policy.fitted_threshold(), "test_acc_early_exit": acc,
            "test_acc_fixed": (test.predictions()[-1] == test.labels).double().mean().item(),
            "offline_mean_steps": offline_steps.double().mean().item(),
            "energy_model": energy_model(args.energy).as_dict(),
            "rows": rows, "table2": table2(rows)}
