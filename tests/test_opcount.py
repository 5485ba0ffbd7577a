"""SpikingJelly's way of counting operations, against a hand count and against SpikingJelly's own counters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.neurons import IFNeuron
from snnexit.simulate import SpikingNetwork
from snnexit.simulate.opcount import _layer_ops, energy_by_convention, spikingjelly_op_counts


def ops(module, u):
    macs, acs = _layer_ops(module, u, module(u))
    return float(macs[0]), float(acs[0])


def test_a_hand_count():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    spike = torch.zeros(1, 1, 4, 4)
    spike[0, 0, 0, 0] = 1.0  # a corner spike meets the windows of 4 outputs, in each of 2 output channels
    assert ops(conv, spike) == (0.0, 8.0)
    assert ops(conv, torch.rand(1, 1, 4, 4) + 0.1) == (16 * 2 * 1 * 9, 0.0)  # analog: dense MACs
    assert ops(conv, spike * 0.75) == (16 * 2 * 1 * 9, 0.0)  # a spike of amplitude theta is no 0/1 input
    assert ops(nn.AvgPool2d(2), torch.rand(1, 2, 4, 4)) == (0.0, 8 * 3)
    linear = nn.Linear(8, 3)
    binary = torch.tensor([[1.0, 0, 1, 1, 0, 0, 1, 1]])
    assert ops(linear, binary) == (0.0, 5 * 3)
    assert ops(nn.BatchNorm2d(2).eval(), torch.rand(1, 2, 4, 4)) == (32.0, 32.0)


@pytest.mark.parametrize("binary", [True, False])
def test_the_counts_are_spikingjellys(binary):
    """Layer by layer at batch size 1, SpikingJelly's ACCounter and MACCounter count what we count
    (BatchNorm aside: SpikingJelly adds its per-channel constants once per call)."""
    from spikingjelly.activation_based.op_counter import ACCounter, DispatchCounterMode, MACCounter

    torch.manual_seed(0)
    layers = [nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 4, 3, stride=2, groups=2), nn.AvgPool2d(2),
              nn.Conv1d(2, 3, 3, padding=1), nn.Linear(12, 5)]
    inputs = [torch.rand(1, 2, 6, 6), torch.rand(1, 2, 7, 7), torch.rand(1, 3, 4, 4), torch.rand(1, 2, 9),
              torch.rand(1, 12)]
    for layer, u in zip(layers, inputs):
        if binary and not isinstance(layer, nn.AvgPool2d):
            u = (u > 0.6).float()
        ac, mac = ACCounter(), MACCounter()
        with torch.no_grad(), DispatchCounterMode([ac, mac]):
            out = layer(u)
        assert ops(layer, u) == (float(mac.get_total()), float(ac.get_total())), layer


def test_counts_stop_at_each_exit_step():
    torch.manual_seed(1)
    body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), IFNeuron(1.0), nn.Flatten(), nn.Linear(3 * 16, 4))
    snn = SpikingNetwork(body).eval()
    x = torch.rand(5, 1, 4, 4) * 2
    full = spikingjelly_op_counts(snn, x, 6)
    early = spikingjelly_op_counts(snn, x, 6, exit_steps=torch.tensor([1, 2, 3, 6, 6]))
    per_step = [spikingjelly_op_counts(snn, x, t) for t in range(1, 7)]
    for i, k in enumerate([1, 2, 3, 6, 6]):
        assert early["macs"][i] == per_step[k - 1]["macs"][i] and early["acs"][i] == per_step[k - 1]["acs"][i]
    assert torch.equal(full["macs"], per_step[-1]["macs"])
    assert float(full["macs"][0]) == 6 * 16 * 3 * 9  # the first layer reads the analog input: MACs every step
    e = energy_by_convention("spikingjelly", snn, x, 6, model=(2.0, 1.0))
    assert e["energy_pj_per_inference"] == pytest.approx(float((2 * full["macs"] + full["acs"]).mean()))
    with pytest.raises(SnnexitError, match="Unknown energy convention"):
        energy_by_convention("neurobench", snn, x, 6)
