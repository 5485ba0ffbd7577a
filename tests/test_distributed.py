"""Two CPU processes (gloo) against one: gathered traces are equal, DDP training agrees."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from snnexit.convert import convert
from snnexit.data import load_dataset
from snnexit.distributed import DistContext, init_distributed, record_trace_distributed, shard, train_distributed
from snnexit.io import load_tensors, save_tensors
from snnexit.runs.ann import build_ann
from snnexit.runs.settings import RunConfig
from snnexit.simulate import Trace, record_trace
from snnexit.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_setup():
    data = load_dataset("digits", 0)
    config = RunConfig(dataset="digits", model="vgg_small", width=4, levels=4, seed=0)
    return data, config


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        data, config = small_setup()
        ann = build_ann(config, data)
        subset = data.train.__class__(data.train.x[:300], data.train.y[:300])
        train_distributed(ann, subset, TrainConfig(epochs=1, batch_size=64, seed=0), ctx)
        snn = convert(ann, "qcfs")
        trace = record_trace_distributed(snn, data.test, T=6, batch_size=50, ctx=ctx)
        if ctx.is_main:
            trace.save(Path(out) / "trace.safetensors")
            save_tensors(Path(out) / "ann.safetensors", ann.state_dict(), fmt="ann", version=1)
        torch.distributed.barrier()  # tearing gloo down while the other process still runs aborts it
    finally:
        torch.distributed.destroy_process_group()


def adam_displacement_bound(config, n_train: int, betas=(0.9, 0.999)) -> float:
    """The most a weight can move in a training run with torch's Adam (no weight decay) under
    snnexit's cosine schedule, whatever the gradients: sum over steps of lr_t times the bound of
    |m_hat / sqrt(v_hat)| at step t, which Cauchy-Schwarz gives as
    (1 - b1) / (1 - b1^t) * sqrt((1 - b2^t) / (1 - b2)) * sqrt(sum_{k < t} (b1^2 / b2)^k)."""
    b1, b2 = betas
    steps = config.epochs * math.ceil(n_train / config.batch_size)
    total = 0.0
    for t in range(1, steps + 1):
        lr = config.lr * 0.5 * (1 + math.cos(math.pi * min((t - 1) / steps, 1.0)))  # the schedule before step t
        ratio = ((1 - b1) / (1 - b1 ** t) * math.sqrt((1 - b2 ** t) / (1 - b2))
                 * math.sqrt(sum((b1 * b1 / b2) ** k for k in range(t))))
        total += lr * ratio
    return total


def test_adam_displacement_bound_holds_for_adversarial_gradients():
    """The bound against torch's Adam itself, with gradients drawn to push one way as hard as possible."""
    config = TrainConfig(epochs=1, batch_size=64, lr=2e-3)
    w = torch.nn.Parameter(torch.zeros(64))
    opt = torch.optim.Adam([w], lr=config.lr)
    n_train = 5 * 64
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / 5, 1.0))))
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        w.grad = -torch.rand(64, generator=gen) * torch.logspace(-8, 2, 64)  # same sign, any size
        opt.step()
        sched.step()
    bound = adam_displacement_bound(config, n_train)
    assert w.detach().abs().max() <= bound * (1 + 1e-6)
    assert w.detach().abs().max() >= 0.5 * bound  # and it is not loose by orders of magnitude


def test_shard_covers_every_index_once():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            parts = [list(shard(n, r, world)) for r in range(world)]
            assert sum(parts, []) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_one_process_context_is_the_plain_functions():
    data, config = small_setup()
    snn = convert(build_ann(config, data).eval(), "qcfs")
    a = record_trace_distributed(snn, data.test, T=3, batch_size=100, ctx=DistContext())
    b = record_trace(snn, data.test.batches(100), T=3)
    assert torch.equal(a.outputs, b.outputs)


@pytest.mark.slow  # spawning two interpreters that import torch: ~20 s idle, a minute on a busy machine
def test_two_processes_equal_one(tmp_path):
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    data, config = small_setup()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers; restored so later tests see the usual count
    try:
        ann = build_ann(config, data)
        subset = data.train.__class__(data.train.x[:300], data.train.y[:300])
        train(ann, subset, TrainConfig(epochs=1, batch_size=64, seed=0), progress=False)
    finally:
        torch.set_num_threads(threads)
    ddp_state, _ = load_tensors(tmp_path / "ann.safetensors", fmt="ann", version=1)
    one = ann.state_dict()
    assert ddp_state.keys() == one.keys()
    # A conv bias right before BatchNorm has an exact gradient of zero; its computed gradient is
    # rounding noise, which Adam normalises into full-size steps, so it (and the running mean that
    # tracks it) differs between any two summation orders. Every other tensor agrees to rounding.
    dead = {k for k in one if k.endswith(".0.bias") or k.endswith(".3.bias") or k.endswith("running_mean")}
    dead &= {k for k in one if k.startswith("layer")}
    for k in one.keys() - dead:  # 5 Adam steps
        assert torch.allclose(ddp_state[k].float(), one[k].float(), rtol=1e-5, atol=1e-6), k
    # The dead ones differ, but never by more than Adam can move a weight: |m_hat / sqrt(v_hat)| is
    # bounded for any gradients (Cauchy-Schwarz over the moment sums), so each run moves a weight by
    # at most sum_t lr_t * B_t, and two runs differ by at most twice that; a running mean (an
    # average of batch means, whose bias part is the conv bias) by as much, plus rounding.
    config = TrainConfig(epochs=1, batch_size=64, seed=0)
    bound = 2 * adam_displacement_bound(config, n_train=300)
    assert bound < 0.05  # the bound is tight enough to mean something at lr 2e-3
    for k in dead:
        assert (ddp_state[k].float() - one[k].float()).abs().max() <= bound + 1e-5, k
    # tracing: the gathered trace of the DDP-trained model equals one process's trace of it, bitwise
    ann.load_state_dict(ddp_state)
    single = record_trace(convert(ann.eval(), "qcfs"), data.test.batches(50), T=6)
    gathered = Trace.load(tmp_path / "trace.safetensors")
    assert torch.equal(gathered.outputs, single.outputs)
    assert torch.equal(gathered.spikes, single.spikes)
    assert torch.equal(gathered.labels, single.labels)
    assert gathered.meta["neurons_per_layer"] == single.meta["neurons_per_layer"]


@pytest.mark.slow
def test_torchrun_end_to_end(tmp_path):
    """The documented command: torchrun with 2 processes trains and traces; given the network it
    trained (the cache), one process then gives the same results and traces, bit for bit."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    flags = ["--dataset", "digits", "--width", "4", "--epochs", "2", "--T", "8", "--batch-size", "64",
             "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "snnexit", "run", *flags, "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["processes"] == 2 and "dynamic_confidence" in results["policies"]
    test = Trace.load(tmp_path / "run" / "trace_test.safetensors")
    data = load_dataset("digits", 0)
    assert test.N == len(data.test) and torch.equal(test.labels, data.test.y)

    from snnexit.cli import main

    assert main(["run", *flags, "--out", str(tmp_path / "one")]) == 0  # one process, the cached network
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert one.keys() == results.keys() - {"processes"}
    for key in one.keys() - {"config", "seconds"}:
        assert one[key] == results[key], key
    for name in ("trace_val.safetensors", "trace_test.safetensors"):
        a, b = Trace.load(tmp_path / "one" / name), Trace.load(tmp_path / "run" / name)
        assert torch.equal(a.outputs, b.outputs) and torch.equal(a.spikes, b.spikes) and a.meta == b.meta
