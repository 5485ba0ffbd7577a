"""Does calibrating every time step make Dynamic Confidence robust across seeds?

For each seed, runs the default main job (`snnexit run --seed S`, reusing a cached ANN when
there is one) and fits, on its validation trace, for no accuracy loss:

* ``dynamic_confidence``: the paper (ANN temperature, alpha = t);
* ``step_calibrated_confidence``: one temperature per step fitted on the validation trace.

Reports, on the test trace, accuracy against fixed T, mean steps, saving, oracle capture and
the spine's target (accuracy at least fixed T minus 0.1 point, at least 60% fewer steps).

Usage: python benchmarks/step_calibration.py [--seeds 0 1 2] [--runs runs]
       [--out benchmarks/results/step_calibration.json]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnexit.exit import Oracle, create_policy  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.simulate import Trace  # noqa: E402

POLICIES = ("dynamic_confidence", "step_calibrated_confidence")


def evaluate_seed(seed: int, runs: Path) -> dict:
    out = runs / f"seed{seed}"
    if not (out / "trace_test.safetensors").exists():
        subprocess.run([sys.executable, "-m", "snnexit.cli", "run", "--seed", str(seed), "--out", str(out),
                        "--no-progress"], check=True, cwd=ROOT, capture_output=True)
    val, test = Trace.load(out / "trace_val.safetensors"), Trace.load(out / "trace_test.safetensors")
    T = test.T
    fixed_acc = test.correct()[-1].double().mean().item()
    oracle_steps = Oracle().evaluate(test)["mean_steps"]
    row = {"seed": seed, "T": T, "fixed_test_acc": fixed_acc, "oracle_mean_steps": oracle_steps,
           "step1_test_acc": test.correct()[0].double().mean().item()}
    for name in POLICIES:
        started = time.perf_counter()
        policy = create_policy(name).fit(val)
        fit_s = time.perf_counter() - started
        r = policy.evaluate(test)
        row[name] = {
            "threshold": r["threshold"], "test_acc": r["test_acc"], "mean_steps": r["mean_steps"],
            "saving": r["saving"], "acc_change_points": 100 * (r["test_acc"] - fixed_acc),
            "oracle_capture": (T - r["mean_steps"]) / (T - oracle_steps) if T > oracle_steps else None,
            "spine_target_met": bool(r["test_acc"] >= fixed_acc - 0.001 - 1e-12 and r["saving"] >= 0.6),
            "fit_seconds": fit_s,
        }
        if name == "step_calibrated_confidence":
            row[name]["step_temperatures_first_4"] = policy.step_temperatures_[:4].tolist()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", default=str(ROOT / "runs"), help="folder for the runs (seed<S>/ inside)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "step_calibration.json"))
    args = ap.parse_args()
    rows = [evaluate_seed(s, Path(args.runs)) for s in args.seeds]
    for r in rows:
        line = [f"seed {r['seed']}: fixed {100 * r['fixed_test_acc']:.2f}%, step-1 {100 * r['step1_test_acc']:.1f}%, "
                f"oracle {r['oracle_mean_steps']:.2f} steps"]
        for name in POLICIES:
            p = r[name]
            line.append(f"  {name}: {100 * p['test_acc']:.2f}% ({p['acc_change_points']:+.2f}) at {p['mean_steps']:.2f} "
                        f"steps, saving {100 * p['saving']:.1f}%, capture {100 * p['oracle_capture']:.1f}%, "
                        f"target met: {p['spine_target_met']}")
        print("\n".join(line))
    write_json(args.out, {"benchmark": "step_calibration",
                          "command": "python benchmarks/step_calibration.py " + " ".join(sys.argv[1:]),
                          "machine": {"python": platform.python_version()}, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
