"""Conversion fixes over seeds: how fast each converted SNN converges, and what that leaves to early exit.

For each data set and seed, the main job (`snnexit run`'s stages, the defaults of `make run`: vgg_small,
QCFS L = 4, 30 epochs, T = 32; the ANN from the shared cache, trained once per seed) is converted
once per conversion fix (`--conversion-fix`: none, and every registered fix) and records:

* the ANN's test accuracy, and the SNN's at T = 1, 2, 4, 8, 16, 32 (and every step);
* the oracle's mean steps; Dynamic Confidence as published (alpha = T, no-loss threshold on
  validation): mean steps, saving, accuracy change; the certified exit (delta = 5%, eps the
  smallest its 500 calibration inputs certify): policy, eps, test disagreement, saving;
* the fix's cost: seconds and training inputs used.

The summary gives, per fix, min / median / max over seeds of the gap to the ANN at T = 32 and at
T = 4 (points), the oracle's mean steps and the two savings, and on how many seeds the fix beats
no fix. Numbers move with the CPU and the thread count (float sums in training), so read the
spread, not one seed; seconds were measured on a shared, loaded machine.

``--event`` adds event_mnist (16 frames, 400 test recordings; `snnexit run --dataset event_mnist`'s
defaults) by conversion, with the ANN trained on mean frames (the old route) and on prefix means
(``--ann-event-input``), each with every fix, and by direct training (`snnexit cutoff-train`'s BPTT,
LIF, TET, width 8, ``--direct-epochs``), with the same columns; the directly trained network's
temperature is fitted on the learning half of validation, as a run fits the ANN's.

Usage: python benchmarks/conversion.py [--datasets mnist5k digits] [--seeds 0 1 2 3 4] [--keep DIR]
       python benchmarks/conversion.py --recertify --keep DIR   (after a change to the pick or the certificate)
       python benchmarks/conversion.py --event [--event-seeds 0] [--direct-epochs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnexit.convert.fixes import fix_names  # noqa: E402
from snnexit.io import write_json  # noqa: E402

STEPS = (1, 2, 4, 8, 16, 32)


def run_stages(settings, log=lambda *_: None) -> dict:
    """The main job's stages but the report, in one process: its ``results.json`` as a dict."""
    from snnexit.runs.stages import Run, convert, evaluate, fit, trace, train  # the library's own chain

    settings.validate()
    r = Run(settings, log)
    r.folder.create()
    for stage in (train, convert, trace, fit, evaluate):
        stage(r)
    return r.results


def summarize(results: dict) -> dict:
    """One row of the table from a run's results."""
    p, snn = results["policies"], results["snn"]
    acc = snn["test_acc_per_step"]
    T = snn["T"]
    fixed, dc, cert, oracle = p["fixed"], p["dynamic_confidence"], p["certified"], p["oracle"]
    fix = snn.get("conversion_fix") or {}
    ann = results["ann"]["test_acc"] if "ann" in results else None  # none: a directly trained network
    return {
        "ann_test_acc": ann,
        "acc_at": {str(t): acc[t - 1] for t in STEPS if t <= T},
        "acc_per_step": acc,
        "gap_T_points": None if ann is None else 100 * (acc[-1] - ann),
        "gap_4_points": None if ann is None else 100 * (acc[min(4, T) - 1] - ann),
        "oracle_mean_steps": oracle["mean_steps"],
        "dc": {"mean_steps": dc["mean_steps"], "saving": dc["saving"],
               "acc_change_points": 100 * (dc["test_acc"] - fixed["test_acc"])},
        "certified": {"policy": cert["policy"], "eps": cert["eps"], "test_disagreement": cert["test_disagreement"],
                      "holds_on_test": cert["holds_on_test"], "mean_steps": cert["mean_steps"],
                      "saving": cert["saving"]},
        "fix_seconds": fix.get("seconds", 0.0), "fix_inputs": fix.get("inputs", 0),
    }


def spread(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())} if v.size else {}


def fix_summary(rows: list[dict], baseline: list[dict]) -> dict:
    get = lambda f: [f(r) for r in rows]  # noqa: E731
    wins = lambda f: sum(f(r) > f(b) for r, b in zip(rows, baseline))  # noqa: E731
    return {
        "gap_T_points": spread(get(lambda r: r["gap_T_points"])),
        "gap_4_points": spread(get(lambda r: r["gap_4_points"])),
        "acc_1": spread(get(lambda r: r["acc_at"]["1"])),
        "oracle_mean_steps": spread(get(lambda r: r["oracle_mean_steps"])),
        "dc_saving": spread(get(lambda r: r["dc"]["saving"])),
        "dc_acc_change_points": spread(get(lambda r: r["dc"]["acc_change_points"])),
        "certified_saving": spread(get(lambda r: r["certified"]["saving"])),
        "certified_holds_on_every_seed": all(r["certified"]["holds_on_test"] for r in rows),
        "fix_seconds": spread(get(lambda r: r["fix_seconds"])),
        "seeds": len(rows),
        "seeds_better_than_none": {
            "certified_saving": wins(lambda r: r["certified"]["saving"]),
            "oracle_steps": wins(lambda r: -r["oracle_mean_steps"]),
            "acc_at_4": wins(lambda r: r["acc_at"]["4"]),
            "acc_at_T": wins(lambda r: r["acc_per_step"][-1]),
        },
    }


