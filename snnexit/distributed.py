"""Training and tracing in several processes with ``torch.distributed`` (``torchrun``).

    python -m torch.distributed.run --nproc_per_node 2 -m snnexit run --dataset digits --out runs/ddp

``snnexit run`` under torchrun (``WORLD_SIZE`` > 1 in its environment) runs the same
stages as in one process (:mod:`snnexit.runs.stages`) with two replacements: the ANN trains in
every process with the one training loop (:func:`snnexit.train.train` with the hooks of
:class:`ProcessGroupTraining`), and the splits are traced by all processes together
(:func:`record_trace_distributed`). Process 0 writes the run folder.

The backend is gloo on CPU and NCCL on CUDA (process ``LOCAL_RANK`` uses ``cuda:LOCAL_RANK``).

**Tracing** (:func:`record_trace_distributed`) shards the *batches* of a split: process ``r``
simulates a contiguous block of batches, then every process all-gathers the blocks in rank
order. A batch is simulated exactly as in one process, so the gathered trace equals the
single-process :func:`~snnexit.simulate.record_trace` bit for bit.

**Training** (:func:`train_distributed`) follows :func:`snnexit.train.train` step for step: the
same seeded shuffle per epoch, the same global batches, optimiser and schedule. Each process
takes a contiguous slice of every global batch; its loss is ``sum / global_batch_size * world``
so that DistributedDataParallel's gradient average equals the gradient of the global batch
mean. BatchNorm normalises with the statistics of the *global* batch (all-reduced sums, with
gradients through the all-reduce), as in one process. What still differs from one process:

* float rounding (gradients summed in another order, BatchNorm variance as E[x^2] - E[x]^2),
  so weights agree to float tolerance after a few steps (measured: 2e-8 after 5 Adam steps on
  digits) and may drift further over long runs (QCFS's floor can turn a rounding difference
  into another quantisation level);
* a conv/linear bias directly before BatchNorm: its exact gradient is zero, the computed one is
  rounding noise that Adam normalises into full-size steps, so that bias and the running mean
  that tracks it differ between any two summation orders (5e-3 after 5 steps), and with them
  the eval-mode outputs (by ~5e-2 in logits on digits, predictions unchanged there). Models
  whose convs before BatchNorm have ``bias=False`` avoid this;
* the augmentation is computed for the whole global batch in every process with the shared
  generator (identical inputs, redundant work);
* dropout masks are drawn per process, so models with dropout get other masks.
"""

from __future__ import annotations

import functools
import os
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce

from snnexit.errors import SnnexitError
from snnexit.runs.stages import run
from snnexit.simulate.network import SpikingNetwork
from snnexit.simulate.stepper import record_trace
from snnexit.simulate.trace import Trace
from snnexit.train.loop import OneProcess, train


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "cpu", backend: str | None = None) -> DistContext:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, ...).

    Without that environment (or with WORLD_SIZE = 1) this is a one-process context and
    every function below behaves like its single-process twin.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=device)
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SnnexitError(f"device {device!r} requested but CUDA is not available")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    backend = backend or ("nccl" if device.startswith("cuda") else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank, device, backend)


def shard(n: int, rank: int, world: int) -> range:
    """The contiguous block of ``range(n)`` owned by ``rank`` (sizes differ by at most one)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def _all_gather_rows(t: torch.Tensor, sizes: list[int], dim: int, ctx: DistContext) -> torch.Tensor:
    """Concatenate every process's ``t`` along ``dim`` in rank order (sizes known to all)."""
    comm = "cuda" if ctx.backend == "nccl" else "cpu"
    padded_shape = list(t.shape)
    padded_shape[dim] = max(sizes)
    buf = torch.zeros(padded_shape, dtype=t.dtype, device=comm)
    buf.narrow(dim, 0, t.shape[dim]).copy_(t)
    parts = [torch.empty_like(buf) for _ in range(ctx.world_size)]
    dist.all_gather(parts, buf)
    return torch.cat([p.narrow(dim, 0, s).cpu() for p, s in zip(parts, sizes)], dim)


@torch.no_grad()
def record_trace_distributed(snn: SpikingNetwork, split, T: int, batch_size: int = 250, ctx: DistContext | None = None,
                             temporal: bool = False, device: str | None = None) -> Trace:
    """The trace of ``split`` (batches of ``batch_size``), simulated by all processes together.

    Every process returns the full trace, equal to ``record_trace(snn, split.batches(batch_size), T)``.
    """
    ctx = ctx or DistContext()
    device = device or ctx.device
    batches = list(split.batches(batch_size))
    if not batches:
        raise SnnexitError("no inputs to trace")
    if not ctx.active:
        return record_trace(snn, batches, T=T, device=device, temporal=temporal)
    mine = [batches[i] for i in shard(len(batches), ctx.rank, ctx.world_size)]
    local = record_trace(snn, mine, T=T, device=device, temporal=temporal) if mine else None
    sizes = [sum(len(batches[i][1]) for i in shard(len(batches), r, ctx.world_size)) for r in range(ctx.world_size)]
    # rank 0 always owns the first batch: its shapes and meta describe every shard
    shape = torch.tensor(list(local.outputs.shape[::2]) + [local.spikes.shape[2]] if local is not None else [0, 0, 0],
                         device="cuda" if ctx.backend == "nccl" else "cpu")
    dist.broadcast(shape, src=0)
    T_, C, L = (int(v) for v in shape.tolist())
    if local is None:
        local = types.SimpleNamespace(outputs=torch.zeros(T_, 0, C), spikes=torch.zeros(T_, 0, L),
                                      labels=torch.zeros(0, dtype=torch.long))
    comm = "cuda" if ctx.backend == "nccl" else "cpu"
    outputs = _all_gather_rows(local.outputs.to(comm), sizes, 1, ctx)
    spikes = _all_gather_rows(local.spikes.to(comm), sizes, 1, ctx)
    labels = _all_gather_rows(local.labels.long().to(comm), sizes, 0, ctx)
    meta = [local.meta if isinstance(local, Trace) else None]
    dist.broadcast_object_list(meta, src=0)  # plain JSON-able dict between our own processes
    return Trace(outputs, labels, spikes, meta[0])


