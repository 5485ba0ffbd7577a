"""The timers of ``snnexit bench``: engines and the dense floor, interleaved, at batch 1 and in batches.

Each measurement is the median of interleaved repeats: the engines take turns (in a rotating
order), so a machine that slows down slows all alike. Beside the engines, the dense floor (the
same layers as an ANN, :mod:`snnexit.experiments.floor`) is timed on the same inputs, so every
figure says how far it is from the limit of dense arithmetic.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time

import torch

from snnexit.exit import FixedT
from snnexit.exit.base import ExitPolicy, deployable_policy
from snnexit.experiments.floor import DenseFloor
from snnexit.runtime.chunked import ChunkedEngine
from snnexit.runtime.engine import EarlyExitEngine
from snnexit.simulate.cost import Cost


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
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


def make_engines(snn, policy, T: int, device: str, hint: torch.Tensor, names: list[str], val=None,
                 threads: int | None = None) -> dict:
    """The engines a row times: fixed T and early exit, chunked and step by step. The chunked
    engines plan from the validation trace ``val`` (exit steps and forecast errors; ``early_exit_static``
    from its exit steps alone, without forecasts) and choose their thread count, never more than ``threads``."""
    def chunked(policy_, **kw):
        return ChunkedEngine(snn, policy_, T, device, max_threads=threads, **kw)

    makers = {
        "fixed": lambda: chunked(FixedT(), exit_steps=torch.full((1,), T)),
        "early_exit": lambda: chunked(policy, exit_steps=hint, trace=val),
        "early_exit_static": lambda: chunked(policy, exit_steps=hint, forecast=False),  # no forecasts: what they bring
        # one policy call per step instead of one per chunk: what deciding a chunk at once brings
        "early_exit_per_step_calls": lambda: chunked(PerStepCalls(deployable_policy(policy)), exit_steps=hint, trace=val),
        "fixed_step": lambda: EarlyExitEngine(snn, FixedT(), T, device),
        "early_exit_step": lambda: EarlyExitEngine(snn, policy, T, device),
        "early_exit_masked": lambda: EarlyExitEngine(snn, policy, T, device, compact=False),
        # each input's exit known in advance: one chunk to it (batch 1 only; the bound of any plan)
        "early_exit_known_exits": lambda: KnownExitPlan(snn, policy, T, device, threads),
    }
    return {name: makers[name]() for name in names}


class PerStepCalls:
    """``policy`` asked one step per call (``ExitPolicy``'s own ``decide_steps``) even where its
    score could decide a whole chunk in one: the same decisions, timed beside the real thing."""

    def __init__(self, policy):
        self._policy = policy

    def __getattr__(self, name):
        return getattr(self._policy, name)

    def decide_steps(self, accumulated, t_first, meta, labels=None):
        return ExitPolicy.decide_steps(self, accumulated, t_first, meta, labels)


class KnownExitPlan:
    """The best any chunk plan can do at batch 1: the chunked engine told each input's exit step
    in advance (the policy's offline decision) runs one chunk to it and nothing past it. The
    decisions are still the policy's own, taken after each step. Timed beside early exit, it
    splits what the plan loses (steps computed past the exit, chunks beyond one) from what any
    chunk costs whatever its length (the per-chunk and per-run overheads fixed T pays once)."""

    needs_exit_step = True

    def __init__(self, snn, policy, T: int, device: str, threads: int | None = None):
        self._make = lambda lengths: ChunkedEngine(snn, policy, T, device, chunks=lengths, max_threads=threads)
        self.T = T
        self._engines: dict[int, ChunkedEngine] = {}  # exit step -> the engine with that one-chunk plan

    def run(self, x: torch.Tensor, temporal: bool = False, exit_step: int | None = None):
        e = min(max(int(exit_step), 1), self.T)
        if e not in self._engines:
            self._engines[e] = self._make([e] + ([self.T - e] if e < self.T else []))
        return self._engines[e].run(x, temporal=temporal)


class FloorRunner:
    """The dense floor as an engine-like object: ``run(x)`` runs the twin for T steps (``mode``:
    ``steps`` or ``chunked``) on ``x``."""

    def __init__(self, floor: DenseFloor, mode: str):
        self.floor, self.mode = floor, mode
        self._k: dict[int, int] = {}  # batch size -> chunk length

    def run(self, x: torch.Tensor, temporal: bool = False):
        if self.mode == "steps":
            return self.floor.steps(x)
        if x.shape[0] not in self._k:
            self._k[x.shape[0]] = self.floor.chunk(x)
        return self.floor.chunked(x, self._k[x.shape[0]])


def floor_runners(snn, T: int, temporal: bool) -> dict:
    floor = DenseFloor(snn, T, temporal, bool(getattr(snn, "_channels_last", False)))
    return {f"floor_{mode}": FloorRunner(floor, mode) for mode in ("steps", "chunked")}


def time_latency(engines: dict, x, T: int, device: str, repeats: int, energy_model="fp32", temporal=False,
                 floors: dict | None = None, exits: torch.Tensor | None = None, per_input: bool = False) -> dict:
    """Seconds per inference at batch size 1 for every engine (interleaved, rotating order), and
    the dense floor's; per input too, so easy and hard inputs can be told apart (with ``per_input``,
    each input's median is in the record). ``exits``: the offline exit step of each input, for a
    runner told them in advance (:class:`KnownExitPlan`)."""
    x = x.to(device)
    runners = {**engines, **(floors or {})}
    told = {name for name, runner in runners.items() if getattr(runner, "needs_exit_step", False)}
    if told and (exits is None or len(exits) != len(x)):
        raise ValueError(f"{', '.join(sorted(told))} needs the offline exit step of each of the {len(x)} inputs")

    def run(name: str, i: int):
        extra = {"exit_step": int(exits[i])} if name in told else {}
        return runners[name].run(x[i:i + 1], temporal=temporal, **extra)

    steps = torch.zeros(len(x), dtype=torch.long)
    computed = torch.zeros(len(x), dtype=torch.long)
    energy, threads = {}, {}
    for name in runners:  # warm-up (fan-out, chunk plans, thread choices)
        run(name, 0)
    first_with_exit: dict[int, int] = {}  # exit step -> the first input that exits there
    for i, e in enumerate(exits.tolist() if told else []):
        first_with_exit.setdefault(int(e), i)
    for name in told:  # one engine per exit step: each built and calibrated before the timing starts
        for i in first_with_exit.values():
            run(name, i)
    per_input_runs = {name: [[] for _ in range(len(x))] for name in runners}
    totals = {name: [] for name in runners}
    names = list(runners)
    for r in range(repeats):
        spent = {name: 0.0 for name in runners}
        for i in range(len(x)):
            shift = (i + r) % len(names)
            for name in names[shift:] + names[:shift]:
                _sync(device)
                started = time.perf_counter()
                result = run(name, i)
                _sync(device)
                took = time.perf_counter() - started
                spent[name] += took
                per_input_runs[name][i].append(took)
                if r == 0 and name in engines:
                    energy.setdefault(name, []).append(result.cost)
                    threads[name] = getattr(result, "threads", None) or torch.get_num_threads()
                if r == 0 and name == "early_exit":
                    steps[i] = result.exit_steps[0]
                    computed[i] = result.steps_computed[0]
        for name in runners:
            totals[name].append(spent[name] / len(x))
    out = _summary(totals, steps, T, len(x))
    out["mean_steps_computed"] = computed.double().mean().item()
    out["exit_steps"] = steps.tolist()
    out["energy"] = {name: _energy(costs, energy_model) for name, costs in energy.items()}
    out["threads"] = threads
    out["forecasts_pay"] = forecast_verdicts(engines)
    out["by_difficulty"] = by_difficulty(per_input_runs, steps, T)
    if per_input:
        out["per_input_seconds"] = {name: [statistics.median(v) for v in runs] for name, runs in per_input_runs.items()}
    return out


def by_difficulty(per_input: dict, steps: torch.Tensor, T: int) -> dict:
    """Mean seconds per input of every engine on easy inputs (exit in the first half of the run)
    and hard ones (the second half, T included): early exit must not lose to fixed T on either."""
    med = {name: torch.tensor([statistics.median(v) for v in runs]) for name, runs in per_input.items()}
    out = {}
    for group, mask in (("easy", steps <= T // 2), ("hard", steps > T // 2)):
        if not bool(mask.any()):
            continue
        seconds = {name: float(v[mask].mean()) for name, v in med.items()}
        out[group] = {"inputs": int(mask.sum()), "mean_steps": float(steps[mask].double().mean()),
                      "seconds_per_inference": seconds,
                      "early_exit_over_fixed": seconds["early_exit"] / seconds["fixed"] if "early_exit" in seconds
                      else None}
    return out


def time_throughput(engines: dict, x, T: int, batch_size: int, device: str, repeats: int,
                    energy_model="fp32", temporal=False, floors: dict | None = None) -> dict:
    """Inferences per second at ``batch_size`` for every engine (interleaved, rotating order), and
    the dense floor's."""
    x = x.to(device)
    runners = {**engines, **(floors or {})}
    batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    first = {name: [runner.run(b, temporal=temporal) for b in batches] for name, runner in runners.items()}  # warm-up
    steps = torch.cat([r.exit_steps for r in first["early_exit"]])
    computed = torch.cat([r.steps_computed for r in first["early_exit"]])
    totals = {name: [] for name in runners}
    names = list(runners)
    for r in range(repeats):
        spent = {name: 0.0 for name in runners}
        for b in batches:
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                _sync(device)
                started = time.perf_counter()
                runners[name].run(b, temporal=temporal)
                _sync(device)
                spent[name] += time.perf_counter() - started
        for name in runners:
            totals[name].append(spent[name] / len(x))
    out = _summary(totals, steps, T, len(x))
    out["batch_size"] = batch_size
    out["inferences_per_second"] = {name: 1.0 / s for name, s in out["seconds_per_inference"].items()}
    out["mean_steps_computed"] = computed.double().mean().item()
    out["schedule"] = list(first["early_exit"][0].schedule)
    out["threads"] = {name: getattr(first[name][0], "threads", None) or torch.get_num_threads() for name in engines}
    out["energy"] = {name: _energy([r.cost for r in first[name]], energy_model) for name in engines}
    out["forecasts_pay"] = forecast_verdicts(engines)
    return out


def forecast_verdicts(engines: dict) -> dict:
    """For each engine that left exit forecasts to a replay of its trace, the replay's verdict for
    each thread count and batch size it ran (``ChunkedEngine.forecasts_pay``)."""
    return {name: [{"threads": th, "batch_size": n, "forecasts": pay} for (th, n), pay in sorted(e.forecasts_pay.items())]
            for name, e in engines.items() if getattr(e, "forecasts_pay", None)}


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
        if name != "fixed" and not name.startswith("floor"):
            saving = 1.0 - med[name] / med["fixed"]
            out[f"wall_saving_{name}"] = saving
            out[f"wall_over_step_saving_{name}"] = saving / step_saving if step_saving > 0 else None
    if "floor_steps" in med:  # how far each fixed-T engine is from the dense arithmetic it cannot avoid
        out["over_floor"] = {"fixed": med["fixed"] / med["floor_chunked"],
                             "fixed_step": med["fixed_step"] / med["floor_steps"]}
    return out
