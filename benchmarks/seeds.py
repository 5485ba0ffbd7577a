"""The main job over seeds: how much of what `make run` shows is the seed, and what holds on every one.

For each data set and seed this runs `snnexit run` (the main job, defaults of `make run`; a fresh
ANN cache per seed, so training is included in the seconds) and records:

* fixed-T test accuracy;
* Dynamic Confidence as published (alpha = T, no-loss threshold on validation): mean steps,
  saving, accuracy change on test;
* the certified exit: policy, eps, delta, calibration size, test disagreement with fixed T
  (target: <= eps), mean steps, saving (target on mnist5k: >= 80%);
* the oracle's mean steps and the share of its saving each of the two captures;
* beside the paper's rule, two other no-loss fits on the same validation trace: alpha = t
  (``mean_output_confidence``, our earlier reading) and one temperature per step
  (``step_calibrated_confidence``), so the effect of alpha and of step calibration is seen per seed.

With ``--train-inputs`` (default on) it also measures why training inputs must not certify: the
SNN's disagreement with its own fixed-T answer on the training split against the test split, at
the certified threshold, and what a "certificate" computed on training inputs would promise
against what it then does on test.

The summary gives min / median / max over seeds. Numbers move with the CPU and the thread count
(float sums in training), so read the spread, not one seed.

Usage: python benchmarks/seeds.py [--datasets mnist5k digits] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnexit.io import write_json  # noqa: E402


def run_main_job(dataset: str, seed: int, workdir: Path, fix: str | None = None) -> tuple[dict, Path, Path]:
    out, cache = workdir / f"{dataset}-{seed}", workdir / f"cache-{dataset}-{seed}"
    cmd = [sys.executable, "-m", "snnexit", "run", "--dataset", dataset, "--out", str(out), "--seed", str(seed),
           "--cache-dir", str(cache), "--no-progress"] + ([] if fix is None else ["--conversion-fix", fix])
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, **json.loads((out / "results.json").read_text())}, out, cache


def summarize_run(r: dict) -> dict:
    p, T = r["policies"], r["snn"]["T"]
    dc, fixed, oracle, cert = p["dynamic_confidence"], p["fixed"], p["oracle"], p["certified"]
    return {
        "seconds": r["seconds"], "T": T, "ann_test_acc": r["ann"]["test_acc"], "fixed_test_acc": fixed["test_acc"],
        "dc": {"alpha": dc["alpha"], "temperature": dc["temperature"], "threshold": dc["threshold"],
               "mean_steps": dc["mean_steps"], "saving": dc["saving"],
               "acc_change_points": 100 * (dc["test_acc"] - fixed["test_acc"]), "val_size": dc["val_size"],
               "oracle_capture": r["oracle_capture"]},
        "certified": {k: cert[k] for k in ("policy", "eps", "delta", "calibration_size", "learn_size", "threshold",
                                           "test_acc", "test_disagreement", "mean_steps", "saving", "holds_on_test")}
        | {"acc_change_points": 100 * (cert["test_acc"] - fixed["test_acc"]),
           "oracle_capture": r["certified_oracle_capture"]},
        "oracle": {"mean_steps": oracle["mean_steps"], "test_acc": oracle["test_acc"]},
    }


NO_LOSS_VARIANTS = ("mean_output_confidence", "step_calibrated_confidence")


def no_loss_variants(out: Path) -> dict:
    """Other no-loss fits on the run's validation trace, reported on its test trace."""
    from snnexit.exit import create_policy
    from snnexit.simulate import Trace

    val, test = Trace.load(out / "trace_val.safetensors"), Trace.load(out / "trace_test.safetensors")
    fixed = float(test.correct()[-1].double().mean())
    rows = {}
    for name in NO_LOSS_VARIANTS:
        res = create_policy(name).fit(val).evaluate(test)
        rows[name] = {"mean_steps": res["mean_steps"], "saving": res["saving"],
                      "acc_change_points": 100 * (res["test_acc"] - fixed)}
    return rows


