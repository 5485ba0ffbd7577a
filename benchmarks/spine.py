"""The spine's targets: `snnexit run` time on this machine and Dynamic Confidence at no loss.

Runs the default main job (what `make run` runs) with a fresh ANN cache, so training is
included, and records:

* wall-clock seconds of the whole job (target: under 180 s on the 2-core machine);
* Dynamic Confidence test accuracy vs fixed T = 32 (target: at most 0.1 point lower);
* its latency saving (target: at least 60% fewer mean steps);
* the share of the oracle's saving it captures, (T - steps_DC) / (T - steps_oracle).

Usage: python benchmarks/spine.py [--seeds 0 1 2] [--out benchmarks/results/spine.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(seed: int, workdir: Path) -> dict:
    out, cache = workdir / f"run{seed}", workdir / f"cache{seed}"
    cmd = [sys.executable, "-m", "snnexit.cli", "run", "--out", str(out), "--seed", str(seed),
           "--cache-dir", str(cache), "--no-progress"]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    seconds = time.perf_counter() - started
    r = json.loads((out / "results.json").read_text())
    p, T = r["policies"], r["snn"]["T"]
    dc, fixed, oracle = p["dynamic_confidence"], p["fixed"], p["oracle"]
    return {
        "seed": seed,
        "seconds": seconds,
        "T": T,
        "ann_test_acc": r["ann"]["test_acc"],
        "fixed_test_acc": fixed["test_acc"],
        "dc_test_acc": dc["test_acc"],
        "dc_threshold": dc["threshold"],
        "dc_mean_steps": dc["mean_steps"],
        "dc_saving": dc["saving"],
        "oracle_test_acc": oracle["test_acc"],
        "oracle_mean_steps": oracle["mean_steps"],
        "oracle_capture": r["oracle_capture"],
        "acc_change_points": 100 * (dc["test_acc"] - fixed["test_acc"]),
        "targets": {
            "time_under_180s": seconds < 180,
            "acc_within_0.1_point": dc["test_acc"] >= fixed["test_acc"] - 0.001 - 1e-12,
            "saving_at_least_60pct": dc["saving"] >= 0.6,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "spine.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_once(s, Path(tmp)) for s in args.seeds]
    for r in runs:
        print(f"seed {r['seed']}: {r['seconds']:.0f} s, fixed {100 * r['fixed_test_acc']:.2f}%, "
              f"DC {100 * r['dc_test_acc']:.2f}% at {r['dc_mean_steps']:.2f} steps "
              f"(saving {100 * r['dc_saving']:.1f}%), oracle {r['oracle_mean_steps']:.2f} steps, "
              f"capture {100 * r['oracle_capture']:.1f}%  targets {r['targets']}")
    sys.path.insert(0, str(ROOT))
    from snnexit.io import write_json

    write_json(args.out, {"benchmark": "spine", "machine": {"python": platform.python_version(),
                                                             "cpu_count": __import__("os").cpu_count()},
                          "command": "python benchmarks/spine.py " + " ".join(sys.argv[1:]), "runs": runs})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
