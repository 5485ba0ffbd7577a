"""Temperature scaling (Guo et al. 2017) and the expected calibration error."""

from __future__ import annotations

import torch

from snnexit.errors import SnnexitError


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100,
                    bounds: tuple[float, float] = (1e-3, 1e6)) -> float:
    """The T > 0 minimising the NLL of ``softmax(logits / T)``, within ``bounds``.

    In the inverse temperature b = 1/T the NLL ``mean(logsumexp(b z) - b z_y)`` is convex, with
    gradient ``mean(E_p[z] - z_y)`` and curvature ``mean(Var_p[z]) >= 0``: safeguarded Newton
    steps inside a bracket that bisection keeps find the minimum in a few closed-form
    iterations (no autograd). Where the NLL keeps falling beyond a bound (e.g. every input
    right with a margin: T -> 0), that bound is returned.
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise SnnexitError(f"logits (N, C) and labels (N,) expected, got {tuple(logits.shape)}, {tuple(labels.shape)}")
    z, y = logits.detach().double(), labels.long().to(logits.device)
    z_y = z.gather(1, y.view(-1, 1))[:, 0]

    def grad_curv(b: float) -> tuple[float, float]:
        p = torch.softmax(b * z, dim=1)
        mean_z = (p * z).sum(1)
        return float((mean_z - z_y).mean()), float(((p * z * z).sum(1) - mean_z ** 2).clamp_min(0).mean())

    lo, hi = 1.0 / bounds[1], 1.0 / bounds[0]  # bracket on b
    if grad_curv(lo)[0] >= 0:
        return float(bounds[1])
    if grad_curv(hi)[0] <= 0:
        return float(bounds[0])
    b = min(max(1.0, lo), hi)
    for _ in range(max_iter):
        g, h = grad_curv(b)
        if g == 0:
            break
        if g > 0:
            hi = b
        else:
            lo = b
        newton = b - g / h if h > 0 else None
        b_next = newton if newton is not None and lo < newton < hi else 0.5 * (lo + hi)
        if abs(b_next - b) <= 1e-12 * b:
            b = b_next
            break
        b = b_next
    return float(1.0 / b)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE: sum over equal-width confidence bins of |accuracy - confidence| weighted by bin size."""
    conf, pred = probs.max(-1)
    correct = (pred == labels).double()
    bins = torch.clamp((conf * n_bins).ceil().long() - 1, 0, n_bins - 1)
    ece = torch.zeros((), dtype=torch.float64)
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.double().mean() * (correct[mask].mean() - conf[mask].double().mean()).abs()
    return float(ece)
