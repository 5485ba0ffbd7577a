"""Two CPU processes (gloo) against one: gathered traces are equal, DDP training agrees."""

import json
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
    """The documented command: torchrun with 2 processes, then the results of process 0."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "snnexit", "run", "--dataset", "digits", "--width", "4", "--epochs", "2", "--T", "8",
           "--batch-size", "64", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["processes"] == 2 and "dynamic_confidence" in results["policies"]
    test = Trace.load(tmp_path / "run" / "trace_test.safetensors")
    data = load_dataset("digits", 0)
    assert test.N == len(data.test) and torch.equal(test.labels, data.test.y)
