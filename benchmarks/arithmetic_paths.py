"""How often do the engines' float outputs differ from the trace's, and does a decision move?

The conformance matrix (tests/test_conformance.py) proves every path takes the offline decisions
on networks whose sums are exact. Real float32 networks sum in an order that depends on the batch
size, the chunk of steps, the thread count and the memory layout (oneDNN and BLAS pick other
kernels and blockings), so the same input can get outputs a few ulps apart on two paths. This
benchmark measures it on the main job's network (``make run``: MNIST-5k, vgg_small, QCFS, T = 32)
over ``--inputs`` test inputs, for 1 and 2 threads and both memory layouts:

* the reference: the run's stored test trace (``snnexit trace``: batches of 250, step by step, torch's
  default threads, the default layout), the one the certificate was computed on;
* ``trace``: the same recording again, in this row's threads and layout;
* ``step_b1`` / ``step_b256``: the step engine's arithmetic (``snn.step``) at batch 1 / 256;
* ``chunked_b1_k{4,32}`` / ``chunked_b256_k4``: the chunked engine's (``snn.step_chunk``), chunks of
  4 steps and of all 32 at batch 1, chunks of 4 at batch 256.

For each path: the share of outputs ``Y[t]`` (input x step) not bit-identical to the trace's, the
largest difference, the inputs whose answer differs at some step, and the inputs whose exit step
under the run's certified exit (``certified.json``) differs from the offline one. Writes
``benchmarks/results/arithmetic_paths.json``.

    .venv/bin/python benchmarks/arithmetic_paths.py [--run runs/default] [--inputs 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.main_job import DEFAULT_RUN, load_main_job  # noqa: E402
from snnexit.exit.curve import exit_steps_from_scores  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.runtime.threads import num_threads  # noqa: E402
from snnexit.simulate.trace import Trace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def outputs_by(snn, x: torch.Tensor, T: int, batch: int, chunk: int | None) -> torch.Tensor:
    """(T, N, C) accumulated outputs, batch by batch, step by step (chunk None) or in chunks of ``chunk`` steps."""
    parts = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        snn.reset()
        if chunk is None:
            ys = torch.stack([snn.step(xb) for _ in range(T)])
        else:
            ys = torch.cat([snn.step_chunk(xb.unsqueeze(0).expand(min(chunk, T - t0), *xb.shape))
                            for t0 in range(0, T, chunk)])
        acc, accumulated = None, []
        for y in ys:  # one add per step, as the engines and record_trace accumulate (cumsum may sum otherwise)
            acc = y.clone() if acc is None else acc + y
            accumulated.append(acc)
        parts.append(torch.stack(accumulated))  # (T, n, C)
        snn.reset()
    return torch.cat(parts, 1).float()


PATHS = {"trace": (250, None), "step_b1": (1, None), "step_b256": (256, None), "chunked_b1_k4": (1, 4),
         "chunked_b1_k32": (1, 32), "chunked_b256_k4": (256, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(DEFAULT_RUN))
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "arithmetic_paths.json"))
    args = ap.parse_args()
    started = time.perf_counter()
    job = load_main_job(args.run)
    data, snn, test, rule = job.data, job.snn, job.test, job.rule
    x, T = data.test.x[:args.inputs], test.T
    rows = []
    for threads in (1, 2):
        for layout in ("contiguous", "channels_last"):
            snn.optimize(channels_last=layout == "channels_last")
            with num_threads(threads):
                outputs = {name: outputs_by(snn, x, T, b, k) for name, (b, k) in PATHS.items()}
            reference = test.outputs[:, :len(x)]  # the stored trace: the one the certificate was computed on
            for name, Y in outputs.items():
                row = {"threads": threads, "layout": layout, "path": name,
                       "outputs_differing_share": (Y != reference).any(-1).double().mean().item(),
                       "max_abs_difference": (Y - reference).abs().max().item(),
                       "inputs_with_another_answer": int((Y.argmax(-1) != reference.argmax(-1)).any(0).sum())}
                if rule is not None:
                    as_trace = Trace(Y, None, None, test.meta)
                    steps = exit_steps_from_scores(rule.scores(as_trace), rule.threshold_)
                    offline = exit_steps_from_scores(rule.scores(Trace(reference, None, None, test.meta)),
                                                     rule.threshold_)
                    row["inputs_with_another_exit_step"] = int((steps != offline).sum())
                rows.append(row)
                print(row, flush=True)
    snn.optimize(channels_last=False)
    write_json(args.out, {"benchmark": "arithmetic_paths",
                          "command": "python benchmarks/arithmetic_paths.py " + " ".join(sys.argv[1:]),
                          "run": job.shown_path, "inputs": len(x), "T": T, "torch": torch.__version__,
                          "certified_policy": None if rule is None else rule.name, "rows": rows,
                          "seconds": time.perf_counter() - started})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
