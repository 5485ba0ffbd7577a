"""The trace: everything an SNN run produced that offline decisions need.

For N inputs simulated for T steps a trace holds

* ``outputs`` ``(T, N, C)`` float: the accumulated output ``Y[t] = sum_{k<=t} y_k`` of the
  non-spiking output layer after step ``t + 1`` (index 0 is "after one step");
* ``labels`` ``(N,)`` int64, or None for unlabelled inputs (enough to certify an exit, which
  only compares each exit answer with the fixed-T answer; accuracy needs labels);
* ``spikes`` ``(T, N, L)`` float: spikes emitted in step ``t + 1`` by input ``n`` in
  spiking layer ``l`` (negative spikes of QFFS count as spikes too: they cost energy);
* ``meta``: JSON-able facts about the run (converter, ``alpha``, temperature, neurons per
  layer, synaptic fan-out per layer, ...); a run's traces also name the ``network`` that made
  them (a fingerprint of its weights and thresholds) and their ``split`` (val, test, calibration).

``alpha`` is how the accumulated output is scaled before a softmax (Dynamic Confidence):
``"T"`` (QCFS and every rate-coded network: the run length, a constant), ``"t"`` (the mean
output) or a number (QFFS: ``2**b - 1``). ``meta["T"]`` always equals the trace's own T (set
on construction, so a truncated or loaded trace scores with its own run length).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from snnexit.errors import SnnexitError
from snnexit.io import load_tensors, save_tensors
from snnexit.simulate.scaling import OutputScaling

TRACE_FORMAT = "trace"
TRACE_VERSION = 1


@dataclass
class Trace:
    outputs: torch.Tensor  # (T, N, C)
    labels: torch.Tensor | None  # (N,); None: unlabelled inputs
    spikes: torch.Tensor | None = None  # (T, N, L)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()
        self.meta = {**self.meta, "T": self.T}  # the run length alpha = T refers to

    # ---- shape facts -------------------------------------------------------------
    @property
    def T(self) -> int:
        return self.outputs.shape[0]

    @property
    def N(self) -> int:
        return self.outputs.shape[1]

    @property
    def C(self) -> int:
        return self.outputs.shape[2]

    def validate(self) -> None:
        """Raise :class:`SnnexitError` naming the problem if the trace is malformed."""
        Y, y = self.outputs, self.labels
        if not isinstance(Y, torch.Tensor) or not (y is None or isinstance(y, torch.Tensor)):
            raise SnnexitError("trace outputs and labels must be torch tensors (labels may be None)")
        if Y.dim() != 3:
            raise SnnexitError(f"trace outputs must have shape (T, N, C), got {tuple(Y.shape)}")
        T, N, C = Y.shape
        if T < 1 or N < 1 or C < 2:
            raise SnnexitError(f"trace outputs need T >= 1, N >= 1, C >= 2, got (T, N, C) = {(T, N, C)}")
        if not Y.is_floating_point():
            raise SnnexitError(f"trace outputs must be floating point, got {Y.dtype}")
        if not torch.isfinite(Y).all():
            raise SnnexitError("trace outputs contain NaN or infinite values")
        if y is not None:
            if y.shape != (N,):
                raise SnnexitError(f"trace labels must have shape (N,) = ({N},), got {tuple(y.shape)}")
            if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                raise SnnexitError(f"trace labels must be integers, got {y.dtype}")
            if N and (y.min() < 0 or y.max() >= C):
                raise SnnexitError(f"trace labels must lie in [0, {C}), got range [{int(y.min())}, {int(y.max())}]")
        if self.spikes is not None:
            s = self.spikes
            if not isinstance(s, torch.Tensor):
                raise SnnexitError(f"trace spikes must be a tensor (T, N, L) or None, got {type(s).__name__}")
            if s.dim() != 3 or s.shape[:2] != (T, N):
                raise SnnexitError(f"trace spikes must have shape (T, N, L) with (T, N) = {(T, N)}, got {tuple(s.shape)}")
        if not isinstance(self.meta, dict):
            raise SnnexitError(f"trace meta must be a dict, got {type(self.meta).__name__}")
        try:
            OutputScaling.of(self.meta)
        except SnnexitError as exc:
            raise SnnexitError(f"trace meta: {exc}") from None

    @property
    def scaling(self) -> OutputScaling:
        """The output scaling this trace's network states (:class:`OutputScaling`)."""
        return OutputScaling.of(self.meta)

    # ---- derived views (pure) ----------------------------------------------------
    def predictions(self) -> torch.Tensor:
        """(T, N) argmax class of the accumulated output at every step."""
        return self.outputs.argmax(dim=2)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def correct(self) -> torch.Tensor:
        """(T, N) bool: is the prediction after step t + 1 right? (Needs labels.)"""
        if self.labels is None:
            raise SnnexitError("this trace has no labels: accuracy needs labelled inputs (certifying an exit does not)")
        return self.predictions() == self.labels.long().unsqueeze(0)

    def accuracy_per_step(self) -> torch.Tensor:
        """(T,) fixed-T accuracy for every T' = 1..T."""
        return self.correct().float().mean(dim=1)

    def subset(self, index: torch.Tensor) -> "Trace":
        """The trace of the inputs selected by ``index`` (for random splits)."""
        spikes = None if self.spikes is None else self.spikes[:, index]
        labels = None if self.labels is None else self.labels[index]
        return Trace(self.outputs[:, index], labels, spikes, dict(self.meta))

    def truncate(self, T: int) -> "Trace":
        """The same run stopped after T steps."""
        if not 1 <= T <= self.T:
            raise SnnexitError(f"cannot truncate a trace of {self.T} steps to {T}")
        spikes = None if self.spikes is None else self.spikes[:T]
        return Trace(self.outputs[:T], self.labels, spikes, dict(self.meta))

    @classmethod
    def from_arrays(cls, outputs, labels=None, *, accumulated: bool, meta: dict | None = None) -> "Trace":
        """The trace of outputs recorded elsewhere (a chip, another simulator): ``outputs``
        ``(T, N, C)`` at every step, either per step (``accumulated=False``: summed here into
        ``Y[t]``) or already accumulated (``accumulated=True``); there is no default, say which.
        ``labels`` ``(N,)`` integers or None. Float64 outputs stay float64; others become float32."""
        if not isinstance(accumulated, bool):
            raise SnnexitError(f"accumulated must be True (Y[t] = sum of steps 1..t) or False (one step each), "
                               f"got {accumulated!r}")
        y = torch.as_tensor(np.ascontiguousarray(outputs))
        if y.dim() != 3:
            raise SnnexitError(f"outputs must have shape (T, N, C), got {tuple(y.shape)}")
        y = y.double() if y.dtype == torch.float64 else y.float()
        if not accumulated:
            y = y.cumsum(0)
        if labels is not None:
            labels = torch.as_tensor(np.ascontiguousarray(labels))
            if labels.is_floating_point() or labels.is_complex():
                raise SnnexitError(f"labels must be integers, got {labels.dtype}")
            labels = labels.long()
        return cls(y, labels, None, dict(meta or {}))

    # ---- persistence -------------------------------------------------------------
    def save(self, path) -> None:
        tensors = {"outputs": self.outputs}
        if self.labels is not None:
            tensors["labels"] = self.labels.long()
        if self.spikes is not None:
            tensors["spikes"] = self.spikes
        meta = {**self.meta, "unlabelled": True} if self.labels is None else self.meta
        save_tensors(path, tensors, fmt=TRACE_FORMAT, version=TRACE_VERSION, meta=meta)

    @classmethod
    def load(cls, path) -> "Trace":
        tensors, meta = load_tensors(path, fmt=TRACE_FORMAT, version=TRACE_VERSION)
        if "outputs" not in tensors:
            raise SnnexitError(f"{path}: trace file lacks 'outputs'")
        unlabelled = isinstance(meta, dict) and meta.get("unlabelled") is True
        if unlabelled:
            meta = {k: v for k, v in meta.items() if k != "unlabelled"}
        if "labels" not in tensors and not unlabelled:
            raise SnnexitError(f"{path}: trace file lacks 'labels'")
        return cls(tensors["outputs"], tensors.get("labels"), tensors.get("spikes"), meta)


