"""SpikingJelly's networks through NIR: exported with its ``export_to_nir``, read by snnexit as
SpikingJelly means the nodes (semantics ``spikingjelly``: every neuron starts at ``v_reset``, fires
on ``>=``, resets hard), equal to the network SpikingJelly runs and to its ``import_from_nir``; a
recurrent graph (SpikingJelly exports none, but imports them) against its importer."""

from __future__ import annotations

import logging

import nir
import numpy as np
import pytest
import torch

from nir_libraries import T, assert_same, inputs, ours, step_by_step
from snnexit.nir.readers import library_trace

sj = pytest.importorskip("spikingjelly.activation_based.nir_exchange")
from spikingjelly.activation_based import functional, layer, neuron  # noqa: E402


def check(net, shape, scale=2.0):
    logging.disable(logging.WARNING)
    x = inputs(shape, scale=scale)
    graph = sj.export_to_nir(net, x[False])
    for temporal in (False, True):
        functional.reset_net(net)
        reference = step_by_step(net, x[temporal], temporal)
        mine, _ = ours(graph, "spikingjelly", x[temporal], temporal)
        assert_same(mine, reference)
        assert_same(mine, library_trace(graph, "spikingjelly", [(x[temporal], None)], T, temporal).outputs)
    logging.disable(logging.NOTSET)
    return graph


def test_conv_net_with_pooling():
    net = torch.nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), neuron.IFNode(v_threshold=0.8), layer.AvgPool2d(2),
                              layer.Flatten(), layer.Linear(64, 10), neuron.IFNode())
    check(net, (1, 8, 8))


def test_lif_mlp_both_input_decays():
    net = torch.nn.Sequential(layer.Linear(64, 16), neuron.LIFNode(tau=4.0), layer.Linear(16, 10),
                              neuron.LIFNode(tau=3.0, decay_input=False, v_threshold=0.5))
    check(net, (64,))


def test_cuba_lif():
    net = torch.nn.Sequential(layer.Linear(64, 16), neuron.CUBALIFNode(c_decay=0.5, v_decay=0.75, v_threshold=0.5),
                              layer.Linear(16, 10), neuron.IFNode(v_threshold=0.5))
    graph = check(net, (64,))
    assert any(isinstance(n, nir.CubaLIF) for n in graph.nodes.values())


def test_recurrent_graph_as_its_importer_runs_it():
    rng = np.random.default_rng(0)
    w = lambda *s: (rng.normal(size=s) * 0.5).astype(np.float32)  # noqa: E731
    dt, h = 1e-4, 12
    nodes = {"in": nir.Input(input_type={"input": np.array([20])}), "fc": nir.Affine(w(h, 20), w(h)),
             "lif": nir.LIF(tau=np.full(h, 4 * dt, np.float32), r=np.ones(h, np.float32),
                            v_leak=np.zeros(h, np.float32), v_threshold=np.full(h, 0.5, np.float32),
                            v_reset=np.zeros(h, np.float32)),
             "rec": nir.Affine(w(h, h), w(h)), "out": nir.Affine(w(5, h), w(5)),
             "output": nir.Output(output_type={"output": np.array([5])})}
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"),
                                             ("lif", "out"), ("out", "output")])
    x = inputs((20,), scale=2.0)
    for temporal in (False, True):
        theirs = library_trace(graph, "spikingjelly", [(x[temporal], None)], T, temporal).outputs
        assert_same(ours(graph, "spikingjelly", x[temporal], temporal)[0], theirs, exact=False)
