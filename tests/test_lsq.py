"""LSQ activation: forward values, the LSQ paper's gradients, data init, QCFS equivalence."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnexit.quant import LSQ, QCFS, lsq, qcfs


def reference_lsq(x, step, bits, grad_scale):
    """The LSQ paper's formulation with plain ops: gradient scale trick + straight-through round."""
    Q = 2 ** bits - 1
    s = step * grad_scale + (step - step * grad_scale).detach()  # value s, gradient scaled by g
    u = torch.clamp(x / s, 0, Q)
    r = torch.floor(u + 0.5)
    u = u + (r - u).detach()
    return u * s


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_gradients_match_the_lsq_paper(bits):
    torch.manual_seed(0)
    x = torch.randn(4, 50, dtype=torch.float64) * 2
    w = torch.randn(4, 50, dtype=torch.float64)
    step = torch.tensor([0.37], dtype=torch.float64, requires_grad=True)
    x1 = x.clone().requires_grad_()
    (lsq(x1, step, bits) * w).sum().backward()
    g = 1 / math.sqrt(50 * (2 ** bits - 1))  # N_F = 50 features per input

    step2 = step.detach().clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    (reference_lsq(x2, step2, bits, g) * w).sum().backward()
    assert torch.equal(lsq(x, step.detach(), bits), reference_lsq(x, step.detach(), bits, g).detach())
    assert torch.allclose(x1.grad, x2.grad)
    assert torch.allclose(step.grad, step2.grad)


def test_step_gradient_by_region():
    # below the clip: 0; above: Q; inside: round(u) - u (the LSQ paper's eq. for ds)
    step = torch.tensor([1.0], requires_grad=True)
    x = torch.tensor([[-2.0, 0.75, 1.25, 9.0]])
    lsq(x, step, 2, grad_scale=1.0).sum().backward()
    assert step.grad.item() == pytest.approx(0 + (1 - 0.75) + (1 - 1.25) + 3)


dyadic = st.integers(-512, 2048).map(lambda k: k / 256)
step_dyadic = st.integers(1, 64).map(lambda k: k / 32)


@settings(max_examples=200, deadline=None)
@given(x=dyadic, step=step_dyadic, bits=st.integers(1, 4))
def test_lsq_is_qcfs_with_lam_s_times_q(x, step, bits):
    Q = 2 ** bits - 1
    xt = torch.tensor([x], dtype=torch.float64)
    a = lsq(xt, torch.tensor([step], dtype=torch.float64), bits).item()
    b = qcfs(xt, torch.tensor([step * Q], dtype=torch.float64), Q).item()
    assert a == pytest.approx(b, abs=1e-12)
    # the definition, with half-up rounding
    assert a == pytest.approx(step * min(max(math.floor(x / step + 0.5), 0), Q))


def test_module_data_init_and_qcfs_interface():
    m = LSQ(bits=2)
    assert isinstance(m, QCFS) and m.levels == 3
    x = torch.randn(64, 8) * 3
    m.train()
    m(x)
    assert m.step.item() == pytest.approx(2 * x.abs().mean().item() / math.sqrt(3), rel=1e-6)
    assert m.initialized.item() == 1
    before = m.step.item()
    m(x * 10)  # initialised once only
    assert m.step.item() == before
    assert m.threshold.item() == pytest.approx(3 * before)
    # the flag travels with the state dict: a loaded model is not re-initialised
    m2 = LSQ(bits=2)
    m2.load_state_dict(m.state_dict())
    m2.train()
    m2(x * 10)
    assert m2.step.item() == before


def test_fixed_init_and_eval_mode_do_not_touch_the_step():
    m = LSQ(bits=3, init_step=0.25)
    m.train()
    m(torch.randn(10, 4) * 5)
    assert m.step.item() == 0.25
    with pytest.raises(ValueError):
        LSQ(bits=0)


def test_step_trains():
    torch.manual_seed(0)
    m = LSQ(bits=2, init_step=0.05)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    x = torch.rand(256, 16) * 3
    for _ in range(100):
        loss = ((m(x) - x.clamp(0, 3)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert 0.5 < m.step.item() < 1.5  # a step near 1 covers [0, 3] with 4 levels
