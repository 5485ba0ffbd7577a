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

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import torch

from snnexit.nir.export import to_nir
from snnexit.nir.importer import import_nir
from snnexit.simulate import record_trace

DEFAULT_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)


def area_under_accuracy(trace) -> float:
    """Mean accuracy over steps 1..T: what early exit needs is accuracy at every step."""
    return float(trace.accuracy_per_step().mean())


@contextlib.contextmanager
def one_thread_per_op():
    """torch's operations on one thread each, for as long as the block runs (then as before)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


def calibrate_threshold_scale(snn, batches: Iterable, T: int, input_shape=None, scales=DEFAULT_SCALES,
                              temporal: bool = False, variant: str = "hard_reset", semantics="snnexit",
                              pooling: str = "avg") -> tuple[float, dict]:
    """The threshold scale ``k`` of the ``variant`` export with the highest mean accuracy over
    steps 1..T on ``batches`` (validation data: never the test split), as ``semantics`` reads the
    export (default: snnexit, from the export's metadata; a library's semantics picks ``k`` for
    that reader: Sinabs's several spikes per step want another ``k`` than snnTorch's one);
    returns ``(k, {k: score})``.

    The candidates are independent simulations: they run side by side, one per core (as many
    as torch's thread setting allows), each operation on one thread. Splitting every small
    operation of a step over threads instead (torch's default) costs more than it gains: each
    one waits for its slowest thread, and on a shared machine a thread is often descheduled (a
    digits run on a shared 2-core machine: 30 to 170 s that way, 9 to 12 s this way, the same scores).
    Each candidate is computed as a serial loop on one thread computes it, so the choice is
    the same (tests/test_export_run.py holds it against that loop)."""
    batches = list(batches)
    with one_thread_per_op() as cores:
        networks = {float(k): import_nir(to_nir(snn, input_shape, variant, k, pooling), semantics) for k in scales}

        def score(k: float) -> float:
            torch.set_num_threads(1)  # this worker's own setting too (OpenMP keeps one per thread)
            return area_under_accuracy(record_trace(networks[k], batches, T=T, temporal=temporal))

        with ThreadPoolExecutor(max_workers=max(1, min(len(networks), cores))) as pool:
            scores = dict(zip(networks, pool.map(score, networks)))
    best = max(scores, key=lambda k: (scores[k], k))  # ties: the larger k, the fewer spikes
    return best, scores
