"""Supervised training of (quantized) ANNs with atomic per-epoch checkpoints and resume.

The shuffle order of epoch e comes from a generator seeded with ``(seed, e)``, and the
checkpoint holds model, optimizer, scheduler and epoch, so a run killed after epoch k and
resumed ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
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

CHECKPOINT_FORMAT = "snnexit-train"
CHECKPOINT_VERSION = 2  # 2: the state carries a SHA-256 of its contents
_CHECKPOINT_KEYS = {"epoch": int, "config": dict, "model": dict, "optimizer": dict, "scheduler": dict}


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


def state_digest(obj) -> str:
    """SHA-256 of a nested state (dicts, lists, tensors, numbers, strings): torch's zip format
    keeps no checksum of tensor bytes, so a flipped bit would otherwise load silently."""
    h = hashlib.sha256()

    def walk(x):
        if isinstance(x, torch.Tensor):
            t = x.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(x.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, dict):
            h.update(f"D{len(x)}".encode())
            for k in sorted(x, key=repr):
                h.update(repr(k).encode())
                walk(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(f"L{len(x)}".encode())
            for v in x:
                walk(v)
        else:
            h.update(f"S{x!r}".encode())

    walk(obj)
    return h.hexdigest()


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` atomically with a checksum of its contents (``sha256``)."""
    state = {k: v for k, v in state.items() if k != "sha256"}
    state["sha256"] = state_digest(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def load_checkpoint(path) -> dict:
    """Load a training checkpoint without unpickling code (``weights_only=True``); refuse a
    foreign, corrupt (checksum), truncated or other-version file with a clear error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, foreign, or a pickle with a payload
        text = (str(exc).splitlines() or [""])[0][:200]
        raise SnnexitError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {text})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SnnexitError(f"{path}: not a snnexit training checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise SnnexitError(f"{path}: training checkpoint version {state.get('version')!r} is not supported "
                           f"(expected {CHECKPOINT_VERSION}); delete it to train from scratch")
    body = {k: v for k, v in state.items() if k != "sha256"}
    if state.get("sha256") != state_digest(body):
        raise SnnexitError(f"{path}: checksum mismatch, the checkpoint is corrupt; delete it to train from scratch")
    for key, kind in _CHECKPOINT_KEYS.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise SnnexitError(f"{path}: training checkpoint lacks a valid {key!r}")
    return state


@torch.no_grad()
def evaluate_logits(model: nn.Module, split: Split, device: str = "cpu", batch_size: int = 256) -> torch.Tensor:
    model.eval().to(device)
    return torch.cat([model(x.to(device)).float().cpu() for x, _ in split.batches(batch_size)])


def optimizer_and_schedule(model: nn.Module, config, n_train: int):
    """Adam over ``model``'s parameter groups and a per-step cosine decay to 0 over all epochs."""
    opt = torch.optim.Adam(_param_groups(model, config.weight_decay), lr=config.lr)
    total_steps = max(1, config.epochs * math.ceil(n_train / config.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / total_steps, 1.0))))
    return opt, sched


def resume(checkpoint: str | Path | None, config, model: nn.Module, opt, sched, kind: str | None = None) -> int:
    """Load ``checkpoint`` (when it exists) into model, optimizer and schedule; return the epoch
    to start from (0 without a checkpoint). Refuses one written with other settings (or, given
    ``kind``, by another kind of training)."""
    if checkpoint is None or not Path(checkpoint).exists():
        return 0
    state = load_checkpoint(checkpoint)
    if state["config"] != asdict(config) or (kind is not None and state.get("kind") != kind):
        raise SnnexitError(f"{checkpoint}: checkpoint was written with other settings {state['config']}")
    if not 0 <= state["epoch"] <= config.epochs:
        raise SnnexitError(f"{checkpoint}: checkpoint epoch {state['epoch']} is outside 0..{config.epochs}")
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise SnnexitError(f"{checkpoint}: checkpoint does not fit this model or optimizer "
                           f"({type(exc).__name__}: {str(exc)[:200]})") from None
    return state["epoch"]


class OneProcess:
    """Training in this process alone: the default of :func:`train`. Several processes together
    (:class:`snnexit.distributed.ProcessGroupTraining`) replace these hooks and nothing else."""

    is_main = True

    def check(self, n_train: int, config) -> None:
        """Refuse settings this way of training cannot follow."""

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module that computes the forward pass (and, in several processes, syncs gradients)."""
        return model

    def unwrap(self, model: nn.Module) -> None:
        """Undo what :meth:`wrap` changed on ``model``."""

    def part(self, n: int) -> slice:
        """This process's rows of a global batch of ``n`` inputs."""
        return slice(None)

    def loss(self, out: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
        """The loss whose gradient is the gradient of the global batch mean (``n`` inputs)."""
        return nn.functional.cross_entropy(out, y)

    def barrier(self) -> None:
        """Wait for the other processes."""


def train(model: nn.Module, train_split: Split, config: TrainConfig, *, device: str = "cpu",
          checkpoint: str | Path | None = None, progress: bool = True, augment=None, log=None,
          group: OneProcess | None = None) -> nn.Module:
    """Train ``model`` in place; with ``checkpoint``, save every epoch and resume from it.

    ``log(message)`` (optional) gets one line per epoch (loss, training accuracy) and, when a
    checkpoint is resumed, the epoch it resumes from. ``group``: how the processes that train
    together share the work (default: this one alone)."""
    if config.epochs < 0:
        raise SnnexitError(f"epochs must be >= 0, got {config.epochs}")
    group = group or OneProcess()
    group.check(len(train_split), config)
    model.to(device)
    opt, sched = optimizer_and_schedule(model, config, len(train_split))
    start = resume(checkpoint, config, model, opt, sched)
    if start > 0 and log is not None:
        log(f"resuming from epoch {start} of {config.epochs} ({checkpoint})")
    net = group.wrap(model)
    try:
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
                    x = augment(x, gen)  # the whole global batch: the generator advances as in one process
                mine = group.part(len(idx))
                out, y = net(x[mine]), y[mine]
                loss = group.loss(out, y, len(idx))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(y)
                correct += (out.argmax(1) == y).sum().item()
                seen += len(y)
                bar.set_postfix(loss=f"{total / seen:.3f}", acc=f"{correct / seen:.3f}")
            if log is not None and seen:
                log(f"epoch {epoch + 1}/{config.epochs}: loss {total / seen:.4f}, train acc {correct / seen:.4f}")
            if checkpoint is not None:
                if group.is_main:
                    save_checkpoint(checkpoint, {
                        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch + 1,
                        "config": asdict(config), "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    })
                group.barrier()
    finally:
        group.unwrap(model)
    model.eval()
    return model
