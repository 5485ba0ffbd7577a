"""``snnexit bench``: wall-clock time of fixed T against early exit, in the paper's Table 2 format.

The network is the pipeline's (trained once and cached, like ``snnexit run``); the policy is
fitted on the validation trace. Two measurements per device, each the median of interleaved
repeats (fixed T and early exit take turns, so a busy machine slows both alike):

* **latency** at batch size 1: seconds per inference over ``--latency-inputs`` test inputs;
* **throughput** at batch size ``--batch-size``: inferences per second over the test split,
  with the runtime's compaction and, for comparison, with masking only (finished inputs keep
  being simulated, as when a cutoff is applied after running all T steps).

Beside the time, each row shows the time-step saving the policy predicts offline and the
ratio of the wall-clock saving to it (1.0: every saved step saves its full time). The exit
steps and answers of the runtime are checked against the offline policy on the test trace.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time

import torch

from snnexit.cli.common import add_device, positive_int
from snnexit.errors import SnnexitError
from snnexit.pipeline import RunConfig


def register(sub) -> None:
    p = sub.add_parser("bench", help="wall-clock time of fixed T vs early exit (latency at batch 1, throughput)",
                       description="Time the early-exit runtime against fixed T on the pipeline's network "
                                   "(paper Table 2 format) and write JSON.")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--model", default="vgg_small")
    p.add_argument("--T", type=positive_int, default=32, help="time steps of the fixed-T baseline (default 32)")
    p.add_argument("--epochs", type=int, default=RunConfig().epochs,
                   help="training epochs of the (cached) ANN (default: the same as snnexit run, so its cache is reused)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policy", default="dynamic_confidence", help="exit policy fitted on the validation trace")
    p.add_argument("--latency-inputs", type=positive_int, default=200, help="test inputs timed at batch size 1")
    p.add_argument("--batch-size", type=positive_int, default=256, help="batch size of the throughput run")
    p.add_argument("--repeats", type=positive_int, default=5, help="interleaved repeats (medians are reported)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--devices", nargs="+", default=None,
                   help="devices to time (default: cpu, and cuda when available)")
    p.add_argument("--out", default="benchmarks/results/bench.json", help="JSON output file")
    p.add_argument("--cache-dir", default=None, help="where trained ANNs are cached")
    add_device(p)  # the device that traces and fits (the timed devices are --devices)
    p.set_defaults(func=main)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_latency(snn, policy, x, T: int, device: str, repeats: int) -> dict:
    """Seconds per inference at batch size 1, fixed T against ``policy`` (interleaved)."""
    from snnexit.exit import FixedT
    from snnexit.simulate.runtime import EarlyExitEngine

    engines = {"fixed": EarlyExitEngine(snn, FixedT(), T, device), "early_exit": EarlyExitEngine(snn, policy, T, device)}
    x = x.to(device)
    steps = torch.zeros(len(x), dtype=torch.long)
    for name, engine in engines.items():  # warm-up (and fan-out computation)
        engine.run(x[:1])
    totals = {name: [] for name in engines}
    for r in range(repeats):
        spent = {name: 0.0 for name in engines}
        for i in range(len(x)):
            order = list(engines) if (i + r) % 2 == 0 else list(engines)[::-1]
            for name in order:
                _sync(device)
                started = time.perf_counter()
                result = engines[name].run(x[i:i + 1])
                _sync(device)
                spent[name] += time.perf_counter() - started
                if name == "early_exit":
                    steps[i] = result.exit_steps[0]
        for name in engines:
            totals[name].append(spent[name] / len(x))
    return _summary(totals, steps, T, len(x))


def time_throughput(snn, policy, x, T: int, batch_size: int, device: str, repeats: int) -> dict:
    """Inferences per second at ``batch_size``: fixed T, early exit with compaction, masking only."""
    from snnexit.exit import FixedT
    from snnexit.simulate.runtime import EarlyExitEngine

    engines = {"fixed": EarlyExitEngine(snn, FixedT(), T, device),
               "early_exit": EarlyExitEngine(snn, policy, T, device),
               "early_exit_masked": EarlyExitEngine(snn, policy, T, device, compact=False)}
    x = x.to(device)
    batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    steps = torch.cat([engines["early_exit"].run(b).exit_steps for b in batches])  # warm-up, exit steps
    engines["fixed"].run(batches[0])
    totals = {name: [] for name in engines}
    names = list(engines)
    for r in range(repeats):
        spent = {name: 0.0 for name in engines}
        for b in batches:
            for name in names[r % 3:] + names[:r % 3]:
                _sync(device)
                started = time.perf_counter()
                engines[name].run(b)
                _sync(device)
                spent[name] += time.perf_counter() - started
        for name in engines:
            totals[name].append(spent[name] / len(x))
    out = _summary(totals, steps, T, len(x))
    out["batch_size"] = batch_size
    out["inferences_per_second"] = {name: 1.0 / s for name, s in out["seconds_per_inference"].items()}
    return out


def _summary(totals: dict, steps: torch.Tensor, T: int, n: int) -> dict:
    med = {name: statistics.median(v) for name, v in totals.items()}
    step_saving = 1.0 - steps.double().mean().item() / T
    out = {"inputs": n, "repeats": len(next(iter(totals.values()))), "mean_steps": steps.double().mean().item(),
           "step_saving": step_saving, "seconds_per_inference": med, "all_seconds_per_inference": totals}
    for name in med:
        if name != "fixed":
            saving = 1.0 - med[name] / med["fixed"]
            out[f"wall_saving_{name}"] = saving
            out[f"wall_over_step_saving_{name}"] = saving / step_saving if step_saving > 0 else None
    return out


def table2(rows: list[dict]) -> str:
    lines = ["| Setting | Device | Batch | no DC | DC | Step saving | Wall-clock saving | Wall / step saving |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for key, unit in (("latency", "s/inference"), ("throughput", "s/inference")):
            r = row[key]
            fixed, ee = r["seconds_per_inference"]["fixed"], r["seconds_per_inference"]["early_exit"]
            ratio = r["wall_over_step_saving_early_exit"]
            lines.append(f"| {row['setting']} | {row['device']} | {r.get('batch_size', 1)} | {fixed:.5f} | {ee:.5f} | "
                         f"{100 * r['step_saving']:.1f}% | {100 * r['wall_saving_early_exit']:.1f}% | "
                         f"{'n/a' if ratio is None else f'{ratio:.2f}'} |")
    return "\n".join(lines) + "\n\nTimes in seconds per inference (median of interleaved repeats)."


def bench(args, log=print) -> dict:
    from snnexit.exit import POLICIES, predictions_at
    from snnexit.pipeline import RunConfig, calibrate, load_dataset, trace_snn, trained_ann
    from snnexit.convert import convert
    from snnexit.simulate.runtime import EarlyExitEngine

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    for d in devices:
        if d.startswith("cuda") and not torch.cuda.is_available():
            raise SnnexitError(f"device {d!r} requested but CUDA is not available")
    config = RunConfig(dataset=args.dataset, model=args.model, T=args.T, epochs=args.epochs, seed=args.seed,
                       device=args.device, cache_dir=args.cache_dir, progress=False)
    config.validate()
    POLICIES.get(args.policy)
    data = load_dataset(config.dataset, config.seed)
    model = trained_ann(config, data, log)
    cal = calibrate(model, data, config.device)
    snn = convert(model, config.converter)
    snn.meta["temperature"] = cal["temperature"]
    val, test = trace_snn(snn, data, config)
    policy = POLICIES.create(args.policy).fit(val)
    if not getattr(policy, "online", True):
        raise SnnexitError(f"policy {args.policy!r} has no online rule")
    labels_needed = getattr(policy, "uses_labels_at_test", False)
    if labels_needed:
        raise SnnexitError(f"policy {args.policy!r} needs labels at test time: it is a bound, not something to time")
    offline_steps, offline_pred = policy.exit_steps(test), policy.predict(test)
    setting = f"{config.dataset}, {config.model}, {config.converter}, T={args.T}, {args.policy}"
    rows = []
    for device in devices:
        # equivalence on the real network: the runtime's decisions against the offline policy
        engine = EarlyExitEngine(snn, policy, args.T, device)
        got = [engine.run(xb) for xb, _ in data.test.batches(args.batch_size)]
        steps = torch.cat([g.exit_steps for g in got])
        pred = torch.cat([g.predictions for g in got])
        agree = {"exit_steps_equal": int((steps == offline_steps).sum()), "predictions_equal":
                 int((pred == offline_pred).sum()), "n": len(steps)}
        log(f"[{device}] runtime vs offline: {agree['exit_steps_equal']}/{agree['n']} exit steps and "
            f"{agree['predictions_equal']}/{agree['n']} answers equal")
        lat = time_latency(snn, policy, data.test.x[:args.latency_inputs], args.T, device, args.repeats)
        log(f"[{device}] batch 1: {1e3 * lat['seconds_per_inference']['fixed']:.2f} ms fixed T, "
            f"{1e3 * lat['seconds_per_inference']['early_exit']:.2f} ms early exit; wall saving "
            f"{100 * lat['wall_saving_early_exit']:.1f}% for a step saving of {100 * lat['step_saving']:.1f}%")
        thr = time_throughput(snn, policy, data.test.x, args.T, args.batch_size, device, args.repeats)
        log(f"[{device}] batch {args.batch_size}: {thr['inferences_per_second']['fixed']:.0f}/s fixed T, "
            f"{thr['inferences_per_second']['early_exit']:.0f}/s early exit, "
            f"{thr['inferences_per_second']['early_exit_masked']:.0f}/s masked; wall saving "
            f"{100 * thr['wall_saving_early_exit']:.1f}% for a step saving of {100 * thr['step_saving']:.1f}%")
        rows.append({"setting": setting, "device": device, "runtime_vs_offline": agree, "latency": lat,
                     "throughput": thr})
    acc = (offline_pred == test.labels).double().mean().item()
    return {"benchmark": "bench", "command": "snnexit bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "",
            "machine": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
            "setting": setting, "threshold": policy.threshold(), "test_acc_early_exit": acc,
            "test_acc_fixed": (test.predictions()[-1] == test.labels).double().mean().item(),
            "offline_mean_steps": offline_steps.double().mean().item(),
            "rows": rows, "table2": table2(rows)}


def main(args) -> int:
    from snnexit.io import write_json
    from snnexit.pipeline import check_writable
    from pathlib import Path

    check_writable(Path(args.out).parent)
    results = bench(args, log=lambda m: print(m, file=sys.stderr))
    write_json(args.out, results)
    print(results["table2"])
    print(f"Wrote {args.out}")
    return 0
