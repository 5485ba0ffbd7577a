"""How much accuracy does NIR's standard IF semantics cost a QCFS-converted SNN?

Exports the default MNIST-5k model (``snnexit run --out runs/default`` trains or reuses it) to
NIR, reads the file back and simulates the test split for T steps three ways:

* ``snnexit``: our SNN as converted (soft reset, v(0) = theta/2, fire on >=), BatchNorm unfolded;
* ``nir_exact``: the NIR file re-imported with our metadata (must equal our BN-folded SNN bit
  for bit; BN folding itself changes float rounding only);
* ``nir_standard``: the NIR file under the standard IF semantics (hard reset to 0, v(0) = 0,
  fire on >), what a NIR consumer that ignores our metadata runs.

Writes ``benchmarks/results/nir_gap.json``.

    .venv/bin/python benchmarks/nir_gap.py [--run runs/default] [--T 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snnexit.runs.exportable import exportable_snn  # noqa: E402
from snnexit.data import load_dataset  # noqa: E402
from snnexit.nir import export_nir, fold_all_batchnorm, import_nir  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.simulate import SpikingNetwork, record_trace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/default")
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results/nir_gap.json")
    args = parser.parse_args()

    snn, _ = exportable_snn(args.run)
    saved = json.loads((Path(args.run) / "results.json").read_text())["config"]
    data = load_dataset(saved["dataset"], saved["seed"], root=saved.get("data_dir"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.nir"
        export_nir(snn, path)
        size = path.stat().st_size
        nets = {
            "snnexit": snn,
            "snnexit_bn_folded": SpikingNetwork(fold_all_batchnorm(snn.body), snn.meta),
            "nir_exact": import_nir(path, "snnexit"),
            "nir_standard": import_nir(path, "nir", dt=1.0),
        }
    traces, seconds = {}, {}
    for name, net in nets.items():
        started = time.perf_counter()
        traces[name] = record_trace(net, data.test.batches(250), T=args.T)
        seconds[name] = time.perf_counter() - started
    checkpoints = [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= args.T]
    ref = traces["snnexit"]
    result = {
        "run": args.run, "dataset": saved["dataset"], "model": saved["model"], "T": args.T,
        "test_inputs": ref.N, "nir_file_bytes": size,
        "accuracy_at_T": {name: {str(t): float(tr.accuracy_per_step()[t - 1]) for t in checkpoints}
                          for name, tr in traces.items()},
        "prediction_agreement_with_snnexit_at_T": {
            name: float((tr.predictions()[-1] == ref.predictions()[-1]).double().mean()) for name, tr in traces.items()},
        "nir_exact_equals_bn_folded_bitwise": bool(
            torch.equal(traces["nir_exact"].outputs, traces["snnexit_bn_folded"].outputs)
            and torch.equal(traces["nir_exact"].spikes, traces["snnexit_bn_folded"].spikes)),
        "max_abs_output_diff_bn_folded_vs_unfolded": float(
            (traces["snnexit_bn_folded"].outputs - ref.outputs).abs().max()),
        "spikes_per_input": {name: float(tr.spikes.sum((0, 2)).mean()) for name, tr in traces.items()},
        "trace_seconds": seconds,
        "command": "python benchmarks/nir_gap.py " + " ".join(sys.argv[1:]),
    }
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("accuracy_at_T", "prediction_agreement_with_snnexit_at_T",
                                              "nir_exact_equals_bn_folded_bitwise", "spikes_per_input")}, indent=1))


if __name__ == "__main__":
    main()