def concat(traces: list[Trace]) -> Trace:
    """Join traces of the same run over disjoint inputs (batches, shards). The labels are
    kept when every part has them (an unlabelled part makes the whole unlabelled)."""
    if not traces:
        raise SnnexitError("nothing to concatenate")
    spikes = None if any(t.spikes is None for t in traces) else torch.cat([t.spikes for t in traces], 1)
    labels = None if any(t.labels is None for t in traces) else torch.cat([t.labels for t in traces], 0)
    meta = {k: v for k, v in traces[0].meta.items() if k != "unlabelled"}
    return Trace(torch.cat([t.outputs for t in traces], 1), labels, spikes, meta)


def check_same_network(a: Trace, b: Trace, what: str = "validation and test traces") -> None:
    """Refuse two traces that cannot be used together: another T or class count, another network
    (their ``network`` fingerprints differ), or the same split twice (a copied file)."""
    if (a.T, a.C) != (b.T, b.C):
        raise SnnexitError(f"{what} differ: (T, C) = {(a.T, a.C)} vs {(b.T, b.C)}")
    na, nb = a.meta.get("network"), b.meta.get("network")
    if na is not None and nb is not None and na != nb:
        raise SnnexitError(f"{what} come from two different networks (fingerprints {na[:12]} and {nb[:12]})")
    sa, sb = a.meta.get("split"), b.meta.get("split")
    if sa is not None and sa == sb:
        raise SnnexitError(f"{what} are both of the {sa} split: one is a copy of the other")
