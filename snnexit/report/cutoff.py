"""The markdown of SNNCutoff's experiments (:mod:`snnexit.experiments.cutoff`)."""

from __future__ import annotations


def markdown_table(rows: list[dict]) -> str:
    head = ("| arm | a | fixed-T acc | Top-K acc | Top-K steps | Top-K/step acc | Top-K/step steps "
            "| DC acc | DC steps | oracle acc | oracle steps |")
    lines = [head, "|" + "---|" * 11]
    f = lambda v, p=4: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['arm']} | {r['reg_weight']:g} | {f(r['fixed_T_acc'])} | {f(r.get('topk_acc'))} | "
                     f"{f(r.get('topk_mean_steps'), 2)} | {f(r.get('topk_per_step_acc'))} | "
                     f"{f(r.get('topk_per_step_mean_steps'), 2)} | {f(r.get('dynamic_confidence_acc'))} | "
                     f"{f(r.get('dynamic_confidence_mean_steps'), 2)} | {f(r.get('oracle_acc'))} | "
                     f"{f(r.get('oracle_mean_steps'), 2)} |")
    return "\n".join(lines)


def cutoff_report(result: dict) -> str:
    s = result["settings"]
    return (f"# Cutoff regulariser on {result['dataset']}\n\n"
            f"{s['model']} (width {s['width']}), {s['neuron']} neurons ({s['reset']} reset), init {s['init']}, "
            f"{s['loss']} loss, T = {result['T']}; shared training {s['epochs']} epochs without the regulariser, "
            f"then {s['finetune_epochs']} epochs per arm. Policies fitted on validation "
            f"({result['data']['val']} inputs) for no accuracy loss, reported on test ({result['data']['test']} "
            f"inputs). Steps are mean steps per input.\n\n{markdown_table(result['rows'])}\n\n"
            f"Top-K mean steps on the test curve at the common accuracy {result['common_accuracy']:.4f} "
            f"(threshold chosen on test): "
            + ", ".join(f"{r['arm']}: {r['topk_steps_at_common_acc']}" for r in result["rows"]) + "\n")
