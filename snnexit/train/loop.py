"""Supervised training of (quantized) ANNs with atomic per-epoch checkpoints and resume.

The shuffle order of epoch e comes from a generator seeded with ``(seed, e)``, and the
checkpoint holds model, optimizer, scheduler and epoch, so a run killed after epoch k and
resumed ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from snnexit.data.splits import Split
from snnexit.errors import SnnexitError
from snnexit.io import atomic_write

CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-3  # Adam; cosine decay to 0 over the run
    # L2 on weights only. Default 0: on MNIST-5k weight decay shrank pre-activations into the QCFS
    # dead zone (0, lam/2L) and the SNN then needed ~20 steps instead of ~5 to reach the ANN.
    weight_decay: float = 0.0
    seed: int = 0


def _param_groups(model: nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def save_checkpoint(path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def load_checkpoint(path) -> dict:
    """Load a training checkpoint without unpickling code (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, foreign, or a pickle with a payload
        raise SnnexitError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != "snnexit-train" or state.get("version") != CHECKPOINT_VERSION:
        raise SnnexitError(f"{path}: not a snnexit training checkpoint (version {CHECKPOINT_VERSION})")
    return state


@torch.no_grad()
def evaluate_logits(model: nn.Module, split: Split, device: str = "cpu", batch_size: int = 256) -> torch.Tensor:
    model.eval().to(device)
    return torch.cat([model(x.to(device)).float().cpu() for x, _ in split.batches(batch_size)])


def train(model: nn.Module, train_split: Split, config: TrainConfig, *, device: str = "cpu",
          checkpoint: str | Path | None = None, progress: bool = True, augment=None) -> nn.Module:
    """Train ``model`` in place; with ``checkpoint``, save every epoch and resume from it."""
    if config.epochs < 0:
        raise SnnexitError(f"epochs must be >= 0, got {config.epochs}")
    model.to(device)
    opt = torch.optim.Adam(_param_groups(model, config.weight_decay), lr=config.lr)
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / max(1, config.epochs * steps_per_epoch), 1.0))))
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        if state["config"] != asdict(config):
            raise SnnexitError(f"{checkpoint}: checkpoint was written with other settings {state['config']}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = state["epoch"]
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(start, config.epochs):
        model.train()
        gen = torch.Generator().manual_seed(config.seed * 100003 + epoch)
        torch.manual_seed(config.seed * 100003 + epoch)  # dropout and augmentation
        order = torch.randperm(len(train_split), generator=gen)
        bar = tqdm(range(0, len(order), config.batch_size), desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, leave=False)
        total, correct, seen = 0.0, 0, 0
        for i in bar:
            idx = order[i : i + config.batch_size]
            x, y = train_split.x[idx].to(device), train_split.y[idx].to(device)
            if augment is not None:
                x = augment(x, gen)
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
            bar.set_postfix(loss=f"{total / seen:.3f}", acc=f"{correct / seen:.3f}")
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "format": "snnexit-train", "version": CHECKPOINT_VERSION, "epoch": epoch + 1,
                "config": asdict(config), "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            })
    model.eval()
    return model
