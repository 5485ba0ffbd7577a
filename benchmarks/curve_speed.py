"""The exact accuracy-vs-mean-steps curve against a 1000-point threshold grid.

50,000 inputs x 128 steps (ImageNet-sized, as with QCFS), scores and per-step correctness
already computed. Scores are synthetic but shaped like Dynamic Confidence's: each input's
evidence is a random walk with its own drift, so confidence mostly rises with t, with
setbacks; correctness follows the sign of the evidence.

Two grid baselines, both vectorised over inputs:

* ``grid``: the strong one. The running maximum is computed once and, for each threshold, the
  exit step is the number of steps whose running max is <= tau (numpy);
* ``library grid``: what a user sweeping thresholds with the library would write, calling
  ``exit_steps_from_scores`` (torch) once per threshold.

All are timed in interleaved repeats; medians are reported, with the check that the exact
curve gives identical (mean steps, correct) at every grid point. The speed-up target is
judged against the strong grid.

Targets: exact curve < 5 s and >= 20x faster than the grid.

Usage: python benchmarks/curve_speed.py [--N 50000] [--T 128] [--grid 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

import torch

from snnexit.exit import exact_curve, exit_steps_from_scores
from snnexit.io import write_json

ROOT = Path(__file__).resolve().parents[1]


def synthetic(N: int, T: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    drift = rng.gamma(2.0, 0.35, N) * rng.choice([1.0, -0.3], N, p=[0.9, 0.1])  # a few inputs drift wrong
    walk = np.cumsum(drift + rng.standard_normal((T, N)), axis=0)  # (T, N) accumulated evidence
    t = np.arange(1, T + 1)[:, None]
    scores = 1.0 / (1.0 + np.exp(-3.0 * walk / np.sqrt(t)))  # confidence in (0, 1)
    correct = walk > 0
    return scores, correct


def grid_curve(scores: np.ndarray, correct: np.ndarray, grid: np.ndarray):
    T, N = scores.shape
    running = np.maximum.accumulate(scores, axis=0)
    cols = np.arange(N)
    steps, right = np.empty(grid.size, dtype=np.int64), np.empty(grid.size, dtype=np.int64)
    for i, tau in enumerate(grid):
        exit_idx = np.minimum((running <= tau).sum(0), T - 1)  # first step with running max > tau, else T
        steps[i] = int(exit_idx.sum()) + N
        right[i] = int(correct[exit_idx, cols].sum())
    return steps, right


def library_grid_curve(scores: np.ndarray, correct: np.ndarray, grid: np.ndarray):
    s, c = torch.from_numpy(scores), torch.from_numpy(correct)
    cols = torch.arange(s.shape[1])
    steps, right = np.empty(grid.size, dtype=np.int64), np.empty(grid.size, dtype=np.int64)
    for i, tau in enumerate(grid):
        exit_step = exit_steps_from_scores(s, float(tau))
        steps[i] = int(exit_step.sum())
        right[i] = int(c[exit_step - 1, cols].sum())
    return steps, right


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--N", type=int, default=50_000)
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--grid", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "curve_speed.json"))
    args = ap.parse_args()
    scores, correct = synthetic(args.N, args.T)
    grid = np.linspace(0.0, 1.0, args.grid)
    t_curve, t_grid, t_lib = [], [], []
    for _ in range(args.repeats):  # interleaved
        t0 = time.perf_counter()
        curve = exact_curve(scores, correct)
        t_curve.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        g_steps, g_right = grid_curve(scores, correct, grid)
        t_grid.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        l_steps, l_right = library_grid_curve(scores, correct, grid)
        t_lib.append(time.perf_counter() - t0)
    k = curve.at(grid)
    curve_steps = np.rint(curve.mean_steps[k] * args.N).astype(np.int64)
    equal_steps = bool(np.array_equal(curve_steps, g_steps) and np.array_equal(curve_steps, l_steps))
    equal_correct = bool(np.array_equal(curve.correct[k], g_right) and np.array_equal(curve.correct[k], l_right))
    result = {
        "N": args.N, "T": args.T, "grid_points": args.grid, "repeats": args.repeats,
        "curve_points": int(curve.thresholds.size),
        "exact_curve_seconds": t_curve, "grid_seconds": t_grid, "library_grid_seconds": t_lib,
        "library_grid_median_s": float(np.median(t_lib)),
        "speedup_vs_library_grid": float(np.median(t_lib) / np.median(t_curve)),
        "exact_curve_median_s": float(np.median(t_curve)), "grid_median_s": float(np.median(t_grid)),
        "speedup": float(np.median(t_grid) / np.median(t_curve)),
        "equal_on_grid_points": equal_steps and equal_correct,
        "targets": {"exact_curve_under_5s": float(np.median(t_curve)) < 5.0,
                    "speedup_at_least_20x": float(np.median(t_grid) / np.median(t_curve)) >= 20.0},
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                    "numpy": np.__version__},
    }
    write_json(args.out, result)
    print({k: v for k, v in result.items() if k not in ("exact_curve_seconds", "grid_seconds", "library_grid_seconds", "machine")})


if __name__ == "__main__":
    main()
