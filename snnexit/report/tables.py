"""Markdown tables in the format of the paper's Table 1."""

from __future__ import annotations

TABLE1_HEADER = ("| Dataset | Model | Converter | Method | Acc ANN (%) | Acc SNN (%) | Mean steps | Saving |\n"
                 "|---|---|---|---|---|---|---|---|")


def table1_rows(dataset: str, model: str, converter: str, results: dict) -> list[str]:
    """One row per policy: fixed T, Dynamic Confidence, and the oracle bound."""
    ann = 100 * results["ann"]["test_acc"]
    labels = {"fixed": f"fixed T={results['snn']['T']}", "dynamic_confidence": "Dynamic Confidence",
              "oracle": "oracle (upper bound)"}
    rows = []
    for name, label in labels.items():
        p = results["policies"][name]
        rows.append(f"| {dataset} | {model} | {converter} | {label} | {ann:.2f} | {100 * p['test_acc']:.2f} | "
                    f"{p['mean_steps']:.2f} | {100 * p['saving']:.1f}% |")
    return rows
