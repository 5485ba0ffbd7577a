"""The soft-reset IF neuron: a golden trajectory, SpikingJelly as reference, QCFS exactness;
the hard-reset IF step of NIR."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnexit.neurons import IFNeuron, IFState, if_hard_reset_step, if_soft_reset_step
from snnexit.quant import qcfs


def run_if(x_seq, threshold, v0):
    state = IFState(torch.full_like(x_seq[0], v0))
    spikes = []
    for x in x_seq:
        s, state = if_soft_reset_step(x, state, threshold)
        spikes.append(s)
    return torch.stack(spikes), state


def test_golden_trajectory_fires_at_4_8_12():
    x = torch.full((12, 1), 0.25, dtype=torch.float64)
    spikes, state = run_if(x, 1.0, 0.0)
    assert torch.nonzero(spikes[:, 0]).flatten().add(1).tolist() == [4, 8, 12]
    assert state.v.item() == 0.0


def test_soft_reset_keeps_the_excess():
    spikes, state = run_if(torch.tensor([[1.75]]), 1.0, 0.0)
    assert spikes.item() == 1 and state.v.item() == pytest.approx(0.75)


def test_hard_reset_drops_the_excess_and_fires_on_gt_or_ge():
    x = torch.tensor([[1.75], [0.25], [1.0], [0.5]], dtype=torch.float64)  # v = 1.0 exactly at step 3
    v_reset = torch.tensor(-0.25, dtype=torch.float64)
    for fire_ge, expected_s, expected_v in [(False, [1, 0, 0, 1], [-0.25, 0.0, 1.0, -0.25]),
                                            (True, [1, 0, 1, 0], [-0.25, 0.0, -0.25, 0.25])]:
        state, spikes, vs = IFState(torch.zeros_like(x[0])), [], []
        for xt in x:
            s, state = if_hard_reset_step(xt, state, 1.0, v_reset, fire_ge)
            spikes.append(s.item())
            vs.append(state.v.item())
        assert spikes == expected_s and vs == expected_v


def test_matches_spikingjelly_ifnode_on_random_input():
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    torch.manual_seed(1)
    x = torch.randn(50, 8, 16) * 0.7
    ref = sj.IFNode(v_threshold=1.0, v_reset=None, step_mode="s")
    expected = torch.stack([ref(xt) for xt in x])
    ours = IFNeuron(threshold=1.0, v_init=0.0)
    got = torch.stack([ours(xt) for xt in x])
    assert torch.equal(got, expected)
    assert torch.allclose(ours.state.v, ref.v)


def test_module_outputs_amplitude_threshold_and_counts_spikes():
    n = IFNeuron(threshold=2.0)
    out = n(torch.tensor([[3.0, 0.1, 1.0]]))  # v0 = 1: v = 4, 1.1, 2
    assert out.tolist() == [[2.0, 0.0, 2.0]]
    assert n.last_spike_count.tolist() == [2.0]
    assert n.neurons_per_input == 3


def qcfs_count(z, lam, L):
    return qcfs(torch.tensor([z], dtype=torch.float64), torch.tensor([lam], dtype=torch.float64), L).item() * L / lam


# Dyadic rationals: every sum in the simulation is exact in float64, so ties (z*L/lam + 1/2
# an integer) really occur and the ">=" firing rule must agree with floor(. + 1/2).
dyadic = st.integers(-512, 2048).map(lambda k: k / 256)
lam_dyadic = st.integers(1, 64).map(lambda k: k / 8)


@settings(max_examples=300, deadline=None)
@given(z=dyadic, lam=lam_dyadic, L=st.integers(1, 16))
def test_qcfs_spike_count_equals_quantized_activation_exactly(z, lam, L):
    x = torch.full((L, 1), z, dtype=torch.float64)
    spikes, _ = run_if(x, lam, lam / 2)
    assert spikes.sum().item() == round(qcfs_count(z, lam, L))
    assert math.isclose(qcfs_count(z, lam, L), round(qcfs_count(z, lam, L)), abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(z=st.floats(-2, 10, allow_nan=False), lam=st.floats(0.05, 8), L=st.integers(1, 32))
def test_qcfs_spike_count_random_floats(z, lam, L):
    x = torch.full((L, 1), z, dtype=torch.float64)
    spikes, _ = run_if(x, lam, lam / 2)
    expected = qcfs_count(z, lam, L)
    frac = z * L / lam + 0.5
    if abs(frac - round(frac)) > 1e-9:  # away from a tie, float rounding cannot matter
        assert spikes.sum().item() == pytest.approx(expected)


def test_qcfs_gradients_match_plain_ops():
    torch.manual_seed(0)
    z = torch.randn(200, dtype=torch.float64) * 3
    lam = torch.tensor([2.5], dtype=torch.float64, requires_grad=True)
    z1 = z.clone().requires_grad_()
    w = torch.randn(200, dtype=torch.float64)
    (qcfs(z1, lam, 4) * w).sum().backward()
    grad_z, grad_lam = z1.grad.clone(), lam.grad.clone()

    # reference: the QCFS authors' formulation with a straight-through floor
    lam2 = lam.detach().clone().requires_grad_()
    z2 = z.clone().requires_grad_()
    u = torch.clamp(z2 / lam2, 0, 1)
    q = u * 4 + 0.5
    q = (q + (torch.floor(q) - q).detach()) / 4
    (q * lam2 * w).sum().backward()
    assert torch.allclose(grad_z, z2.grad)
    assert torch.allclose(grad_lam, lam2.grad)
