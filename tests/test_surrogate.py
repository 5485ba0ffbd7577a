"""The spike function: Heaviside forward, the surrogate's derivative backward (checked against
finite differences of the surrogate function itself)."""

import pytest
import torch

from snnexit.errors import SnnexitError
from snnexit.neurons.surrogate import SURROGATES, Triangle, create_surrogate, spike


def finite_difference(f, u, h=1e-6):
    return (f(u + h) - f(u - h)) / (2 * h)


@pytest.mark.parametrize("name", SURROGATES.names())
@pytest.mark.parametrize("scale", [None, 0.5, 3.0])
def test_backward_equals_finite_differences_of_the_surrogate(name, scale):
    sur = create_surrogate(name, scale)
    g = torch.Generator().manual_seed(0)
    u = (torch.rand(2000, generator=g, dtype=torch.float64) - 0.5) * 8  # covers the triangle's kinks too
    u.requires_grad_(True)
    upstream = torch.rand(2000, generator=g, dtype=torch.float64) + 0.5
    (spike(u, sur) * upstream).sum().backward()
    expected = finite_difference(sur.primitive, u.detach()) * upstream
    torch.testing.assert_close(u.grad, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", SURROGATES.names())
def test_surrogate_steps_from_zero_to_one(name):
    sur = create_surrogate(name)
    ends = sur.primitive(torch.tensor([-1e4, 1e4], dtype=torch.float64))
    torch.testing.assert_close(ends, torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-3, rtol=0)
    assert sur.primitive(torch.tensor(0.0, dtype=torch.float64)).item() == pytest.approx(0.5)


def test_triangle_values_by_hand():
    tri = Triangle(2.0)  # sigma'(u) = max(0, 2 - |u|) / 4
    u = torch.tensor([-3.0, -2.0, -1.0, 0.0, 0.5, 2.0, 5.0])
    assert tri.derivative(u).tolist() == [0.0, 0.0, 0.25, 0.5, 0.375, 0.0, 0.0]
    # sigma(-1) = (1)^2 / 8, sigma(1) = 1 - 1/8
    assert tri.primitive(torch.tensor([-1.0, 1.0])).tolist() == [0.125, 0.875]


def test_forward_is_heaviside_firing_on_equality():
    u = torch.tensor([-1e-12, 0.0, 1e-12, -2.0, 3.0], requires_grad=True)
    assert spike(u).tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]
    assert spike(u.detach()).tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("name", SURROGATES.names())
def test_rescaled_stretches_along_u(name):
    sur = create_surrogate(name)
    u = torch.linspace(-3, 3, 61, dtype=torch.float64)
    stretched = sur.rescaled(2.5)
    torch.testing.assert_close(stretched.derivative(u), sur.derivative(u / 2.5) / 2.5)


def test_bad_surrogate_settings_are_refused():
    with pytest.raises(SnnexitError, match="Unknown surrogate 'box'. Known: atan, sigmoid, triangle"):
        create_surrogate("box")
    with pytest.raises(SnnexitError, match="scale > 0"):
        create_surrogate("triangle", 0.0)
