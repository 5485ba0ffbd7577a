"""The Dynamic Confidence paper's Table 1 on the data we have: {datasets} x {models} x {converters}.

As in the paper, both converters share one ANN per data set and model, with ``bits``-bit LSQ
activations in all hidden layers (an LSQ activation is QCFS with L = 2**b - 1 and lam = s * L,
so the qcfs converter takes it as is). Each cell: train the ANN (or reuse the cache), fit the
temperature, convert, trace validation and test, fit Dynamic Confidence on validation, report
on test with the oracle beside it.
"""

from __future__ import annotations

import time
from dataclasses import replace

from snnexit.data import load_dataset
from snnexit.exit import DynamicConfidence
from snnexit.runs.ann import trained_ann
from snnexit.runs.evaluation import evaluate_policies
from snnexit.runs.network import calibrate, converted, trace_snn
from snnexit.runs.settings import RunConfig

# Training epochs per data set: a few minutes for the whole grid on 2 CPU cores.
DEFAULT_EPOCHS = {"mnist5k": 4, "digits": 20}
DEFAULT_T = {"qcfs": 32, "qffs": 16}  # QFFS settles within a few steps of 2**b - 1; QCFS needs longer


def run_grid(datasets, models, converters, *, bits: int = 2, epochs: dict | None = None, T: dict | None = None,
             width: int | None = None, seed: int = 0, device: str = "cpu", cache_dir: str | None = None,
             log=print) -> list[dict]:
    """Every cell of the grid as ``{dataset, model, converter, epochs, width, seconds, results}``."""
    epochs = {**DEFAULT_EPOCHS, **(epochs or {})}
    T = {**DEFAULT_T, **(T or {})}
    cells = []
    for dataset in datasets:
        data = load_dataset(dataset, seed)
        for model in models:
            base = RunConfig(dataset=dataset, model=model, quantizer="lsq", bits=bits, epochs=epochs.get(dataset, 15),
                             width=width, seed=seed, device=device, cache_dir=cache_dir, progress=False)
            started = time.perf_counter()
            ann = trained_ann(base, data, log)
            cal = calibrate(ann, data, device)
            ann_seconds = time.perf_counter() - started
            for converter in converters:
                started = time.perf_counter()
                config = replace(base, converter=converter, T=T.get(converter, 32))
                config.validate()
                val, test = trace_snn(converted(ann, converter, data, cal["temperature"]), data, config)
                policies, _ = evaluate_policies(val, test, DynamicConfidence().fit(val))
                results = {"ann": {"test_acc": cal["test_acc"], "val_acc": cal["val_acc"]},
                           "calibration": {"temperature": cal["temperature"]},
                           "snn": {"T": config.T, "alpha": test.meta.get("alpha"),
                                   "test_acc_per_step": test.accuracy_per_step().tolist()},
                           "policies": policies}
                cell = {"dataset": dataset, "model": model, "converter": converter, "epochs": config.epochs,
                        "width": width, "bits": bits, "ann_seconds": ann_seconds,
                        "seconds": time.perf_counter() - started, "results": results}
                log(f"{dataset} / {model} / {converter}: ANN {100 * cal['test_acc']:.2f}%, fixed T={config.T} "
                    f"{100 * policies['fixed']['test_acc']:.2f}%, DC {100 * policies['dynamic_confidence']['test_acc']:.2f}% "
                    f"at {policies['dynamic_confidence']['mean_steps']:.2f} steps")
                cells.append(cell)
    return cells
