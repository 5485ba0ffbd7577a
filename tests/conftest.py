import numpy as np
import pytest
import torch

from snnexit.simulate.trace import Trace


def random_trace(T=6, N=40, C=4, seed=0, meta=None) -> Trace:
    """A trace whose accumulated outputs drift towards the label, with noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (N,), generator=g)
    per_step = torch.randn(T, N, C, generator=g)
    per_step[:, torch.arange(N), labels] += torch.rand(N, generator=g) * 1.5
    outputs = per_step.cumsum(0)
    spikes = torch.randint(0, 50, (T, N, 3), generator=g).float()
    return Trace(outputs, labels, spikes, dict(meta or {"alpha": "T"}))


@pytest.fixture
def make_trace():
    return random_trace


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
