"""Cost accounting against brute force: spikes up to each exit step, spikes per neuron, fan-out, SynOps."""

import pytest
import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.neurons import IFNeuron
from snnexit.simulate import SpikingNetwork, record_trace
from snnexit.simulate.cost import Cost, compare_costs, cost_from_trace, fan_out, spikes_until


def test_spikes_until_exit_by_brute_force(make_trace):
    trace = make_trace(T=7, N=30)
    steps = torch.randint(1, 8, (30,))
    got = spikes_until(trace.spikes, steps)
    for n in range(30):
        for layer in range(trace.spikes.shape[2]):
            expected = sum(float(trace.spikes[t, n, layer]) for t in range(int(steps[n])))
            assert got[n, layer].item() == expected


def test_fixed_t_counts_everything_and_negative_spikes_cost_too(make_trace):
    trace = make_trace(T=5, N=10)
    trace.spikes[2, 3, 1] = -4.0  # a QFFS negative spike costs like a positive one
    got = spikes_until(trace.spikes)
    assert got[3, 1].item() == trace.spikes[:, 3, 1].abs().sum().item()
    assert torch.equal(spikes_until(trace.spikes, torch.full((10,), 5)), got)


def test_cost_from_trace_per_neuron_and_synops(make_trace):
    trace = make_trace(T=6, N=12)
    trace.meta.update(neurons_per_layer=[100, 50, 10], fan_out_per_layer=[9.0, 4.5, 3.0])
    steps = torch.randint(1, 7, (12,))
    cost = cost_from_trace(trace, steps)
    for n in range(12):
        s = [sum(float(trace.spikes[t, n, k]) for t in range(int(steps[n]))) for k in range(3)]
        assert cost.spikes_per_neuron()[n].item() == pytest.approx(sum(s) / 160)
        assert cost.synops()[n].item() == pytest.approx(9.0 * s[0] + 4.5 * s[1] + 3.0 * s[2])
    summary = compare_costs(trace, steps)
    assert summary["early_exit"]["mean_steps"] == pytest.approx(steps.double().mean().item())
    assert summary["fixed"]["mean_steps"] == 6
    assert summary["ratios"]["spikes_per_neuron"] <= 1.0


def test_bad_inputs_are_refused(make_trace):
    trace = make_trace(T=4, N=5)
    with pytest.raises(SnnexitError, match="neurons_per_layer"):
        cost_from_trace(trace)
    trace.meta["neurons_per_layer"] = [1, 2, 3]
    with pytest.raises(SnnexitError, match="exit steps"):
        cost_from_trace(trace, torch.tensor([0, 1, 2, 3, 4]))
    with pytest.raises(SnnexitError, match="fan-out"):
        cost_from_trace(trace).synops()
    with pytest.raises(SnnexitError, match="fan_out has"):
        Cost(torch.ones(2, dtype=torch.long), torch.ones(2, 3), [1, 1, 1], [1.0])


def brute_force_fan_out(snn: SpikingNetwork, x: torch.Tensor) -> list[float]:
    """For each neuron of each spiking layer: make it alone emit one unit spike (every other
    spiking layer silent, zero input, zero biases, positive weights) and count the neurons whose
    input becomes non-zero (later spiking layers and the output); average over the layer."""
    layers = [m for _, m in snn.spiking_layers()]
    arrived, emit = {}, {}

    class Inject(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, z):
            arrived[self.k] = z
            return emit.get(self.k, torch.zeros_like(z))

    swapped = []
    for module in list(snn.body.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, IFNeuron):
                swapped.append((module, name, child))
                setattr(module, name, Inject(layers.index(child)))
    try:
        with torch.no_grad():
            snn.body(x)
            shapes = {k: z.shape for k, z in arrived.items()}
            result = []
            for k in range(len(layers)):
                total = 0
                for j in range(shapes[k][1:].numel()):
                    one_hot = torch.zeros(shapes[k])
                    one_hot.view(-1)[j] = 1.0
                    emit.clear()
                    emit[k] = one_hot
                    out = snn.body(torch.zeros_like(x))
                    total += int((out != 0).sum()) + sum(int((z != 0).sum()) for i, z in arrived.items() if i != k)
                result.append(total / shapes[k][1:].numel())
        return result
    finally:
        for module, name, child in swapped:
            setattr(module, name, child)


def small_network(seed=0):
    torch.manual_seed(seed)
    body = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), IFNeuron(1.0), nn.AvgPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1), IFNeuron(1.0), nn.Flatten(), nn.Linear(4 * 3 * 3, 7), IFNeuron(1.0),
        nn.Linear(7, 5))
    for m in body.modules():  # generic weights are never exactly zero; biases off for the brute force
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.uniform_(m.weight, 0.1, 1.0)
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            nn.init.zeros_(m.bias)
            m.running_mean.zero_()
    return SpikingNetwork(body).eval()


def test_fan_out_equals_brute_force():
    snn = small_network()
    x = torch.zeros(1, 1, 6, 6)
    got = fan_out(snn, x)
    assert got == pytest.approx(brute_force_fan_out(snn, x))
    # the first layer feeds a 3x3 conv (padding 1) on the 3x3 map after 2x2 pooling: a pooled
    # corner reaches 4 positions per output channel, an edge 6, the centre 9; 4 channels
    assert got[0] == pytest.approx(4 * (4 * 4 + 4 * 6 + 9) / 9)
    assert got[2] == 5  # the last hidden layer feeds all 5 outputs


