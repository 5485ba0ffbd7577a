"""What a slowdown budget costs early exit at batch 1: one workload, several budgets, one run.

At batch 1 the chunked engine splits a run into chunks where inputs tend to stop; an input that
does not stop pays every chunk's fixed cost and can take longer than under fixed T.
``ChunkedEngine(max_slowdown=b)`` plans a run in which no input stops within ``1 + b`` of fixed
T's time. This times, on the same inputs one at a time (one thread, the engines taking turns,
medians of ``--repeats``): fixed T, early exit without a budget (with exit forecasts and
without), and early exit with each budget of ``--budgets`` (without forecasts, the engine's
default with a budget: a forecast costs time the budget's chunk times leave out). Per engine it
records the wall-clock saving over the step saving (the issue's target: >= 0.9), the time over
fixed T on easy inputs (exit in the first half of the run) and hard ones, the slowest input's
time over its own fixed-T time, and the planned time of a run in which no input stops, over
fixed T's (what the budget bounds).

Usage: python benchmarks/slowdown_budget.py [--workload default] [--budgets 0.05 0.1 0.2 0.4]
       [--inputs 50] [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnexit.data import load_dataset  # noqa: E402
from snnexit.experiments.bench import timed_policy  # noqa: E402
from snnexit.experiments.bench_timing import make_engines, time_latency  # noqa: E402
from snnexit.experiments.workloads import WORKLOADS, workload  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.runs.network import trace_snn, trained_snn  # noqa: E402
from snnexit.runtime.chunked import ChunkedEngine  # noqa: E402
from snnexit.runtime.planning import SlowdownBudget, walk  # noqa: E402
from snnexit.runtime.threads import LoadMeter  # noqa: E402


def planned_over_fixed(engine: ChunkedEngine, x: torch.Tensor, temporal: bool) -> float:
    """The planned time of a run in which no input stops (the static plan walked to T), over fixed T's."""
    times = SlowdownBudget(engine.T, 1, engine._chunk_time(1, 1, x, temporal), 0.0)
    return times.planned(walk(engine.choices(1, 1, x, temporal), 0, engine.T)) / times.rest[0]


def forecasts_used(engine) -> bool:
    """Did the engine forecast at batch 1: a forecaster, and where a replay of the trace decided
    (``forecast=None``), its verdict that forecasts pay."""
    return engine.forecaster is not None and all(engine.forecasts_pay.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="default", choices=WORKLOADS.names())
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4])
    ap.add_argument("--inputs", type=int, default=50, help="test inputs, timed one at a time")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None,
                    help="JSON output (default benchmarks/results/slowdown_budget_<workload>.json)")
    args = ap.parse_args()
    out = args.out or str(ROOT / "benchmarks" / "results" / f"slowdown_budget_{args.workload}.json")
    torch.set_num_threads(1)
    w = workload(args.workload)
    config = w.config()
    data = load_dataset(config.dataset, config.seed)
    snn, _ = trained_snn(config, data, print)
    val, test = trace_snn(snn, data, config)
    policy = timed_policy("certified", val, snn, config.T)
    hint = policy.exit_steps(val)
    T, temporal = config.T, data.temporal
    x = data.test.x[:args.inputs]
    exits = policy.exit_steps(test)[:len(x)]
    engines = make_engines(snn, policy, T, "cpu", hint, ["fixed", "early_exit", "early_exit_static"], val, 1)
    bounded = {f"early_exit_within_{b:g}": ChunkedEngine(snn, policy, T, "cpu", exit_steps=hint, trace=val,
                                                        max_threads=1, max_slowdown=b) for b in args.budgets}
    engines.update(bounded)
    others = LoadMeter(probe_s=0.5)
    others.other_busy()
    lat = time_latency(engines, x, T, "cpu", args.repeats, temporal=temporal, exits=exits, per_input=True)
    busy = others.other_busy()
    per_input = {name: torch.tensor(v) for name, v in lat.pop("per_input_seconds").items()}
    rows = []
    for name, budget in [("early_exit", None), ("early_exit_static", None)] + list(zip(bounded, args.budgets)):
        groups = lat["by_difficulty"]
        rows.append({
            "engine": name, "max_slowdown": budget, "forecasts": forecasts_used(engines[name]),
            "wall_over_step_saving": lat[f"wall_over_step_saving_{name}"],
            "easy_over_fixed": groups["easy"]["seconds_per_inference"][name] / groups["easy"]["seconds_per_inference"][
                "fixed"] if "easy" in groups else None,
            "hard_over_fixed": groups["hard"]["seconds_per_inference"][name] / groups["hard"]["seconds_per_inference"][
                "fixed"] if "hard" in groups else None,
            "slowest_input_over_fixed": float((per_input[name] / per_input["fixed"]).max()),
            "planned_no_exit_over_fixed": planned_over_fixed(engines[name], x[:1], temporal),
        })
        r = rows[-1]
        print(f"{name}: wall / step {r['wall_over_step_saving']:.2f}, easy {r['easy_over_fixed'] or 0:.2f}, hard "
              f"{r['hard_over_fixed'] or 0:.2f}, slowest input {r['slowest_input_over_fixed']:.2f}, planned with no "
              f"exit {r['planned_no_exit_over_fixed']:.2f} x fixed T")
    write_json(out, {
        "benchmark": "slowdown_budget",
        "command": "python benchmarks/slowdown_budget.py " + " ".join(sys.argv[1:]),
        "workload": {"name": w.name, "dataset": config.dataset, "model": config.model, "T": T},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
                    "cpu_count": os.cpu_count()},
        "other_processes_busy_cores": busy,
        "inputs": len(x), "repeats": args.repeats, "step_saving": lat["step_saving"],
        "by_difficulty_inputs": {g: v["inputs"] for g, v in lat["by_difficulty"].items()},
        "seconds_per_inference": lat["seconds_per_inference"],
        "rows": rows,
    })
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
