"""The cutoff regulariser (RCS): values for hand-made inputs, no gradient into the reference,
masking of wrong samples; and the task losses against their definitions."""

import math

import pytest
import torch
import torch.nn.functional as F

from snnexit.errors import SnnexitError
from snnexit.train.losses import (late_correct_mask, late_steps, mean_output_ce, rcs_per_sample,
                                  rcs_regularizer, tet_loss)


def hand_layer():
    """T = 4, N = 1, two neurons, theta = 2. r_t = s_t + relu(v_t / 2) is
    (1, 0), (0, 1), (1, 1), (1, 1); the late window is ceil(0.3 * 4) = 2 steps, so r_ref = (1, 1)."""
    s = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[0.0, -0.5], [-1.0, 2.0], [-3.0, 2.0], [2.0, 0.0]], dtype=torch.float64)
    return s.unsqueeze(1), v.unsqueeze(1), 2.0


def test_late_window_size():
    assert [late_steps(T) for T in (1, 3, 4, 10, 16)] == [1, 1, 2, 3, 5]
    with pytest.raises(SnnexitError, match="late fraction"):
        late_steps(10, 0.0)


def test_value_by_hand():
    s, v, theta = hand_layer()
    # cos with (1, 1): 1/sqrt2, 1/sqrt2, 1, 1
    expected = 1 / ((2 / math.sqrt(2) + 2) / 4 + 1e-5)
    assert rcs_per_sample(s, v, theta).item() == pytest.approx(expected, rel=1e-9)
    outputs = torch.tensor([[[0.0, 1.0]]] * 4, dtype=torch.float64)  # (T, N, C): class 1 everywhere
    assert rcs_regularizer([(s, v, theta)], outputs, torch.tensor([1])).item() == pytest.approx(expected, rel=1e-9)


def test_identical_steps_give_one_and_silent_layer_gives_one_over_eps():
    s = torch.ones(5, 3, 4, 2, 2)  # (T, N, C, H, W) feature maps are flattened per sample
    v = torch.zeros_like(s)
    torch.testing.assert_close(rcs_per_sample(s, v, 1.0), torch.full((3,), 1 / (1 + 1e-5)))
    assert rcs_per_sample(torch.zeros(4, 1, 3), -torch.ones(4, 1, 3), 1.0).item() == pytest.approx(1e5)


def test_no_gradient_flows_into_the_reference():
    torch.manual_seed(0)
    s = torch.rand(6, 3, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)
    rcs_per_sample(s, v, 1.5).sum().backward()

    # the same R with the reference as a constant: r_ref computed outside autograd
    s2, v2 = s.detach().clone().requires_grad_(True), v.detach().clone().requires_grad_(True)
    with torch.no_grad():
        ref = (s2 + torch.relu(v2 / 1.5))[-2:].mean(0)
    r = s2 + torch.relu(v2 / 1.5)
    cos = (r * ref).sum(-1) / (r.norm(dim=-1) * ref.norm(dim=-1))
    (1 / (cos.mean(0) + 1e-5)).sum().backward()
    torch.testing.assert_close(s.grad, s2.grad)
    torch.testing.assert_close(v.grad, v2.grad)

    # and it would differ if the reference were not detached (the test can fail)
    s3 = s.detach().clone().requires_grad_(True)
    r3 = s3 + torch.relu(v.detach() / 1.5)
    ref3 = r3[-2:].mean(0)
    cos3 = F.cosine_similarity(r3, ref3.expand_as(r3), dim=-1)
    (1 / (cos3.mean(0) + 1e-5)).sum().backward()
    assert not torch.allclose(s3.grad, s.grad)


def test_wrong_samples_are_masked():
    torch.manual_seed(1)
    s = torch.rand(5, 3, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(5, 3, 4, dtype=torch.float64)
    per_sample = rcs_per_sample(s, v, 1.0).detach()
    labels = torch.tensor([0, 1, 1])
    outputs = torch.zeros(5, 3, 2, dtype=torch.float64)
    outputs[:, :, 0] = 1.0  # everyone predicts class 0 on average over the late steps ...
    outputs[:3, 2] = torch.tensor([5.0, 0.0], dtype=torch.float64)  # ... sample 2 only early: late it says 1
    outputs[3:, 2] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert late_correct_mask(outputs, labels).tolist() == [True, False, True]
    reg = rcs_regularizer([(s, v, 1.0)], outputs, labels)
    assert reg.item() == pytest.approx(((per_sample[0] + per_sample[2]) / 2).item())
    reg.backward()
    assert torch.all(s.grad[:, 1] == 0) and s.grad[:, 0].abs().sum() > 0 and s.grad[:, 2].abs().sum() > 0


def test_all_wrong_batch_contributes_zero_and_layers_are_averaged():
    s, v, theta = hand_layer()
    outputs = torch.tensor([[[0.0, 1.0]]] * 4, dtype=torch.float64)
    assert rcs_regularizer([(s, v, theta)], outputs, torch.tensor([0])).item() == 0.0
    ones = (torch.ones(4, 1, 3, dtype=torch.float64), torch.zeros(4, 1, 3, dtype=torch.float64), 1.0)
    both = rcs_regularizer([(s, v, theta), ones], outputs, torch.tensor([1])).item()
    one = rcs_per_sample(s, v, theta).item()
    assert both == pytest.approx((one + 1 / (1 + 1e-5)) / 2)


def test_task_losses_against_their_definitions():
    torch.manual_seed(2)
    o = torch.randn(4, 6, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    assert mean_output_ce(o, y).item() == pytest.approx(F.cross_entropy(o.mean(0), y).item())
    per_step = sum(F.cross_entropy(o[t], y) for t in range(4)) / 4
    assert tet_loss(o, y).item() == pytest.approx(per_step.item())
    mse = ((o - 1.0) ** 2).mean()
    assert tet_loss(o, y, lam=0.1).item() == pytest.approx((0.9 * per_step + 0.1 * mse).item())
    with pytest.raises(SnnexitError, match="per-step outputs"):
        tet_loss(o[0], y)
