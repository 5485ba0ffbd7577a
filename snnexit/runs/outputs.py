"""Certify an exit from outputs recorded anywhere: a chip, another simulator, a library's own run.

Every exit policy here is post hoc: it needs the network's outputs over time and nothing else.
So a network that never runs in snnexit gets a certified exit from two recordings of its output
at every step, ``(T, N, C)``, on validation and test inputs (``.npz`` files with ``outputs`` and,
where known, ``labels``); the caller says whether the outputs are per step (summed here into
``Y[t]``) or already accumulated. :func:`certify_outputs` then does what ``snnexit run`` does
after tracing: the learning half of the validation outputs fits Dynamic Confidence's temperature
(on ``Y[T] / alpha``), learns the candidates' scores and picks one; the other half (plus any
unlabelled calibration outputs) certifies its threshold; the test outputs show what it did.
In Python: ``Trace.from_arrays(outputs, labels, accumulated=...)`` and
:func:`snnexit.runs.evaluation.certified_exit`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnexit.errors import SnnexitError
from snnexit.exit.certify import CertifiedExit
from snnexit.runs.evaluation import certified_exit
from snnexit.runs.imported import output_calibration
from snnexit.simulate import Trace


def load_outputs(path, accumulated: bool, what: str = "outputs file") -> Trace:
    """The trace of a ``.npz`` file: ``outputs`` ``(T, N, C)`` (per step, or accumulated when
    ``accumulated``) and optional integer ``labels`` ``(N,)``."""
    path = Path(path)
    if not path.is_file():
        raise SnnexitError(f"{what} {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError) as exc:
        raise SnnexitError(f"{what} {path}: not a readable .npz file ({exc})") from None
    if "outputs" not in found:
        raise SnnexitError(f"{what} {path} has no array 'outputs' (T, N, C); it holds {sorted(found) or 'nothing'}")
    unknown = sorted(set(found) - {"outputs", "labels"})
    if unknown:
        raise SnnexitError(f"{what} {path}: unknown arrays {unknown}; expected 'outputs' and optionally 'labels'")
    outputs, labels = found["outputs"], found.get("labels")
    if outputs.dtype.kind not in "fiu":
        raise SnnexitError(f"{what} {path}: outputs must be numbers, got {outputs.dtype}")
    if labels is not None and (labels.dtype.kind not in "iu"):
        raise SnnexitError(f"{what} {path}: labels must be integers, got {labels.dtype}")
    try:
        return Trace.from_arrays(outputs, labels, accumulated=accumulated)
    except SnnexitError as exc:
        raise SnnexitError(f"{what} {path}: {exc}") from None


def certify_outputs(val: Trace, test: Trace, calibration: Trace | None = None, *, eps: float | None = None,
                    delta: float = 0.05, candidates=None) -> tuple[CertifiedExit, dict]:
    """The certified exit of recorded outputs (module doc) and its row on ``test``; ``val`` needs
    labels (the learning half learns from them), ``test`` and ``calibration`` need none."""
    if not val.labelled:
        raise SnnexitError("the validation outputs need labels: half of them learn the scores and the temperature")
    for name, other in (("test", test), ("calibration", calibration)):
        if other is not None and (other.T, other.C) != (val.T, val.C):
            raise SnnexitError(f"validation and {name} outputs differ: (T, C) = {(val.T, val.C)} vs "
                               f"{(other.T, other.C)}")
    temperature = output_calibration(val, test)["temperature"]
    for trace in (val, test, calibration):
        if trace is not None:
            trace.meta["temperature"] = temperature
    cert = certified_exit(val, calibration, eps=eps, delta=delta, candidates=candidates)
    return cert, cert.evaluate(test)
