"""``report.md`` and the figures of one run."""

from __future__ import annotations

import math
from pathlib import Path

from snnexit.exit.target import threshold_text
from snnexit.io import write_json, write_text
from snnexit.report.plots import plot_accuracy_vs_steps, plot_confidence, plot_exit_histogram, plot_pareto
from snnexit.report.tables import TABLE1_HEADER, policy_label, table1_rows
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
    name = results.get("fitted_policy", "dynamic_confidence")
    label, fitted, prefix = policy_label(name), pol[name], "dc" if name == "dynamic_confidence" else name
    figures = dict(FIGURES)
    plot_accuracy_vs_steps(test, results["ann"]["test_acc"], out / figures["fig1"])
    plot_confidence(test, out / figures["fig2"])
    curves = results["curves"]
    if f"{prefix}_val_curve" in curves:
        plot_pareto(curves[f"{prefix}_val_curve"], curves[f"{prefix}_val_point"], val.accuracy_per_step()[-1].item(),
                    T, pol["oracle"], out / figures["fig3"], certified=pol.get("certified"))
    else:  # a policy without a threshold (fixed T, the oracle) has no curve
        del figures["fig3"]
    histograms = {label: fitted["exit_step_counts"]}
    if "certified" in pol:
        histograms[f"certified ({pol['certified']['policy']})"] = pol["certified"]["exit_step_counts"]
    histograms["oracle"] = pol["oracle"]["exit_step_counts"]
    plot_exit_histogram(histograms, T, out / figures["fig4"])
    results["figures"] = figures
    write_json(out / "results.json", results)
    cal = results["calibration"]
    capture = results["oracle_capture"]
    model, converter = (Path(cfg["nir"]).name, f"nir ({cfg.get('semantics')})") if cfg.get("nir") else \
        (cfg["model"], cfg["converter"])
    network = (f"the network of {cfg['nir']}, read as {cfg.get('semantics')} reads it (no ANN, nothing trained)"
               if cfg.get("nir") else f"{cfg['epochs']} training epochs; QCFS L = {cfg['levels']}")
    lines = [
        f"# snnexit run: {cfg['dataset']} / {model} / {converter}",
        "",
        f"Data: {results['data']['train']} train, {results['data']['val']} validation (calibration and "
        f"threshold fitting only), {results['data']['test']} test inputs; seed {cfg['seed']}; "
        f"{network}; T = {T}.",
        "",
        TABLE1_HEADER,
        *table1_rows(cfg["dataset"], model, converter, results),
        "",
        *fitted_point(label, fitted, results["snn"]["val_acc_per_step"][-1]),
        f"Test accuracy change against fixed T: {100 * (fitted['test_acc'] - pol['fixed']['test_acc']):+.2f} points. "
        f"Share of the oracle's saving captured: "
        + (f"{100 * capture:.1f}%." if capture is not None else "n/a (the oracle saves nothing)."),
        "",
        "A validation set this small cannot certify \"no accuracy loss\" on new data: the change above is measured "
        "on held-out test inputs.",
        "",
        *certified_section(pol.get("certified"), pol["fixed"]),
        *scaling_section(pol),
        *cost_section(pol),
        "## Calibration (" + ("the network's own fixed-T output" if cfg.get("nir") else "ANN")
        + ", temperature scaling on the learning half of the validation split)",
        "",
        f"Temperature {cal['temperature']:.4f}"
        + (f", fitted on {cal['temperature_fit_size']} validation inputs." if "temperature_fit_size" in cal else ".")
        + f" Expected calibration error (15 bins): validation "
        f"{cal['ece_val_before']:.4f} -> {cal['ece_val_after']:.4f}, test {cal['ece_test_before']:.4f} -> "
        f"{cal['ece_test_after']:.4f}.",
        "",
        "## Figures",
        "",
        *(f"![{key}]({file})" for key, file in figures.items()),
        "",
        f"Run time: {results['seconds']:.1f} s.",
        "",
    ]
    write_text(out / "report.md", "\n".join(lines))


def score_units(row: dict) -> str:
    """`` (what the score is)``, and the probability a log-odds threshold stands for."""
    meaning = row.get("score")
    if not meaning:
        return ""
    if "log-odds" in meaning:
        x = float(row["threshold"])
        p = 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))  # no overflow either way
        return f" ({meaning}; top probability {p:.6g})"
    return f" ({meaning})"


