"""Training and tracing in several processes with ``torch.distributed`` (``torchrun``).

    python -m torch.distributed.run --nproc_per_node 2 -m snnexit.distributed --dataset digits --out runs/ddp

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

import argparse
import os
import sys
import types
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.simulate.network import SpikingNetwork
from snnexit.simulate.stepper import record_trace
from snnexit.simulate.trace import Trace


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
def _global_batchnorm_forward(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm over the global batch: sums all-reduced across processes (differentiably)."""
    if not self.training:
        return type(self).forward(self, x)
    from torch.distributed.nn.functional import all_reduce

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


def train_distributed(model: nn.Module, train_split, config, ctx: DistContext | None = None, *,
                      checkpoint: str | Path | None = None, augment=None, progress: bool = False) -> nn.Module:
    """:func:`snnexit.train.train` in ``ctx.world_size`` processes (see the module docstring)."""
    from snnexit.train.loop import CHECKPOINT_VERSION, optimizer_and_schedule, resume, save_checkpoint

    ctx = ctx or DistContext()
    if not ctx.active:
        from snnexit.train import train

        return train(model, train_split, config, device=ctx.device, checkpoint=checkpoint, progress=progress,
                     augment=augment)
    n = len(train_split)
    if n % config.batch_size and n % config.batch_size < ctx.world_size:
        raise SnnexitError(f"the last batch has {n % config.batch_size} inputs, fewer than the {ctx.world_size} "
                           f"processes: choose another batch size")
    if config.batch_size < ctx.world_size:
        raise SnnexitError(f"batch size {config.batch_size} is smaller than the {ctx.world_size} processes")
    device = ctx.device
    model.to(device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.forward = types.MethodType(_global_batchnorm_forward, bn)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)
    opt, sched = optimizer_and_schedule(model, config, n)
    start = resume(checkpoint, config, model, opt, sched)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    try:
        for epoch in range(start, config.epochs):
            model.train()
            gen = torch.Generator().manual_seed(config.seed * 100003 + epoch)
            torch.manual_seed(config.seed * 100003 + epoch)
            order = torch.randperm(n, generator=gen)
            for i in range(0, n, config.batch_size):
                idx = order[i : i + config.batch_size]
                x, y = train_split.x[idx].to(device), train_split.y[idx].to(device)
                if augment is not None:
                    x = augment(x, gen)  # the whole global batch: the generator advances as in one process
                part = shard(len(idx), ctx.rank, ctx.world_size)
                out = ddp(x[part.start : part.stop])
                loss = loss_fn(out, y[part.start : part.stop]) * (ctx.world_size / len(idx))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if checkpoint is not None:
                if ctx.is_main:
                    save_checkpoint(checkpoint, {
                        "format": "snnexit-train", "version": CHECKPOINT_VERSION, "epoch": epoch + 1,
                        "config": asdict(config), "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    })
                dist.barrier()
    finally:
        for bn in bns:
            del bn.forward  # back to the class's forward
    model.eval()
    return model


# ---- the main job under torchrun ------------------------------------------------------------
def run_distributed(config, ctx: DistContext, log=print) -> dict | None:
    """Train (or reuse the cached ANN), calibrate, and trace validation and test in all processes;
    process 0 writes the traces and ``results.json`` (Dynamic Confidence fitted on validation)."""
    from snnexit.convert import convert
    from snnexit.data import load_dataset
    from snnexit.io import save_tensors, write_json
    from snnexit.pipeline import (ANN_FORMAT, ANN_VERSION, ann_cache_paths, build_ann, calibrate, check_writable,
                                  converter_inputs, evaluate_policies, load_cached_ann)
    from snnexit.train import TrainConfig

    config.validate()
    out = check_writable(config.out) if ctx.is_main else Path(config.out)
    data = load_dataset(config.dataset, config.seed, root=config.data_dir)
    model = build_ann(config, data)
    cache, key, weights = ann_cache_paths(config)
    if load_cached_ann(model, weights, config):
        log(f"reusing trained ANN {weights}")
    else:
        log(f"training {config.model} on {config.dataset} for {config.epochs} epochs in {ctx.world_size} processes")
        tc = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed)
        train_distributed(model, data.train, tc, ctx, checkpoint=cache / f"train-ddp{ctx.world_size}-{key}.pt",
                          augment=getattr(data, "augment", None))
        if ctx.is_main:
            save_tensors(weights, model.state_dict(), fmt=ANN_FORMAT, version=ANN_VERSION,
                         meta={"key": key, "processes": ctx.world_size})
    model = model.to(ctx.device).eval()
    cal = calibrate(model, data, ctx.device)
    snn = convert(model, config.converter, **converter_inputs(config.converter, data))
    snn.meta["temperature"] = cal["temperature"]
    val = record_trace_distributed(snn, data.val, config.T, ctx=ctx)
    test = record_trace_distributed(snn, data.test, config.T, ctx=ctx)
    if not ctx.is_main:
        return None
    val.save(out / "trace_val.safetensors")
    test.save(out / "trace_test.safetensors")
    policies, _ = evaluate_policies(val, test)
    results = {"config": asdict(config), "processes": ctx.world_size, "calibration": cal, "policies": policies,
               "snn": {"T": config.T, "test_acc_per_step": test.accuracy_per_step().tolist()}}
    write_json(out / "results.json", results)
    return results


def main(argv: list[str] | None = None) -> int:
    from snnexit.pipeline import RunConfig

    d = RunConfig()
    p = argparse.ArgumentParser(prog="python -m torch.distributed.run --nproc_per_node N -m snnexit.distributed",
                                description="Train (or reuse) and trace in several processes; process 0 writes "
                                            "traces and results.json to --out.")
    for flag, default, kind in (("--dataset", d.dataset, str), ("--model", d.model, str), ("--T", d.T, int),
                                ("--epochs", d.epochs, int), ("--seed", d.seed, int), ("--out", d.out, str),
                                ("--L", d.levels, int), ("--width", None, int), ("--batch-size", d.batch_size, int),
                                ("--lr", d.lr, float), ("--cache-dir", None, str), ("--data-dir", None, str),
                                ("--device", "cpu", str)):
        p.add_argument(flag, default=default, type=kind)
    args = p.parse_args(argv)
    config = RunConfig(dataset=args.dataset, model=args.model, T=args.T, epochs=args.epochs, seed=args.seed,
                       out=args.out, levels=args.L, width=args.width, batch_size=args.batch_size, lr=args.lr,
                       cache_dir=args.cache_dir, data_dir=args.data_dir, device=args.device, progress=False)
    try:
        ctx = init_distributed(args.device)
        log = (lambda msg: print(msg, file=sys.stderr)) if ctx.is_main else (lambda msg: None)
        results = run_distributed(config, ctx, log)
        if results is not None:
            dc = results["policies"]["dynamic_confidence"]
            print(f"{ctx.world_size} processes: fixed-T accuracy {results['policies']['fixed']['test_acc']:.4f}, "
                  f"Dynamic Confidence {dc['test_acc']:.4f} at {dc['mean_steps']:.2f} mean steps; wrote {config.out}")
        if ctx.active:  # no process tears gloo down while another is still writing or sending
            dist.barrier()
    except SnnexitError as exc:
        print(f"snnexit distributed: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
