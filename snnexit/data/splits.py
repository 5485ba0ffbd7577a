"""Data sets as tensors with a seeded, stratified train / validation / test split.

The validation split is only for calibration (temperature) and threshold fitting; the test
split is only for reporting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from snnexit.errors import SnnexitError


@dataclass
class Split:
    x: torch.Tensor  # (N, C, H, W) float32; temporal data: (N, T, C, H, W)
    y: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int):
        for i in range(0, len(self), batch_size):
            yield self.x[i : i + batch_size], self.y[i : i + batch_size]


@dataclass
class DataSplits:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    temporal: bool = False  # inputs are sequences (N, T, C, H, W), e.g. binned events

    @property
    def in_channels(self) -> int:
        return self.train.x.shape[2 if self.temporal else 1]

    @property
    def input_size(self) -> int:
        return self.train.x.shape[-1]


def stratified_split(x: np.ndarray, y: np.ndarray, fractions: tuple[float, float, float], seed: int):
    """Split indices per class in the given fractions after a seeded shuffle.

    Returns three index arrays (train, val, test), each shuffled. Every class contributes
    ``round(fraction * count)`` inputs to val and test, the rest to train.
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise SnnexitError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_val = int(round(fractions[1] * len(idx)))
        n_test = int(round(fractions[2] * len(idx)))
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val : n_val + n_test])
        parts[0].append(idx[n_val + n_test :])
    return tuple(rng.permutation(np.concatenate(p)) for p in parts)


def make_splits(name: str, x: np.ndarray, y: np.ndarray, num_classes: int, seed: int,
                fractions=(0.6, 0.2, 0.2)) -> DataSplits:
    x_t = torch.as_tensor(x, dtype=torch.float32)
    y_t = torch.as_tensor(y, dtype=torch.int64)
    tr, va, te = stratified_split(np.asarray(x), np.asarray(y), fractions, seed)
    pick = lambda idx: Split(x_t[torch.as_tensor(idx)], y_t[torch.as_tensor(idx)])  # noqa: E731
    return DataSplits(name, pick(tr), pick(va), pick(te), num_classes)
