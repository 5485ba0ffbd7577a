"""Subnormal counting, flushing and the numerics benchmark (no timing is asserted).

The counts are checked against closed forms: a hand-made tensor of known bit patterns, and an IF
layer whose threshold, potentials and currents are small multiples of the smallest float32
subnormal u = 2**-149, where every sum is exact, so the potentials, spikes and outputs of each
step follow from integer arithmetic in units of u.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from snnexit.experiments.numerics import census, interleaved_medians, profile_summary
from snnexit.neurons.modules import IFNeuron
from snnexit.simulate.network import SpikingNetwork
from snnexit.simulate.subnormals import (SubnormalCensus, flush_denormal, flush_denormal_active, flushed_share,
                                         module_census, subnormal_count, weight_census)
from test_runtime import T, _one_thread, dyadic_inputs, dyadic_network  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
U = 2.0 ** -149  # the smallest float32 subnormal; k * U is exact in float32 for k < 2**23
CAN_FLUSH = torch.set_flush_denormal(False)  # True where the CPU can flush (and leaves it off)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_subnormal_count_counts_exactly_the_subnormal_bit_patterns(dtype):
    tiny = torch.finfo(dtype).tiny  # smallest normal
    smallest = tiny * torch.finfo(dtype).eps  # smallest subnormal: 2**(emin - mantissa bits)
    values = [0.0, -0.0, tiny, -tiny, tiny / 2, -tiny / 4, smallest, -smallest, tiny - smallest,
              1.0, float("inf"), float("-inf"), float("nan")]
    t = torch.tensor(values, dtype=dtype)  # exact: every value is representable
    assert subnormal_count(t) == 5  # tiny/2, -tiny/4, +-smallest, tiny - smallest (the largest subnormal)
    assert subnormal_count(t.reshape(13, 1).expand(13, 3).t()) == 15  # a non-contiguous view
    assert subnormal_count(torch.arange(5)) == 0 and subnormal_count(torch.empty(0, dtype=dtype)) == 0


@pytest.mark.skipif(not CAN_FLUSH, reason="this CPU cannot flush subnormals")
def test_flushing_is_switched_read_and_the_callers_setting_restored():
    assert not flush_denormal_active()
    tiny = torch.tensor(torch.finfo(torch.float32).tiny)
    sub = torch.tensor([U])  # made before flushing: under it, even the conversion from a double flushes
    with flush_denormal(True) as took:
        assert took and flush_denormal_active()
        assert (tiny * 0.5).item() == 0.0  # flushed
        assert torch.tensor([U]).item() == 0.0
        assert subnormal_count(sub) == 1  # counted from the bits, flushing or not
        with flush_denormal(False):
            assert (tiny * 0.5).item() == torch.finfo(torch.float32).tiny / 2
        assert flush_denormal_active()  # the outer block's setting is back
    assert not flush_denormal_active()
    assert flushed_share(1) == 1.0 and not flush_denormal_active()


def tiny_if_network(theta_units: int) -> SpikingNetwork:
    """One IF layer on its inputs (float32, threshold theta_units * U, v(0) = theta / 2)."""
    return SpikingNetwork(nn.Sequential(nn.Identity(), IFNeuron(torch.tensor(theta_units * U)), nn.Flatten())).eval()


def closed_form(currents: list[list[int]], theta: int, steps: int) -> dict:
    """Counts in units of U: potentials below 2**23 U are subnormal whenever non-zero."""
    counts = {"input": 0, "membrane": 0, "output": 0, "values": 0}
    for row in currents:
        v = [theta // 2] * len(row)
        for _ in range(steps):
            for i, c in enumerate(row):
                v[i] += c
                spike = v[i] >= theta
                v[i] -= theta if spike else 0
                counts["input"] += c != 0
                counts["membrane"] += v[i] != 0
                counts["output"] += spike  # the output theta * U is subnormal
                counts["values"] += 1
    return counts


def test_the_census_counts_subnormal_currents_potentials_and_outputs_in_closed_form():
    theta, steps = 8, 5
    currents = [[0, 1, 3, 8, 9, 16], [2, 0, 5, 7, 0, 12]]  # in units of U: below, at and above theta
    snn = tiny_if_network(theta)
    x = torch.tensor(currents, dtype=torch.float64).float() * U
    assert subnormal_count(x) == 9
    with flush_denormal(False), torch.no_grad(), SubnormalCensus(snn) as c:
        for _ in range(steps):
            snn.step(x)
    expected = closed_form(currents, theta, steps)
    assert c.summary()["per_layer"] == {"1": expected} and c.summary()["total"] == expected
    assert expected["output"] > 0 and expected["membrane"] > 0  # the case exercises every count


def test_module_and_weight_census_in_closed_form():
    x = torch.tensor([[3 * U, -5 * U, 0.0, 1.0, -1.0, U]])  # 2 positive subnormals, 1 negative
    net = nn.Sequential(nn.Identity(), nn.ReLU())
    with flush_denormal(False), torch.no_grad():
        found = module_census(net, x)
    assert found["per_module"] == {"0": {"output": 3, "values": 6}, "1": {"output": 2, "values": 6}}
    assert found["total"] == {"input": 3, "output": 5, "values": 12}
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[U, 0.5, 0.0], [-7 * U, 1.0, 2.0]]))
        lin.bias.copy_(torch.tensor([U, 1.0]))
    assert weight_census(lin) == {"subnormal": 3, "values": 8}


def test_census_of_a_network_runs_step_by_step_and_the_floor_ann_on_every_frame():
    snn = tiny_if_network(8)
    currents = [[0, 1, 3, 8], [2, 0, 5, 7]]
    x = torch.tensor(currents, dtype=torch.float64).float() * U
    with flush_denormal(False):
        found = census(snn, x, 4, batch_size=1)  # one input per batch: the census resets between them
        frames = x.unsqueeze(1).expand(2, 4, 4)  # temporal: the same currents as 4 frames
        temporal = census(snn, frames, 4, temporal=True)
    assert found["snn"]["total"] == closed_form(currents, 8, 4) == temporal["snn"]["total"]
    # the floor's ANN: Identity, ReLU (the IF layer's twin), Flatten: 6 subnormal currents in each output
    assert found["ann"]["total"] == {"input": 6, "output": 18, "values": 24}
    assert temporal["ann"]["total"] == {"input": 24, "output": 72, "values": 96}  # every frame
    assert found["weights"] == {"subnormal": 1, "values": 1}  # the threshold 8 U is a buffer


def test_profile_summary_names_leaf_modules_and_top_ops():
    snn = dyadic_network()
    x = dyadic_inputs(4, 1)

    def run():
        with torch.no_grad():
            snn.reset()
            for _ in range(3):
                snn.step(x)

    p = profile_summary(run, snn.body)
    assert {"Conv2d", "IFNeuron", "Linear", "AvgPool2d"} <= set(p["by_type"])
    assert {m["module"] for m in p["modules"]} >= {"0 (Conv2d)", "1 (IFNeuron)", "8 (Linear)"}
    assert any(op["op"].startswith("aten::") for op in p["top_ops"])
    assert all(0 <= m["share"] for m in p["modules"]) and 0 <= p["outside_modules_share"] <= 1
    assert not any(h for m in snn.body.modules() for h in (m._forward_hooks, m._forward_pre_hooks))  # hooks gone


def test_interleaved_medians_rotate_who_goes_first():
    order = []
    runs = {name: (lambda name=name: order.append(name)) for name in "abc"}
    set_up = []
    result = interleaved_medians(runs, 3, setup=set_up.append)
    assert order == list("abcbcacab") and set_up == order
    assert set(result["median_seconds"]) == set("abc") and all(len(v) == 3 for v in result["all_seconds"].values())


def test_a_benchmark_cell_checks_flushing_and_layouts_bit_for_bit():
    sys.path.insert(0, str(ROOT))
    from benchmarks.numerics import PATHS, cell

    snn = dyadic_network()  # exact sums: every layout and flushing setting gives the same numbers
    c = cell(snn, dyadic_inputs(3, 2), T, False, ["contiguous", "channels_last"], threads=1, repeats=1, device="cpu")
    assert c["bit_equal"]["flush_on_vs_off"] == {lay: {"step": True, "chunked": True, "ann": True}
                                                 for lay in ("contiguous", "channels_last")}
    assert c["bit_equal"]["layouts"] == {"contiguous_vs_channels_last": {"step": True, "chunked": True, "ann": True}}
    assert set(c["flush_speedup"]) == set(PATHS) == set(c["channels_last_speedup"])
    assert len(c["median_seconds"]) == len(PATHS) * 2 * 2
    assert set(c["profiles"]["channels_last"]) == {"step", "chunked"} and not flush_denormal_active()


@pytest.mark.slow
def test_the_numerics_benchmark_runs_end_to_end(tmp_path):
    out = tmp_path / "numerics.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "numerics.py"), "--workloads", "vgg16_untrained",
                    "--batch-sizes", "1", "--repeats", "1", "--census-inputs", "2", "--T", "2", "--out", str(out)],
                   check=True, env=env, cwd=tmp_path, capture_output=True, timeout=600)
    result = json.loads(out.read_text())
    w = result["workloads"]["vgg16_untrained"]
    assert w["census"]["inputs"] == 2 and len(w["census"]["snn"]["per_layer"]) == 15  # VGG-16's spiking layers
    assert w["cells"][0]["batch_size"] == 1 and set(result["flushed_share_by_threads"]) >= {"1"}
