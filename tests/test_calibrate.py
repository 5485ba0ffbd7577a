import numpy as np
import torch
from scipy.optimize import minimize_scalar

from snnexit.calibrate import expected_calibration_error, fit_temperature


def test_temperature_matches_scipy():
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (500,))
    logits = torch.randn(500, 5) * 3
    logits[torch.arange(500), labels] += 2.0
    t = fit_temperature(logits, labels)

    def nll(temp):
        return torch.nn.functional.cross_entropy(logits.double() / temp, labels).item()

    ref = minimize_scalar(nll, bounds=(0.05, 20), method="bounded", options={"xatol": 1e-8}).x
    assert abs(t - ref) < 1e-3


def test_ece_hand_computed():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 0])
    # bins of width 1/15: 0.9 -> bin 13, 0.8 -> bin 11, 0.6 -> bin 8, 0.55 -> bin 8
    expected = 0.25 * abs(1 - 0.9) + 0.25 * abs(0 - 0.8) + 0.5 * abs(1 - 0.575)
    assert np.isclose(expected_calibration_error(probs, labels), expected)


def test_temperature_matches_scipy_over_scales_and_stops_at_the_bounds():
    g = torch.Generator().manual_seed(1)
    for scale, shift in [(0.1, 0.0), (1.0, 0.5), (10.0, 5.0), (30.0, -2.0)]:
        labels = torch.randint(0, 4, (300,), generator=g)
        logits = torch.randn(300, 4, generator=g) * scale
        logits[torch.arange(300), labels] += shift
        nll = lambda temp: torch.nn.functional.cross_entropy(logits.double() / temp, labels).item()  # noqa: E731
        ref = minimize_scalar(lambda lt: nll(np.exp(lt)), bounds=(np.log(1e-3), np.log(1e6)), method="bounded",
                              options={"xatol": 1e-10}).x
        t = fit_temperature(logits, labels)
        assert nll(t) <= nll(np.exp(ref)) + 1e-9
    # every input right with a margin: the NLL falls as T -> 0, so the lower bound
    labels = torch.arange(4)
    assert fit_temperature(torch.eye(4) * 5, labels) == 1e-3
    # constant logits: the NLL is flat; the upper bound (a uniform softmax)
    assert fit_temperature(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])) == 1e6
