"""Energy by another convention: counting operations as SpikingJelly's op counter counts them.

snnexit's own convention (:mod:`snnexit.simulate.cost`, ``"snnexit"``) is a model of a
spike-driven chip: the layers reading the analog input multiply-accumulate at every step, and
every later layer adds one weight per delivered spike, with the *mean* fan-out of each layer
(spikes x mean fan-out); average pooling is one more linear map folded into the next layer's
fan-out, BatchNorm is folded into the weights (uncounted), and a spike is an event whatever
amplitude it carries (QCFS spikes carry theta; a chip folds theta into the next weights).

``"spikingjelly"`` counts what SpikingJelly's ``op_counter`` (ACCounter / MACCounter) counts on
the same run, from the tensors each layer actually sees, up to each input's exit step:

* a convolution or linear layer whose input holds only 0 and 1 (per input) accumulates: one AC
  per weight a non-zero input meets (exact fan-out: a border pixel of a padded convolution meets
  fewer weights); any other input (analog pixels, spikes of amplitude theta) multiplies: dense
  MACs, ``output positions x C_out x C_in / groups x kernel``;
* average pooling adds: ``(kernel area - 1)`` ACs per output element;
* BatchNorm in inference: one AC (``x - mean``) per element and, with an affine map, one MAC
  per element (its per-channel constants are counted per call by SpikingJelly, not per input:
  omitted here, so the count is per input and independent of the batch).

Neither convention counts neuron state updates or memory traffic. The two answer different
questions - what a chip that folds theta and BatchNorm spends, and what a GPU-style operator
count reports for the network as it is - and differ a lot for converted networks (spikes of
amplitude theta are dense MACs to SpikingJelly's counter).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.simulate.cost import energy_model
from snnexit.simulate.inputs import check_inputs

ENERGY_CONVENTIONS = ("snnexit", "spikingjelly")


def _binary_rows(u: torch.Tensor) -> torch.Tensor:
    """(N,) bool: does each input's tensor hold only 0 and 1?"""
    flat = u.reshape(u.shape[0], -1)
    return ((flat == 0) | (flat == 1)).all(1)


def _layer_ops(module: nn.Module, u: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(MACs, ACs) per input row of one call of ``module`` on ``u`` giving ``out``, float64 ``(N,)``."""
    n = u.shape[0]
    zero = torch.zeros(n, dtype=torch.float64, device=u.device)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
        binary = _binary_rows(u)
        if isinstance(module, nn.Linear):
            dense = float(module.in_features * module.out_features * (out[0].numel() // module.out_features))
            uses = (u != 0).reshape(n, -1).sum(1).double() * module.out_features
        else:
            w = module.weight
            groups = module.groups
            dense = float(math.prod(out.shape[2:]) * w.shape[0] * w.shape[1] * math.prod(w.shape[2:]))
            ones = torch.ones((groups, w.shape[1], *w.shape[2:]), dtype=torch.float64, device=u.device)
            conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
            occupancy = conv((u != 0).double(), ones, None, module.stride, module.padding, module.dilation, groups)
            uses = occupancy.reshape(n, -1).sum(1) * (w.shape[0] // groups)
        return torch.where(binary, zero, torch.full_like(zero, dense)), torch.where(binary, uses, zero)
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d)):
        kernel = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * (u.dim() - 2)
        return zero, torch.full_like(zero, float(out[0].numel() * (math.prod(kernel) - 1)))
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        per = float(u[0].numel())
        return torch.full_like(zero, per if module.affine else 0.0), torch.full_like(zero, per)
    return zero, zero


COUNTED = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.AvgPool1d, nn.AvgPool2d, nn.modules.batchnorm._BatchNorm)


@torch.no_grad()
def spikingjelly_op_counts(snn, x: torch.Tensor, T: int, exit_steps: torch.Tensor | None = None,
                           temporal: bool = False) -> dict[str, torch.Tensor]:
    """``{"macs", "acs"}`` ``(N,)`` of each input up to its exit step (None: T), counted by
    SpikingJelly's rules (module doc) on a step-by-step run of ``snn`` on ``x``."""
    x = check_inputs(snn, x, temporal=temporal, T=T)
    n = x.shape[0]
    steps = torch.full((n,), T, dtype=torch.long) if exit_steps is None else torch.as_tensor(exit_steps).long().cpu()
    if steps.shape != (n,) or int(steps.min()) < 1 or int(steps.max()) > T:
        raise SnnexitError(f"exit_steps must hold one step in 1..{T} per input, got shape {tuple(steps.shape)}")
    macs = torch.zeros(n, dtype=torch.float64)
    acs = torch.zeros(n, dtype=torch.float64)
    state = {"t": 0}

    def hook(module, inputs, out):
        running = (steps >= state["t"]).double()  # an input costs nothing after its exit step
        m, a = _layer_ops(module, inputs[0], out)
        macs.add_(m.cpu() * running)
        acs.add_(a.cpu() * running)

    handles = [m.register_forward_hook(hook) for m in snn.modules() if isinstance(m, COUNTED)]
    try:
        snn.reset()
        for t in range(1, T + 1):
            state["t"] = t
            snn.step(x[:, t - 1] if temporal else x)
    finally:
        for h in handles:
            h.remove()
        snn.reset()
    return {"macs": macs, "acs": acs}


def energy_by_convention(convention: str, snn, x: torch.Tensor, T: int, exit_steps: torch.Tensor | None = None,
                         temporal: bool = False, model="fp32", cost=None) -> dict:
    """Energy per inference (mean pJ, MAC and AC parts, operation counts) under ``convention``:
    ``"snnexit"`` from ``cost`` (a :class:`~snnexit.simulate.cost.Cost` of the same run),
    ``"spikingjelly"`` from :func:`spikingjelly_op_counts` on ``x``."""
    if convention not in ENERGY_CONVENTIONS:
        raise SnnexitError(f"Unknown energy convention {convention!r}. Known: {', '.join(ENERGY_CONVENTIONS)}")
    m = energy_model(model)
    if convention == "snnexit":
        if cost is None:
            raise SnnexitError("the snnexit convention reads the run's cost (spikes, fan-out): pass cost=")
        e = cost.energy_pj(m)
        macs, acs = e["macs"], e["acs"]
    else:
        counts = spikingjelly_op_counts(snn, x, T, exit_steps, temporal)
        macs, acs = counts["macs"], counts["acs"]
    return {"convention": convention, "energy_model": m.as_dict(),
            "macs_per_inference": macs.mean().item(), "acs_per_inference": acs.mean().item(),
            "energy_pj_per_inference": (macs * m.mac_pj + acs * m.ac_pj).mean().item()}
