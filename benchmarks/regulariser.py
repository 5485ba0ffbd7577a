"""Target (issue 6): does the cutoff regulariser (RCS) move Top-K cutoff's mean steps down by
>= 15% at equal accuracy on the built-in event data set?

Runs ``snnexit cutoff-train --table`` (the same code, :func:`snnexit.experiments.cutoff.cutoff_table`):
arms with a = 0 (baseline) and with each regulariser weight, identical otherwise (same init seed,
same data order, same epochs), then compares Top-K against the baseline two ways:

* **no loss, fitted on validation**: each arm's threshold is fitted on its validation trace for
  no accuracy loss against its own fixed T, and reported on test (deployable, but noisy: the
  validation set has 400 inputs);
* **equal accuracy, on the test curves**: for accuracy levels at and below the lowest fixed-T
  accuracy of the arms, the fewest mean steps each arm's exact Top-K curve needs on the test
  trace (thresholds chosen on test: optimistic for every arm alike, but compares at truly equal
  accuracy).

Writes ``benchmarks/results/regulariser.json``; prints a summary. Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/regulariser.py [--epochs 0 --finetune-epochs 4 --weights 0.1,1]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from snnexit.experiments.cutoff import CutoffSettings, cutoff_table, steps_at_accuracy
from snnexit.data import DATASETS
from snnexit.io import write_json
from snnexit.simulate import Trace

TARGET = 0.15
LEVEL_OFFSETS = (0.0, 0.01, 0.02)  # accuracy levels: common, common - 1 point, common - 2 points


def reduction(base: float | None, other: float | None) -> float | None:
    if base is None or other is None or base <= 0:
        return None
    return 1.0 - other / base


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="event_mnist" if "event_mnist" in DATASETS else "mnist5k")
    p.add_argument("--epochs", type=int, default=0, help="shared epochs without the regulariser (0: arms from scratch)")
    p.add_argument("--finetune-epochs", type=int, default=4, help="epochs per arm")
    p.add_argument("--weights", default="0.1,1", help="regulariser weights a (comma-separated)")
    p.add_argument("--init", default="scratch", choices=["scratch", "converted"],
                   help="direct training from scratch, or fine-tuning a QCFS-converted SNN")
    p.add_argument("--T", type=int, default=None, help="time steps (default: all frames of event data, 8 for static)")
    p.add_argument("--neuron", default="lif")
    p.add_argument("--loss", default="tet")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "regulariser.json"))
    args = p.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")]
    settings = CutoffSettings(dataset=args.dataset, width=args.width, init=args.init, T=args.T,
                              neuron=args.neuron, loss=args.loss,
                              epochs=args.epochs, finetune_epochs=args.finetune_epochs,
                              table_reg_weights=weights, seed=args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        table = cutoff_table(settings, Path(tmp), log=lambda m: print(m, file=sys.stderr))
        tests = {r["reg_weight"]: Trace.load(Path(tmp) / f"trace_test_a{r['reg_weight']:g}.safetensors")
                 for r in table["rows"]}
    rows = {r["reg_weight"]: r for r in table["rows"]}
    base = rows[0.0]
    common = table["common_accuracy"]
    levels = [common - d for d in LEVEL_OFFSETS]
    comparisons = []
    for a in weights:
        r = rows[a]
        cmp = {"reg_weight": a, "fixed_T_acc": r["fixed_T_acc"], "baseline_fixed_T_acc": base["fixed_T_acc"]}
        for policy in ("topk", "topk_per_step"):
            cmp[f"{policy}_val_fitted"] = {
                "baseline_steps": base[f"{policy}_mean_steps"], "baseline_acc": base[f"{policy}_acc"],
                "reg_steps": r[f"{policy}_mean_steps"], "reg_acc": r[f"{policy}_acc"],
                "reduction": reduction(base[f"{policy}_mean_steps"], r[f"{policy}_mean_steps"]),
            }
            at = []
            for level in levels:
                b = steps_at_accuracy(tests[0.0], policy, level)
                o = steps_at_accuracy(tests[a], policy, level)
                at.append({"accuracy": level, "baseline_steps": b, "reg_steps": o, "reduction": reduction(b, o)})
            cmp[f"{policy}_equal_accuracy"] = at
        red = cmp["topk_equal_accuracy"][0]["reduction"]
        cmp["target_met"] = red is not None and red >= TARGET
        comparisons.append(cmp)
    result = {
        "question": "does the RCS regulariser cut Top-K cutoff's mean steps by >= 15% at equal accuracy?",
        "answer": ("yes" if any(c["target_met"] for c in comparisons) else "no") + " (Top-K, test curves, accuracy = "
                  "the lowest fixed-T accuracy of the arms)",
        "target_reduction": TARGET,
        "command": "python benchmarks/regulariser.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": table["settings"], "T": table["T"], "dataset": table["dataset"], "data": table["data"],
        "common_accuracy": common, "rows": table["rows"], "comparisons": comparisons,
        "timings": table["timings"], "seconds": time.perf_counter() - started,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpu": platform.processor() or platform.machine()},
    }
    write_json(args.out, result)
    for c in comparisons:
        e = c["topk_equal_accuracy"][0]
        v = c["topk_val_fitted"]
        print(f"a = {c['reg_weight']:g}: fixed-T acc {c['fixed_T_acc']:.4f} (baseline {c['baseline_fixed_T_acc']:.4f}); "
              f"Top-K at equal accuracy {e['accuracy']:.4f}: {e['reg_steps']} vs {e['baseline_steps']} steps "
              f"(reduction {e['reduction']}); val-fitted no loss: {v['reg_steps']:.2f} vs {v['baseline_steps']:.2f}")
    print(f"{result['answer']}. Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
