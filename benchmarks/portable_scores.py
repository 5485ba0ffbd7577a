"""Does a fitted rule take the same decisions in float32 as in float64?

snnexit fits, certifies and decides in float64. A user who deploys the rule elsewhere (a chip's
host, float32 on a GPU, fixed point) computes the same score in another precision. On the main
job's traces (``make run``: MNIST-5k, vgg_small, QCFS, T = 32), every thresholded policy is fitted
on the validation trace two ways, as the run fits them:

* ``no_loss``: the threshold that lost no validation accuracy;
* ``certified``: the run's certified exit restricted to that policy (the learning half of the
  validation split learns the score, the other half certifies at the smallest certifiable eps),
  whose threshold sits where the scores are most extreme;

and then applied to the test trace with its scores computed in float64 and in float32 (the float32
rule compares the float32 score with the threshold rounded to float32). Reported per policy and
fit: the share of test inputs whose exit step differs, and the mean steps in both precisions.
The published probability form of Dynamic Confidence, SEENN-I and the mean-output confidence
(top softmax probability > p, computed in float32) is reported beside, for contrast.

    .venv/bin/python benchmarks/portable_scores.py [--run runs/default]

Writes ``benchmarks/results/portable_scores.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.main_job import shown_path  # noqa: E402
from snnexit.exit import POLICIES, ThresholdPolicy, create_policy  # noqa: E402
from snnexit.exit.certify import certify_exit  # noqa: E402
from snnexit.exit.base import split_learn_certify  # noqa: E402
from snnexit.exit.curve import exit_steps_from_scores  # noqa: E402
from snnexit.exit.scores import probability_from_log_odds  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.simulate.trace import Trace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROBABILITY_FORMS = ("dynamic_confidence", "max_softmax", "mean_output_confidence")  # published as "p_top > tau"


def thresholded_policies() -> list[str]:
    return [name for name in POLICIES.names()
            if issubclass(POLICIES.get(name), ThresholdPolicy) and not POLICIES.get(name).uses_labels_at_test]


def compare(policy, test: Trace) -> dict:
    s64, s32 = policy.exit_steps(test), policy.exit_steps(test, torch.float32)
    differ = int((s64 != s32).sum())
    return {"threshold": policy.threshold_, "differing_decisions": differ, "differing_share": differ / test.N,
            "mean_steps_float64": s64.double().mean().item(), "mean_steps_float32": s32.double().mean().item(),
            "mean_steps_difference": abs(s64.double().mean().item() - s32.double().mean().item())}


def probability_form(policy, test: Trace) -> dict:
    """The rule written as published: the softmax in float32 against the threshold as a probability."""
    p = float(probability_from_log_odds(torch.tensor(policy.threshold_, dtype=torch.float64)))
    prob32 = torch.stack([torch.softmax(policy.scaled(test.outputs[t].float(), t + 1, test.meta), -1).amax(-1)
                          for t in range(test.T)])
    steps = exit_steps_from_scores(prob32, p)
    differ = int((steps != policy.exit_steps(test)).sum())
    return {"threshold_probability": p, "differing_decisions": differ, "differing_share": differ / test.N,
            "mean_steps_float32": steps.double().mean().item()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "default"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "portable_scores.json"))
    args = ap.parse_args()
    started = time.perf_counter()
    run = Path(args.run)
    val, test = Trace.load(run / "trace_val.safetensors"), Trace.load(run / "trace_test.safetensors")
    learn, certify = split_learn_certify(val)
    rows = {}
    for name in thresholded_policies():
        fits = {"no_loss": create_policy(name).fit(val),
                "certified": certify_exit(learn, certify, candidates=[name]).policy}
        rows[name] = {fit: compare(policy, test) for fit, policy in fits.items()}
        if name in PROBABILITY_FORMS:
            rows[name]["certified_probability_form"] = probability_form(fits["certified"], test)
        print(name, {fit: (r["differing_decisions"], round(r["mean_steps_difference"], 4))
                     for fit, r in rows[name].items() if "mean_steps_difference" in r}, flush=True)
    worst = max(r["differing_share"] for row in rows.values() for fit, r in row.items() if "probability" not in fit)
    steps = max(r["mean_steps_difference"] for row in rows.values() for fit, r in row.items()
                if "probability" not in fit)
    write_json(args.out, {
        "benchmark": "portable_scores", "command": "python benchmarks/portable_scores.py " + " ".join(sys.argv[1:]),
        "run": shown_path(run), "T": test.T, "val_inputs": val.N, "test_inputs": test.N, "policies": rows,
        "worst_differing_share": worst, "worst_mean_steps_difference": steps,
        "targets": {"differing_share": 0.001, "mean_steps_difference": 0.05},
        "seconds": time.perf_counter() - started})
    print(f"worst share of differing decisions {worst:.4%}, worst mean-steps difference {steps:.4f}; wrote {args.out}")


if __name__ == "__main__":
    main()
