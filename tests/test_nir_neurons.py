"""The leaky neurons of NIR readers (snnexit.neurons.leaky): golden trajectories, closed forms,
hand-written loops of each library's equations, and snnTorch's own neuron."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from snnexit.neurons.leaky import (LeakyParams, LeakyState, cuba_initial_state, cuba_lif_step, integrator_step,
                                   leaky_step)
from snnexit.neurons.leaky_modules import CubaLIFNeuron, LeakyIntegrator, LeakyNeuron


def spike_steps(p: LeakyParams, x: float, T: int) -> list[int]:
    state, steps = LeakyState(torch.zeros(1) + p.v_init), []
    for t in range(1, T + 1):
        s, state = leaky_step(torch.full((1,), x), state, p)
        steps += [t] * int(s.item())
    return steps


def test_if_golden_trajectories():
    """Input 0.25, threshold 1: subtracting and firing on >= spikes at 4, 8, 12; NIR's rule (fire on
    >, reset to 0) first sees v > 1 at step 5; starting at theta/2 moves the spikes to 2, 6, 10."""
    assert spike_steps(LeakyParams(fire=">=", reset="subtract"), 0.25, 12) == [4, 8, 12]
    assert spike_steps(LeakyParams(fire=">", reset="hard"), 0.25, 12) == [5, 10]
    assert spike_steps(LeakyParams(fire=">=", reset="subtract", v_init=0.5), 0.25, 12) == [2, 6, 10]


@pytest.mark.parametrize("charge", ["euler", "box", "box_lif"])
def test_lif_charge_has_the_closed_form_of_a_leaky_integrator(charge):
    """Constant input x from v = 0, no spikes: v_t = x (1 - (1 - dt/tau)^t) for every Euler form."""
    tau, x = 4.0, 0.8
    p = LeakyParams(charge=charge, tau=tau, rate=1 / tau, threshold=1e9)
    state = LeakyState(torch.zeros(3))
    for t in range(1, 30):
        _, state = leaky_step(torch.full((3,), x), state, p)
        assert state.v[0].item() == pytest.approx(x * (1 - (1 - 1 / tau) ** t), rel=1e-5)
    # the decay form with decay 1 - dt/tau and gain dt/tau is the same equation
    v = torch.zeros(1)
    for t in range(1, 30):
        v, _ = integrator_step(torch.full((1,), x), LeakyState(v), LeakyParams(decay=1 - 1 / tau, gain=1 / tau))
    assert v.item() == pytest.approx(x * (1 - (1 - 1 / tau) ** 29), rel=1e-5)


def test_sinabs_multi_spikes_and_floor_by_hand():
    """Sinabs's IF: v += x; s = trunc(v / theta) where v > 0; v -= s theta; v = relu(v + theta) - theta."""
    rng = np.random.default_rng(0)
    theta = 0.7
    p = LeakyParams(threshold=theta, fire="multi", reset="subtract", floor=-theta)
    xs = rng.normal(0, 1.5, size=(40, 6)).astype(np.float32)
    state, v = LeakyState(torch.zeros(6)), np.zeros(6, np.float32)
    for x in xs:
        v = v + x
        s = np.where(v > 0, np.trunc(v / np.float32(theta)), 0).astype(np.float32)
        v = v - s * np.float32(theta)
        v = np.maximum(v + np.float32(theta), 0) - np.float32(theta)
        ours, state = leaky_step(torch.from_numpy(x), state, p)
        assert np.array_equal(ours.numpy(), s)
        np.testing.assert_allclose(state.v.numpy(), v, rtol=1e-6, atol=1e-6)
    assert spike_steps(p, 2.5 * theta, 1) == [1, 1]  # two spikes in one step


def test_snntorch_subtract_without_reset_delay_equals_snntorch():
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    theta = 0.6
    theirs = snn.Leaky(beta=1.0, threshold=theta, reset_delay=False)  # what snnTorch makes of an IF node
    p = LeakyParams(decay=1.0, threshold=theta, fire=">", reset="subtract_snntorch")
    x = torch.randn(50, 8, 5) * 0.8 + 0.3  # some steps carry more than two thresholds
    mem, state = None, LeakyState(torch.zeros(8, 5))
    for xt in x:
        spk, mem = theirs(xt, mem) if mem is not None else theirs(xt)
        ours, state = leaky_step(xt, state, p)
        assert torch.equal(spk, ours)
        assert torch.equal(mem, state.v)


def test_cuba_lif_is_a_leaky_current_feeding_a_lif():
    """snnTorch's Synaptic: i = alpha i + x; v = beta v + i; spike on v > theta, reset to 0."""
    rng = np.random.default_rng(1)
    alpha, beta, theta = np.float32(0.5), np.float32(0.8), np.float32(1.0)
    syn, mem = LeakyParams(decay=alpha), LeakyParams(decay=beta, threshold=theta)
    i, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    state = None
    for x in rng.uniform(0, 1, size=(30, 4)).astype(np.float32):
        i = alpha * i + x
        v = beta * v + i
        s = (v > theta).astype(np.float32)
        v = np.where(s > 0, 0, v).astype(np.float32)
        xt = torch.from_numpy(x)
        state = state or cuba_initial_state(xt, syn, mem)
        ours, state = cuba_lif_step(xt, state, syn, mem)
        assert np.array_equal(ours.numpy(), s)
        np.testing.assert_allclose(state.i.numpy(), i, rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: LeakyNeuron(LeakyParams(charge="euler", tau=3.0, threshold=0.5)),
    lambda: LeakyNeuron(LeakyParams(threshold=0.4, fire="multi", reset="subtract", floor=-0.4)),
    lambda: CubaLIFNeuron(LeakyParams(decay=0.6), LeakyParams(decay=0.9, threshold=0.8, v_init=0.1)),
    lambda: LeakyIntegrator(LeakyParams(charge="box", rate=0.25, rest=0.1, v_init=0.1)),
], ids=["lif", "sinabs_if", "cuba_lif", "li"])
def test_modules_chunk_select_and_reset(make):
    """A chunk of k steps equals k single steps; select keeps the chosen inputs' state (all of it:
    the current of a CubaLIF too); reset starts over."""
    torch.manual_seed(0)
    x = torch.rand(6, 5, 7) * 1.5  # (T, N, features)
    single, chunked = make(), make()
    ref = torch.stack([single(xt) for xt in x])
    chunked.chunk = 3
    out = torch.cat([chunked(x[i:i + 3].reshape(15, 7)).reshape(3, 5, 7) for i in (0, 3)])
    assert torch.equal(ref, out)
    if hasattr(single, "chunk_spike_counts"):
        assert torch.equal(chunked.chunk_spike_counts, ref[3:].abs().sum(2))
    keep = torch.tensor([4, 1])
    single.select(keep)
    after = make()
    for xt in x:
        after(xt)
    assert all(torch.equal(a[keep], b) for a, b in zip(after.state, single.state))
    single.reset()
    assert single.state is None and torch.equal(single(x[0]), make()(x[0]))


def test_leaky_integrator_outputs_its_potential_without_spiking():
    li = LeakyIntegrator(LeakyParams(decay=math.exp(-1 / 5)))
    outs = [li(torch.ones(1, 2)) for _ in range(3)]
    a = math.exp(-1 / 5)
    assert outs[2][0, 0].item() == pytest.approx(1 + a + a * a, rel=1e-6)
    assert not hasattr(li, "last_spike_count")
