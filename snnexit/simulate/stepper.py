"""Simulate an SNN for T steps and record its :class:`Trace`."""

from __future__ import annotations

import math
import numbers
from typing import Iterable

import torch
from tqdm.auto import tqdm

from snnexit.checks import check_integer, memory_bytes
from snnexit.errors import SnnexitError
from snnexit.simulate.structure import input_macs
from snnexit.simulate.inputs import check_inputs
from snnexit.simulate.network import SpikingNetwork
from snnexit.simulate.trace import Trace


def chunk_lengths(chunks, T: int) -> tuple[int, ...]:
    """A chunk plan as lengths covering at least T steps: ``k`` (chunks of k steps) or a sequence of
    lengths; refused with one line when it is neither."""
    whole = lambda k: isinstance(k, numbers.Integral) and not isinstance(k, bool)  # noqa: E731  (2.5 is no length)
    if not (whole(chunks) or isinstance(chunks, (list, tuple))):
        raise SnnexitError(f"chunks must be a positive int or a list of them, got {chunks!r}")
    lengths = [chunks] if whole(chunks) else list(chunks)
    if not lengths or not all(whole(k) and k >= 1 for k in lengths):
        raise SnnexitError(f"chunk lengths must be positive integers, got {chunks!r}")
    lengths = [int(k) for k in lengths]
    if len(lengths) == 1:
        lengths = lengths * math.ceil(T / lengths[0])
    if sum(lengths) < T:
        raise SnnexitError(f"chunk lengths {lengths} cover {sum(lengths)} steps, fewer than T = {T}")
    return tuple(lengths)


def chunk_frames(x: torch.Tensor, t0: int, k: int, temporal: bool) -> torch.Tensor:
    """``(k, n, ...)`` inputs of steps ``t0 + 1 .. t0 + k`` of a static batch ``(n, ...)`` or of
    sequences ``(n, T, ...)``."""
    if temporal:
        return x[:, t0:t0 + k].transpose(0, 1)
    return x.unsqueeze(0).expand(k, *x.shape)


@torch.no_grad()
def simulate_batch(snn: SpikingNetwork, x: torch.Tensor, T: int, temporal: bool = False, chunks=None):
    """Run one batch for T steps from a fresh state.

    ``x`` is a static input ``(N, ...)`` presented at every step (direct encoding), or, with
    ``temporal=True``, a sequence ``(N, T, ...)`` whose step ``t`` is presented at step ``t``.
    Returns accumulated outputs ``(T, N, C)`` and spike counts ``(T, N, L)``. ``x`` is checked
    first (:func:`~snnexit.simulate.inputs.check_inputs`: shape, dtype, NaN or infinite values).

    ``chunks``: None steps one step at a time (the step engine's arithmetic); a chunk plan (an int
    k or a list of lengths, as ``ChunkedEngine(chunks=...)`` takes it) runs the steps in those
    chunks with the chunked engine's arithmetic. Float sums depend on the rows a kernel sees, so a
    trace meant to certify decisions taken by one engine at one batch size is recorded with that
    engine's plan at that batch size (README: "Deploying the certified exit").
    """
    T = check_integer("T", T, 1)
    x = check_inputs(snn, x, temporal=temporal, T=T, probe=True)
    snn.reset()
    outputs, spikes = [], []
    acc = None
    if chunks is None:
        for t in range(T):
            y = snn.step(x[:, t] if temporal else x)  # (N, C)
            acc = y.clone() if acc is None else acc + y
            outputs.append(acc)
            spikes.append(snn.spike_counts())
    else:
        t0 = 0
        for k in chunk_lengths(chunks, T):
            k = min(k, T - t0)
            if k <= 0:
                break
            ys = snn.step_chunk(chunk_frames(x, t0, k, temporal))  # (k, N, C)
            counts = snn.chunk_spike_counts()  # (k, N, L)
            for j in range(k):
                acc = ys[0].clone() if acc is None else acc + ys[j]
                outputs.append(acc)
                spikes.append(counts[j])
            t0 += k
    snn.reset()
    return torch.stack(outputs), torch.stack(spikes)


def check_batches(batches) -> list:
    """``batches`` as a list of ``(x, y)`` pairs, labelled throughout or not at all (a trace with
    labels on some inputs only would silently lose them all)."""
    try:
        batches = list(batches)
        pairs = [(x, y) for x, y in batches]
    except (TypeError, ValueError):
        raise SnnexitError("batches must yield (x, y) pairs (y = None for unlabelled inputs)") from None
    labelled = [y is not None for _, y in pairs]
    if any(labelled) and not all(labelled):
        with_, without = labelled.index(True), labelled.index(False)
        raise SnnexitError(f"batch {with_} has labels and batch {without} has none: label every batch, or none "
                           f"(an unlabelled trace still certifies an exit)")
    return pairs


def check_trace_memory(snn: SpikingNetwork, batches: list, T: int) -> None:
    """Refuse a trace that cannot fit in this machine's memory, before any step: outputs and spike
    counts ``(T, N, C + L)`` in float32, twice (the batches and their join); C counted as >= 2."""
    memory = memory_bytes()
    inputs = sum(int(x.shape[0]) for x, _ in batches if hasattr(x, "shape") and len(x.shape) > 0)
    need = 2 * 4 * T * inputs * (2 + len(snn.spiking_layers()))
    if memory is not None and need > 0.8 * memory:
        raise SnnexitError(f"a trace of T = {T} steps for {inputs} inputs needs at least {need / 2 ** 30:.3g} GiB; "
                           f"this machine has {memory / 2 ** 30:.3g} GiB: trace fewer inputs or steps")


@torch.no_grad()
def record_trace(snn: SpikingNetwork, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], T: int,
                 device: str | torch.device = "cpu", temporal: bool = False, progress: bool = False,
                 desc: str = "trace", chunks=None) -> Trace:
    """Simulate every batch for T steps and gather one trace (outputs and spikes on CPU).

    ``batches`` yields ``(x, y)``; ``y = None`` for unlabelled inputs (the trace then has no labels).
    ``chunks``: the arithmetic of the chunked engine with that plan (:func:`simulate_batch`).
    """
    T = check_integer("T", T, 1)
    if chunks is not None:
        chunk_lengths(chunks, T)  # a bad plan fails before any step
    batches = check_batches(batches)
    check_trace_memory(snn, batches, T)
    snn = snn.to(device).eval()
    outs, spks, labels = [], [], []
    first = None
    for i, (x, y) in enumerate(tqdm(batches, desc=desc, disable=not progress, leave=False)):
        try:
            x = check_inputs(snn, x, temporal=temporal, T=T).to(device)
        except SnnexitError as exc:
            raise SnnexitError(f"batch {i}: {exc}") from None
        if first is None:
            first = x[:1, 0] if temporal else x[:1]
        Y, S = simulate_batch(snn, x, T, temporal, chunks)
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
