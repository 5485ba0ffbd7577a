"""An imported network through the product: `snnexit run --nir` and its stages, and `snnexit certify`
on outputs recorded elsewhere (Trace.from_arrays)."""

from __future__ import annotations

import json
import re

import nir
import numpy as np
import pytest
import torch

from snnexit.cli import main
from snnexit.data import load_dataset
from snnexit.errors import SnnexitError
from snnexit.exit import load_certified
from snnexit.exit.base import split_learn_certify
from snnexit.exit.certify import certify_exit
from snnexit.nir import import_nir
from snnexit.runs.outputs import certify_outputs, load_outputs
from snnexit.simulate import Trace, record_trace


def digits_mlp(path, seed=0):
    """A LIF MLP (64 -> 24 -> 10, flat inputs) written as snnTorch writes one, its first layer
    fitted to digits by least squares so that it is better than chance."""
    data = load_dataset("digits", 0)
    x, y = data.train.x.flatten(1).double(), data.train.y
    g = np.random.default_rng(seed)
    w1 = g.normal(0, 0.4, size=(24, 64))
    h = np.maximum(x.numpy() @ w1.T, 0)
    w2 = np.linalg.lstsq(np.c_[h, np.ones(len(h))], np.eye(10)[y.numpy()], rcond=None)[0].T
    dt, beta = 1e-4, 0.9
    tau = np.float32(dt / (1 - beta))
    lif = lambda n, thr: nir.LIF(tau=np.full(n, tau, np.float32), r=np.full(n, tau / dt, np.float32),  # noqa: E731
                                 v_leak=np.zeros(n, np.float32), v_threshold=np.full(n, thr, np.float32),
                                 v_reset=np.zeros(n, np.float32))
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([64])}),
                                "0": nir.Affine(w1.astype(np.float32), np.zeros(24, np.float32)), "1": lif(24, 1.0),
                                "2": nir.Affine(w2[:, :24].astype(np.float32) * 4, w2[:, 24].astype(np.float32)),
                                "3": lif(10, 0.5), "output": nir.Output(output_type={"output": np.array([10])})},
                         edges=[("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")])
    nir.write(path, graph)
    return path


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory):
    return digits_mlp(tmp_path_factory.mktemp("nir") / "mlp.nir")


