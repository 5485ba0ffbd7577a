"""NIR exports that other readers run as written, and the threshold scale they need.

NIR's ``IF`` has no initial potential, and readers differ in the rest (:mod:`snnexit.nir.libraries`):
SpikingJelly resets hard and has no ``Scale`` node, so it cannot load the exact export (``IF`` +
``Scale`` with our semantics in metadata); snnTorch and Sinabs read ``IF`` as a subtractive-reset
neuron without ``Scale`` either. Two variants of :func:`snnexit.nir.to_nir` are networks whose
reading by those libraries is their meaning:

* ``hard_reset`` (SpikingJelly, the spec): hard reset to 0, ``v(0) = 0``, fire on ``v >= threshold``;
* ``subtract`` (snnTorch, Sinabs): reset by subtracting the threshold, ``v(0) = 0``, ``r = 1``;

both with binary spikes (the amplitude theta of each spiking layer is folded into the weights of
the next conv / linear layer, :func:`snnexit.nir.export.fold_scales`; pooling and flattening in
between are linear, so they commute with the scale) and firing thresholds ``k * theta``: hard
reset throws away the surplus above the threshold and ``v(0) = 0`` delays the first spike, so the
converted thresholds fire too rarely; :func:`calibrate_threshold_scale` picks ``k`` on validation
data. What each costs against the exact network, as each library runs it, is measured in
``benchmarks/nir_readers.py``.
"""

from __future__ import annotations

from typing import Iterable

from snnexit.nir.export import to_nir
from snnexit.nir.importer import import_nir
from snnexit.simulate import record_trace

DEFAULT_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)


def area_under_accuracy(trace) -> float:
    """Mean accuracy over steps 1..T: what early exit needs is accuracy at every step."""
    return float(trace.accuracy_per_step().mean())


def calibrate_threshold_scale(snn, batches: Iterable, T: int, input_shape=None, scales=DEFAULT_SCALES,
                              temporal: bool = False, variant: str = "hard_reset", semantics="snnexit",
                              pooling: str = "avg") -> tuple[float, dict]:
    """The threshold scale ``k`` of the ``variant`` export with the highest mean accuracy over
    steps 1..T on ``batches`` (validation data: never the test split), as ``semantics`` reads the
    export (default: snnexit, from the export's metadata; a library's semantics picks ``k`` for
    that reader: Sinabs's several spikes per step want another ``k`` than snnTorch's one);
    returns ``(k, {k: score})``."""
    batches = list(batches)
    scores = {}
    for k in scales:
        net = import_nir(to_nir(snn, input_shape, variant, k, pooling), semantics)
        scores[float(k)] = area_under_accuracy(record_trace(net, batches, T=T, temporal=temporal))
    best = max(scores, key=lambda k: (scores[k], k))  # ties: the larger k, the fewer spikes
    return best, scores
