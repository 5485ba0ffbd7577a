"""The speed race's simulators and the dense floor compute what they claim (no timing is asserted).

The network is test_runtime's dyadic float64 one: every sum is exact, so snnexit step by step,
chunked, and SpikingJelly's copies must agree bit for bit, and the dense floor is checked
against the same layers written out by hand with ReLU.
"""

import pytest
import torch
from torch import nn

from snnexit.experiments.floor import DenseFloor, dense_twin, floor_chunk
from snnexit.experiments.race import race, run_chunks, run_steps
from snnexit.experiments.workloads import WORKLOADS, workload
from snnexit.neurons.modules import StatefulModule
from test_runtime import T, _one_thread, dyadic_inputs, dyadic_network  # noqa: F401


def by_hand(snn) -> nn.Sequential:
    """The dyadic network's layers with ReLU for every IF neuron, rebuilt from its modules."""
    layers = [nn.ReLU() if isinstance(m, StatefulModule) else m for m in snn.body]
    return nn.Sequential(*layers)


def test_the_dense_twin_is_the_network_with_relu_for_every_neuron():
    snn = dyadic_network()
    x = dyadic_inputs(9, 5)
    twin = dense_twin(snn)
    assert not any(isinstance(m, StatefulModule) for m in twin.modules())
    with torch.no_grad():
        assert torch.equal(twin(x), by_hand(snn)(x))
    assert any(isinstance(m, StatefulModule) for m in snn.modules())  # the network itself is untouched


@pytest.mark.parametrize("temporal", [False, True])
def test_the_floor_runs_t_passes_and_chunked_passes_of_the_twin(temporal):
    snn = dyadic_network()
    n = 5
    x = dyadic_inputs(n * T, 6).view(n, T, 1, 8, 8) if temporal else dyadic_inputs(n, 6)
    floor = DenseFloor(snn, T, temporal)
    last = x[:, T - 1] if temporal else x
    with torch.no_grad():
        expected = by_hand(snn)(last)
        assert torch.equal(floor.steps(x), expected)
        for k in (1, 5, T):
            y = floor.chunked(x, k)  # the last chunk's k' x n rows, time-major
            assert torch.equal(y[-n:], expected)
            assert y.shape[0] == n * ((T - 1) % k + 1)


def test_the_floor_chunk_follows_the_memory_cap():
    snn = dyadic_network()
    floor = DenseFloor(snn, T, max_chunk_bytes=10 ** 9)
    x = dyadic_inputs(4, 7)
    assert floor.chunk(x) == T  # everything fits: one pass on T x n rows
    largest = max(snn.neurons_per_layer())
    assert floor_chunk(snn, 4, T, 3 * largest * 4 * 4 * 3) == 3  # room for exactly 3 steps of 4 inputs
    assert floor_chunk(snn, 4, T, 1) == 1  # at least one step


@pytest.mark.parametrize("temporal", [False, True])
def test_chunked_runs_equal_single_steps_with_their_spikes(temporal):
    snn = dyadic_network()
    n = 6
    x = dyadic_inputs(n * T, 8).view(n, T, 1, 8, 8) if temporal else dyadic_inputs(n, 8)
    spikes_steps, spikes_chunks = [], []
    ref = run_steps(snn, x, T, temporal, spikes_steps)
    got = run_chunks(snn, x, T, (5, 5, 5), temporal, spikes_chunks)
    assert torch.equal(ref, got) and spikes_steps == spikes_chunks
    assert ref.shape == (T, n, 5) and sum(spikes_steps) > 0


@pytest.mark.parametrize("temporal", [False, True])
def test_the_race_checks_every_simulator_against_the_step_run(temporal):
    pytest.importorskip("spikingjelly")
    snn = dyadic_network()
    n = 4
    x = dyadic_inputs(n * T, 9).view(n, T, 1, 8, 8) if temporal else dyadic_inputs(n, 9)
    r = race(snn, x, T, repeats=1, channels_last=False, temporal=temporal, threads=1)
    assert set(r["identical"]) == {"snnexit_chunked", "sj_single", "sj_multi"}
    for name, check in r["identical"].items():
        assert check["outputs_identical"] and check["spikes_identical"] and check["predictions_identical"], name
    assert set(r["median_seconds"]) == {"snnexit", "snnexit_chunked", "sj_single", "sj_multi", "floor_steps",
                                        "floor_chunked"}
    assert sum(r["chunk_plan"]) >= T and r["threads"] == 1 and r["chunked_threads"] == 1
    assert set(r["over_floor"]) == {"snnexit", "sj_single", "snnexit_chunked", "sj_multi"}


def test_the_race_skips_multi_step_past_its_memory_budget():
    pytest.importorskip("spikingjelly")
    r = race(dyadic_network(), dyadic_inputs(2, 10), T, repeats=1, channels_last=False, threads=1, memory_budget=1)
    assert "sj_multi" in r["skipped"] and "sj_multi" not in r["median_seconds"]


def test_workloads_name_the_shapes_users_run():
    assert set(WORKLOADS.names()) == {"default", "vgg16", "resnet20", "event_cnn"}
    assert workload("vgg16").config().dataset == "mnist5k_rgb32" and workload("resnet20").config().model == "resnet20"
    event = workload("event_cnn").config()
    assert event.dataset == "event_mnist" and event.T == 16


def test_mnist_at_the_cifar_shape_is_mnist_resized_to_three_channels():
    from snnexit.data import load_dataset
    from snnexit.data.transforms import resize

    plain, grown = load_dataset("mnist5k", 0), load_dataset("mnist5k_rgb32", 0)
    assert grown.test.x.shape[1:] == (3, 32, 32) and grown.num_classes == plain.num_classes == 10
    assert torch.equal(grown.test.y, plain.test.y) and len(grown.train.x) == len(plain.train.x)
    x = grown.test.x[:20]
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.allclose(x[:, :1], resize(plain.test.x[:20], (32, 32)).clamp(0, 1))
