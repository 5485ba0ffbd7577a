"""Markdown tables in the format of the paper's Table 1."""

from __future__ import annotations

TABLE1_HEADER = ("| Dataset | Model | Converter | Method | Acc ANN (%) | Acc SNN (%) | Mean steps | Saving |\n"
                 "|---|---|---|---|---|---|---|---|")


POLICY_LABELS = {"dynamic_confidence": "Dynamic Confidence", "fixed": "fixed T", "oracle": "oracle (upper bound)",
                 "certified": "certified exit"}


def policy_label(name: str) -> str:
    """How tables name a policy: its registry name, or the paper's name for the published ones."""
    return POLICY_LABELS.get(name, name)


def table1_rows(dataset: str, model: str, converter: str, results: dict) -> list[str]:
    """One row per policy: fixed T, the fitted policy (by default Dynamic Confidence as published:
    no-loss threshold on validation), the certified exit (when the run has one) and the oracle bound."""
    ann_acc = results["ann"]["test_acc"]
    ann = "—" if ann_acc is None else f"{100 * ann_acc:.2f}"  # none for a network imported from NIR
    fitted = results.get("fitted_policy", "dynamic_confidence")
    labels = {"fixed": f"fixed T={results['snn']['T']}", fitted: policy_label(fitted),
              "certified": "certified exit", "oracle": "oracle (upper bound)"}
    cert = results["policies"].get("certified")
    if cert is not None:
        labels["certified"] = (f"certified exit ({cert['policy']}, disagreement <= {100 * cert['eps']:.2g}% "
                               f"w.p. {1 - cert['delta']:.2g})")
    rows = []
    for name, label in labels.items():
        if name not in results["policies"]:
            continue
        p = results["policies"][name]
        rows.append(f"| {dataset} | {model} | {converter} | {label} | {ann} | {100 * p['test_acc']:.2f} | "
                    f"{p['mean_steps']:.2f} | {100 * p['saving']:.1f}% |")
    return rows


GRID_HEADER = ("| Dataset | Model | Converter | Epochs | T | Method | Acc ANN (%) | Acc SNN (%) | Mean steps | Saving |\n"
               "|---|---|---|---|---|---|---|---|---|---|")


def grid_rows(cell: dict) -> list[str]:
    """The rows of one cell of ``snnexit table`` (fixed T, Dynamic Confidence, oracle), with the
    training epochs and T stated in every row. ``cell`` holds dataset, model, converter, epochs
    and the ``results`` dict of one run (``ann`` and ``policies`` as in ``results.json``)."""
    res = cell["results"]
    T = res["snn"]["T"]
    prefix = f"| {cell['dataset']} | {cell['model']} | {cell['converter']} | {cell['epochs']} | {T} |"
    return [row.replace(f"| {cell['dataset']} | {cell['model']} | {cell['converter']} |", prefix, 1)
            for row in table1_rows(cell["dataset"], cell["model"], cell["converter"], res)]


def grid_verdict(cell: dict, target_saving: float = 0.40) -> str:
    """Did Dynamic Confidence save >= ``target_saving`` of the steps at no test-accuracy loss
    against fixed T? If not, say which part failed and the likely reason."""
    pol = cell["results"]["policies"]
    dc, fixed, oracle = pol["dynamic_confidence"], pol["fixed"], pol["oracle"]
    loss = fixed["test_acc"] - dc["test_acc"]
    n_val = dc.get("val_size")
    problems = []
    if loss > 1e-12:
        problems.append(f"loses {100 * loss:.2f} points on test: the threshold that lost nothing on {n_val} "
                        f"validation inputs does not transfer exactly (a validation set this small cannot "
                        f"certify no loss)")
    if dc["saving"] < target_saving:
        if oracle["saving"] < target_saving:
            why = f"even the oracle saves only {100 * oracle['saving']:.1f}%: the SNN needs most of its T steps"
        else:
            why = (f"the oracle would save {100 * oracle['saving']:.1f}%, but confidence stays below the "
                   f"no-loss threshold for the inputs that would need it on validation")
        problems.append(f"saves {100 * dc['saving']:.1f}% < {100 * target_saving:.0f}% ({why})")
    label = f"{cell['dataset']} / {cell['model']} / {cell['converter']}"
    if not problems:
        return f"{label}: target met ({100 * dc['saving']:.1f}% saved, test accuracy change {-100 * loss:+.2f} points)"
    return f"{label}: target missed: " + "; ".join(problems)


def grid_markdown(cells: list[dict], bits: int) -> str:
    """``table.md`` of ``snnexit table``: every cell's rows and whether it met the paper's target."""
    lines = ["# Dynamic Confidence on QCFS and QFFS (the paper's Table 1 format)", "",
             f"ANNs: {bits}-bit LSQ activations in every hidden layer, full-precision weights and output layer, "
             "one ANN per data set and model shared by both converters. Epochs are this run's (a CI-scale budget, "
             "far from converged training); T is the fixed-T baseline and the trace length. Accuracies are on the "
             "held-out test split; Dynamic Confidence's threshold is the no-loss one on the validation split.", "",
             GRID_HEADER]
    for cell in cells:
        lines += grid_rows(cell)
    lines += ["", "## Target: >= 40% of the steps saved at no test-accuracy loss", ""]
    lines += [f"- {grid_verdict(cell)}" for cell in cells]
    return "\n".join(lines) + "\n"
