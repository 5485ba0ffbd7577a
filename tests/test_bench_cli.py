"""``snnexit bench`` end to end on digits: the JSON it writes, the Table 2 it prints, bad input."""

import json

import pytest

from snnexit.cli import main


def test_bench_writes_table2_json_and_agrees_with_the_offline_policy(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--dataset", "digits", "--epochs", "1", "--T", "6", "--latency-inputs", "3",
            "--batch-size", "64", "--repeats", "1", "--busy-inputs", "2", "--devices", "cpu", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--check-inputs", "150"]
    assert main(args) == 0
    results = json.loads(out.read_text())
    (row,) = results["rows"]
    # both runtimes stop every checked input (the first 150, over three batches) where the offline policy does
    for agree in row["runtime_vs_offline"].values():
        assert agree["exit_steps_equal"] == agree["n"] == agree["predictions_equal"] == 150
    lat, thr = row["latency"], row["throughput"]
    assert lat["inputs"] == 3 and thr["batch_size"] == 64 and lat["agrees_with_offline"] == 3
    assert set(thr["seconds_per_inference"]) == {"fixed", "early_exit", "fixed_step", "early_exit_step",
                                                 "early_exit_masked", "floor_steps", "floor_chunked"}
    assert set(thr["over_floor"]) == {"fixed", "fixed_step"} and all(v > 0 for v in thr["over_floor"].values())
    assert {"early_exit", "early_exit_static"} <= set(lat["seconds_per_inference"])  # with forecasts and without
    # early exit forecasts where a replay of the trace says they pay: its verdict at batch 1 is recorded
    assert [(v["batch_size"], type(v["forecasts"])) for v in lat["forecasts_pay"]["early_exit"]] == [(1, bool)]
    assert "early_exit_static" not in lat["forecasts_pay"]  # it never forecasts: nothing to decide
    # and told each input's exit in advance: the bound of any chunk plan, on the same inputs
    assert lat["seconds_per_inference"]["early_exit_known_exits"] > 0
    assert "wall_over_step_saving_early_exit_known_exits" in lat
    groups = lat["by_difficulty"]  # every latency input is easy or hard, each timed by every engine
    assert sum(g["inputs"] for g in groups.values()) == 3
    assert all(g["early_exit_over_fixed"] > 0 for g in groups.values())
    assert 1 <= thr["mean_steps"] <= thr["mean_steps_computed"] <= 6
    assert thr["step_saving"] == pytest.approx(1 - thr["mean_steps"] / 6)
    assert all(s > 0 for s in thr["seconds_per_inference"].values())
    assert sum(thr["schedule"]) >= 6
    # energy: early exit never costs more than fixed T; both engines count the same spikes
    e = thr["energy"]
    assert 0 < e["early_exit"]["energy_pj_per_inference"] <= e["fixed"]["energy_pj_per_inference"]
    assert e["early_exit"]["energy_pj_per_inference"] == pytest.approx(e["early_exit_step"]["energy_pj_per_inference"])
    assert results["energy_model"]["mac_pj"] == pytest.approx(4.6)
    busy = row["busy_latency"]
    assert busy["inputs"] == 2 and "busy_throughput" in row
    printed = capsys.readouterr().out
    assert "| Setting | Device | Threads | Machine | Batch |" in printed and "digits" in printed and "busy" in printed


def test_bench_times_event_frames_at_several_batch_sizes_and_thread_counts(tmp_path, monkeypatch, capsys):
    """Temporal input (frame t at step t), one row per thread count, one throughput run per batch size."""
    import functools

    from snnexit.data import DATASETS
    from snnexit.data.events import event_mnist

    monkeypatch.setitem(DATASETS._entries, "event_mnist", functools.partial(event_mnist, T=4, n_per_class=6))
    out = tmp_path / "bench.json"
    args = ["bench", "--dataset", "event_mnist", "--epochs", "1", "--T", "4", "--latency-inputs", "2",
            "--batch-sizes", "3", "8", "--thread-counts", "1", "all", "--repeats", "1", "--no-busy", "--devices", "cpu",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    results = json.loads(out.read_text())
    assert results["workload"]["temporal"] and results["workload"]["input_shape"] == [4, 2, 34, 34]
    rows = results["rows"]
    assert [r["threads"] for r in rows] == [1, __import__("os").cpu_count()]
    for row in rows:
        for agree in row["runtime_vs_offline"].values():
            assert agree["exit_steps_equal"] == agree["n"] == agree["predictions_equal"]
        assert [t["batch_size"] for t in row["throughputs"]] == [3, 8] and row["throughput"]["batch_size"] == 8
        assert row["latency"]["agrees_with_offline"] == 2
        assert all(t["threads"]["fixed"] <= row["threads"] for t in row["throughputs"])  # never more than the row's
    printed = capsys.readouterr().out
    assert printed.count("| event_mnist") == 2 * 3  # per row: batch 1 and the two batch sizes


def test_bench_refuses_an_unknown_workload(tmp_path, capsys):
    assert main(["bench", "--workload", "vgg17", "--out", str(tmp_path / "b.json")]) == 2
    assert "Unknown workload 'vgg17'. Known: default, event_cnn, resnet20, vgg16" in capsys.readouterr().err


def test_bench_refuses_a_bad_energy_preset(tmp_path, capsys):
    args = ["bench", "--dataset", "digits", "--energy", "fp64", "--out", str(tmp_path / "b.json")]
    assert main(args) == 2
    assert "fp64" in capsys.readouterr().err


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


def test_bench_times_the_certified_exit_of_a_run_folder(tmp_path, capsys):
    """`--policy certified` certifies as `snnexit run` does; `--policy RUN/certified.json` times that
    very rule on the run's network; a rule of another T or another network is refused."""
    cache = str(tmp_path / "cache")
    assert main(["run", "--dataset", "digits", "--epochs", "1", "--T", "6", "--out", str(tmp_path / "run"),
                 "--cache-dir", cache, "--no-progress"]) == 0
    common = ["bench", "--dataset", "digits", "--epochs", "1", "--T", "6", "--latency-inputs", "2", "--batch-size",
              "64", "--throughput-inputs", "64", "--repeats", "1", "--no-busy", "--devices", "cpu",
              "--cache-dir", cache]
    certified_file = tmp_path / "run" / "certified.json"
    expected = json.loads(certified_file.read_text())["policy"]["fitted"]["threshold_"]
    for policy in ("certified", str(certified_file)):
        out = tmp_path / "bench.json"
        assert main([*common, "--policy", policy, "--out", str(out)]) == 0
        results = json.loads(out.read_text())
        assert results["threshold"] == expected  # the same validation trace certifies the same rule
        for agree in results["rows"][0]["runtime_vs_offline"].values():
            assert agree["exit_steps_equal"] == agree["n"] == agree["predictions_equal"]
    capsys.readouterr()
    longer = [("8" if i == common.index("--T") + 1 else a) for i, a in enumerate(common)]
    assert main([*longer, "--policy", str(certified_file), "--out", str(tmp_path / "b.json")]) == 2
    assert "fitted on traces of T = 6 steps; this run has T = 8" in capsys.readouterr().err
    assert main([*common, "--seed", "1", "--policy", str(certified_file), "--out", str(tmp_path / "b.json")]) == 2
    assert "made for another network" in capsys.readouterr().err
    assert main([*common, "--policy", "nonsense", "--out", str(tmp_path / "b.json")]) == 2
    assert "or a policy.json / certified.json file" in capsys.readouterr().err
