"""Direct SNN training by backpropagation through time (BPTT) with surrogate gradients.

Two ways in, one loop:

* :func:`build_direct_snn` builds any registered model with trainable IF / LIF neurons as its
  activations (``SpikingNetwork`` with ``meta["converter"] = "direct"``);
* :func:`trainable_from_converted` turns a converted QCFS network into a trainable one: each
  ``IFNeuron`` becomes a :class:`TrainableIF` with the *same* threshold and ``v(0) = theta/2``, so
  before fine-tuning it computes exactly what the converted network computes.

:func:`train_snn` runs the network for T steps per batch (static inputs are presented at
every step; temporal inputs ``(N, T, ...)`` step by step), takes the mean-output CE or the TET
loss over the per-step outputs, adds ``reg_weight`` times the cutoff regulariser (RCS) when it
is > 0, and writes an atomic checkpoint every epoch that a rerun resumes from (same scheme as
``snnexit.train.loop``). A trained network is traced with ``snnexit.simulate.record_trace``
like a converted one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from snnexit.data.splits import Split
from snnexit.errors import SnnexitError
from snnexit.models import create_model
from snnexit.neurons.modules import NEURONS, IFNeuron, TrainableIF
from snnexit.simulate.network import SpikingNetwork
from snnexit.train.loop import CHECKPOINT_VERSION, optimizer_and_schedule, resume, save_checkpoint
from snnexit.train.losses import TASK_LOSSES, rcs_regularizer, task_loss


@dataclass
class DirectConfig:
    T: int = 8  # steps per input during training
    epochs: int = 5
    batch_size: int = 64
    # Adam, cosine decay to 0. 1e-2: with 2e-3 a LIF vgg_small reached 45% on digits after 10 epochs, 1e-2 93%
    lr: float = 1e-2
    weight_decay: float = 0.0
    loss: str = "tet"  # "mean" (CE of the mean output) or "tet"
    tet_lam: float = 0.0  # TET's MSE weight (0: plain TET)
    reg_weight: float = 0.0  # a: weight of the cutoff regulariser (0: off)
    late_fraction: float = 0.3  # RCS reference window: the last 30% of the steps
    freeze_bn: bool = False  # fine-tuning a converted network keeps its BatchNorm statistics
    seed: int = 0

    def validate(self) -> None:
        if self.T < 1:
            raise SnnexitError(f"T must be >= 1, got {self.T}")
        if self.epochs < 0:
            raise SnnexitError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise SnnexitError(f"batch size must be >= 1, got {self.batch_size}")
        TASK_LOSSES.get(self.loss)  # an unknown name raises, listing the known ones
        if not (self.reg_weight >= 0 and math.isfinite(self.reg_weight)):
            raise SnnexitError(f"regulariser weight must be a finite number >= 0, got {self.reg_weight}")
        if not 0 < self.late_fraction <= 1:
            raise SnnexitError(f"late fraction must lie in (0, 1], got {self.late_fraction}")


def build_direct_snn(model: str, *, num_classes: int, in_channels: int, input_size: int, neuron: str = "lif",
                     reset: str = "soft", tau: float = 2.0, threshold: float = 1.0, surrogate: str = "triangle",
                     detach_reset: bool = False, seed: int = 0, **model_kwargs) -> SpikingNetwork:
    """A registered model whose activations are trainable spiking neurons (binary spikes, theta = 1)."""
    neuron_cls = NEURONS.get(neuron)  # an unknown name raises, listing the known ones
    kw = dict(threshold=threshold, reset=reset, surrogate=surrogate, detach_reset=detach_reset)
    if neuron == "lif":
        kw["tau"] = tau
    neuron_cls(**kw)  # validate the settings once, before building the model
    torch.manual_seed(seed)
    body = create_model(model, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                        activation=lambda: neuron_cls(**kw), **model_kwargs)
    meta = {"converter": "direct", "alpha": "T", "neuron": neuron, "reset": reset, "surrogate": surrogate,
            "threshold": threshold}
    if neuron == "lif":
        meta["tau"] = tau
    return SpikingNetwork(body, meta=meta)


def trainable_from_converted(snn: SpikingNetwork, surrogate: str = "triangle", detach_reset: bool = False) -> SpikingNetwork:
    """A deep copy of a converted network with every ``IFNeuron`` swapped for a ``TrainableIF``
    (same theta, same ``v(0)``, soft reset): identical outputs until it is trained."""
    body = copy.deepcopy(snn.body)
    swapped = 0
    for path, module in list(body.named_modules()):
        if isinstance(module, IFNeuron):
            parent_path, _, attr = path.rpartition(".")
            parent = body.get_submodule(parent_path) if parent_path else body
            setattr(parent, attr, TrainableIF.from_if_neuron(module, surrogate=surrogate, detach_reset=detach_reset))
            swapped += 1
    if swapped == 0:
        raise SnnexitError("the network has no IFNeuron to make trainable (is it a converted QCFS network?)")
    meta = dict(snn.meta, finetuned=True, surrogate=surrogate)
    return SpikingNetwork(body, meta=meta)


def trainable_layers(snn: SpikingNetwork) -> list[TrainableIF]:
    layers = [m for _, m in snn.spiking_layers() if isinstance(m, TrainableIF)]
    if not layers:
        raise SnnexitError("the network has no trainable spiking neurons")
    return layers


def run_steps(snn: SpikingNetwork, x: torch.Tensor, T: int, temporal: bool = False,
              multi_step: bool = True) -> torch.Tensor:
    """Per-step outputs ``(T, N, C)`` from a fresh state, with autograd (for training).

    ``multi_step`` (default) runs all T steps of the batch through each layer at once: the
    stateless layers see a ``(T * N, ...)`` batch and only the neurons loop over time. That is
    the same computation as T calls of ``snn.step`` except for BatchNorm in training mode, which
    then normalises over time and batch together (as tdBN does); step-by-step training instead
    normalises each step on its own, and its running statistics, a blend of very different
    per-step statistics, made eval-mode accuracy collapse (digits: 49% in eval vs 92% with batch
    statistics).
    """
    if not temporal and x.dim() == 5:
        raise SnnexitError(f"input of shape {tuple(x.shape)} looks like a sequence (N, T, C, H, W): pass temporal=True")
    if temporal and x.shape[1] < T:
        raise SnnexitError(f"temporal input has {x.shape[1]} steps, fewer than T = {T}")
    snn.reset()
    if not multi_step:
        return torch.stack([snn.step(x[:, t] if temporal else x) for t in range(T)])  # (T, N, C)
    others = [type(m).__name__ for _, m in snn.spiking_layers() if not isinstance(m, TrainableIF)]
    if others:
        raise SnnexitError(f"multi-step training needs trainable neurons only, found {sorted(set(others))}")
    N = x.shape[0]
    if temporal:
        seq = x[:, :T].transpose(0, 1)  # (T, N, ...)
    else:
        seq = x.unsqueeze(0).expand(T, *x.shape)  # the same image at every step
    layers = trainable_layers(snn)
    for m in layers:
        m.multi_step = T
    try:
        out = snn.step(seq.reshape(T * N, *x.shape[1 + temporal:]))  # (T * N, C)
    finally:
        for m in layers:
            m.multi_step = None
    return out.reshape(T, N, -1)


def snn_loss(snn: SpikingNetwork, x: torch.Tensor, y: torch.Tensor, config: DirectConfig,
             temporal: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, task, reg, outputs)`` for one batch; ``reg`` is 0 when ``reg_weight`` is 0."""
    layers = trainable_layers(snn)
    record = config.reg_weight > 0
    for m in layers:
        m.record_history = record
    try:
        outputs = run_steps(snn, x, config.T, temporal)
        kw = {"lam": config.tet_lam} if config.loss == "tet" else {}
        task = task_loss(config.loss, outputs, y, **kw)
        if record:
            history = [(*m.stacked_history(), m.threshold) for m in layers]
            reg = rcs_regularizer(history, outputs, y, config.late_fraction)
        else:
            reg = outputs.new_zeros(())
    finally:
        for m in layers:
            m.record_history = False
        snn.reset()  # drop states and histories (and their graphs)
    return task + config.reg_weight * reg, task, reg, outputs


