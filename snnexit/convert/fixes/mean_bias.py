"""``mean_bias``: one constant input current per channel (Li et al., ICML 2021, light pipeline).

"A free lunch from ANN" corrects a converted network layer by layer: with the layers before
``l`` already corrected, simulate the calibration inputs for the horizon ``T``, take per channel
the mean of the ANN activation minus the mean spiking output of layer ``l`` (over inputs,
positions and the ``T`` steps: the "reduced mean" of the paper's bias calibration), and add it
to the layer's bias; then go on to layer ``l + 1``. Their bias is the affine layer's; ours is
the same constant added to the spiking layer's input at every step (``CorrectedIF.current``
with one row). ``rounds`` repeats the correction of each layer (the paper's light pipeline: 1).
"""

from __future__ import annotations

import torch

from snnexit.convert.fixes.base import (ActivationTargets, channel_sums, make_correctable, register_conversion_fix,
                                        simulate)


@torch.no_grad()
def mean_outputs(snn, path_module, inputs: torch.Tensor, T: int, temporal: bool) -> torch.Tensor:
    """Per channel, the sum over inputs, positions and ``T`` steps of the output of one spiking layer."""
    total = []

    def hook(_m, _args, out):
        total.append(channel_sums(out.double()))

    handle = path_module.register_forward_hook(hook)
    try:
        simulate(snn, inputs, T, temporal)
    finally:
        handle.remove()
    return torch.stack(total).sum(0)


@register_conversion_fix("mean_bias", per_step=False,
                         reference="bias calibration, light pipeline (Li et al., ICML 2021, 'A free lunch from ANN')")
@torch.no_grad()
def mean_bias(snn, ann, inputs: torch.Tensor, T: int, temporal: bool, rounds: int = 1) -> dict:
    targets = ActivationTargets(snn, ann, inputs, temporal)
    layers = make_correctable(snn)
    horizon = targets.at(T - 1)  # the ANN on what the SNN has seen over the horizon
    for path, m in layers:
        channels = horizon[path].shape[1] if horizon[path].dim() >= 2 else 1
        m.current = torch.zeros(1, channels, dtype=m.threshold.dtype, device=m.threshold.device)
    for path, m in layers:  # in forward order: each layer sees the corrected layers before it
        per_channel = horizon[path][0].numel() // m.current.shape[1] * horizon[path].shape[0]
        want = channel_sums(horizon[path].double()) / per_channel  # mean ANN activation per channel
        for _ in range(rounds):
            got = mean_outputs(snn, m, inputs, T, temporal) / (per_channel * T)
            m.current[0] += (want - got).to(m.current.dtype)
    return {"current_abs_mean": {p: float(m.current.abs().mean() / m.threshold) for p, m in layers}}