def fitted_point(label: str, fitted: dict, fixed_val_acc: float) -> list[str]:
    """Where the fitted policy's threshold sits on the validation curve it was chosen from."""
    if "val_acc" not in fitted:
        return []
    return [f"{label} threshold tau = {threshold_text(fitted['threshold'])}{score_units(fitted)}, chosen on {fitted['val_size']} validation inputs "
            f"(validation accuracy {100 * fitted['val_acc']:.2f}% at {fitted['val_mean_steps']:.2f} mean steps, "
            f"fixed-T validation accuracy {100 * fixed_val_acc:.2f}%)."]


def certified_section(cert: dict | None, fixed: dict) -> list[str]:
    """The certified exit: what it promises, on which inputs, and what it did on test."""
    if cert is None:
        return []
    cand = ", ".join(f"{name} {steps:.2f}" for name, steps in sorted(cert["candidates"].items(), key=lambda kv: kv[1])
                     if steps is not None)
    acc = "" if cert.get("test_acc") is None else (
        f" Test accuracy {100 * cert['test_acc']:.2f}% ({100 * (cert['test_acc'] - fixed['test_acc']):+.2f} points "
        f"against fixed T).")
    return [
        "## Certified exit",
        "",
        f"Policy `{cert['policy']}`, threshold {threshold_text(cert['threshold'])}{score_units(cert)}. "
        f"The rule to deploy is `certified.json` in this folder. **Guarantee**: with probability at least "
        f"{1 - cert['delta']:.3g} over the {cert['calibration_size']} calibration inputs, its answer differs from the "
        f"fixed-T answer on at most {100 * cert['eps']:.3g}% of new inputs from the same distribution (so it loses at "
        f"most that much accuracy against fixed T). Its score and the choice of policy were learned on "
        f"{cert['learn_size']} other validation inputs; the calibration inputs shaped nothing but the threshold.",
        "",
        f"On {cert['n']} test inputs: {100 * cert['test_disagreement']:.2f}% answers differ from fixed T "
        f"({'within' if cert['holds_on_test'] else 'above'} eps), {cert['mean_steps']:.2f} mean steps "
        f"({100 * cert['saving']:.1f}% saved).{acc}",
        "",
        f"Candidates (mean steps their certified threshold was estimated to need, cross-fitted on the learning "
        f"inputs): {cand or cert['policy']}.",
        "",
    ]


def describe_alpha(alpha: dict) -> str:
    """The alpha record of a policy (``{"rule", "value"}``) in words."""
    rule, value = alpha.get("rule"), alpha.get("value")
    if rule == "T":
        return f"T = {value:g} (run length)"
    if rule == "t":
        return "t (mean output)"
    if rule == "constant":
        return f"{value:g}"
    return "none" if rule == "none" else str(alpha)


def scaling_section(policies: dict) -> list[str]:
    """Which alpha and temperature each softmax-based policy divided the accumulated output by."""
    rows = [(name, p) for name, p in policies.items() if p.get("alpha")]
    if not rows:
        return []
    lines = ["| Policy | alpha | T_cal |", "|---|---|---|"]
    for name, p in rows:
        a = p["alpha"]
        alpha = describe_alpha(a)
        label = f"{name} ({p['policy']})" if "policy" in p else name
        lines.append(f"| {label} | {alpha} | {p['temperature']:.4g} |")
    return ["Output scaling of the softmax-based exits:", "", *lines, ""]


def cost_section(policies: dict) -> list[str]:
    """The paper's Table 3 (spikes per neuron per inference), with SynOps and steps, on test:
    every input's spikes counted up to its own exit step."""
    rows = [(name, p["cost"]) for name, p in policies.items() if "cost" in p]
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
        lines.append(f"| {policy_label(name)} | {cost['mean_steps']:.2f}{rel(cost, 'mean_steps')} | "
                     f"{spn}{rel(cost, 'spikes_per_neuron')} | {cost['spikes_per_inference']:.4g}"
                     f"{rel(cost, 'spikes_per_inference')} | {synops(cost)}{rel(cost, 'synops_per_inference')} | "
                     f"{energy(cost)} |")
    if model:
        lines += ["", "Energy: the first layer's multiply-accumulates on the analog input (MAC) plus one "
                      "accumulate per delivered spike (AC), at Horowitz's (ISSCC 2014) 45 nm energies per "
                      "operation; results.json also gives FP16 and INT8."]
    return [*lines, ""]
