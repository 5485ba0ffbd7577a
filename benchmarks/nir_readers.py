"""Do other libraries run our NIR files as meant, and what does each cost? Their own readers against ours.

Trains (or reuses from the cache) the model of ``snnexit run`` on ``--dataset`` (vgg_small, QCFS
L = 4, ``--epochs``, seed 0), converts it and simulates the test split for T steps, as each
library's own importer runs each export:

* ``snnexit``: our SNN as converted (soft reset, v(0) = theta/2, fire on >=), the exact export's meaning;
* ``spikingjelly/exact``: SpikingJelly's ``import_from_nir`` on the exact export (it has no
  ``Scale`` node, so it refuses the file: recorded as the error it gives);
* ``hard_reset/k``: the hard-reset export (for SpikingJelly) at threshold scale k = 1 and at the k
  chosen on the validation split (mean accuracy over steps 1..T, as that reader runs the export:
  snnexit's importer under the reader's semantics);
* ``subtract/k``: the subtract export (for snnTorch, Sinabs; ``IF`` with r = 1) likewise, read by
  snnTorch 1.0.0's ``import_from_nir`` (its IF leaks: beta 0.9), by the same with beta = 1 (what
  snnTorch's main branch builds), and by Sinabs's ``from_nir`` (sum pooling: it has no AvgPool2d).

Each library's reading is also run by snnexit's importer under that library's semantics: the two
must agree (``equals_snnexit``). Writes ``--out`` (JSON).

    .venv/bin/python benchmarks/nir_readers.py [--dataset digits] [--T 32] [--epochs 30] [--out FILE]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snnexit.convert import convert  # noqa: E402
from snnexit.data import load_dataset  # noqa: E402
from snnexit.errors import SnnexitError  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.nir import SEMANTICS, import_nir, to_nir  # noqa: E402
from snnexit.nir.readers import library_trace  # noqa: E402
from snnexit.nir.variants import calibrate_threshold_scale  # noqa: E402
from snnexit.runs.ann import trained_ann  # noqa: E402
from snnexit.runs.settings import RunConfig  # noqa: E402
from snnexit.simulate import record_trace  # noqa: E402

CHECKPOINTS = (1, 2, 4, 8, 16, 32, 64)


def readers(variant: str):
    """(name, library, options, the semantics snnexit reads that library's reading with, pooling)."""
    if variant == "hard_reset":
        return [("spikingjelly", "spikingjelly", {"dt": 1.0}, replace(SEMANTICS.create("spikingjelly"), dt=1.0), "avg")]
    return [("snntorch_1.0.0", "snntorch", {}, replace(SEMANTICS.create("snntorch"), if_beta=0.9), "avg"),
            ("snntorch_beta1", "snntorch", {"snntorch_if_beta": 1.0}, SEMANTICS.create("snntorch"), "avg"),
            ("sinabs", "sinabs", {}, SEMANTICS.create("sinabs"), "sum")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default="benchmarks/results/nir_readers_digits.json")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    config = RunConfig(dataset=args.dataset, epochs=args.epochs, cache_dir=args.cache_dir, progress=False)
    data = load_dataset(config.dataset, config.seed)
    snn = convert(trained_ann(config, data, log=print), config.converter)
    shape = tuple(data.train.x.shape[1:])
    val, test = list(data.val.batches(250)), list(data.test.batches(250))
    traces, errors, agreement, scales = {}, {}, {}, {}

    traces["snnexit"] = record_trace(snn, test, T=args.T)
    try:
        library_trace(to_nir(snn, shape), "spikingjelly", test, args.T, dt=1.0)
    except SnnexitError as exc:
        errors["spikingjelly/exact"] = str(exc)
    for variant in ("hard_reset", "subtract"):
        for name, library, options, semantics, pooling in readers(variant):
            started = time.perf_counter()
            k, scores = calibrate_threshold_scale(snn, val, args.T, shape, variant=variant, semantics=semantics,
                                                  pooling=pooling)
            scales[f"{variant}/{name}"] = {"chosen_on_validation": k, "validation_mean_accuracy_over_steps": scores,
                                           "seconds": time.perf_counter() - started}
            for scale in dict.fromkeys((1.0, k)):
                graph = to_nir(snn, shape, variant, scale, pooling)
                key = f"{variant}/k={scale:g}/{name}"
                try:
                    traces[key] = library_trace(graph, library, test, args.T, **options)
                except SnnexitError as exc:
                    errors[key] = str(exc)
                    continue
                ours = record_trace(import_nir(graph, semantics), test, T=args.T)
                agreement[key] = {"max_abs_output_diff": float((traces[key].outputs - ours.outputs).abs().max()),
                                  "same_predictions_every_step": bool(torch.equal(traces[key].predictions(),
                                                                                  ours.predictions()))}

    checkpoints = [t for t in CHECKPOINTS if t <= args.T]
    result = {
        "dataset": config.dataset, "model": config.model, "epochs": config.epochs, "seed": config.seed, "T": args.T,
        "test_inputs": traces["snnexit"].N, "threshold_scales": scales,
        "accuracy_at_T": {name: {str(t): float(tr.accuracy_per_step()[t - 1]) for t in checkpoints}
                          for name, tr in traces.items()},
        "mean_accuracy_over_steps": {name: float(tr.accuracy_per_step().mean()) for name, tr in traces.items()},
        "reader_errors": errors, "equals_snnexit": agreement,
        "command": "python benchmarks/nir_readers.py " + " ".join(sys.argv[1:]),
    }
    write_json(args.out, result)
    for name, acc in result["accuracy_at_T"].items():
        print(f"{name:40s} " + " ".join(f"T={t}: {100 * a:.1f}%" for t, a in acc.items()))
    print("errors:", errors)
    print("largest difference from snnexit's reading:", max(a["max_abs_output_diff"] for a in agreement.values()))


if __name__ == "__main__":
    main()