def training_inputs_check(dataset: str, seed: int, out: Path, cache: Path, fix: str | None = None) -> dict:
    """Disagreement with fixed T on training vs test inputs, and a certificate fitted on training inputs."""
    import torch

    from snnexit.data import load_dataset
    from snnexit.runs.evaluation import certified_exit
    from snnexit.runs.network import trained_snn
    from snnexit.runs.settings import RunConfig
    from snnexit.simulate import Trace, record_trace
    from snnexit.exit.base import split_learn_certify
    from snnexit.exit.certify import certify_exit

    config = RunConfig(dataset=dataset, seed=seed, cache_dir=str(cache), progress=False, conversion_fix=fix)
    data = load_dataset(dataset, seed)
    snn, _ = trained_snn(config, data, log=lambda *_: None)
    train = record_trace(snn, data.train.batches(250), T=config.T)
    val, test = Trace.load(out / "trace_val.safetensors"), Trace.load(out / "trace_test.safetensors")
    cert = certified_exit(val)
    on_train, on_test = cert.policy.evaluate(train), cert.policy.evaluate(test)
    # the same recipe with training inputs as the calibration pool (what must not be done)
    learn, _ = split_learn_certify(val)
    size = min(train.N, 500)
    sub = train.subset(torch.randperm(train.N, generator=torch.Generator().manual_seed(0))[:size])
    wrong = certify_exit(learn, sub, candidates=[cert.name])
    wrong_test = wrong.policy.evaluate(test)
    return {
        "certified_policy": cert.name,
        "disagreement_train": on_train["disagreement"], "disagreement_test": on_test["disagreement"],
        "mean_steps_train": on_train["mean_steps"], "mean_steps_test": on_test["mean_steps"],
        "fixed_acc_train": float(train.correct()[-1].double().mean()),
        "fixed_acc_test": float(test.correct()[-1].double().mean()),
        "certified_on_train": {"calibration_size": size, "eps": wrong.eps,
                               "test_disagreement": wrong_test["disagreement"], "mean_steps": wrong_test["mean_steps"],
                               "holds_on_test": bool(wrong_test["disagreement"] <= wrong.eps)},
    }


def spread(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())} if v.size else {}


def summary(rows: list[dict]) -> dict:
    get = lambda *keys: [_dig(r, keys) for r in rows]  # noqa: E731
    return {
        "fixed_test_acc": spread(get("fixed_test_acc")),
        "dc_mean_steps": spread(get("dc", "mean_steps")), "dc_saving": spread(get("dc", "saving")),
        "dc_acc_change_points": spread(get("dc", "acc_change_points")),
        "certified_saving": spread(get("certified", "saving")),
        "certified_mean_steps": spread(get("certified", "mean_steps")),
        "certified_test_disagreement": spread(get("certified", "test_disagreement")),
        "certified_eps": spread(get("certified", "eps")),
        "certified_holds_on_every_seed": all(_dig(r, ("certified", "holds_on_test")) for r in rows),
        "certified_policies": sorted({_dig(r, ("certified", "policy")) for r in rows}),
        "oracle_mean_steps": spread(get("oracle", "mean_steps")),
        "seconds": spread(get("seconds")),
    }


def _dig(d: dict, keys):
    for k in keys:
        d = d[k]
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist5k", "digits"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--no-train-inputs", dest="train_inputs", action="store_false")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "seeds.json"))
    ap.add_argument("--keep", default=None, help="keep the run folders (and ANN caches) here instead of a temp dir")
    ap.add_argument("--conversion-fix", default=None, help="the main job's --conversion-fix (default: its default)")
    args = ap.parse_args()
    result = {"benchmark": "seeds", "command": "python benchmarks/seeds.py " + " ".join(sys.argv[1:]),
              "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "torch_threads": __import__("torch").get_num_threads()},
              "datasets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:
            tmp = args.keep
            Path(tmp).mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets:
            rows = []
            for seed in args.seeds:
                raw, out, cache = run_main_job(dataset, seed, Path(tmp), args.conversion_fix)
                row = {"seed": seed, **summarize_run(raw), "no_loss_variants": no_loss_variants(out)}
                if args.train_inputs:
                    row["training_inputs"] = training_inputs_check(dataset, seed, out, cache, args.conversion_fix)
                rows.append(row)
                c, dc = row["certified"], row["dc"]
                print(f"{dataset} seed {seed}: {row['seconds']:.0f} s, fixed {100 * row['fixed_test_acc']:.2f}%; "
                      f"DC {dc['mean_steps']:.2f} steps ({100 * dc['saving']:.1f}%, {dc['acc_change_points']:+.2f} pts); "
                      f"certified {c['policy']} eps {100 * c['eps']:.2f}%: test disagreement "
                      f"{100 * c['test_disagreement']:.2f}%, {c['mean_steps']:.2f} steps ({100 * c['saving']:.1f}%); "
                      f"oracle {row['oracle']['mean_steps']:.2f}", flush=True)
                if args.train_inputs:
                    t = row["training_inputs"]
                    print(f"   training inputs: disagreement {100 * t['disagreement_train']:.2f}% vs test "
                          f"{100 * t['disagreement_test']:.2f}%; certified on training inputs: test disagreement "
                          f"{100 * t['certified_on_train']['test_disagreement']:.2f}% vs eps "
                          f"{100 * t['certified_on_train']['eps']:.2f}%", flush=True)
            result["datasets"][dataset] = {"runs": rows, "summary": summary(rows)}
            write_json(args.out, result)  # after every data set: a crash keeps what finished
    print(json.dumps({k: v["summary"] for k, v in result["datasets"].items()}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
