"""QFFS neuron: exactness against LSQ, the cap and the negative-spike rules, settling."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnexit.convert import convert
from snnexit.models import create_model
from snnexit.neurons import QFFSNeuron, QFFSState, qffs_initial_state, qffs_step
from snnexit.quant import LSQ, lsq


def run_qffs(x_seq, theta, cap):
    state = qffs_initial_state(x_seq[0], theta)
    spikes, counts = [], []
    for x in x_seq:
        s, state = qffs_step(x, state, theta, cap)
        spikes.append(s)
        counts.append(state.count)
    return torch.stack(spikes), torch.stack(counts), state


dyadic = st.integers(-512, 2048).map(lambda k: k / 256)
step_dyadic = st.integers(1, 64).map(lambda k: k / 32)


@settings(max_examples=300, deadline=None)
@given(x=dyadic, step=step_dyadic, bits=st.integers(1, 4))
def test_constant_input_for_cap_steps_reproduces_lsq_exactly(x, step, bits):
    cap = 2 ** bits - 1
    theta = step * cap
    xs = torch.full((cap, 1), x, dtype=torch.float64)
    spikes, _, state = run_qffs(xs, theta, cap)
    q = lsq(torch.tensor([x], dtype=torch.float64), torch.tensor([step], dtype=torch.float64), bits).item()
    assert math.isclose(q / step, round(q / step), abs_tol=1e-9)
    assert state.count.item() == round(q / step)
    assert spikes.sum().item() * theta / cap == pytest.approx(q)  # spikes carry theta; alpha = cap
    assert (spikes >= 0).all()  # a constant input never over-fires


@settings(max_examples=300, deadline=None)
@given(xs=st.lists(st.integers(-1024, 1024).map(lambda k: k / 128), min_size=1, max_size=20),
       theta=st.integers(1, 32).map(lambda k: k / 8), cap=st.integers(1, 7))
def test_count_rules_and_settling_on_any_input(xs, theta, cap):
    x = torch.tensor(xs, dtype=torch.float64).view(-1, 1)
    settle = torch.zeros(cap + 1, 1, dtype=torch.float64)  # the input stops
    spikes, counts, _ = run_qffs(torch.cat([x, settle]), theta, cap)
    before = torch.cat([torch.zeros(1, 1, dtype=torch.float64), counts[:-1]])
    assert ((counts >= 0) & (counts <= cap)).all()  # never below zero, never above the cap
    assert (before[spikes < 0] > 0).all()  # negative spikes only after net positive ones
    assert torch.equal(counts, spikes.cumsum(0))
    # the settled count quantizes the total input, whatever its timing
    expected = min(max(math.floor(sum(xs) / theta + 0.5), 0), cap)
    assert counts[-1].item() == expected


def test_negative_spike_corrects_over_firing():
    # a large early input makes the neuron fire; a negative input later takes it back
    spikes, counts, state = run_qffs(torch.tensor([[2.0], [0.0], [-2.0], [0.0]]), 1.0, 3)
    assert spikes.flatten().tolist() == [1, 1, -1, -1]
    assert counts[-1].item() == 0 and 0 <= state.v.item() < 1


def test_cap_stops_positive_spikes():
    spikes, counts, _ = run_qffs(torch.full((10, 1), 5.0), 1.0, 3)
    assert spikes.sum().item() == 3 and counts.max().item() == 3


def test_module_state_select_and_records_abs_spikes():
    n = QFFSNeuron(threshold=1.0, cap=3)
    out = n(torch.tensor([[2.0, -1.0], [0.2, 0.0]]))  # v0 = 0.5
    assert out.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    out = n(torch.tensor([[-3.0, 0.0], [0.0, 0.0]]))  # v = 1.5 - 3 < 0 with count 1: a negative spike
    assert out.tolist() == [[-1.0, 0.0], [0.0, 0.0]]
    assert n.last_spike_count.tolist() == [1.0, 0.0]
    assert isinstance(n.state, QFFSState)
    n.select(torch.tensor([1]))
    assert n.state.v.shape == (1, 2) and n.state.count.shape == (1, 2)
    n.reset()
    assert n.state is None
    with pytest.raises(ValueError):
        QFFSNeuron(threshold=0.0, cap=3)


@pytest.mark.parametrize("converter", ["qffs", "qcfs"])
def test_thresholds_keep_the_networks_dtype(converter):
    """A float64 network thresholds in float64, exactly at s * (2**b - 1) (QFFS) or lam (QCFS)."""
    torch.manual_seed(0)
    model = create_model("vgg_small", num_classes=10, in_channels=1, input_size=8,
                         activation=lambda: LSQ(2, init_step=1 / 3)).double()
    acts = [m for m in model.modules() if isinstance(m, LSQ)]
    with torch.no_grad():
        for i, m in enumerate(acts):
            m.step.fill_(0.1 + 0.0123456789 * i)  # values float32 cannot hold exactly
    snn = convert(model.eval(), converter)
    thresholds = [m.threshold for m in snn.modules() if hasattr(m, "threshold") and isinstance(m.threshold, torch.Tensor)
                  and m is not snn and not isinstance(m, LSQ)]
    assert len(thresholds) == len(acts)
    for theta, m in zip(thresholds, acts):
        assert theta.dtype == torch.float64
        assert theta.item() == (m.step.detach() * 3).item()