def show(label: str, r: dict) -> None:
    ann = "" if r["ann_test_acc"] is None else f"ANN {100 * r['ann_test_acc']:.1f}%, "
    print(f"{label}: {ann}SNN " + " ".join(f"T{t} {100 * a:.1f}" for t, a in r["acc_at"].items())
          + f"; oracle {r['oracle_mean_steps']:.2f}, DC saving {100 * r['dc']['saving']:.1f}%, certified "
          f"{100 * r['certified']['saving']:.1f}%; fix {r['fix_seconds']:.0f} s on {r['fix_inputs']} inputs", flush=True)


def converted_row(overrides: dict, out: Path) -> dict:
    """The run of ``overrides`` (config keys, as on the command line; event defaults apply) as a row."""
    from snnexit.runs.config_file import load_config  # after sys.path has the repository

    settings = load_config(None, {**overrides, "out": str(out), "progress": False})
    started = time.perf_counter()
    row = summarize(run_stages(settings))
    return {"seed": settings.run.seed, "seconds": time.perf_counter() - started, **row}


def recertified_row(row: dict, overrides: dict, out: Path) -> dict:
    """``row`` with the certified exit (and every policy) evaluated again from the run folder ``out``
    that made it: the network and its traces are kept and the policies fitted again, so only what
    fitting and certifying do can change (after a change to either)."""
    from snnexit.runs.config_file import load_config
    from snnexit.runs.stages import Run, evaluate, fit

    settings = load_config(None, {**overrides, "out": str(out), "progress": False})
    r = Run(settings, lambda *_: None)
    fit(r)
    evaluate(r)
    fresh = summarize(r.results)
    return {**row, **{k: v for k, v in fresh.items() if k not in ("fix_seconds", "fix_inputs")}}


def static_rows(dataset: str, seed: int, fixes: list[str], workdir: Path, cache: str | None) -> dict:
    rows = {}
    for fix in fixes:
        rows[fix] = converted_row({"dataset": dataset, "seed": seed, "conversion_fix": fix, "cache_dir": cache},
                                  workdir / f"{dataset}-{seed}-{fix}")
        show(f"{dataset} seed {seed} {fix}", rows[fix])
    return rows


def direct_row(seed: int, epochs: int, workdir: Path, cache: str | None) -> dict:
    """event_mnist by direct training (cutoff-train's settings but the epochs), in the columns of a run."""
    from snnexit.calibrate import fit_temperature  # after sys.path has the repository
    from snnexit.exit import create_policy
    from snnexit.exit.base import learn_certify_indices
    from snnexit.experiments.cutoff import CutoffSettings, single_run
    from snnexit.runs.evaluation import evaluate_policies
    from snnexit.simulate import Trace

    out = workdir / f"event_mnist-{seed}-direct-{epochs}"
    out.mkdir(parents=True, exist_ok=True)
    settings = CutoffSettings(dataset="event_mnist", epochs=epochs, seed=seed, cache_dir=cache)
    started = time.perf_counter()
    single_run(settings, out, log=lambda *_: None)
    val, test = Trace.load(out / "trace_val.safetensors"), Trace.load(out / "trace_test.safetensors")
    learn, _ = learn_certify_indices(val.N)  # the temperature from the learning half only, as a run does
    temperature = fit_temperature(val.outputs[-1][learn] / val.T, val.labels[learn])
    for trace in (val, test):
        trace.meta["temperature"] = temperature
    policies, _ = evaluate_policies(val, test, create_policy("dynamic_confidence").fit(val))
    acc = test.accuracy_per_step().tolist()
    row = summarize({"policies": policies, "snn": {"T": test.T, "test_acc_per_step": acc}})
    row.update(direct_epochs=epochs, seconds=time.perf_counter() - started, seed=seed)
    return row


EVENT_ROUTES = {  # name -> config keys of the conversion route
    "mean_frame": {"ann_event_input": "mean_frame"},
    "prefix_means": {"ann_event_input": "prefix_means"},
}


