"""Norse's networks through NIR: exported with Norse's ``to_nir``, read by snnexit as Norse means
the nodes (semantics ``norse``: forward Euler, reset to 0, ``LIF`` starting at ``v_leak``).

Norse 1.1.0 facts met here (its source): its exporter writes ``tau = dt / tau_mem_inv``, which is
the time constant only for ``dt = 1``, so the round trip holds at ``dt = 1`` (used here); its
importer has no ``LI`` (a leaky-integrator readout is dropped from the graph it runs: the original
module is the reference there) and reads ``CubaLIF`` as a box synapse feeding a LIF, which is not
the dynamics of the ``LIFCell`` it exports as ``CubaLIF`` (its importer is the reference there).
"""

from __future__ import annotations

import logging

import pytest
import torch

from nir_libraries import T, assert_same, inputs, ours, step_by_step
from snnexit.nir.readers import library_trace

nt = pytest.importorskip("norse.torch")
from norse.torch.utils.export_nir import to_nir  # noqa: E402

DT = 1.0


def check(net, shape, original=True, importer=True, exact=True, scale=1.5):
    logging.disable(logging.WARNING)
    x = inputs(shape, scale=scale)
    graph = to_nir(net, x[False], dt=DT)
    for temporal in (False, True):
        mine, _ = ours(graph, "norse", x[temporal], temporal, dt=DT)
        if original:
            state = [None]

            def step(xt):
                out, state[0] = net(xt, state[0])
                return out
            assert_same(mine, step_by_step(step, x[temporal], temporal), exact)
        if importer:
            theirs = library_trace(graph, "norse", [(x[temporal], None)], T, temporal, dt=DT).outputs
            assert_same(mine, theirs, exact)
    logging.disable(logging.NOTSET)
    return graph


def test_if_mlp():
    net = nt.SequentialState(torch.nn.Linear(64, 16), nt.IAFCell(nt.IAFParameters(v_th=torch.full((16,), 0.8))),
                             torch.nn.Linear(16, 10), nt.IAFCell(nt.IAFParameters(v_th=torch.full((10,), 0.8))))
    check(net, (64,))


def test_lif_mlp_with_a_leaky_integrator_readout():
    lif = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.full((16,), 0.2), v_leak=torch.zeros(16),
                                            v_th=torch.full((16,), 0.5)), dt=DT)
    readout = nt.LIBoxCell(nt.LIBoxParameters(tau_mem_inv=torch.full((10,), 0.1), v_leak=torch.zeros(10)), dt=DT)
    graph = check(nt.SequentialState(torch.nn.Linear(64, 16), lif, torch.nn.Linear(16, 10), readout), (64,),
                  importer=False, exact=False)
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"LIF", "LI"}


def test_cuba_lif_as_norse_reads_it():
    cell = nt.LIFCell(nt.LIFParameters(tau_mem_inv=torch.full((16,), 0.2), tau_syn_inv=torch.full((16,), 0.5),
                                       v_leak=torch.zeros(16), v_th=torch.full((16,), 0.3)), dt=DT)
    out = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.full((10,), 0.5), v_leak=torch.zeros(10),
                                            v_th=torch.full((10,), 0.1)), dt=DT)
    graph = check(nt.SequentialState(torch.nn.Linear(64, 16), cell, torch.nn.Linear(16, 10), out), (64,),
                  original=False, scale=3.0)
    assert any(type(n).__name__ == "CubaLIF" for n in graph.nodes.values())
