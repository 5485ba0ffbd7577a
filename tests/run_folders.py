"""A small run folder made without training, for the command-line tests of stages that read traces."""

from __future__ import annotations

from pathlib import Path

import torch

from snnexit.runs import Settings
from snnexit.runs.artifacts import TRACE_FILES, RunFolder
from snnexit.runs.settings import RunConfig
from snnexit.simulate import Trace


def fit_folder(folder: Path, n: int = 300, T: int = 4) -> Path:
    """A run folder ``fit`` (and ``compare --run``) accepts: the folder's config (digits, T, as
    ``trace`` saves it) and seeded validation and test traces whose outputs favour the label."""
    g = torch.Generator().manual_seed(0)
    folder.mkdir(parents=True)
    RunFolder(folder).save_config(Settings(run=RunConfig(dataset="digits", T=T, out=str(folder))), "trace")
    for name, split in zip(TRACE_FILES, ("val", "test")):
        labels = torch.randint(0, 10, (n,), generator=g)
        outputs = (torch.randn(T, n, 10, generator=g) + 3 * torch.nn.functional.one_hot(labels, 10)).cumsum(0)
        Trace(outputs, labels, None, {"alpha": "T", "converter": "qcfs", "split": split}).save(folder / name)
    return folder