def _set_train_mode(snn: SpikingNetwork, freeze_bn: bool) -> None:
    snn.train()
    if freeze_bn:
        for m in snn.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def train_snn(snn: SpikingNetwork, train_split: Split, config: DirectConfig, *, temporal: bool = False,
              device: str = "cpu", checkpoint: str | Path | None = None, progress: bool = True,
              log=None, note=None) -> SpikingNetwork:
    """Train ``snn`` in place by BPTT; with ``checkpoint``, save every epoch and resume from it.

    ``log(epoch, stats)`` (optional) receives each epoch's mean loss, task loss, regulariser and
    training accuracy of the mean output; ``note(message)`` (optional) hears where a resumed
    run starts.
    """
    config.validate()
    snn.to(device)
    opt, sched = optimizer_and_schedule(snn, config, len(train_split))
    start = resume(checkpoint, config, snn, opt, sched, kind="direct-snn")
    if start > 0 and note is not None:
        note(f"resuming from epoch {start} of {config.epochs} ({checkpoint})")
    for epoch in range(start, config.epochs):
        _set_train_mode(snn, config.freeze_bn)
        gen = torch.Generator().manual_seed(config.seed * 100003 + epoch)
        torch.manual_seed(config.seed * 100003 + epoch)
        order = torch.randperm(len(train_split), generator=gen)
        bar = tqdm(range(0, len(order), config.batch_size), desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False)
        sums = {"loss": 0.0, "task": 0.0, "reg": 0.0, "correct": 0.0}
        seen = 0
        for i in bar:
            idx = order[i : i + config.batch_size]
            x, y = train_split.x[idx].to(device), train_split.y[idx].to(device)
            loss, task, reg, outputs = snn_loss(snn, x, y, config, temporal)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            n = len(y)
            seen += n
            sums["loss"] += loss.item() * n
            sums["task"] += task.item() * n
            sums["reg"] += reg.item() * n
            sums["correct"] += (outputs.detach().mean(0).argmax(1) == y).sum().item()
            bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}", acc=f"{sums['correct'] / seen:.3f}")
        if log is not None:
            log(epoch + 1, {"loss": sums["loss"] / seen, "task": sums["task"] / seen, "reg": sums["reg"] / seen,
                            "train_acc": sums["correct"] / seen})
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "format": "snnexit-train", "version": CHECKPOINT_VERSION, "kind": "direct-snn",
                "epoch": epoch + 1, "config": asdict(config), "model": snn.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            })
    snn.eval()
    return snn
