"""``snnexit bench`` end to end on digits: the JSON it writes, the Table 2 it prints, bad input."""

import json

import pytest

from snnexit.cli import main


def test_bench_writes_table2_json_and_agrees_with_the_offline_policy(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--dataset", "digits", "--epochs", "1", "--T", "6", "--latency-inputs", "3",
            "--batch-size", "64", "--repeats", "1", "--devices", "cpu", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    results = json.loads(out.read_text())
    (row,) = results["rows"]
    agree = row["runtime_vs_offline"]
    # the runtime stops every input where the offline policy on the recorded trace does
    assert agree["exit_steps_equal"] == agree["n"] == agree["predictions_equal"]
    lat, thr = row["latency"], row["throughput"]
    assert lat["inputs"] == 3 and thr["batch_size"] == 64
    assert set(thr["seconds_per_inference"]) == {"fixed", "early_exit", "early_exit_masked"}
    assert 1 <= thr["mean_steps"] <= 6
    assert thr["step_saving"] == pytest.approx(1 - thr["mean_steps"] / 6)
    assert all(s > 0 for s in thr["seconds_per_inference"].values())
    printed = capsys.readouterr().out
    assert "| Setting | Device | Batch |" in printed and "digits" in printed


def test_bench_refuses_a_policy_that_needs_labels(tmp_path, capsys):
    args = ["bench", "--dataset", "digits", "--epochs", "1", "--T", "4", "--policy", "oracle",
            "--devices", "cpu", "--out", str(tmp_path / "b.json"), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 2
    assert "oracle" in capsys.readouterr().err


def test_bench_refuses_cuda_when_absent(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    args = ["bench", "--dataset", "digits", "--devices", "cuda", "--out", str(tmp_path / "b.json")]
    assert main(args) == 2
    assert "CUDA is not available" in capsys.readouterr().err
