"""Shared by the tests that hold snnexit's NIR reading to the home libraries (test_nir_<library>.py).

Each test builds a small network in the library, exports it with the library's own NIR export,
imports it with snnexit under that library's semantics, and compares the accumulated outputs at
every step, on static inputs (the same input at every step) and on temporal ones (a new input at
every step), with the network as the library runs it (the original module, stepped with its own
state) and, where the library's importer can run the graph, with that too.
"""

from __future__ import annotations

import torch

from snnexit.nir import import_nir
from snnexit.simulate import record_trace

N, T = 16, 20


def inputs(shape, scale=1.5, seed=0, n=N, steps=T) -> dict[bool, torch.Tensor]:
    """``{False: (N, ...) static, True: (N, T, ...) temporal}``, non-negative (firing rates)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, steps, *shape), generator=g) * scale
    return {False: x[:, 0].clone(), True: x}


def ours(graph, semantics, x, temporal, dt=None, steps=T):
    """snnexit's accumulated outputs (T, N, C) and spike counts (T, N, L) of the graph."""
    trace = record_trace(import_nir(graph, semantics, dt=dt), [(x, None)], T=steps, temporal=temporal)
    return trace.outputs, trace.spikes


@torch.no_grad()
def step_by_step(step, x, temporal, steps=T) -> torch.Tensor:
    """Accumulated outputs (T, N, C) of ``step(x_t)`` called once per step."""
    outs = [step(x[:, t] if temporal else x) for t in range(steps)]
    return torch.stack([o.reshape(x.shape[0], -1) for o in outs]).cumsum(0)


def assert_same(ours_out, reference, exact=True):
    """Equal to float tolerance (1e-5 relative to the largest output); ``exact``: identical (the
    outputs are spike counts computed with the same arithmetic)."""
    assert ours_out.shape == reference.shape, (ours_out.shape, reference.shape)
    scale = float(reference.abs().max()) or 1.0
    assert torch.allclose(ours_out, reference, rtol=1e-5, atol=1e-5 * scale), \
        f"largest difference {float((ours_out - reference).abs().max())} of {scale}"
    if exact:
        assert torch.equal(ours_out, reference)
    assert float(reference.abs().sum()) > 0  # the network did something
