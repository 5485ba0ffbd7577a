"""The main job end to end on digits, and its clear errors on bad input."""

import json
import math
import os
import subprocess
import sys

import pytest

from snnexit.cli import main

FAST = ["--dataset", "digits", "--epochs", "3", "--T", "12", "--no-progress"]


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache")


def test_run_on_digits_writes_everything(tmp_path, cache, capsys):
    out = tmp_path / "out"
    assert main(["run", *FAST, "--out", str(out), "--cache-dir", cache]) == 0
    printed = capsys.readouterr().out
    assert "Dynamic Confidence" in printed and "oracle" in printed
    r = json.loads((out / "results.json").read_text())
    assert 0 < r["ann"]["test_acc"] <= 1
    assert r["snn"]["T"] == 12 and len(r["snn"]["test_acc_per_step"]) == 12
    for name in ("fixed", "dynamic_confidence", "oracle"):
        p = r["policies"][name]
        assert set(p) >= {"threshold", "test_acc", "mean_steps", "saving"}
        assert p["saving"] == pytest.approx(1 - p["mean_steps"] / 12)
    assert r["policies"]["fixed"]["threshold"] is None
    assert math.isfinite(r["policies"]["dynamic_confidence"]["threshold"])  # the log-odds of a probability
    assert r["policies"]["fixed"]["test_acc"] == pytest.approx(r["snn"]["test_acc_per_step"][-1])
    assert r["policies"]["oracle"]["test_acc"] >= r["policies"]["fixed"]["test_acc"]
    for f in ("report.md", "fig1_accuracy_vs_steps.png", "fig2_confidence.png", "fig3_pareto.png",
              "fig4_exit_histogram.png", "trace_val.safetensors", "trace_test.safetensors"):
        assert (out / f).stat().st_size > 0, f
    assert (out / "fig1_accuracy_vs_steps.png").read_bytes()[:4] == b"\x89PNG"
    # the cost table, checked against the saved test trace by brute force: each input's spikes up to its exit step
    import torch

    from snnexit.exit import Oracle
    from snnexit.simulate import Trace

    test = Trace.load(out / "trace_test.safetensors")
    neurons = sum(test.meta["neurons_per_layer"])
    steps = Oracle().exit_steps(test)
    by_hand = [test.spikes[: int(steps[n]), n].abs().sum().item() for n in range(test.N)]
    oracle_cost = r["policies"]["oracle"]["cost"]
    assert oracle_cost["spikes_per_inference"] == pytest.approx(sum(by_hand) / test.N)
    assert oracle_cost["spikes_per_neuron"] == pytest.approx(sum(by_hand) / test.N / neurons)
    assert r["policies"]["fixed"]["cost"]["spikes_per_inference"] == pytest.approx(
        test.spikes.abs().sum().item() / test.N)
    fan = torch.tensor(test.meta["fan_out_per_layer"], dtype=torch.float64)
    assert r["policies"]["fixed"]["cost"]["synops_per_inference"] == pytest.approx(
        (test.spikes.double().abs().sum(0) @ fan).mean().item())
    assert "## Cost per inference" in (out / "report.md").read_text()
    # a second run reuses the cached ANN and gives the same numbers
    out2 = tmp_path / "out2"
    assert main(["run", *FAST, "--out", str(out2), "--cache-dir", cache]) == 0
    r2 = json.loads((out2 / "results.json").read_text())
    assert r2["policies"] == r["policies"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "snnexit.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})


@pytest.mark.parametrize("args,message", [
    (["--dataset", "cifar11"], "Unknown dataset 'cifar11'. Known: cifar10, cifar100"),
    (["--model", "alexnet"], "Unknown model 'alexnet'. Known: resnet18, resnet20, vgg16, vgg_small"),
    (["--converter", "magic"], "Unknown converter 'magic'"),
    (["--T", "0"], "must be >= 1"),
    (["--T", "x"], "expected an integer"),
])
def test_bad_arguments_exit_2_with_a_clear_message(args, message, tmp_path):
    proc = run_cli("run", *args, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unwritable_out_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_cli("run", *FAST, "--out", str(blocker / "sub"), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 2 and "not writable" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupt_cached_checkpoint_exits_2(tmp_path, cache):
    out = tmp_path / "out"
    assert main(["run", *FAST, "--epochs", "1", "--out", str(out), "--cache-dir", cache]) == 0
    for f in os.listdir(cache):
        if f.startswith("ann-"):
            p = os.path.join(cache, f)
            data = open(p, "rb").read()
            open(p, "wb").write(data[: len(data) // 3])
    proc = run_cli("run", *FAST, "--epochs", "1", "--out", str(out), "--cache-dir", cache)
    assert proc.returncode == 2 and "corrupt" in proc.stderr and "Traceback" not in proc.stderr


def test_run_reports_a_certified_exit_that_unlabelled_calibration_inputs_join(tmp_path, cache, capsys):
    import numpy as np
    import torch

    from snnexit.data import load_dataset
    from snnexit.exit.base import split_learn_certify
    from snnexit.exit.certify import certify_exit
    from snnexit.simulate import Trace

    extra = load_dataset("digits", 0).test.x[:60].numpy()  # unlabelled inputs of the same distribution
    np.save(tmp_path / "cal.npy", extra)
    out = tmp_path / "out"
    argv = ["run", *FAST, "--out", str(out), "--cache-dir", cache, "--calibration-inputs", str(tmp_path / "cal.npy"),
            "--certify-delta", "0.1"]
    assert main(argv) == 0
    assert "Certified exit" in capsys.readouterr().out
    r = json.loads((out / "results.json").read_text())
    cert = r["policies"]["certified"]
    val, test = Trace.load(out / "trace_val.safetensors"), Trace.load(out / "trace_test.safetensors")
    calibration = Trace.load(out / "trace_calibration.safetensors")
    assert calibration.labels is None and calibration.N == 60
    learn, held = split_learn_certify(val)
    assert cert["calibration_size"] == held.N + 60 and cert["learn_size"] == learn.N
    assert cert["delta"] == 0.1 and cert["eps"] == pytest.approx(1 - 0.1 ** (1 / (held.N + 60)), rel=1e-6)
    # the same certificate, recomputed from the saved traces
    from snnexit.simulate.trace import concat

    again = certify_exit(learn, concat([held, calibration]), delta=0.1)
    assert again.name == cert["policy"] and again.policy.threshold_ == cert["threshold"]
    assert cert["test_disagreement"] == pytest.approx(again.evaluate(test)["test_disagreement"])
    # every softmax-based entry records its alpha (T for QCFS) and temperature
    dc = r["policies"]["dynamic_confidence"]
    assert dc["alpha"] == {"rule": "T", "value": 12.0} and dc["temperature"] == r["calibration"]["temperature"]
    assert r["calibration"]["temperature_fit_size"] == learn.N
    assert "## Certified exit" in (out / "report.md").read_text()
    assert torch.is_tensor(val.outputs)


@pytest.mark.parametrize("content,message", [(None, "no such file"), (b"not numpy", "readable .npy"),
                                             ("shape", "expected (N, 1, 8, 8)")])
def test_bad_calibration_inputs_fail_before_training(tmp_path, cache, content, message):
    import numpy as np

    path = tmp_path / "cal.npy"
    if content == "shape":
        np.save(path, np.zeros((5, 3, 8, 8), dtype=np.float32))
    elif content is not None:
        path.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "snnexit", "run", *FAST, "--out", str(tmp_path / "o"), "--cache-dir",
                           cache, "--calibration-inputs", str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("ann-*"))
