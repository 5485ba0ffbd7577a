"""Does another library run our NIR files, and what does it cost? SpikingJelly's reader against ours.

Trains (or reuses from the cache) the default model of ``snnexit run`` (MNIST-5k, vgg_small,
QCFS L = 4, 30 epochs, seed 0; ``--dataset`` / ``--epochs`` change it), converts it and
simulates the test split for T steps:

* ``snnexit``: our SNN as converted (soft reset, v(0) = theta/2, fire on >=);
* ``spikingjelly_exact``: SpikingJelly's ``import_from_nir`` on the exact export (it has no
  mapping for NIR's ``Scale`` node, so it refuses the file: recorded as the error it gives);
* ``hard_reset_k=1``: the ``hard_reset`` export with the converted thresholds, read by
  SpikingJelly (and by our importer: the two must agree);
* ``hard_reset_k=<auto>``: the same with the threshold scale k chosen on the validation split
  (mean accuracy over steps 1..T), read by SpikingJelly and by us.

Writes ``benchmarks/results/nir_readers.json``.

    .venv/bin/python benchmarks/nir_readers.py [--T 32] [--dataset mnist5k] [--epochs 30] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snnexit.convert import convert  # noqa: E402
from snnexit.data import load_dataset  # noqa: E402
from snnexit.errors import SnnexitError  # noqa: E402
from snnexit.export import export_nir, import_nir  # noqa: E402
from snnexit.export.standard import calibrate_threshold_scale, spikingjelly_trace  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.runs.ann import trained_ann  # noqa: E402
from snnexit.runs.settings import RunConfig  # noqa: E402
from snnexit.simulate import record_trace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default="benchmarks/results/nir_readers.json")
    args = parser.parse_args()

    config = RunConfig(dataset=args.dataset, epochs=args.epochs, cache_dir=args.cache_dir, progress=False)
    data = load_dataset(config.dataset, config.seed)
    snn = convert(trained_ann(config, data, log=print), config.converter)
    shape = tuple(data.train.x.shape[1:])
    started = time.perf_counter()
    k, scores = calibrate_threshold_scale(snn, data.val.batches(250), args.T, shape)
    calibration_seconds = time.perf_counter() - started

    traces, errors, seconds = {}, {}, {}

    def timed(name, fn):
        t0 = time.perf_counter()
        try:
            traces[name] = fn()
        except SnnexitError as exc:
            errors[name] = str(exc)
        seconds[name] = time.perf_counter() - t0

    test = list(data.test.batches(250))
    with tempfile.TemporaryDirectory() as tmp:
        exact, hard1, hardk = (Path(tmp) / n for n in ("exact.nir", "hard1.nir", "hardk.nir"))
        export_nir(snn, exact, shape)
        export_nir(snn, hard1, shape, variant="hard_reset", threshold_scale=1.0)
        export_nir(snn, hardk, shape, variant="hard_reset", threshold_scale=k)
        timed("snnexit", lambda: record_trace(snn, test, T=args.T))
        timed("spikingjelly_exact", lambda: spikingjelly_trace(exact, test, args.T))
        timed("snnexit_reads_hard_reset_k=1", lambda: record_trace(import_nir(hard1), test, T=args.T))
        timed("spikingjelly_hard_reset_k=1", lambda: spikingjelly_trace(hard1, test, args.T))
        timed(f"snnexit_reads_hard_reset_k={k:g}", lambda: record_trace(import_nir(hardk), test, T=args.T))
        timed(f"spikingjelly_hard_reset_k={k:g}", lambda: spikingjelly_trace(hardk, test, args.T))

    checkpoints = [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= args.T]
    ref = traces["snnexit"]
    pairs = [("snnexit_reads_hard_reset_k=1", "spikingjelly_hard_reset_k=1"),
             (f"snnexit_reads_hard_reset_k={k:g}", f"spikingjelly_hard_reset_k={k:g}")]
    result = {
        "dataset": config.dataset, "model": config.model, "epochs": config.epochs, "seed": config.seed, "T": args.T,
        "test_inputs": ref.N, "threshold_scale_chosen_on_validation": k,
        "validation_mean_accuracy_over_steps_per_scale": scores, "calibration_seconds": calibration_seconds,
        "accuracy_at_T": {name: {str(t): float(tr.accuracy_per_step()[t - 1]) for t in checkpoints}
                          for name, tr in traces.items()},
        "mean_accuracy_over_steps": {name: float(tr.accuracy_per_step().mean()) for name, tr in traces.items()},
        "reader_errors": errors,
        "spikingjelly_equals_snnexit_reading": {
            b: {"max_abs_output_diff": float((traces[a].outputs - traces[b].outputs).abs().max()),
                "same_predictions_every_step": bool(torch.equal(traces[a].predictions(), traces[b].predictions()))}
            for a, b in pairs},
        "spikes_per_input": {name: float(tr.spikes.sum((0, 2)).mean()) for name, tr in traces.items()
                             if tr.spikes is not None},
        "trace_seconds": seconds,
        "command": "python benchmarks/nir_readers.py " + " ".join(sys.argv[1:]),
    }
    write_json(args.out, result)
    for name, acc in result["accuracy_at_T"].items():
        print(f"{name:40s} " + " ".join(f"T={t}: {100 * a:.1f}%" for t, a in acc.items()))
    print("errors:", errors)


if __name__ == "__main__":
    main()