def test_trace_synops_use_the_network_fan_out():
    snn = small_network(1)
    x = torch.rand(20, 1, 6, 6) * 3
    trace = record_trace(snn, [(x, torch.zeros(20, dtype=torch.long))], T=5)
    fo = fan_out(snn, x)
    cost = cost_from_trace(trace, fan_out=fo)
    brute = sum(trace.spikes[:, :, k].sum(0) * fo[k] for k in range(3))
    assert torch.allclose(cost.synops(), brute.double())


# ---- energy ---------------------------------------------------------------------------------

def tiny_network():
    """Conv(1->2, 3x3, pad 1) on 4x4 -> IF -> Linear(32 -> 3): hand-countable."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), IFNeuron(0.5), nn.Flatten(), nn.Linear(32, 3))
    with torch.no_grad():
        body[0].weight.uniform_(0.1, 0.5)
        body[3].weight.uniform_(0.1, 1.0)  # no zero weight: every spike reaches all 3 outputs
    return SpikingNetwork(body).eval()


def test_input_macs_by_hand():
    from snnexit.simulate.cost import input_macs

    assert input_macs(tiny_network(), torch.zeros(1, 1, 4, 4)) == 2 * 4 * 4 * (1 * 3 * 3)  # outputs x taps
    # only the layers before the first spiking layer read the analog input; batch norm is not counted
    assert input_macs(small_network(), torch.zeros(1, 1, 6, 6)) == 3 * 6 * 6 * 9
    grouped = SpikingNetwork(nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Linear(2, 5), IFNeuron(1.0)))
    assert input_macs(grouped, torch.zeros(1, 4, 5, 4)) == 8 * 3 * 2 * (2 * 9) + 8 * 3 * 5 * 2


def test_energy_against_a_hand_count():
    snn = tiny_network()
    x = torch.rand(6, 1, 4, 4)
    trace = record_trace(snn, [(x, torch.zeros(6, dtype=torch.long))], T=5)
    trace.meta["fan_out_per_layer"] = fan_out(snn, x[:1])
    assert trace.meta["fan_out_per_layer"] == [3.0]
    assert trace.meta["input_macs_per_step"] == 288
    steps = torch.tensor([1, 2, 3, 4, 5, 5])
    spikes = [sum(float(trace.spikes[t, n, 0]) for t in range(int(steps[n]))) for n in range(6)]
    assert sum(spikes) > 0
    for preset, (mac, ac) in {"fp32": (4.6, 0.9), "fp16": (1.5, 0.4), "int8": (0.23, 0.03), "2.0,0.5": (2.0, 0.5),
                              (3.0, 0.1): (3.0, 0.1)}.items():
        hand = [288 * int(steps[n]) * mac + 3 * spikes[n] * ac for n in range(6)]
        cost = cost_from_trace(trace, steps, energy=preset)
        assert cost.energy_pj()["total_pj"].tolist() == pytest.approx(hand)
        s = cost.summary()
        assert s["energy_pj_per_inference"] == pytest.approx(sum(hand) / 6)
        assert s["energy_mac_pj_per_inference"] == pytest.approx(288 * float(steps.double().mean()) * mac)
        assert s["energy_ac_pj_per_inference"] == pytest.approx(3 * sum(spikes) / 6 * ac)
        assert s["macs_per_inference"] + 0 == pytest.approx(288 * float(steps.double().mean()))
        assert s["acs_per_inference"] == pytest.approx(s["synops_per_inference"])
    by_preset = cost_from_trace(trace, steps).summary()["energy_pj_per_inference_by_preset"]
    assert by_preset["int8"] == pytest.approx(sum(288 * int(steps[n]) * 0.23 + 3 * spikes[n] * 0.03
                                                  for n in range(6)) / 6)
    ratios = compare_costs(trace, steps)["ratios"]
    assert 0 < ratios["energy_pj_per_inference"] < 1


def test_energy_presets_and_bad_pairs():
    from snnexit.simulate.cost import ENERGY_PRESETS, energy_model

    assert (energy_model("fp32").mac_pj, energy_model("fp32").ac_pj) == pytest.approx((4.6, 0.9))
    assert set(ENERGY_PRESETS) == {"fp32", "fp16", "int8"}
    with pytest.raises(SnnexitError, match="Known: fp32, fp16, int8"):
        energy_model("fp64")
    for bad in ("1,2,3", "a,b", (1.0, -1.0), (1.0,)):
        with pytest.raises(SnnexitError, match="two numbers"):
            energy_model(bad)
    cost = Cost(torch.ones(2, dtype=torch.long), torch.ones(2, 1), [1], [1.0])
    assert cost.summary()["energy_pj_per_inference"] is None  # MACs of the input layer unknown
    with pytest.raises(SnnexitError, match="input layer's MACs"):
        cost.energy_pj()


def test_structural_counts_are_remembered_until_the_network_changes():
    """Engines made one after another reuse the fan-out; an in-place weight update (its zero
    pattern may change) or a swapped module computes it again, equal to fan_out's."""
    from snnexit.simulate.structure import structural_counts

    torch.manual_seed(0)
    snn = SpikingNetwork(nn.Sequential(nn.Linear(6, 5), IFNeuron(1.0), nn.Linear(5, 4), IFNeuron(1.0), nn.Linear(4, 3)))
    x = torch.rand(2, 6)
    first = structural_counts(snn, x)
    assert first[0] == fan_out(snn, x[:1]) and structural_counts(snn, x) is first
    with torch.no_grad():
        snn.body[2].weight[:, 0] = 0  # layer 1's first neuron now reaches nobody
    again = structural_counts(snn, x)
    assert again is not first and again[0] == fan_out(snn, x[:1]) and again[0][0] < first[0][0]
    snn.body[4] = nn.Linear(4, 3)
    assert structural_counts(snn, x) is not again
