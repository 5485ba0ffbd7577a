"""The paper's Table 2 (wall-clock time) from :mod:`snnexit.experiments.bench`'s measurements."""

from __future__ import annotations


def table2(rows: list[dict]) -> str:
    """The paper's Table 2 from the chunked engine, with the step engine and energy beside it."""
    lines = ["| Setting | Device | Machine | Batch | no DC | DC | Step saving | Wall-clock saving | Wall / step saving "
             "| DC, step engine | Steps computed | Energy no DC / DC (uJ) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for key in ("latency", "throughput", "busy_latency", "busy_throughput"):
            if key not in row:
                continue
            r = row[key]
            sec = r["seconds_per_inference"]
            ratio = r["wall_over_step_saving_early_exit"]
            energy = r.get("energy", {})
            e = [energy.get(n) and energy[n]["energy_pj_per_inference"] / 1e6 for n in ("fixed", "early_exit")]
            e_text = "n/a" if None in e else f"{e[0]:.3g} / {e[1]:.3g}"
            step = f"{sec['early_exit_step']:.5f}" if "early_exit_step" in sec else "-"
            lines.append(f"| {row['setting']} | {row['device']} | {'busy' if key.startswith('busy') else 'quiet'} | "
                         f"{r.get('batch_size', 1)} | {sec['fixed']:.5f} | {sec['early_exit']:.5f} | "
                         f"{100 * r['step_saving']:.1f}% | {100 * r['wall_saving_early_exit']:.1f}% | "
                         f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {step} | {r['mean_steps_computed']:.2f} | "
                         f"{e_text} |")
    return "\n".join(lines) + ("\n\nTimes in seconds per inference (median of interleaved repeats), from the chunked "
                               "engine; 'DC, step engine': the step-by-step runtime on the same inputs; 'Steps "
                               "computed': mean steps the chunked engine ran (a chunk may pass an exit); 'busy': a "
                               "competing process spins on one core.")
