"""Energy per inference of the main job's network under both conventions, fixed T and certified exit.

``snnexit``: a spike-driven chip (analog input layer MACs at every step, one AC per delivered spike
with each layer's mean fan-out, BatchNorm folded, pooling folded into the next layer's fan-out);
``spikingjelly``: what SpikingJelly's op counter counts on the same run (exact fan-out of 0/1
inputs, dense MACs for every other input - QCFS spikes carry theta -, pooling and BatchNorm
counted). See :mod:`snnexit.simulate.opcount`. 45 nm FP32 energies (4.6 pJ MAC, 0.9 pJ AC).

    .venv/bin/python benchmarks/energy_conventions.py [--run runs/default] [--inputs 1000]

Writes ``benchmarks/results/energy_conventions.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.main_job import DEFAULT_RUN, load_main_job  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.simulate.cost import cost_from_trace  # noqa: E402
from snnexit.simulate.opcount import ENERGY_CONVENTIONS, energy_by_convention  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(DEFAULT_RUN))
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "energy_conventions.json"))
    args = ap.parse_args()
    started = time.perf_counter()
    job = load_main_job(args.run)
    data, snn, rule = job.data, job.snn, job.rule
    n = min(args.inputs, job.test.N)
    test = job.test.subset(list(range(n)))
    rows = {}
    for label, steps in (("fixed_T", None), ("certified_exit", rule.exit_steps(test))):
        cost = cost_from_trace(test, steps)
        rows[label] = {c: energy_by_convention(c, snn, data.test.x[:n], test.T, steps, cost=cost)
                       for c in ENERGY_CONVENTIONS}
        rows[label]["mean_steps"] = cost.steps.double().mean().item()
        print(label, {c: round(rows[label][c]["energy_pj_per_inference"] / 1e6, 2) for c in ENERGY_CONVENTIONS},
              "uJ", flush=True)
    write_json(args.out, {"benchmark": "energy_conventions",
                          "command": "python benchmarks/energy_conventions.py " + " ".join(sys.argv[1:]),
                          "run": job.shown_path, "inputs": n, "T": test.T, "certified_policy": rule.name, "rows": rows,
                          "seconds": time.perf_counter() - started})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
