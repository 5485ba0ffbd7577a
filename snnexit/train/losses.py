"""Losses for training SNNs over T steps, and the SNNCutoff cutoff regulariser (RCS).

Every function takes the *per-step* outputs ``o`` of the non-spiking output layer, shape
``(T, N, C)`` (not accumulated: ``Y[t] = o[0] + ... + o[t]``), and labels ``(N,)``.

* mean-output cross-entropy: ``CE(mean_t o_t, y)``; the mean output is what ``Y[T] / T`` gives
  at inference, so this trains the fixed-T answer.
* TET (Deng et al., ICLR 2022): ``(1 - lam) * mean_t CE(o_t, y) + lam * MSE(o, phi)``; every step
  must be right on its own, which already helps early exits.
* RCS (SNNCutoff): per spiking layer with spikes ``s_t`` and post-reset membrane ``v_t``::

      r_t   = s_t + relu(v_t / theta)                          (T, N, D)
      r_ref = mean of r_t over the last ceil(0.3 T) steps      (N, D), detached
      R_n   = 1 / (mean_t cos(r_t[n], r_ref[n]) + 1e-5)        over all T steps
      R     = mean of R_n over the samples n whose prediction from the mean output of those
              late steps is right (0 when none is)

  and ``loss = task + a * mean over layers of R``. ``R >= 1`` since r >= 0; it is 1 when every
  step's activity points the same way as the late steps', so early outputs look like late ones
  and a cutoff can come earlier. Wrong samples are masked out: their late activity is no target.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from snnexit.errors import SnnexitError
from snnexit.registry import Registry

RCS_EPS = 1e-5

# the task losses by name (``DirectConfig.loss``, ``cutoff-train --loss``)
TASK_LOSSES: Registry = Registry("loss")


def _check(outputs: torch.Tensor, labels: torch.Tensor) -> None:
    if outputs.dim() != 3 or labels.shape != outputs.shape[1:2]:
        raise SnnexitError(f"per-step outputs (T, N, C) and labels (N,) expected, got {tuple(outputs.shape)} "
                           f"and {tuple(labels.shape)}")


@TASK_LOSSES.register("mean")
def mean_output_ce(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the mean output over the T steps."""
    _check(outputs, labels)
    return F.cross_entropy(outputs.mean(0), labels)


@TASK_LOSSES.register("tet")
def tet_loss(outputs: torch.Tensor, labels: torch.Tensor, lam: float = 0.0, phi: float = 1.0) -> torch.Tensor:
    """TET: mean over steps of the per-step cross-entropy, plus ``lam`` times an MSE pulling every
    output towards ``phi`` (Deng et al. use lam = 1e-3, phi = 1; lam = 0 is plain TET)."""
    _check(outputs, labels)
    T, N, C = outputs.shape
    per_step = F.cross_entropy(outputs.reshape(T * N, C), labels.repeat(T))  # = mean_t CE(o_t, y)
    if lam == 0:
        return per_step
    return (1 - lam) * per_step + lam * F.mse_loss(outputs, torch.full_like(outputs, phi))


def task_loss(name: str, outputs: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
    """The loss registered as ``name`` (``mean`` or ``tet``) of per-step outputs ``(T, N, C)``."""
    return TASK_LOSSES.get(name)(outputs, labels, **kwargs)


def late_steps(T: int, fraction: float = 0.3) -> int:
    """How many final steps form the reference window: ``ceil(fraction * T)``, at least 1."""
    if not 0 < fraction <= 1:
        raise SnnexitError(f"late fraction must lie in (0, 1], got {fraction}")
    return max(1, min(T, math.ceil(fraction * T - 1e-9)))


def late_correct_mask(outputs: torch.Tensor, labels: torch.Tensor, fraction: float = 0.3) -> torch.Tensor:
    """(N,) bool: is the argmax of the mean per-step output over the late window right?"""
    _check(outputs, labels)
    k = late_steps(outputs.shape[0], fraction)
    return outputs[-k:].detach().mean(0).argmax(-1) == labels


def rcs_per_sample(spikes: torch.Tensor, membrane: torch.Tensor, threshold: float | torch.Tensor,
                   fraction: float = 0.3, eps: float = RCS_EPS) -> torch.Tensor:
    """(N,) ``R_n = 1 / (mean_t cos(r_t, r_ref) + eps)`` of one layer; inputs ``(T, N, ...)``."""
    if spikes.shape != membrane.shape or spikes.dim() < 2:
        raise SnnexitError(f"spikes and membrane must both be (T, N, ...), got {tuple(spikes.shape)} "
                           f"and {tuple(membrane.shape)}")
    T, N = spikes.shape[:2]
    r = (spikes + torch.relu(membrane / threshold)).reshape(T, N, -1)  # (T, N, D)
    r_ref = r[-late_steps(T, fraction):].mean(0).detach()  # (N, D)
    cos = F.cosine_similarity(r, r_ref.unsqueeze(0).expand_as(r), dim=-1)  # (T, N); 0 for an all-zero vector
    return 1.0 / (cos.mean(0) + eps)


def rcs_regularizer(layers: list[tuple[torch.Tensor, torch.Tensor, float | torch.Tensor]], outputs: torch.Tensor,
                    labels: torch.Tensor, fraction: float = 0.3, eps: float = RCS_EPS) -> torch.Tensor:
    """Mean over layers of R (see the module docstring); ``layers`` holds ``(s, v, theta)`` per
    spiking layer with ``s`` and ``v`` of shape ``(T, N, ...)``."""
    if not layers:
        raise SnnexitError("the cutoff regulariser needs at least one spiking layer")
    mask = late_correct_mask(outputs, labels, fraction)  # (N,)
    total = outputs.new_zeros(())
    for s, v, theta in layers:
        R = rcs_per_sample(s, v, theta, fraction, eps)
        if R.shape != mask.shape:
            raise SnnexitError(f"layer history has {R.shape[0]} samples, outputs have {mask.shape[0]}")
        # masked mean; an all-wrong batch contributes 0 (and keeps the graph for backward)
        total = total + (R * mask).sum() / mask.sum().clamp(min=1)
    return total / len(layers)
