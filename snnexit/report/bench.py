"""The paper's Table 2 (wall-clock time) from :mod:`snnexit.experiments.bench`'s measurements."""

from __future__ import annotations


def _machine(row: dict, key: str) -> str:
    """'busy' (our competing process), 'loaded (x cores)' (other processes measured busy), or 'quiet'."""
    if key.startswith("busy"):
        return "busy"
    others = row.get("other_processes_busy_cores")
    return f"loaded ({others:.1f} cores)" if others is not None and others >= 0.5 else "quiet"


def _line(row: dict, key: str, r: dict) -> str:
    sec = r["seconds_per_inference"]
    ratio = r["wall_over_step_saving_early_exit"]
    energy = r.get("energy", {})
    e = [energy.get(n) and energy[n]["energy_pj_per_inference"] / 1e6 for n in ("fixed", "early_exit")]
    e_text = "n/a" if None in e else f"{e[0]:.3g} / {e[1]:.3g}"
    step = f"{sec['early_exit_step']:.5f}" if "early_exit_step" in sec else "-"
    floor = f"{sec['floor_chunked']:.5f}" if "floor_chunked" in sec else "-"
    return (f"| {row['setting']} | {row['device']} | {row.get('threads', '-')} | "
            f"{_machine(row, key)} | {r.get('batch_size', 1)} | {sec['fixed']:.5f} | "
            f"{sec['early_exit']:.5f} | {100 * r['step_saving']:.1f}% | {100 * r['wall_saving_early_exit']:.1f}% | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {step} | {floor} | {r['mean_steps_computed']:.2f} | "
            f"{e_text} |")


def table2(rows: list[dict]) -> str:
    """The paper's Table 2 from the chunked engine, with the step engine, the dense floor and energy beside it."""
    lines = ["| Setting | Device | Threads | Machine | Batch | no DC | DC | Step saving | Wall-clock saving "
             "| Wall / step saving | DC, step engine | Dense floor | Steps computed | Energy no DC / DC (uJ) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for prefix in ("", "busy_"):
            if f"{prefix}latency" not in row:
                continue
            lines.append(_line(row, f"{prefix}latency", row[f"{prefix}latency"]))
            for r in row.get(f"{prefix}throughputs", [row[f"{prefix}throughput"]]):
                lines.append(_line(row, f"{prefix}throughput", r))
    return "\n".join(lines) + ("\n\nTimes in seconds per inference (median of interleaved repeats), from the chunked "
                               "engine; 'DC, step engine': the step-by-step runtime on the same inputs; 'Dense floor': "
                               "the same layers run as an ANN for T steps (chunked passes); 'Steps computed': mean "
                               "steps the chunked engine ran (a chunk may pass an exit); 'busy': a competing process "
                               "spins on one core; 'loaded': other processes kept that many cores busy.")
