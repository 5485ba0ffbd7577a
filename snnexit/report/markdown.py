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
