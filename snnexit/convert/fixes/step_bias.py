"""``step_bias``: one input current per time step and channel (FTBC, Wu et al., ECCV 2024).

FTBC's condition: after every step ``t``, the mean output of each channel of a spiking layer over
steps ``1..t`` equals the mean ANN activation it replaces (over the calibration inputs and the
channel's positions). FTBC approaches it with an iterative update of a per-step bias; here it is
met directly, step by step and layer by layer in one forward pass over the calibration inputs:

At step ``t``, layer ``l`` (whose inputs come from layers already corrected at step ``t``), each
neuron fires iff ``u + b >= theta`` with ``u = v + x`` its potential before firing and ``b`` the
channel's current of this step. So ``b`` decides how many of the channel's neurons fire: the
``k`` with the smallest ``d = theta - u``. The wanted ``k`` is what brings the channel's spikes
so far to ``t * sum(target) / theta`` (rounded, within ``[0, M]`` for ``M`` neurons), and ``b``
is taken from the interval of currents that fire exactly the nearest reachable count (ties in
``d`` can make some counts unreachable), at the point nearest to zero: the least correction
that meets the condition, since a current stays in the membrane of the neurons it does not
fire. After the fitted horizon the last step's current stays on.
"""

from __future__ import annotations

import torch

from snnexit.convert.fixes.base import (ActivationTargets, channel_sums, make_correctable, register_conversion_fix,
                                        simulate)

MARGIN = 1 / 64  # of theta: how far inside its interval a current stays from a firing boundary


def channel_rows(t: torch.Tensor) -> torch.Tensor:
    """``(N, C, ...) -> (C, N * positions)``."""
    return t.transpose(0, 1).reshape(t.shape[1], -1)


def current_for_count(d: torch.Tensor, k: torch.Tensor, theta: float) -> torch.Tensor:
    """Per row of ``d`` ``(C, M)``: a current ``b`` such that the reachable count nearest ``k`` of
    the row's entries have ``d <= b``, as near zero as that allows (``k`` ``(C,)`` integers)."""
    M = d.shape[1]
    k = k.clamp(0, M)
    ranks = k.clamp(1, M).tolist()
    pivot = torch.stack([torch.kthvalue(row, r).values for row, r in zip(d, ranks)]).unsqueeze(1)  # (C, 1): k-th smallest
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    below = torch.where(d < pivot, d, -inf).amax(1)  # the largest d under the pivot (-inf: none)
    above = torch.where(d > pivot, d, inf).amin(1)  # the smallest d over it (inf: none)
    fire_below = (d < pivot).sum(1)  # the count that a current just under the pivot fires
    fire_at = (d <= pivot).sum(1)  # the count that a current at the pivot fires
    pivot = pivot.squeeze(1)
    take_pivot = (fire_at - k).abs() <= (k - fire_below).abs()
    lo = torch.where(take_pivot, pivot, below)  # every b in [lo, hi) fires the chosen count
    hi = torch.where(take_pivot, above, pivot)
    margin = torch.clamp((hi - lo) / 2, max=MARGIN * theta)
    b = torch.zeros_like(lo)
    b = torch.where(hi <= 0, hi - margin, b)
    return torch.where(lo > 0, lo + margin, b)


@register_conversion_fix("step_bias", per_step=True,
                         reference="FTBC: forward temporal bias correction (Wu et al., ECCV 2024)")
@torch.no_grad()
def step_bias(snn, ann, inputs: torch.Tensor, T: int, temporal: bool) -> dict:
    """Fit one current per step and channel for steps ``1..T`` (module doc)."""
    targets = ActivationTargets(snn, ann, inputs, temporal)
    layers = make_correctable(snn)
    first = targets.at(0)
    for path, m in layers:
        channels = first[path].shape[1] if first[path].dim() >= 2 else 1
        m.current = torch.zeros(T, channels, dtype=m.threshold.dtype, device=m.threshold.device)
    fired = {p: 0.0 for p, _ in layers}  # spikes each channel emitted so far (a (C,) tensor after step 1)
    wanted: dict[tuple[str, int], torch.Tensor] = {}

    def want(path: str, t: int, theta: float) -> torch.Tensor:
        """Spikes per step the ANN asks of each channel of ``path`` after step ``t``."""
        key = (path, t if temporal else 0)
        if key not in wanted:
            wanted[key] = channel_sums(targets.at(t)[path].double()) / theta
        return wanted[key]

    def solve(path):
        def pre_hook(module, args):
            x = args[0]
            t = module.steps_done  # 0-based step about to run
            u = (module.state.v if module.state is not None else module.initial_state(x).v) + x
            theta = float(module.threshold)
            k = torch.round((t + 1) * want(path, t, theta) - fired[path]).long()
            module.current[t] = current_for_count(channel_rows(theta - u), k, theta).to(module.current.dtype)
        return pre_hook

    def count(path):
        def hook(module, _args, out):
            fired[path] = fired[path] + channel_sums((out != 0).double())
        return hook

    # one pass: at each step every layer, in forward order, solves for its current and then runs
    hooks = [h for p, m in layers for h in (m.register_forward_pre_hook(solve(p)), m.register_forward_hook(count(p)))]
    try:
        simulate(snn, inputs, T, temporal)
    finally:
        for h in hooks:
            h.remove()
    return {"current_abs_mean": {p: float(m.current.abs().mean() / m.threshold) for p, m in layers}}
