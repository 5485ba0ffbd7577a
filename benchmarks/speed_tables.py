"""The README's speed tables, rendered from the benchmark JSONs (so the README quotes them exactly).

* early exit at the sizes users run, from ``benchmarks/results/bench_<workload>.json``
  (``snnexit bench --workload W ...``): per workload, thread count and batch size, fixed T's time
  per input with the chunked engine and its ratio to the dense floor, the step saving of the exit,
  the wall-clock saving and their ratio (the target: >= 0.9); for the latency run (inputs one at a
  time, ``--latency-inputs``) also the ratio with the policy asked once per step and with each
  input's exit known in advance (one chunk to it: the bound of any chunk plan), and early exit
  over fixed T on easy and on hard inputs; batch 1 of the throughput run is timed over more inputs;
* the speed race, from ``benchmarks/results/speed_race_<workload>.json`` and
  ``speed_race_<workload>_b<batch>.json`` (``benchmarks/speed_race.py --workload W ...``, the
  latter a run at another batch size with ``--out``): each snnexit engine against SpikingJelly's
  best mode and against the dense floor;
* what a slowdown budget costs early exit at batch 1, from
  ``benchmarks/results/slowdown_budget_<workload>.json`` (``benchmarks/slowdown_budget.py``).

``tests/test_readme.py`` checks that the README holds these tables as rendered from the
committed JSONs. Usage: python benchmarks/speed_tables.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORKLOADS = ("default", "event_cnn", "resnet20", "vgg16")  # the order of the rows


def _ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:.3g} ms" if ms < 1000 else f"{seconds:.3g} s"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _load(pattern: str, more: str | None = None) -> list[dict]:
    """Each workload's ``pattern`` JSON, then (with ``more``, a glob) its further runs in name order."""
    found = []
    for name in WORKLOADS:
        paths = [RESULTS / pattern.format(name)] + (sorted(RESULTS.glob(more.format(name))) if more else [])
        found.extend(json.loads(path.read_text()) for path in paths if path.is_file())
    return found


def _difficulty(lat: dict) -> str:
    parts = []
    for group in ("easy", "hard"):
        g = lat.get("by_difficulty", {}).get(group)
        if g and g.get("early_exit_over_fixed") is not None:
            parts.append(f"{g['early_exit_over_fixed']:.2f} ({g['inputs']})")
        else:
            parts.append("-")
    return " / ".join(parts)


def _thread_note(cell: dict) -> str:
    """Where fixed T and early exit chose different thread counts (each engine chooses its own),
    the ratio compares more than the plans: say so."""
    threads = cell.get("threads", {})
    fixed, early = threads.get("fixed"), threads.get("early_exit")
    return "" if fixed == early else f" (threads: fixed T {fixed}, early exit {early})"


def bench_table() -> str:
    """Early exit against fixed T per workload, thread count and batch size."""
    lines = ["| workload | threads | batch | fixed T per input (chunked) | over dense floor | step saving | wall saving "
             "| wall / step | wall / step, one policy call per step | wall / step, exits known in advance "
             "| early exit / fixed T: easy (inputs) / hard |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in _load("bench_{}.json", more="bench_{}_*.json"):  # runs at other thread counts or batch sizes
        name = result["workload"]["name"]
        for row in result["rows"]:
            if row.get("device", "cpu") != "cpu":
                continue
            cells = [("1 (latency)", row["latency"])] + [(str(t["batch_size"]), t) for t in row.get("throughputs", [])]
            for batch, r in cells:
                sec = r["seconds_per_inference"]
                floor = r.get("over_floor", {}).get("fixed")
                per_step = r.get("wall_over_step_saving_early_exit_per_step_calls")
                known = r.get("wall_over_step_saving_early_exit_known_exits")
                lines.append(
                    f"| {name} | {row['threads']} | {batch} | {_ms(sec['fixed'])} | {_ratio(floor)} | "
                    f"{100 * r['step_saving']:.1f}% | {100 * r['wall_saving_early_exit']:.1f}% | "
                    f"{_ratio(r['wall_over_step_saving_early_exit'])}{_thread_note(r)} | {_ratio(per_step)} | {_ratio(known)} | "
                    f"{_difficulty(r) if r is row['latency'] else '-'} |")
    return "\n".join(lines)


def race_table() -> str:
    """snnexit's engines against SpikingJelly's best mode and the dense floor, per workload."""
    lines = ["| workload | threads | batch | chunked engine (plan) | vs SpikingJelly's best mode | step engine vs its best "
             "| chunked / dense floor | step / dense floor | spikes and answers identical |",
             "|---|---|---|---|---|---|---|---|---|"]
    for result in _load("speed_race_{}.json", more="speed_race_{}_b*.json"):  # a run at other batch sizes
        name = result["workload"]["name"]
        for r in result["results"]:
            med = r["median_seconds"]
            sj = [med[k] for k in ("sj_single", "sj_multi") if k in med]
            best = min(sj) if sj else None
            ok = all(c["spikes_identical"] and c["predictions_identical"] for c in r["identical"].values())
            over = r.get("over_best_floor", {})
            plan = r["chunk_plan"]
            plan_text = (f"{len(plan)} chunk{'s' if len(plan) > 1 else ''} of {plan[0]}" if len(set(plan)) == 1
                         else "chunks " + "+".join(map(str, plan)))
            lines.append(
                f"| {name} | {r.get('threads', r.get('torch_threads'))} | {r['batch_size']} | {_ms(med['snnexit_chunked'])} ({plan_text}) | "
                f"{_ratio(None if best is None else best / med['snnexit_chunked'])}x | "
                f"{_ratio(None if best is None else best / med['snnexit'])}x | "
                f"{_ratio(over.get('snnexit_chunked'))} | {_ratio(over.get('snnexit'))} | {'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def budget_table() -> str:
    """Early exit at batch 1 without a slowdown budget and with each budget, per workload."""
    lines = ["| workload | budget | forecasts | wall / step saving | easy / fixed T | hard / fixed T "
             "| slowest input / its fixed T | planned, no input stopping / fixed T |",
             "|---|---|---|---|---|---|---|---|"]
    for result in _load("slowdown_budget_{}.json"):
        name = result["workload"]["name"]
        for r in result["rows"]:
            budget = "none" if r["max_slowdown"] is None else f"{100 * r['max_slowdown']:g}%"
            forecasts = "yes" if r["forecasts"] else "no"
            lines.append(f"| {name} | {budget} | {forecasts} | {_ratio(r['wall_over_step_saving'])} | "
                         f"{_ratio(r['easy_over_fixed'])} | {_ratio(r['hard_over_fixed'])} | "
                         f"{_ratio(r['slowest_input_over_fixed'])} | {_ratio(r['planned_no_exit_over_fixed'])} |")
    return "\n".join(lines)


def main() -> None:
    print(bench_table())
    print()
    print(race_table())
    print()
    print(budget_table())


if __name__ == "__main__":
    sys.exit(main())
