"""Sinabs's networks through NIR: exported with ``sinabs.to_nir``, read by snnexit as Sinabs means
the nodes (semantics ``sinabs``: several spikes per step, subtractive reset, ``IF`` floored at
``-v_threshold``, exact decay with time constants in steps), equal to the network Sinabs runs and
to Sinabs's own ``from_nir``. Sinabs has no ``CubaLIF`` node and no recurrent export (its
``LIFRecurrent`` is refused by ``to_nir``); its importer adds the ``IF`` floor and drops a
``LIF``'s input normalisation, so the networks here are built that way (``min_v_mem = -theta``,
``norm_input=False``)."""

from __future__ import annotations

import pytest
import torch

from nir_libraries import N, T, assert_same, inputs, ours
from snnexit.nir.readers import library_trace

sinabs = pytest.importorskip("sinabs")
import sinabs.layers as sl  # noqa: E402


@torch.no_grad()
def run_original(net, x, temporal):
    sinabs.reset_states(net)
    seq = x[:, :T] if temporal else x.unsqueeze(1).expand(x.shape[0], T, *x.shape[1:])
    out = net(seq.reshape(x.shape[0] * T, *seq.shape[2:]))  # Sinabs's squeezed (batch * time) layout
    return out.reshape(x.shape[0], T, -1).transpose(0, 1).cumsum(0)


def check(net, shape, exact):
    x = inputs(shape)
    graph = sinabs.to_nir(net, x[False])
    for temporal in (False, True):
        reference = run_original(net, x[temporal], temporal)
        mine, _ = ours(graph, "sinabs", x[temporal], temporal)
        assert_same(mine, reference, exact)
        assert_same(mine, library_trace(graph, "sinabs", [(x[temporal], None)], T, temporal).outputs, exact)
    return graph


def test_conv_net_with_sum_pooling_and_multi_spike_if():
    theta = 0.8
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1),
                              sl.IAFSqueeze(batch_size=N, spike_threshold=theta, min_v_mem=-theta), sl.SumPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(64, 10),
                              sl.IAFSqueeze(batch_size=N, spike_threshold=theta, min_v_mem=-theta))
    graph = check(net, (1, 8, 8), exact=True)
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"Conv2d", "SumPool2d", "IF", "Affine", "Flatten"}


def test_lif_mlp_with_a_leaky_integrator_readout():
    lif = sl.LIFSqueeze(tau_mem=torch.full((16,), 5.0), spike_threshold=torch.full((16,), 0.7), batch_size=N,
                        norm_input=False)
    readout = sl.ExpLeakSqueeze(tau_mem=torch.full((10,), 8.0), batch_size=N, norm_input=False)
    graph = check(torch.nn.Sequential(torch.nn.Linear(64, 16), lif, torch.nn.Linear(16, 10), readout), (64,),
                  exact=False)  # the readout's potentials are summed over steps: float tolerance
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"LIF", "LI"}
