"""QFFS conversion (Li, Ma & Furber 2022): capped IF neurons with negative spikes.

Every QCFS or LSQ activation (``h = s * clip(floor(z/s + 1/2), 0, L)``, ``s = lam / L``)
becomes a :class:`QFFSNeuron` with spike cap ``L`` (``2**b - 1`` for LSQ) and threshold
``theta = s * W``, where the *window* ``W`` is the largest cap in the network (so with one
bit width everywhere ``theta = s * (2**b - 1) = lam``), ``v(0) = theta / 2``.

How the network stays exact: the input and every bias are delivered during the first ``W``
steps only, after which the input is zero and the biases are off. Then each neuron's total
input is exactly ``W`` times its ANN pre-activation ``z`` (previous layers' spikes carry
theta, and ``count * theta = W * q``), and a QFFS neuron's net count settles at
``clip(floor(W z / theta + 1/2), 0, L) = q / s``: the ANN's quantized activation. Once the
network has settled (each layer a few steps after the one before it), nothing changes any
more: the accumulated output ``Y[t]`` of the non-spiking output layer is ``W`` times the ANN's
logits and stays there. Hence Dynamic Confidence's ``alpha = W = 2**b - 1`` for every ``t``:
``Y[t] / alpha`` is the ANN's logits after convergence and a softened version before it.

The choice matters for the output layer's bias: applied at every step it would add
``t * b`` to ``Y[t]`` while the spiking inputs stop growing under the cap, so ``Y[t] / alpha``
would drift away from the logits and the confidence would saturate; windowing keeps its
total at ``W * b``. (Inputs are static images presented at every step; temporal input is not
supported by this converter.)

BatchNorm is folded into the layer before it first, so every constant sits in a bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snnexit.convert.base import PASS_THROUGH, register_converter, replace_modules
from snnexit.convert.bn_fold import fold_batchnorm_pairs
from snnexit.errors import SnnexitError
from snnexit.neurons.qffs import QFFSNeuron
from snnexit.quant.qcfs import QCFS
from snnexit.simulate.network import SpikingNetwork


class WindowedBias(nn.Module):
    """An affine layer whose constant term can be switched off: ``layer(x)`` while
    ``active``, ``layer(x) - layer(0)`` (the linear part only) when not."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer
        self.active = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        if self.active:
            return layer(x)
        if isinstance(layer, nn.Linear):
            return F.linear(x, layer.weight)
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            return layer._conv_forward(x, layer.weight, None)
        # an unfolded BatchNorm in eval mode: x * gamma / sqrt(var + eps)
        a = layer.weight / torch.sqrt(layer.running_var + layer.eps) if layer.weight is not None \
            else 1.0 / torch.sqrt(layer.running_var + layer.eps)
        return x * a.view((1, -1) + (1,) * (x.dim() - 2))


class QFFSNetwork(SpikingNetwork):
    """A SpikingNetwork that delivers its input and biases for the first ``window`` steps.

    The number of steps since ``reset()`` is part of the network's state (like the neurons'
    membranes); every input in a batch is at the same step, so ``select`` keeps it.
    """

    def __init__(self, body: nn.Module, window: int, meta: dict | None = None):
        super().__init__(body, meta)
        self.window = int(window)
        self.steps_done = 0

    def reset(self) -> None:
        super().reset()
        self.steps_done = 0

    temporal_input = False  # the input is delivered for the first ``window`` steps, then switched off

    def _open_window(self, active: bool) -> None:
        for m in self.body.modules():
            if isinstance(m, WindowedBias):
                m.active = active

    def step(self, x: torch.Tensor) -> torch.Tensor:
        self.steps_done += 1
        active = self.steps_done <= self.window
        self._open_window(active)
        return self.run_body(x if active else torch.zeros_like(x))

    forward = step

    def step_chunk(self, x: torch.Tensor) -> torch.Tensor:
        """``k`` steps at once (``x`` ``(k, N, ...)``), with the window applied per step, not per
        chunk: a chunk that straddles the window's end runs as a chunk of the steps inside it
        (input and biases on) and a chunk of those after it (off), so every step sees what
        :meth:`step` would show it."""
        k = x.shape[0]
        inside = min(k, max(0, self.window - self.steps_done))  # steps of this chunk within the window
        outputs, counts = [], []
        for part, active in ((x[:inside], True), (x[inside:], False)):
            if part.shape[0] == 0:
                continue
            self._open_window(active)
            outputs.append(super().step_chunk(part if active else torch.zeros_like(part)))
            counts.append(self._chunk_counts)
        self.steps_done += k
        self._chunk_counts = torch.cat(counts)  # (k, N, L)
        return torch.cat(outputs)  # (k, N, C)


def _has_constant(module: nn.Module) -> bool:
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
        return module.bias is not None
    return isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d))


@register_converter("qffs", quantizers=("qcfs", "lsq"), temporal=False)
def convert_qffs(model: nn.Module, v_init: float = 0.5) -> QFFSNetwork:
    folded = fold_batchnorm_pairs(model)
    acts = [(p, m) for p, m in folded.named_modules() if isinstance(m, QCFS)]
    if not acts:
        raise SnnexitError("qffs conversion needs an ANN with QCFS or LSQ activations; this model has none, so its "
                           "SNN would have no spiking layer")
    window = max(m.levels for _, m in acts)

    def swap(path, module):
        if isinstance(module, QCFS):
            lam = module.threshold.detach()  # in the ANN's dtype: a float64 ANN gives float64 thresholds
            if not lam.item() > 0:
                raise SnnexitError(f"activation threshold at {path!r} is {lam.item()}: a spiking threshold must be > 0")
            # theta = s * window; window / levels is exactly 1 when they match, so theta = lam = s * (2**b - 1)
            return QFFSNeuron(threshold=lam * (window / module.levels), cap=module.levels, v_init=v_init)
        if isinstance(module, PASS_THROUGH) and _has_constant(module):
            return WindowedBias(module)
        return None

    body = replace_modules(folded, swap).eval()
    levels = sorted({m.levels for _, m in acts})
    return QFFSNetwork(body, window, meta={"converter": "qffs", "alpha": window, "window": window,
                                           "levels": levels[0] if len(levels) == 1 else levels})