def test_run_an_imported_network_end_to_end(mlp_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--nir", str(mlp_file), "--semantics", "snntorch", "--dataset", "digits", "--T", "12",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| digits | mlp.nir | nir (snntorch) | fixed T=12 | — |" in printed and "Certified exit" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["ann"] == {"test_acc": None, "val_acc": None} and results["snn"]["converter"] == "nir"
    assert results["calibration"]["fitted_on"] == "snn_outputs" and results["policies"]["certified"]["n"] == 359
    assert not (out / "ann.safetensors").exists() and (out / "network.json").is_file()
    report = (out / "report.md").read_text()
    assert "read as snntorch reads it (no ANN, nothing trained)" in report
    # the trace is the imported network's: digits images reshaped to the graph's flat input
    data = load_dataset("digits", 0)
    snn = import_nir(mlp_file, "snntorch")
    mine = record_trace(snn, [(data.test.x.flatten(1), data.test.y)], T=12)
    assert results["snn"]["test_acc_per_step"] == mine.accuracy_per_step().tolist()
    assert mine.accuracy_per_step()[-1] > 0.5  # a network worth an exit
    # the stages, one at a time, leave the same results
    staged = tmp_path / "staged"
    flags = ["--nir", str(mlp_file), "--semantics", "snntorch", "--dataset", "digits", "--out", str(staged), "--quiet"]
    for stage in ("train", "convert", "trace", "fit", "evaluate", "report"):
        assert main([stage, *flags, *([] if stage in ("train", "convert") else ["--T", "12"])]) == 0, stage
    assert "Nothing to train: the network comes from" in capsys.readouterr().out
    again = json.loads((staged / "results.json").read_text())
    assert again["policies"]["certified"] == results["policies"]["certified"]
    # a stage with another reader than the folder's is refused; without --nir it takes the folder's
    assert main(["trace", *flags[:2], "--semantics", "norse", *flags[4:], "--T", "12"]) == 2
    assert "--semantics 'norse' contradicts the run in" in capsys.readouterr().err
    assert main(["evaluate", "--out", str(staged), "--quiet"]) == 0
    assert json.loads((staged / "config.evaluate.json").read_text())["nir"] == str(mlp_file)
    # a network.json of another file than the folder's settings say (copied in by hand) is refused
    record = json.loads((staged / "network.json").read_text())
    (staged / "network.json").write_text(json.dumps({**record, "semantics": "norse"}))
    assert main(["evaluate", "--out", str(staged), "--quiet"]) == 2
    assert "another NIR file or semantics" in capsys.readouterr().err


def test_bad_nir_runs_are_refused_in_one_line(mlp_file, tmp_path, capsys):
    base = ["run", "--dataset", "digits", "--T", "4", "--quiet"]
    cases = [(["--nir", str(tmp_path / "none.nir")], "NIR file .*none.nir: no such file"),
             (["--nir", str(mlp_file), "--semantics", "lava"], "Unknown NIR semantics 'lava'. Known: nir, norse"),
             (["--nir", str(mlp_file), "--semantics", "nir"], "pass dt"),
             (["--nir", str(mlp_file), "--semantics", "snntorch", "--dt", "-1"], "'dt' must be a positive number"),
             (["--nir", str(mlp_file), "--semantics", "snntorch", "--dataset", "mnist5k"],
              r"takes inputs of shape \(64,\); mnist5k has inputs of shape \(1, 28, 28\)")]
    for i, (flags, message) in enumerate(cases):
        assert main(base + ["--out", str(tmp_path / str(i))] + flags) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(message, err), err


def synthetic(seed: int, n: int, T: int = 10, C: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per-step outputs (T, N, C) that drift towards the label: what a chip would record."""
    g = np.random.default_rng(seed)
    labels = g.integers(0, C, n)
    steps = g.normal(size=(T, n, C)).astype(np.float32)
    steps[:, np.arange(n), labels] += g.uniform(0, 1.5, n).astype(np.float32)
    return steps, labels


def test_certify_outputs_recorded_elsewhere(tmp_path, capsys):
    val, val_y = synthetic(1, 400)
    test, test_y = synthetic(2, 300)
    np.savez(tmp_path / "val.npz", outputs=val, labels=val_y)
    np.savez(tmp_path / "test.npz", outputs=test)  # no labels
    np.savez(tmp_path / "val_acc.npz", outputs=val.cumsum(0), labels=val_y)
    assert main(["certify", "--val", str(tmp_path / "val.npz"), "--test", str(tmp_path / "test.npz"), "--outputs",
                 "per-step", "--out", str(tmp_path / "rule.json")]) == 0
    printed = capsys.readouterr().out
    assert "Certified exit (" in printed and "Rule to deploy: after each step t < 10, stop when" in printed
    # the same certificate as the library computes by hand on Trace.from_arrays
    v = Trace.from_arrays(val, val_y, accumulated=False)
    t = Trace.from_arrays(test, None, accumulated=False)
    cert, row = certify_outputs(v, t)
    assert f"> {row['threshold']!r}" in printed
    assert f"{100 * row['test_disagreement']:.2f}% differ" in printed
    learn, held = split_learn_certify(v)
    by_hand = certify_exit(learn, Trace(held.outputs, None, None, held.meta))
    assert by_hand.name == cert.name and by_hand.policy.threshold_ == cert.policy.threshold_
    # accumulated outputs say the same
    again = load_outputs(tmp_path / "val_acc.npz", accumulated=True)
    assert torch.allclose(again.outputs, v.outputs, atol=1e-5)
    assert load_certified(tmp_path / "rule.json").policy.threshold_ == cert.policy.threshold_


def test_bad_outputs_are_refused(tmp_path, capsys):
    val, val_y = synthetic(1, 100)
    np.savez(tmp_path / "unlabelled.npz", outputs=val)
    np.savez(tmp_path / "wrong.npz", scores=val)
    np.savez(tmp_path / "flat.npz", outputs=val[0], labels=val_y)
    np.savez(tmp_path / "floaty.npz", outputs=val, labels=val_y.astype(float))
    np.savez(tmp_path / "ok.npz", outputs=val, labels=val_y)
    cases = {"unlabelled.npz": "validation outputs need labels", "wrong.npz": "has no array 'outputs'",
             "flat.npz": r"shape \(T, N, C\)", "floaty.npz": "labels must be integers",
             "missing.npz": "no such file"}
    for name, message in cases.items():
        assert main(["certify", "--val", str(tmp_path / name), "--test", str(tmp_path / "ok.npz"),
                     "--outputs", "accumulated"]) == 2
        err = capsys.readouterr().err
        assert re.search(message, err), err
    with pytest.raises(SnnexitError, match="accumulated must be True"):
        Trace.from_arrays(val, val_y, accumulated="yes")


@pytest.mark.slow
def test_the_snntorch_example_runs(tmp_path):
    """examples/byo_snntorch.py: trained in snnTorch, read by snnexit with the same outputs, an exit
    certified and run by both engines with the offline decisions."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "examples" / "byo_snntorch.py"), "--out", str(tmp_path / "n.json"),
                           "--nir", str(tmp_path / "m.nir")], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    numbers = json.loads((tmp_path / "n.json").read_text())
    assert numbers["snntorch_vs_snnexit_max_output_difference"] == 0
    assert numbers["runtime"]["engines_take_the_offline_decisions"]
    assert numbers["fixed_T_test_accuracy"] > 0.9 and numbers["certified"]["saving"] > 0
