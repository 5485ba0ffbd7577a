"""Simulate an SNN for T steps and record its :class:`Trace`."""

from __future__ import annotations

from typing import Iterable

import torch
from tqdm.auto import tqdm

from snnexit.errors import SnnexitError
from snnexit.simulate.cost import input_macs
from snnexit.simulate.inputs import check_inputs
from snnexit.simulate.network import SpikingNetwork
from snnexit.simulate.trace import Trace


@torch.no_grad()
def simulate_batch(snn: SpikingNetwork, x: torch.Tensor, T: int, temporal: bool = False):
    """Run one batch for T steps from a fresh state.

    ``x`` is a static input ``(N, ...)`` presented at every step (direct encoding), or, with
    ``temporal=True``, a sequence ``(N, T, ...)`` whose step ``t`` is presented at step ``t``.
    Returns accumulated outputs ``(T, N, C)`` and spike counts ``(T, N, L)``. ``x`` is checked
    first (:func:`~snnexit.simulate.inputs.check_inputs`: shape, dtype, NaN or infinite values).
    """
    x = check_inputs(snn, x, temporal=temporal, T=T, probe=True)
    snn.reset()
    outputs, spikes = [], []
    acc = None
    for t in range(T):
        y = snn.step(x[:, t] if temporal else x)  # (N, C)
        acc = y.clone() if acc is None else acc + y
        outputs.append(acc)
        spikes.append(snn.spike_counts())
    snn.reset()
    return torch.stack(outputs), torch.stack(spikes)


@torch.no_grad()
def record_trace(snn: SpikingNetwork, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], T: int,
                 device: str | torch.device = "cpu", temporal: bool = False, progress: bool = False,
                 desc: str = "trace") -> Trace:
    """Simulate every batch for T steps and gather one trace (outputs and spikes on CPU).

    ``batches`` yields ``(x, y)``; ``y = None`` for unlabelled inputs (the trace then has no labels).
    """
    if T < 1:
        raise SnnexitError(f"T must be >= 1, got {T}")
    snn = snn.to(device).eval()
    outs, spks, labels = [], [], []
    first = None
    for i, (x, y) in enumerate(tqdm(list(batches), desc=desc, disable=not progress, leave=False)):
        try:
            x = check_inputs(snn, x, temporal=temporal, T=T).to(device)
        except SnnexitError as exc:
            raise SnnexitError(f"batch {i}: {exc}") from None
        if first is None:
            first = x[:1, 0] if temporal else x[:1]
        Y, S = simulate_batch(snn, x, T, temporal)
        outs.append(Y.float().cpu())
        spks.append(S.float().cpu())
        labels.append(None if y is None else y.cpu())
    if not outs:
        raise SnnexitError("no inputs to trace")
    meta = dict(snn.meta)
    meta.update(T=T, neurons_per_layer=snn.neurons_per_layer(),
                layer_names=[n for n, _ in snn.spiking_layers()])
    try:  # for energy: the MACs of the layers that read the analog input, per step
        meta["input_macs_per_step"] = input_macs(snn, first.to(device))
    except (SnnexitError, RuntimeError, TypeError):
        pass  # an exotic first layer: energy stays unknown, spikes and SynOps are still counted
    y = None if any(part is None for part in labels) else torch.cat(labels).long()
    return Trace(torch.cat(outs, 1), y, torch.cat(spks, 1), meta)
