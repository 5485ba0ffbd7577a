"""Does the risk-controlled threshold keep its promise on a real trace?

The default MNIST-5k run's validation and test traces are pooled (2000 inputs, T = 32) and
used two ways:

* **population draws** (the guarantee itself): the pool is the population, whose true
  disagreement rate R(tau) and accuracy loss are known exactly for every threshold. Fitting
  sets of n inputs are drawn from it i.i.d. (with replacement); the violation rate is the share
  of draws whose certified threshold has population disagreement > eps (and, reported beside,
  population accuracy loss > eps). LTT promises <= delta.
* **random disjoint splits** (what a user sees): fit on a random half, measure on the other
  half. The held-out half is itself a finite sample, so its measured loss scatters around the
  population value; its violation rate is reported for context, not as the guarantee.

Every certifiable policy is checked, and so is the main job's certified exit with its pick of
policy (``certified_pick``: half of each draw learns the scores and the pick, the other half
certifies): the pick must sit inside the guarantee too.

Usage: python benchmarks/risk_control.py [--draws 300] [--policies dynamic_confidence,topk]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from snnexit.exit import agreement_with_fixed_t, create_policy, exact_curve, zero_disagreement_bound
from snnexit.exit.certify import certifiable_policies, certify_exit
from snnexit.io import write_json
from snnexit.simulate.trace import Trace, concat

ROOT = Path(__file__).resolve().parents[1]


def fit_policy(name: str, trace: Trace, eps: float, delta: float):
    """The policy ``name`` with target="risk" fitted on ``trace``; ``certified_pick``: the main job's
    certified exit (first half learns and picks among every policy, second half certifies)."""
    if name == "certified_pick":
        half = trace.N // 2
        return certify_exit(trace.subset(torch.arange(half)), trace.subset(torch.arange(half, trace.N)),
                            eps=eps, delta=delta).policy
    return create_policy(name, target="risk", eps=eps, delta=delta).fit(trace)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=str(ROOT / "runs" / "default"))
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--n", type=int, default=1000, help="fitting inputs per draw")
    ap.add_argument("--policies", default=",".join((*certifiable_policies(), "certified_pick")))
    ap.add_argument("--eps", default="0.01,0.02")
    ap.add_argument("--delta", default="0.05")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "risk_control.json"))
    args = ap.parse_args()
    started = time.perf_counter()
    run = Path(args.run)
    pool = concat([Trace.load(run / "trace_val.safetensors"), Trace.load(run / "trace_test.safetensors")])
    rng = np.random.default_rng(0)
    rows = []
    for name in args.policies.split(","):
        for eps in map(float, args.eps.split(",")):
            for delta in map(float, args.delta.split(",")):
                pop_violations, pop_acc_violations, split_violations, split_acc_violations = 0, 0, 0, 0
                savings, split_savings = [], []
                for _ in range(args.draws):
                    # population draw: fit on n i.i.d. inputs, judge on the whole pool
                    sample = pool.subset(torch.from_numpy(rng.integers(0, pool.N, args.n)))
                    pol = fit_policy(name, sample, eps, delta)
                    pop_curve = exact_curve(pol.scores(pool), pool.correct(), agreement_with_fixed_t(pool))
                    k = pop_curve.at(pol.threshold_)
                    pop_violations += int(pop_curve.disagreement[k] > eps)
                    pop_acc_violations += int((pop_curve.correct[0] - pop_curve.correct[k]) / pool.N > eps)
                    savings.append(1 - pop_curve.mean_steps[k] / pool.T)
                    # disjoint split: fit on one half, measure on the other
                    perm = torch.from_numpy(rng.permutation(pool.N))
                    fit, held = pool.subset(perm[: pool.N // 2]), pool.subset(perm[pool.N // 2:])
                    pol = fit_policy(name, fit, eps, delta)
                    res = pol.evaluate(held)
                    fixed_acc = held.correct()[-1].double().mean().item()
                    split_violations += int(res["disagreement"] > eps)
                    split_acc_violations += int(fixed_acc - res["test_acc"] > eps)
                    split_savings.append(res["saving"])
                d = args.draws
                rows.append({
                    "policy": name, "eps": eps, "delta": delta, "draws": d, "fit_size": args.n,
                    "population_violation_rate": pop_violations / d,
                    "population_accuracy_loss_violation_rate": pop_acc_violations / d,
                    "slack_3se": 3 * math.sqrt(delta * (1 - delta) / d),
                    "holds": bool(pop_violations / d <= delta + 3 * math.sqrt(delta * (1 - delta) / d)),
                    "mean_population_saving": float(np.mean(savings)),
                    "split_fit_size": pool.N // 2,
                    "split_disagreement_violation_rate": split_violations / d,
                    "split_accuracy_loss_violation_rate": split_acc_violations / d,
                    "mean_split_saving": float(np.mean(split_savings)),
                })
                r = rows[-1]
                print(f"{name:20s} eps={eps:<6} delta={delta:<5} population violation {r['population_violation_rate']:.3f} "
                      f"(acc-loss {r['population_accuracy_loss_violation_rate']:.3f}), saving "
                      f"{100 * r['mean_population_saving']:.1f}% | split violation {r['split_disagreement_violation_rate']:.3f} "
                      f"(acc-loss {r['split_accuracy_loss_violation_rate']:.3f})", flush=True)
    result = {"run": args.run, "pool_size": pool.N, "T": pool.T,
              "zero_disagreement_eps_at_n": {str(args.n): {str(dl): zero_disagreement_bound(args.n, float(dl))
                                                           for dl in args.delta.split(",")}},
              "rows": rows, "all_hold": all(r["holds"] for r in rows), "seconds": time.perf_counter() - started}
    write_json(args.out, result)
    print(f"all within delta + 3 s.e.: {result['all_hold']} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
