"""``report.md`` and the figures of one run."""

from __future__ import annotations

from pathlib import Path

from snnexit.io import write_json, write_text
from snnexit.report.plots import plot_accuracy_vs_steps, plot_confidence, plot_exit_histogram, plot_pareto
from snnexit.report.tables import TABLE1_HEADER, table1_rows
from snnexit.simulate.trace import Trace

FIGURES = {
    "fig1": "fig1_accuracy_vs_steps.png",
    "fig2": "fig2_confidence.png",
    "fig3": "fig3_pareto.png",
    "fig4": "fig4_exit_histogram.png",
}


def write_report(out: Path, results: dict, val: Trace, test: Trace) -> None:
    out = Path(out)
    cfg, pol, T = results["config"], results["policies"], results["snn"]["T"]
    plot_accuracy_vs_steps(test, results["ann"]["test_acc"], out / FIGURES["fig1"])
    plot_confidence(test, out / FIGURES["fig2"])
    curves = results["curves"]
    plot_pareto(curves["dc_val_curve"], curves["dc_val_point"], val.accuracy_per_step()[-1].item(), T,
                pol["oracle"], out / FIGURES["fig3"])
    plot_exit_histogram({"Dynamic Confidence": pol["dynamic_confidence"]["exit_step_counts"],
                         "oracle": pol["oracle"]["exit_step_counts"]}, T, out / FIGURES["fig4"])
    results["figures"] = dict(FIGURES)
    write_json(out / "results.json", results)
    cal, dc = results["calibration"], pol["dynamic_confidence"]
    capture = results["oracle_capture"]
    lines = [
        f"# snnexit run: {cfg['dataset']} / {cfg['model']} / {cfg['converter']}",
        "",
        f"Data: {results['data']['train']} train, {results['data']['val']} validation (calibration and "
        f"threshold fitting only), {results['data']['test']} test inputs; seed {cfg['seed']}; "
        f"{cfg['epochs']} training epochs; QCFS L = {cfg['levels']}; T = {T}.",
        "",
        TABLE1_HEADER,
        *table1_rows(cfg["dataset"], cfg["model"], cfg["converter"], results),
        "",
        f"Dynamic Confidence threshold tau = {dc['threshold']:.6g}, chosen on {dc['val_size']} validation inputs "
        f"(validation accuracy {100 * dc['val_acc']:.2f}% at {dc['val_mean_steps']:.2f} mean steps, "
        f"fixed-T validation accuracy {100 * results['snn']['val_acc_per_step'][-1]:.2f}%).",
        f"Test accuracy change against fixed T: {100 * (dc['test_acc'] - pol['fixed']['test_acc']):+.2f} points. "
        f"Share of the oracle's saving captured: "
        + (f"{100 * capture:.1f}%." if capture is not None else "n/a (the oracle saves nothing)."),
        "",
        "A validation set this small cannot certify \"no accuracy loss\" on new data: the change above is measured "
        "on held-out test inputs.",
        "",
        *cost_section(pol),
        "## Calibration (ANN, temperature scaling on the validation split)",
        "",
        f"Temperature {cal['temperature']:.4f}. Expected calibration error (15 bins): validation "
        f"{cal['ece_val_before']:.4f} -> {cal['ece_val_after']:.4f}, test {cal['ece_test_before']:.4f} -> "
        f"{cal['ece_test_after']:.4f}.",
        "",
        "## Figures",
        "",
        *(f"![{name}]({file})" for name, file in FIGURES.items()),
        "",
        f"Run time: {results['seconds']:.1f} s.",
        "",
    ]
    write_text(out / "report.md", "\n".join(lines))


COST_NAMES = {"fixed": "fixed T", "dynamic_confidence": "Dynamic Confidence", "oracle": "oracle (upper bound)"}


def cost_section(policies: dict) -> list[str]:
    """The paper's Table 3 (spikes per neuron per inference), with SynOps and steps, on test:
    every input's spikes counted up to its own exit step."""
    rows = [(name, policies[name]["cost"]) for name in COST_NAMES if "cost" in policies.get(name, {})]
    if not rows:
        return []
    fixed = dict(rows).get("fixed")

    def rel(cost, key):
        if fixed is None or cost.get(key) is None or not fixed.get(key):
            return ""
        return f" ({100 * cost[key] / fixed[key]:.1f}%)"

    def synops(cost):
        return "n/a" if cost.get("synops_per_inference") is None else f"{cost['synops_per_inference']:.4g}"

    def energy(cost):
        if cost.get("energy_pj_per_inference") is None:
            return "n/a"
        return (f"{cost['energy_pj_per_inference'] / 1e6:.4g}{rel(cost, 'energy_pj_per_inference')} "
                f"(MAC {cost['energy_mac_pj_per_inference'] / 1e6:.3g} + AC {cost['energy_ac_pj_per_inference'] / 1e6:.3g})")

    model = next((c["energy_model"]["name"] for _, c in rows if c.get("energy_model")), None)
    lines = ["## Cost per inference (test; spikes counted up to each input's exit step)", "",
             "| Method | Mean steps | Spikes per neuron | Spikes per inference | SynOps per inference | "
             f"Energy per inference, uJ{f' ({model})' if model else ''} |",
             "|---|---|---|---|---|---|"]
    for name, cost in rows:
        spn = "n/a" if cost.get("spikes_per_neuron") is None else f"{cost['spikes_per_neuron']:.4f}"
        lines.append(f"| {COST_NAMES[name]} | {cost['mean_steps']:.2f}{rel(cost, 'mean_steps')} | "
                     f"{spn}{rel(cost, 'spikes_per_neuron')} | {cost['spikes_per_inference']:.4g}"
                     f"{rel(cost, 'spikes_per_inference')} | {synops(cost)}{rel(cost, 'synops_per_inference')} | "
                     f"{energy(cost)} |")
    if model:
        lines += ["", "Energy: the first layer's multiply-accumulates on the analog input (MAC) plus one "
                      "accumulate per delivered spike (AC), at Horowitz's (ISSCC 2014) 45 nm energies per "
                      "operation; results.json also gives FP16 and INT8."]
    return [*lines, ""]
