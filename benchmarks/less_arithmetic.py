"""Less arithmetic on CPU: spike-driven, bfloat16/float16 and int8 layers against the dense floor.

A workload's trained network (``snnexit.experiments.workloads``, converted like
``benchmarks/speed_race.py`` converts it: QCFS, no conversion fix) runs ``--inputs`` test inputs for
T steps while forward hooks record what every convolution and linear layer receives
(``snnexit.experiments.layer_inputs``). Then:

1. per layer that receives spikes, at each batch size and thread count: its measured input
   density, and the median time of each variant (``snnexit.experiments.less_arithmetic``) over
   interleaved repeats on the kept real inputs, as a ratio to the dense float32 layer, with the
   variant's error against the dense output and a float64 truth;
2. the whole network: the step engine's arithmetic (``snn.step``) per step in float32 and in each
   lower precision (``snnexit.experiments.precision``), and the float32 step with every spike-fed
   layer swapped for its best variant (measured step - dense layers + best variants; exact
   variants only, and any);
3. decisions: the certified exit fitted on the float32 validation trace, and the answers at every
   step, on ``--decision-inputs`` test inputs with each lower-precision network against float32
   (traces step by step, and the step engine run with the certified exit); and the same on the
   conformance matrix's dyadic networks (tests/conformance_kinds.py: float32 sums there are exact,
   so any change is the precision's), under every online threshold policy.

Ratios only: the machine is shared (its load is recorded). One JSON per run.

Usage: python benchmarks/less_arithmetic.py [--workload default] [--batch-sizes 1 16] [--threads 1 all]
       [--repeats 5] [--inputs 256] [--decision-inputs 1000] [--layout channels_last] [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnexit.data import load_dataset  # noqa: E402
from snnexit.exit import POLICIES, ThresholdPolicy, online_policy_names  # noqa: E402
from snnexit.experiments.layer_inputs import LayerInputRecorder  # noqa: E402
from snnexit.experiments.less_arithmetic import best_choice, errors, layer_variants, time_interleaved, time_layer  # noqa: E402,E501
from snnexit.experiments.precision import (bf16_supported, decision_changes, fp16_supported, precision_network,  # noqa: E402
                                          precisions_to_try)
from snnexit.experiments.workloads import WORKLOADS, workload  # noqa: E402
from snnexit.io import write_json  # noqa: E402
from snnexit.runs.evaluation import certified_exit  # noqa: E402
from snnexit.runs.network import trained_snn  # noqa: E402
from snnexit.runtime.engine import EarlyExitEngine  # noqa: E402
from snnexit.runtime.threads import LoadMeter, num_threads  # noqa: E402
from snnexit.simulate import record_trace  # noqa: E402
from snnexit.simulate.inputs import check_inputs  # noqa: E402


def thread_count(value: str) -> int:
    return (os.cpu_count() or 1) if value == "all" else int(value)


def record_inputs(snn, x, T, temporal, keep_rows, batch=64):
    steps = sorted({max(1, round(T * q)) for q in (0.25, 0.5, 0.75, 1.0)})
    recorder = LayerInputRecorder(snn, keep_rows=keep_rows, keep_steps=steps)
    for i in range(0, len(x), batch):
        recorder.run(x[i:i + batch], T, temporal)
    return recorder, steps


@torch.no_grad()
def step_seconds(nets: dict, x, T, temporal, repeats, threads) -> dict:
    """Median seconds per step of ``snn.step`` (T steps from a fresh state) for each network."""
    def run(net):
        x_net = check_inputs(net, x, temporal=temporal)  # in the network's dtype, as the engines cast it

        def go():
            net.reset()
            for t in range(T):
                net.step(x_net[:, t] if temporal else x_net)
        return go

    with num_threads(threads):
        med = time_interleaved({name: run(net) for name, net in nets.items()}, repeats)
    return {name: s / T for name, s in med.items()}


def layer_rows(spiking, variants, accuracy, batch, threads, repeats):
    rows = []
    for record in spiking:
        vs, notes = variants[record.name]
        seconds = time_layer(record, vs, batch, repeats, threads)
        ratios = {name: s / seconds["dense"] for name, s in seconds.items()}
        exact = accuracy[record.name]
        rows.append({"layer": record.name, "kind": record.kind, "input_shape": record.shape(),
                     "density": record.density(), "density_kept_steps": [float(s.ne(0).double().mean())
                                                                        for s in record.samples],
                     "ratio_to_dense": ratios, "accuracy": exact, "absent": notes,
                     "best_exact": best_choice(ratios, exact, True), "best_any": best_choice(ratios, exact, False),
                     "_seconds": seconds})
    return rows


def decisions(snn, data, T, temporal, n_inputs, precisions, log):
    """Certified exit and answers of each lower-precision network against float32 on test inputs."""
    val = record_trace(snn, data.val.batches(250), T=T, temporal=temporal)
    policy = certified_exit(val).policy
    x, y = data.test.x[:n_inputs], data.test.y[:n_inputs]
    batches = [(x[i:i + 250], y[i:i + 250]) for i in range(0, len(x), 250)]
    reference = record_trace(snn, batches, T=T, temporal=temporal)
    engine_ref = [EarlyExitEngine(snn, policy, T, count_spikes=False).run(xb, temporal=temporal) for xb, _ in batches]
    out = {"policy": getattr(policy, "name", type(policy).__name__), "inputs": len(x), "by_precision": {}}
    for name in precisions:
        net = precision_network(snn, name)
        row = decision_changes(reference, record_trace(net, batches, T=T, temporal=temporal), policy)
        runs = [EarlyExitEngine(net, policy, T, count_spikes=False).run(xb, temporal=temporal) for xb, _ in batches]
        row["step_engine"] = {
            "exit_step_changed": sum(int((a.exit_steps != b.exit_steps).sum()) for a, b in zip(engine_ref, runs)),
            "answer_changed": sum(int((a.predictions != b.predictions).sum()) for a, b in zip(engine_ref, runs))}
        out["by_precision"][name] = row
        log(f"decisions {name}: {row}")
    return out


def matrix_decisions(precisions, log, T=8, n=256):
    """Lower precision on the conformance matrix's dyadic networks (exact float32 sums)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conformance_kinds import inputs, network_kinds

    rows = []
    for kind in [k for k in network_kinds() if k.default]:
        snn = kind.build(torch.float32, 0)
        x_val, x = inputs(200, 1, None, torch.float32), inputs(n, 2, None, torch.float32)
        labels = record_trace(snn, [(x_val, None)], T=T).predictions()[-1]  # its own answers: fits every policy
        val = record_trace(snn, [(x_val, labels)], T=T)
        ref = record_trace(snn, [(x, None)], T=T)
        policies = {p: POLICIES.get(p)(target="max_steps", max_steps=T / 2).fit(val) for p in online_policy_names()
                    if issubclass(POLICIES.get(p), ThresholdPolicy) and not POLICIES.get(p).uses_labels_at_test}
        for name in precisions:
            try:
                other = record_trace(precision_network(snn, name), [(x, None)], T=T)
            except (RuntimeError, NotImplementedError, AttributeError, TypeError, ValueError) as exc:  # a kind that reads its layers
                rows.append({"kind": kind.name, "precision": name, "error": str(exc).splitlines()[0]})
                continue
            changes = {p: decision_changes(ref, other, policy) for p, policy in policies.items()}
            rows.append({"kind": kind.name, "precision": name, "inputs": n, "T": T,
                         "answer_at_some_step_changed": max(c["answer_at_some_step_changed"] for c in changes.values()),
                         "exit_step_changed_max_over_policies": max(c["exit_step_changed"] for c in changes.values()),
                         "max_abs_output_difference": max(c["max_abs_output_difference"] for c in changes.values())})
    for name in precisions:
        mine = [r for r in rows if r["precision"] == name and "error" not in r]
        log(f"matrix {name}: {sum(r['exit_step_changed_max_over_policies'] > 0 or r['answer_at_some_step_changed'] > 0 for r in mine)}"
            f" of {len(mine)} kinds change a decision")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="default", choices=WORKLOADS.names())
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--threads", nargs="+", default=["1", "all"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--T", type=int, default=None, help="steps (default: the workload's)")
    ap.add_argument("--inputs", type=int, default=256, help="test inputs whose layer inputs are recorded")
    ap.add_argument("--decision-inputs", type=int, default=1000, help="test inputs of the decision comparison (0: skip)")
    ap.add_argument("--no-matrix", action="store_true", help="skip the conformance-matrix decision check")
    ap.add_argument("--layout", choices=["channels_last", "contiguous"], default="channels_last")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    w = workload(args.workload)
    config = w.config(device="cpu", conversion_fix="none")
    T, out = args.T or config.T, args.out or str(ROOT / "benchmarks" / "results" / f"less_arithmetic_{w.name}.json")
    data = load_dataset(config.dataset, config.seed)
    snn, calibration = trained_snn(config, data, log=log)
    channels_last = args.layout == "channels_last"
    snn = snn.eval().optimize(channels_last)
    load_before = LoadMeter(probe_s=1.0).other_busy()
    log(f"{w.name}: other processes keep {load_before:.2f} cores busy; load average {os.getloadavg()}")
    x_all = data.test.x[:args.inputs]
    recorder, kept_steps = record_inputs(snn, x_all, T, data.temporal, max(args.batch_sizes))
    spiking = [r for r in recorder.layers if r.receives_spikes]
    variants = {r.name: layer_variants(r, channels_last) for r in spiking}
    accuracy = {r.name: errors(r, variants[r.name][0]) for r in spiking}
    precisions = precisions_to_try()
    nets = {"float32": snn, **{p: precision_network(snn, p).optimize(channels_last) for p in precisions}}
    load, cells = LoadMeter(probe_s=0.5), []
    load.other_busy()
    for batch, threads in itertools.product(args.batch_sizes, args.threads):
        n_threads = thread_count(threads)
        rows = layer_rows(spiking, variants, accuracy, batch, n_threads, args.repeats)
        steps = step_seconds(nets, data.test.x[:batch], T, data.temporal, args.repeats, n_threads)
        dense_sum = sum(r["_seconds"]["dense"] for r in rows)
        whole = {"step_ratio_to_float32": {p: s / steps["float32"] for p, s in steps.items()},
                 "spike_fed_dense_layers_share_of_step": dense_sum / steps["float32"]}
        for key in ("best_exact", "best_any"):
            best_sum = sum(r["_seconds"][r[key][0]] for r in rows)
            whole[f"float32_step_with_{key}_layers_ratio"] = (steps["float32"] - dense_sum + best_sum) / steps["float32"]
        for r in rows:
            r.pop("_seconds")
        cells.append({"batch_size": batch, "threads": n_threads, "layers": rows, "whole_network": whole,
                      "other_processes_busy_cores": load.other_busy(), "load_average": list(os.getloadavg())})
        log(f"batch {batch}, {n_threads} threads: {whole}; best per layer: "
            f"{[(r['layer'], round(r['density'], 3), r['best_exact'][0], round(r['best_exact'][1], 2), r['best_any'][0], round(r['best_any'][1], 2)) for r in rows]}")
    with num_threads(thread_count(args.threads[-1])):
        decided = decisions(snn, data, T, data.temporal, args.decision_inputs, precisions, log) \
            if args.decision_inputs > 0 else None
        matrix = None if args.no_matrix else matrix_decisions(precisions, log)
    write_json(out, {
        "benchmark": "less_arithmetic",
        "command": "python benchmarks/less_arithmetic.py " + " ".join(sys.argv[1:]),
        "workload": {"name": w.name, "about": w.about, "dataset": config.dataset, "model": config.model, "T": T,
                     "input_shape": list(data.test.x.shape[1:]), "temporal": data.temporal,
                     "ann_test_acc": calibration["test_acc"], "layout": args.layout},
        "recorded": {"inputs": len(x_all), "kept_steps": kept_steps, "kept_rows": max(args.batch_sizes),
                     "layers": [{"layer": r.name, "kind": r.kind, "receives_spikes": r.receives_spikes,
                                 "density": r.density(), "density_per_step": r.density_per_step()}
                                for r in recorder.layers]},
        "shared_machine": "ratios only: the machine is shared with other jobs (other_processes_busy_cores)",
        "other_processes_busy_cores": load_before, "load_average": list(os.getloadavg()),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "processor": platform.processor() or platform.machine(),
                    "bf16_native": bf16_supported(), "fp16_native": fp16_supported()},
        "cells": cells, "decisions": decided, "matrix_decisions": matrix,
        "seconds": time.perf_counter() - started,
    })
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
