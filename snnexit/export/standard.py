"""A NIR export that other readers run as written, and running it in SpikingJelly.

NIR's ``IF`` has no subtractive reset and no initial potential, and readers differ in what
they add: SpikingJelly's importer starts every neuron at ``v_reset`` and has no mapping for
NIR's ``Scale`` node, so it cannot load the exact export (``IF`` + ``Scale`` with our
semantics in metadata) and would run hard reset from 0 if it could. The ``hard_reset`` variant
of :func:`snnexit.export.to_nir` is a network whose standard reading is its meaning:

* hard reset to 0, ``v(0) = 0``, fire on ``v >= threshold`` (SpikingJelly's ``IFNode``);
* binary spikes: the amplitude theta of each spiking layer is folded into the weights of the
  next conv / linear layer (:func:`snnexit.export.nir.fold_scales`; pooling and flattening in
  between are linear, so they commute with the scale);
* firing thresholds ``k * theta``: hard reset throws away the surplus above the threshold and
  ``v(0) = 0`` delays the first spike, so the same thresholds fire too rarely;
  :func:`calibrate_threshold_scale` picks ``k`` on validation data (the conversion "for hard
  reset"). What it costs against the exact network is measured in
  ``benchmarks/nir_readers.py``.

:func:`spikingjelly_trace` records a :class:`~snnexit.simulate.Trace` of any NIR file as
SpikingJelly runs it, so both readers' accuracy per step can be compared with ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from snnexit.errors import SnnexitError
from snnexit.export.nir import read_nir, to_nir
from snnexit.export.nir_import import import_nir
from snnexit.simulate import Trace, record_trace

DEFAULT_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)


def area_under_accuracy(trace) -> float:
    """Mean accuracy over steps 1..T: what early exit needs is accuracy at every step."""
    return float(trace.accuracy_per_step().mean())


def calibrate_threshold_scale(snn, batches: Iterable, T: int, input_shape=None, scales=DEFAULT_SCALES,
                              temporal: bool = False) -> tuple[float, dict]:
    """The threshold scale ``k`` of the ``hard_reset`` export with the highest mean accuracy over
    steps 1..T on ``batches`` (validation data: never the test split); returns ``(k, {k: score})``."""
    batches = list(batches)
    scores = {}
    for k in scales:
        net = import_nir(to_nir(snn, input_shape, "hard_reset", k), "snnexit")
        scores[float(k)] = area_under_accuracy(record_trace(net, batches, T=T, temporal=temporal))
    best = max(scores, key=lambda k: (scores[k], k))  # ties: the larger k, the fewer spikes
    return best, scores


@torch.no_grad()
def spikingjelly_trace(path_or_graph, batches: Iterable, T: int, temporal: bool = False, meta: dict | None = None):
    """Simulate a NIR graph (or file) with SpikingJelly's own reader (``import_from_nir``, dt = 1,
    single-step mode, its state passed from step to step) and record the trace (no spike counts)."""
    try:
        # an optional dependency, imported only here: `pip install --no-deps spikingjelly loguru`
        from spikingjelly.activation_based.nir_exchange import import_from_nir
    except ImportError as exc:
        raise SnnexitError(f"SpikingJelly's NIR reader is not installed ({exc})") from None
    graph = read_nir(path_or_graph) if isinstance(path_or_graph, (str, Path)) else path_or_graph
    try:
        net = import_from_nir(graph, dt=1.0)  # r = 1 = 1 / dt: one NIR time unit per step
    except (ValueError, NotImplementedError) as exc:
        raise SnnexitError(f"SpikingJelly cannot import this NIR graph: {exc}") from None
    outs, labels = [], []
    for x, y in batches:
        state, acc, per_step = None, None, []
        for t in range(T):
            out, state = net(x[:, t] if temporal else x, state)
            acc = out.clone() if acc is None else acc + out
            per_step.append(acc)
        outs.append(torch.stack(per_step).float())
        labels.append(y)
    if not outs:
        raise SnnexitError("no inputs to trace")
    return Trace(torch.cat(outs, 1), torch.cat(labels).long(), None, {**(meta or {}), "T": T, "reader": "spikingjelly"})