# ---- training ----------------------------------------------------------------------------
class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm layer (any dimension) that normalises over the global batch while training: its
    sums are all-reduced across processes (differentiably). It shares the parameters and buffers of
    the layer it stands in for (:meth:`stand_in`), so the model's state_dict keeps its keys and
    values, and the original layer, put back after training, holds what was learned (the same
    module swap as torch's SyncBatchNorm, which runs on CUDA only)."""

    @classmethod
    def stand_in(cls, bn: nn.modules.batchnorm._BatchNorm) -> "GlobalBatchNorm":
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        if bn.affine:
            new.weight, new.bias = bn.weight, bn.bias
        if bn.track_running_stats:
            new.running_mean, new.running_var, new.num_batches_tracked = (bn.running_mean, bn.running_var,
                                                                          bn.num_batches_tracked)
        new.train(bn.training)
        return new

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected a batch of at least 2 dimensions, got {x.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _global_batchnorm(self, x)


def _swap_modules(model: nn.Module, replace) -> list[tuple[nn.Module, str, nn.Module]]:
    """Replace each submodule ``m`` for which ``replace(m)`` gives another; returns (parent, name, old)."""
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = replace(child)
            if new is not None:
                setattr(parent, name, new)
                swapped.append((parent, name, child))
    return swapped


def _global_batchnorm(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm over the global batch: sums all-reduced across processes (differentiably)."""
    if not self.training:
        return nn.modules.batchnorm._BatchNorm.forward(self, x)
    dims = [0] + list(range(2, x.dim()))
    count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
    stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
    with warnings.catch_warnings():  # deprecated in favour of a private module; still the public API
        warnings.simplefilter("ignore", FutureWarning)
        stats = all_reduce(stats)  # autograd: the backward all-reduces the gradients
    C = x.shape[1]
    n = stats[-1]
    mean = stats[:C] / n
    var = stats[C : 2 * C] / n - mean * mean  # biased: normalises, as in one process
    shape = [1, C] + [1] * (x.dim() - 2)
    y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
    if self.affine:
        y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
    if self.track_running_stats:
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / max(float(n) - 1, 1.0))
    return y


class ProcessGroupTraining(OneProcess):
    """The hooks of :func:`snnexit.train.train` for ``ctx.world_size`` processes (module docstring)."""

    def __init__(self, ctx: DistContext):
        self.ctx = ctx
        self.is_main = ctx.is_main
        self._bns = []

    def check(self, n_train: int, config) -> None:
        world = self.ctx.world_size
        if n_train % config.batch_size and n_train % config.batch_size < world:
            raise SnnexitError(f"the last batch has {n_train % config.batch_size} inputs, fewer than the {world} "
                               f"processes: choose another batch size")
        if config.batch_size < world:
            raise SnnexitError(f"batch size {config.batch_size} is smaller than the {world} processes")

    def wrap(self, model: nn.Module) -> nn.Module:
        self._bns = _swap_modules(model, lambda m: GlobalBatchNorm.stand_in(m) if isinstance(
            m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, GlobalBatchNorm) else None)
        device = self.ctx.device
        return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)

    def unwrap(self, model: nn.Module) -> None:
        for parent, name, original in self._bns:  # the originals share the trained parameters and buffers
            original.train(getattr(parent, name).training)
            setattr(parent, name, original)
        self._bns = []

    def part(self, n: int) -> slice:
        rows = shard(n, self.ctx.rank, self.ctx.world_size)
        return slice(rows.start, rows.stop)

    def loss(self, out: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
        # DDP averages the gradients over processes: sum / n * world makes that the global batch mean's
        return nn.functional.cross_entropy(out, y, reduction="sum") * (self.ctx.world_size / n)

    def barrier(self) -> None:
        dist.barrier()


def train_distributed(model: nn.Module, train_split, config, ctx: DistContext | None = None, *, device: str | None = None,
                      checkpoint: str | Path | None = None, augment=None, progress: bool = False, log=None) -> nn.Module:
    """:func:`snnexit.train.train` in ``ctx.world_size`` processes (see the module docstring)."""
    ctx = ctx or DistContext()
    group = ProcessGroupTraining(ctx) if ctx.active else None
    return train(model, train_split, config, device=device or ctx.device, checkpoint=checkpoint,
                 progress=progress and ctx.is_main, augment=augment, log=log if ctx.is_main else None, group=group)


# ---- the main job under torchrun ------------------------------------------------------------
def under_torchrun() -> bool:
    """Was this process started by torchrun with more than one process?"""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def run_distributed(settings, log=print, overwrite: bool = False) -> dict | None:
    """``snnexit run`` in every process torchrun started: the same stages, trained with the one
    training loop in all processes and traced by all of them together; process 0 writes the run
    folder and returns the results (the others return None)."""
    ctx = init_distributed(settings.run.device)
    try:
        settings.run.device = ctx.device
        recorder = functools.partial(record_trace_distributed, ctx=ctx)
        trainer = functools.partial(train_distributed, ctx=ctx)
        results = run(settings, log if ctx.is_main else (lambda message: None), trainer=trainer, recorder=recorder,
                      writes=ctx.is_main, processes=ctx.world_size, overwrite=overwrite)
        if ctx.active:  # no process tears gloo down while another is still writing or sending
            dist.barrier()
        return results if ctx.is_main else None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