def event_rows(seed: int, fixes: list[str], direct_epochs: int, workdir: Path, cache: str | None,
               rows: dict, save) -> dict:
    """Add the missing rows of ``seed`` to ``rows`` (those of an earlier run are kept), ``save()`` after each."""
    for route, keys in EVENT_ROUTES.items():
        for fix in fixes:
            name = f"{route}+{fix}"
            if name in rows:
                continue
            rows[name] = converted_row({"dataset": "event_mnist", "seed": seed, "conversion_fix": fix,
                                        "cache_dir": cache, **keys}, workdir / f"event_mnist-{seed}-{name}")
            show(f"event_mnist seed {seed} {name}", rows[name])
            save()
    name = f"direct-{direct_epochs}"  # one row per training budget
    if direct_epochs > 0 and name not in rows:
        rows[name] = direct_row(seed, direct_epochs, workdir, cache)
        show(f"event_mnist seed {seed} direct ({direct_epochs} epochs)", rows[name])
        save()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist5k", "digits"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--fixes", nargs="+", default=fix_names())
    ap.add_argument("--cache-dir", default=None, help="the ANN cache (default: the shared one)")
    ap.add_argument("--out", default=None, help="default benchmarks/results/conversion.json, with --event "
                    "conversion_events.json")
    ap.add_argument("--keep", default=None, help="keep the run folders here instead of a temp dir")
    ap.add_argument("--event", action="store_true", help="event_mnist by conversion and by direct training instead")
    ap.add_argument("--event-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--recertify", action="store_true", help="certify again from the run folders kept in --keep "
                    "(the rows of --out whose folder is there); nothing is trained, converted or traced")
    ap.add_argument("--direct-epochs", type=int, default=30)
    args = ap.parse_args()
    args.out = args.out or str(ROOT / "benchmarks" / "results" / ("conversion_events.json" if args.event else
                                                                    "conversion.json"))
    fixes = ["none", *[f for f in args.fixes if f != "none"]]
    command = "python benchmarks/conversion.py " + " ".join(sys.argv[1:])
    result = {"benchmark": "conversion", "command": command, "commands": [command],
              "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "torch_threads": __import__("torch").get_num_threads()},
              "steps": list(STEPS), "fixes": fixes, "datasets": {}}
    if Path(args.out).is_file():  # resume: keep what an earlier (interrupted) run finished
        earlier = json.loads(Path(args.out).read_text())
        result["datasets"], result["event_mnist"] = earlier.get("datasets", {}), earlier.get("event_mnist", {"runs": {}})
        result["commands"] = earlier.get("commands", [earlier["command"]]) + [command]  # what made which rows
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.event:
            entry = result.setdefault("event_mnist", {"runs": {}})
            for seed in args.event_seeds:
                rows = entry["runs"].setdefault(str(seed), {})
                if args.recertify:  # the conversion routes (a directly trained network has no run folder)
                    for name, row in rows.items():
                        route, _, fix = name.partition("+")
                        folder = workdir / f"event_mnist-{seed}-{name}"
                        if route in EVENT_ROUTES and folder.is_dir():
                            row.update(recertified_row(row, {"dataset": "event_mnist", "seed": seed,
                                                             "conversion_fix": fix, "cache_dir": args.cache_dir,
                                                             **EVENT_ROUTES[route]}, folder))
                            show(f"event_mnist seed {seed} {name} (certified again)", row)
                    write_json(args.out, result)
                    continue
                event_rows(seed, fixes, args.direct_epochs, workdir, args.cache_dir, rows,
                           lambda: write_json(args.out, result))
        for dataset in [] if args.event else args.datasets:
            entry = result["datasets"].setdefault(dataset, {"runs": {}, "summary": {}})
            for seed in args.seeds:
                if args.recertify:
                    for fix, row in entry["runs"].get(str(seed), {}).items():
                        folder = workdir / f"{dataset}-{seed}-{fix}"
                        if folder.is_dir():
                            row.update(recertified_row(row, {"dataset": dataset, "seed": seed, "conversion_fix": fix,
                                                             "cache_dir": args.cache_dir}, folder))
                            show(f"{dataset} seed {seed} {fix} (certified again)", row)
                elif str(seed) in entry["runs"] and set(fixes) <= set(entry["runs"][str(seed)]):
                    continue
                else:
                    entry["runs"][str(seed)] = static_rows(dataset, seed, fixes, workdir, args.cache_dir)
                per_fix = {f: [entry["runs"][s][f] for s in sorted(entry["runs"], key=int)] for f in fixes}
                entry["summary"] = {f: fix_summary(per_fix[f], per_fix["none"]) for f in fixes}
                write_json(args.out, result)  # after every seed: a crash keeps what finished
    if not args.event:
        print(json.dumps({d: v["summary"] for d, v in result["datasets"].items()}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
