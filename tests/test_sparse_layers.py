"""The spike-driven layer formulations equal the dense layer (float64 truth), and the recorder of
layer inputs counts densities right on a hand-made network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnexit.experiments.layer_inputs import LayerInputRecorder
from snnexit.experiments.sparse_layers import conv_bag, conv_scatter, linear_bag, linear_csr, sparse_formulations
from snnexit.neurons.modules import IFNeuron
from snnexit.simulate import SpikingNetwork


def spikes(shape, density: float, theta: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < density).float() * theta


def pooled_spikes(shape, density: float, theta: float, seed: int) -> torch.Tensor:
    """Average-pooled spikes: multiples of theta / 4, as a conv after AvgPool2d(2) receives them."""
    n, c, h, w = shape
    return nn.functional.avg_pool2d(spikes((n, c, 2 * h, 2 * w), density, theta, seed), 2)


def float64_truth(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    import copy
    return copy.deepcopy(layer).double()(x.double())


def assert_matches(got: torch.Tensor, layer: nn.Module, x: torch.Tensor) -> None:
    truth = float64_truth(layer, x)
    dense = layer(x)
    assert got.shape == dense.shape
    # the dense float32 layer's own rounding is the yardstick: the same sums in another order
    tolerance = 4 * (dense.double() - truth).abs().max().item() + 1e-6
    assert (got.double() - truth).abs().max().item() <= tolerance


@pytest.mark.parametrize("density", [0.0, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("f", [linear_csr, linear_bag])
def test_linear_formulations_equal_the_dense_layer(f, n, density):
    torch.manual_seed(0)
    layer = nn.Linear(40, 7)
    x = spikes((n, 40), density, 1.25, seed=n)
    with torch.no_grad():
        assert_matches(f(x, layer), layer, x)


def test_linear_without_bias():
    layer = nn.Linear(12, 3, bias=False)
    x = spikes((4, 12), 0.4, 0.5, seed=1)
    with torch.no_grad():
        for f in sparse_formulations(layer).values():
            assert_matches(f(x), layer, x)


CONVS = [dict(kernel_size=3, padding=1), dict(kernel_size=3, padding=1, stride=2), dict(kernel_size=1, stride=2),
         dict(kernel_size=(3, 2), padding=(0, 1)), dict(kernel_size=3, padding=1, bias=False), dict(kernel_size=5)]


@pytest.mark.parametrize("kwargs", CONVS)
@pytest.mark.parametrize("f", [conv_scatter, conv_bag])
@pytest.mark.parametrize("make", [spikes, pooled_spikes])
def test_conv_formulations_equal_the_dense_conv(f, make, kwargs):
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 6, **kwargs)
    for n, density in ((1, 0.1), (3, 0.4), (2, 0.0)):
        x = make((n, 3, 9, 8), density, 1.5, seed=n)
        with torch.no_grad():
            assert_matches(f(x, conv), conv, x)


def test_conv_formulations_on_channels_last_inputs():
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 5, 3, padding=1)
    x = spikes((2, 4, 6, 6), 0.3, 1.0, seed=3).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for f in sparse_formulations(conv).values():
            assert_matches(f(x), conv, x)


def test_grouped_or_dilated_convs_are_refused():
    with pytest.raises(ValueError, match="one group"):
        sparse_formulations(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="dilation"):
        conv_bag(torch.zeros(1, 2, 5, 5), nn.Conv2d(2, 2, 3, dilation=2))


def test_the_recorder_counts_densities_of_a_hand_made_network():
    """conv (reads the analog input) -> IF (theta 1, v(0) 0.5: fires when input >= 0.5) -> flatten -> linear."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0]).view(2, 1, 1, 1))  # channel 0: the input, channel 1: zero
    lin = nn.Linear(2 * 2 * 2, 3)
    snn = SpikingNetwork(nn.Sequential(conv, IFNeuron(torch.tensor(1.0), v_init=0.5), nn.Flatten(), lin))
    x = torch.tensor([[[[0.6, 0.0], [0.0, 0.0]]], [[[0.6, 0.6], [0.6, 0.0]]]])  # 1 and 3 pixels of 4 on
    recorder = LayerInputRecorder(snn, keep_rows=1, keep_steps=(2,))
    T = 3
    recorder.run(x, T)
    by_name = {r.name: r for r in recorder.layers}
    assert not by_name["0"].receives_spikes and by_name["3"].receives_spikes
    # pixel input 0.6 each step: v = 0.5 + 0.6 = 1.1 fires at step 1 (v -> 0.1), 0.7 no, 1.3 fires at step 3
    fired = torch.tensor([1.0, 0.0, 1.0])
    pixels = torch.tensor([1.0, 3.0])  # active pixels of each input, of 8 linear inputs (channel 1 never fires)
    expected = fired.unsqueeze(1) * pixels.unsqueeze(0) / 8  # (T, n)
    assert by_name["3"].density_per_step() == pytest.approx(expected.mean(1).tolist())
    assert by_name["3"].density() == pytest.approx(expected.mean().item())
    assert by_name["0"].density() == pytest.approx(4 / 8)  # the analog input: 4 non-zero pixels of 2 x 4
    kept = by_name["3"].samples
    assert len(kept) == 1 and kept[0].shape == (1, 8) and kept[0].count_nonzero().item() == 0  # step 2: no spike
