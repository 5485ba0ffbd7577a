"""snnTorch's networks through NIR: exported with snnTorch's ``export_to_nir``, read by snnexit as
snnTorch means the nodes (semantics ``snntorch``), equal to the network snnTorch runs.

snnTorch 1.0.0 facts met here (its source): the exporter needs per-neuron ``beta`` and
``threshold`` tensors and ``ignore_dims=[0]`` (else ``NIRGraph.infer_types`` fails); its importer
cannot read its own conv exports (``AvgPool2d`` kernel size written as an int) and rebuilds a
recurrent layer from edges it rewrites wrongly, so the original modules are the reference there.
A ``Leaky`` or ``Synaptic`` is written as a hard-reset node whatever its reset: only
``reset_mechanism="zero"`` without reset delay (for ``Leaky`` the delay does not matter) is what
the file says.
"""

from __future__ import annotations

from dataclasses import replace

import nir
import numpy as np
import pytest
import torch

from nir_libraries import assert_same, inputs, ours, step_by_step
from snnexit.nir import SEMANTICS
from snnexit.nir.readers import library_trace

snn = pytest.importorskip("snntorch")
from snntorch.export_nir import export_to_nir  # noqa: E402


def leaky(shape, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return snn.Leaky(beta=torch.rand(shape, generator=g) * 0.3 + 0.6, threshold=torch.full(shape, 0.5),
                     init_hidden=True, reset_mechanism="zero", reset_delay=False, **kw)


def run_original(net):
    def step(xt):
        out = net(xt)
        return out[0] if isinstance(out, tuple) else out

    def reset():
        for m in net.modules():
            if hasattr(m, "reset_mem"):
                m.reset_mem()
    return step, reset


def check(net, shape, through_importer=True, exact=True):
    torch.manual_seed(0)
    x = inputs(shape)
    graph = export_to_nir(net, x[False][:4], ignore_dims=[0])
    step, reset = run_original(net)
    for temporal in (False, True):
        reset()
        reference = step_by_step(step, x[temporal], temporal)
        mine, spikes = ours(graph, "snntorch", x[temporal], temporal)
        assert_same(mine, reference, exact)
        if through_importer:
            theirs = library_trace(graph, "snntorch", [(x[temporal], None)], reference.shape[0], temporal).outputs
            assert_same(mine, theirs, exact)
    return graph


def test_conv_net_with_pooling():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.AvgPool2d(2), leaky((4, 4, 4)),
                              torch.nn.Flatten(), torch.nn.Linear(64, 10), leaky((10,), seed=1))
    graph = check(net, (1, 8, 8), through_importer=False)
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"Conv2d", "AvgPool2d", "LIF", "Flatten", "Affine"}


def test_lif_mlp():
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), leaky((16,)), torch.nn.Linear(16, 10), leaky((10,), seed=1))
    check(net, (64,))


def test_synaptic_is_a_cuba_lif():
    syn = snn.Synaptic(alpha=torch.full((16,), 0.5), beta=torch.full((16,), 0.8), threshold=torch.full((16,), 0.5),
                       init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), syn, torch.nn.Linear(16, 10), leaky((10,)))
    graph = check(net, (64,))
    assert any(isinstance(n, nir.CubaLIF) for n in graph.nodes.values())


def test_recurrent_leaky():
    """RLeaky: last step's spikes through the recurrent Linear (its bias from the first step)."""
    rec = snn.RLeaky(beta=0.8, threshold=0.5, linear_features=16, all_to_all=True, init_hidden=True,
                     reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), rec, torch.nn.Linear(16, 10), leaky((10,)))
    check(net, (64,), through_importer=False)


def test_default_subtract_leaky_is_written_as_a_hard_reset_that_every_reader_runs():
    """The default Leaky (subtract, reset delay) is exported as a LIF with v_reset = 0: snnTorch's own
    importer runs it with a reset to zero, and so do we; the trained network is not what the file says."""
    lif = snn.Leaky(beta=torch.full((16,), 0.9), threshold=torch.full((16,), 0.5), init_hidden=True)
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), lif, torch.nn.Linear(16, 10), leaky((10,)))
    x = inputs((64,))[False]
    graph = export_to_nir(net, x[:4], ignore_dims=[0])
    theirs = library_trace(graph, "snntorch", [(x, None)], 20).outputs
    assert_same(ours(graph, "snntorch", x, False)[0], theirs)
    step, reset = run_original(net)
    reset()
    assert not torch.equal(step_by_step(step, x, False), theirs)


def test_if_nodes_read_as_snntorch_reads_them():
    """An IF node becomes a subtracting Leaky without reset delay: leak-free on snnTorch's main
    branch (our default), beta 0.9 in the 1.0.0 importer (``if_beta``); both equal to it."""
    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(input_type={"input": np.array([20])}),
             "fc": nir.Affine(rng.normal(size=(16, 20)).astype(np.float32), rng.normal(size=16).astype(np.float32)),
             "if": nir.IF(r=np.ones(16, np.float32), v_threshold=np.full(16, 0.7, np.float32)),
             "out": nir.Affine(rng.normal(size=(5, 16)).astype(np.float32), np.zeros(5, np.float32)),
             "if2": nir.IF(r=np.ones(5, np.float32), v_threshold=np.full(5, 0.7, np.float32)),
             "output": nir.Output(output_type={"output": np.array([5])})}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "if"), ("if", "out"), ("out", "if2"),
                                             ("if2", "output")])
    x = inputs((20,), scale=2.0)
    for temporal in (False, True):
        leak_free = library_trace(graph, "snntorch", [(x[temporal], None)], 20, temporal, snntorch_if_beta=1.0)
        assert_same(ours(graph, "snntorch", x[temporal], temporal)[0], leak_free.outputs)
        as_released = library_trace(graph, "snntorch", [(x[temporal], None)], 20, temporal)
        leaky_if = replace(SEMANTICS.create("snntorch"), if_beta=0.9)
        assert_same(ours(graph, leaky_if, x[temporal], temporal)[0], as_released.outputs)
