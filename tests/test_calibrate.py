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
