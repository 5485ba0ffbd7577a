"""The CLI stages one at a time give what ``snnexit run`` gives; stale or missing inputs are clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snnexit.cli import main
from snnexit.exit import POLICIES, DynamicConfidence, create_policy, load_policy
from snnexit.io import load_tensors
from snnexit.runs.artifacts import POLICY_FILE, SNN_FILE, STAGES, load_converted
from snnexit.simulate import Trace, record_trace

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
dataset = "digits"
epochs = 2
T = 8
width = 8
progress = false
[trace]
batch_size = 128
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The stages one by one into ``chain/``, then ``snnexit run`` with the same config into ``run/``."""
    tmp = tmp_path_factory.mktemp("stages")
    config = tmp / "config.toml"
    config.write_text(f'cache_dir = "{tmp / "cache"}"\n' + CONFIG)
    chain, run = tmp / "chain", tmp / "run"
    for stage in STAGES:
        assert main([stage, "--config", str(config), "--out", str(chain)]) == 0, stage
    assert main(["run", "--config", str(config), "--out", str(run)]) == 0
    return {"chain": chain, "run": run, "config": config, "tmp": tmp}


def test_stage_by_stage_equals_run(runs):
    a = json.loads((runs["chain"] / "results.json").read_text())
    b = json.loads((runs["run"] / "results.json").read_text())
    assert a.keys() == b.keys()
    for key in a:
        if key == "config":
            assert {k: v for k, v in a[key].items() if k != "out"} == {k: v for k, v in b[key].items() if k != "out"}
        elif key != "seconds":
            assert a[key] == b[key], key
    assert a["snn"]["T"] == 8 and a["config"]["width"] == 8
    for name in ("trace_val.safetensors", "trace_test.safetensors"):
        ta, tb = Trace.load(runs["chain"] / name), Trace.load(runs["run"] / name)
        assert torch.equal(ta.outputs, tb.outputs) and torch.equal(ta.spikes, tb.spikes)
    for f in ("report.md", "fig1_accuracy_vs_steps.png", "fig3_pareto.png"):
        assert (runs["chain"] / f).stat().st_size > 0


def test_every_stage_saves_its_resolved_config(runs):
    for stage in STAGES:
        saved = json.loads((runs["chain"] / f"config.{stage}.json").read_text())
        assert saved["stage"] == stage and saved["T"] == 8 and saved["out"] == str(runs["chain"])
        assert saved["trace"]["batch_size"] == 128
    assert json.loads((runs["run"] / "config.run.json").read_text())["stage"] == "run"


def test_converted_file_rebuilds_the_same_snn(runs):
    snn, meta = load_converted(runs["chain"] / SNN_FILE)
    assert meta["converter"] == "qcfs" and meta["thresholds"]
    tensors, _ = load_tensors(runs["chain"] / SNN_FILE, fmt="snn", version=1)
    assert any(k.startswith("ann.") for k in tensors) and any(k.startswith("snn.") for k in tensors)
    stored = Trace.load(runs["chain"] / "trace_test.safetensors")
    from snnexit.data import load_dataset

    test = load_dataset("digits", seed=0).test
    again = record_trace(snn, [(test.x[:50], test.y[:50])], T=8)
    assert torch.equal(again.outputs, stored.outputs[:, :50])


def test_policy_file_gives_the_fitted_decisions(runs):
    val = Trace.load(runs["chain"] / "trace_val.safetensors")
    test = Trace.load(runs["chain"] / "trace_test.safetensors")
    fitted = DynamicConfidence().fit(val)
    policy = load_policy(runs["chain"] / POLICY_FILE)
    assert policy.threshold_ == fitted.threshold_
    assert torch.equal(policy.exit_steps(test), fitted.exit_steps(test))


def test_a_fixed_threshold_sits_on_the_validation_curve(runs):
    val = Trace.load(runs["chain"] / "trace_val.safetensors")
    curve = DynamicConfidence().curve(val)
    for tau in (float(curve.thresholds[len(curve.thresholds) // 2]), 0.5, 0.97, 1.0, 0.0):  # 1, 0: the range's ends
        dc = DynamicConfidence(threshold=tau).fit(val)
        direct = dc.evaluate(val)
        assert dc.curve_.mean_steps[dc.point_] == pytest.approx(direct["mean_steps"])
        assert dc.curve_.accuracy[dc.point_] == pytest.approx(direct["test_acc"])


def test_fit_with_a_fixed_threshold_from_the_command_line(runs, tmp_path):
    chain = runs["chain"]
    assert main(["fit", "--config", str(runs["config"]), "--out", str(chain), "--threshold", "0.9"]) == 0
    assert load_policy(chain / POLICY_FILE).threshold_ == 0.9
    assert main(["evaluate", "--config", str(runs["config"]), "--out", str(chain), "--threshold", "0.9"]) == 0
    results = json.loads((chain / "results.json").read_text())
    test = Trace.load(chain / "trace_test.safetensors")
    steps = DynamicConfidence(threshold=0.9).fit(test).exit_steps(test)
    assert results["policies"]["dynamic_confidence"]["threshold"] == 0.9
    assert results["policies"]["dynamic_confidence"]["mean_steps"] == pytest.approx(steps.double().mean().item())
    # fit takes the folder's fit settings (the fixed threshold) unless told: back to the fitted one for the other tests
    assert main(["fit", "--config", str(runs["config"]), "--out", str(chain)]) == 0
    assert load_policy(chain / POLICY_FILE).threshold_ == 0.9
    assert main(["fit", "--config", str(runs["config"]), "--out", str(chain), "--target", "no_loss"]) == 0
    assert load_policy(chain / POLICY_FILE).threshold_ != 0.9


@pytest.mark.parametrize("stage,override,setting", [
    ("convert", ["--model", "resnet20"], "model = 'vgg_small'"),
    ("trace", ["--epochs", "3"], "epochs = 2"),
    ("fit", ["--T", "6"], "T = 8"),
    ("evaluate", ["--T", "6"], "T = 8"),
    ("report", ["--dataset", "mnist5k"], "dataset = 'digits'"),
    ("fit", ["--dataset", "mnist5k"], "dataset = 'digits'"),
])
def test_a_flag_that_contradicts_the_run_folder_is_refused(runs, stage, override, setting, capsys):
    """A stage takes the folder's settings; a flag against the files it reads is refused, never recorded."""
    before = {p.name: p.stat().st_mtime_ns for p in runs["chain"].iterdir()}
    code = main([stage, "--config", str(runs["config"]), "--out", str(runs["chain"]), *override])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{' '.join(override[:1])} " in err and "contradicts the run in" in err and f"made with {setting}" in err
    assert "again" not in err  # no step that would replace the finished run is suggested
    assert {p.name: p.stat().st_mtime_ns for p in runs["chain"].iterdir()} == before


@pytest.mark.parametrize("stage,edit,message", [
    ("convert", lambda folder: shutil.copy(folder / "snn.safetensors", folder / "ann.safetensors"),
     "expected a snnexit ann file"),
    ("fit", lambda folder: Trace.load(folder / "trace_val.safetensors").truncate(6).save(
        folder / "trace_val.safetensors"), "has T = 6 and converter 'qcfs', this config says T = 8"),
    ("evaluate", lambda folder: Trace.load(folder / "trace_test.safetensors").truncate(6).save(
        folder / "trace_test.safetensors"), "run `snnexit trace` again"),
])
def test_files_that_do_not_fit_the_folders_settings_are_refused(runs, tmp_path, stage, edit, message, capsys):
    """A file changed behind the folder's back (copied, another T) is refused, naming the stage to run again."""
    folder = tmp_path / "copy"
    shutil.copytree(runs["chain"], folder)
    edit(folder)
    assert main([stage, "--out", str(folder)]) == 2
    assert message in capsys.readouterr().err


def test_stages_take_the_run_folders_settings(runs, tmp_path, capsys):
    """After `run` with its own settings, every stage takes them: no flag, no config file needed."""
    folder = tmp_path / "copy"
    shutil.copytree(runs["run"], folder)
    for stage in ("fit", "evaluate", "report"):
        assert main([stage, "--out", str(folder), "--quiet"]) == 0, (stage, capsys.readouterr().err)
        saved = json.loads((folder / f"config.{stage}.json").read_text())
        assert (saved["dataset"], saved["T"], saved["width"], saved["epochs"]) == ("digits", 8, 8, 2)
    results = json.loads((folder / "results.json").read_text())
    assert results["config"]["dataset"] == "digits" and results["snn"]["T"] == 8


def test_missing_inputs_name_the_stage_to_run(tmp_path, capsys):
    empty = tmp_path / "empty"
    needs = {"convert": "train", "trace": "convert", "fit": "trace", "evaluate": "trace", "report": "evaluate"}
    for stage, before in needs.items():
        assert main([stage, "--dataset", "digits", "--out", str(empty)]) == 2
        err = capsys.readouterr().err
        assert "no such file" in err and f"`snnexit {before}`" in err, (stage, err)


def test_policy_fitted_on_another_trace_is_refused(runs, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["chain"], copy)
    val = Trace.load(copy / "trace_val.safetensors")
    val.subset(torch.arange(val.N - 1)).save(copy / "trace_val.safetensors")
    assert main(["evaluate", "--config", str(runs["config"]), "--out", str(copy)]) == 2
    assert "fitted on another trace_val.safetensors; run `snnexit fit` again" in capsys.readouterr().err


def _fit_evaluate_report(runs, folder, *flags) -> dict:
    """fit and evaluate with ``flags`` (the policy's settings); report with none (it uses none of them)."""
    for stage, given in (("fit", flags), ("evaluate", flags), ("report", ())):
        assert main([stage, "--config", str(runs["config"]), "--out", str(folder), *given]) == 0, (stage, given)
    return json.loads((folder / "results.json").read_text())


def _expected_row(folder, name: str, **options) -> dict:
    """The policy fitted on the stored validation trace and evaluated on the stored test trace, here."""
    val, test = (Trace.load(folder / f) for f in ("trace_val.safetensors", "trace_test.safetensors"))
    policy = create_policy(name, **options)
    if policy.needs_fit:
        policy.fit(val)
    return policy.evaluate(test)


@pytest.mark.parametrize("name,flags,options", [
    ("topk", ["--policy-option", "k=3"], {"k": 3}),
    ("conformal", ["--target", "coverage", "--eps", "0.1"], {"target": "coverage", "eps": 0.1}),
    ("fixed", [], {}),
])
def test_any_registered_policy_through_fit_evaluate_report(runs, tmp_path, name, flags, options):
    import shutil

    folder = tmp_path / name
    shutil.copytree(runs["chain"], folder)
    results = _fit_evaluate_report(runs, folder, "--policy", name, *flags)
    assert results["fitted_policy"] == name
    expected = _expected_row(folder, name, **options)
    for key in ("threshold", "test_acc", "mean_steps", "exit_step_counts"):
        assert results["policies"][name][key] == expected[key], key
    record = json.loads((folder / POLICY_FILE).read_text())
    assert record["policy"] == name and record["extra"]["fitted_on"]["file"] == "trace_val.safetensors"
    report = (folder / "report.md").read_text()
    assert f"| {name} |" in report or name == "fixed"
    assert (folder / "fig4_exit_histogram.png").stat().st_size > 0


@pytest.mark.slow
def test_every_registered_policy_through_the_stages(runs, tmp_path):
    import shutil

    folder = tmp_path / "all"
    shutil.copytree(runs["chain"], folder)
    for name in POLICIES.names():
        results = _fit_evaluate_report(runs, folder, "--policy", name)
        assert results.get("fitted_policy", "dynamic_confidence") == name
        assert results["policies"][name]["mean_steps"] == _expected_row(folder, name)["mean_steps"], name


def test_run_fits_the_policy_it_is_given(runs, tmp_path, capsys):
    out = tmp_path / "entropy"
    assert main(["run", "--config", str(runs["config"]), "--out", str(out), "--policy", "entropy"]) == 0
    printed = capsys.readouterr().out
    assert "| entropy |" in printed and "entropy captures" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["fitted_policy"] == "entropy"
    assert results["policies"]["entropy"]["mean_steps"] == _expected_row(out, "entropy")["mean_steps"]
    assert load_policy(out / POLICY_FILE).threshold_ == results["policies"]["entropy"]["threshold"]


@pytest.mark.parametrize("flags,message", [
    (["--policy", "fixed", "--eps", "0.1"], "policy 'fixed' has no parameter 'eps'"),
    (["--policy", "topk", "--policy-option", "kk=3"], "policy 'topk' has no parameter 'kk'"),
    (["--policy", "topk", "--policy-option", "k=1"], "k (top-1 minus top-k) must be an integer >= 2"),
    (["--policy", "bogus"], "Unknown policy 'bogus'. Known:"),
])
def test_bad_policy_settings_are_one_line_errors(runs, tmp_path, capsys, flags, message):
    assert main(["fit", "--config", str(runs["config"]), "--out", str(tmp_path / "never"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_the_runtime_takes_the_policy_file(runs):
    from snnexit.data import load_dataset
    from snnexit.runtime.engine import EarlyExitEngine

    snn, _ = load_converted(runs["chain"] / SNN_FILE)
    policy = load_policy(runs["chain"] / POLICY_FILE)
    test = load_dataset("digits", seed=0).test
    stored = Trace.load(runs["chain"] / "trace_test.safetensors")
    result = EarlyExitEngine(snn, policy, T=8).run(test.x[:64])
    assert torch.equal(result.exit_steps.cpu(), policy.exit_steps(stored)[:64])


@pytest.mark.slow
def test_byo_model_example_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "byo_model.py")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("fixed T = 16: test accuracy") and lines[1].startswith("Dynamic Confidence:")
    fixed_acc, dc_acc = (float(line.split("accuracy ")[1].split(",")[0]) for line in lines)
    dc_steps = float(lines[1].split("mean steps ")[1])
    assert fixed_acc > 0.5  # it learned something (10 classes: chance is 0.1)
    assert 1 <= dc_steps < 16 and dc_acc > 0.5


def test_traces_of_a_run_are_stamped_with_their_network_and_split(runs):
    from snnexit.runs.network import network_fingerprint

    snn, meta = load_converted(runs["chain"] / SNN_FILE)
    val, test = (Trace.load(runs["chain"] / f) for f in ("trace_val.safetensors", "trace_test.safetensors"))
    assert val.meta["network"] == test.meta["network"] == meta["snn_meta"]["network"] == network_fingerprint(snn)
    assert (val.meta["split"], test.meta["split"]) == ("val", "test")
    weight = next(p for p in snn.parameters() if p.dim() > 1)
    weight.data.view(-1)[0] += 1e-3  # another network: another fingerprint
    assert network_fingerprint(snn) != val.meta["network"]


def test_a_copied_test_trace_is_refused(runs, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["chain"], copy)
    shutil.copy(copy / "trace_val.safetensors", copy / "trace_test.safetensors")
    assert main(["evaluate", "--config", str(runs["config"]), "--out", str(copy)]) == 2
    assert "holds the val trace, not the test one" in capsys.readouterr().err


def test_traces_of_two_networks_are_not_compared(runs, tmp_path, capsys):
    test = Trace.load(runs["chain"] / "trace_test.safetensors")
    test.meta["network"] = "0" * 64  # as if traced from another model
    test.save(tmp_path / "other_test.safetensors")
    code = main(["compare", "--val", str(runs["chain"] / "trace_val.safetensors"), "--test",
                 str(tmp_path / "other_test.safetensors"), "--out", str(tmp_path / "cmp")])
    assert code == 2 and "come from two different networks" in capsys.readouterr().err
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(runs["chain"], copy)
    test.save(copy / "trace_test.safetensors")
    assert main(["evaluate", "--config", str(runs["config"]), "--out", str(copy)]) == 2
    assert "come from two different networks" in capsys.readouterr().err


def test_a_run_folder_holds_one_run_at_a_time(runs, tmp_path, capsys):
    import shutil

    from snnexit.runs.lock import LOCK_FILE, folder_lock

    copy = tmp_path / "copy"
    shutil.copytree(runs["chain"], copy)
    with folder_lock(copy, "run"):
        assert main(["report", "--config", str(runs["config"]), "--out", str(copy), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"is in use by `snnexit run` (pid {os.getpid()}" in err and len(err.strip().splitlines()) == 1
    assert not (copy / LOCK_FILE).exists()
    # a lock left by a process that died is taken over; temporary files of interrupted writes go
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (copy / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                              "command": "report", "started": "earlier"}))
    (copy / ".fig1_accuracy_vs_steps.png.x1y2.tmp").write_bytes(b"half a figure")
    assert main(["report", "--config", str(runs["config"]), "--out", str(copy)]) == 0
    assert not (copy / LOCK_FILE).exists() and not list(copy.glob(".*.tmp"))


def test_run_refuses_a_folder_of_other_settings_unless_told(runs, tmp_path, capsys):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(runs["run"], folder)
    assert main(["run", "--config", str(runs["config"]), "--out", str(folder), "--T", "6"]) == 2
    assert "holds a run with other settings (T=8 there, 6 now); pass --overwrite" in capsys.readouterr().err
    assert json.loads((folder / "results.json").read_text())["snn"]["T"] == 8  # untouched
    assert main(["run", "--config", str(runs["config"]), "--out", str(folder), "--T", "6", "--overwrite"]) == 0
    assert json.loads((folder / "config.run.json").read_text())["T"] == 6
    assert json.loads((folder / "results.json").read_text())["snn"]["T"] == 6


@pytest.mark.parametrize("edit,message", [
    (lambda r: r.update(config=5), "results.config must be a table"),
    (lambda r: r["snn"].update(T="8"), "results.snn.T must be an integer"),
    (lambda r: r["policies"]["fixed"].update(test_acc="high"), "results.policies.fixed.test_acc must be a number"),
    (lambda r: r["policies"]["dynamic_confidence"].pop("exit_step_counts"),
     "results.policies.dynamic_confidence.exit_step_counts is missing"),
    (lambda r: r["curves"].update(dc_val_point=1.5), "results.curves.dc_val_point must be an integer"),
    (lambda r: r["policies"]["certified"].update(holds_on_test="yes"), "holds_on_test must be true or false"),
    (lambda r: r.update(seconds=[1]), "results.seconds must be a number"),
    (lambda r: r.update(fitted_policy="topk"), "results.policies.topk must be a table"),
])
def test_report_refuses_a_results_file_it_cannot_read(runs, tmp_path, capsys, edit, message):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["chain"], copy)
    results = json.loads((copy / "results.json").read_text())
    edit(results)
    (copy / "results.json").write_text(json.dumps(results))
    assert main(["report", "--config", str(runs["config"]), "--out", str(copy), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "run `snnexit evaluate` again" in err and len(err.strip().splitlines()) == 1


def test_a_config_written_before_a_setting_existed_counts_as_its_default(tmp_path):
    from snnexit.errors import SnnexitError
    from snnexit.runs import Settings
    from snnexit.runs.artifacts import RunFolder

    folder = RunFolder(tmp_path).create()
    settings = Settings()
    folder.save_config(settings, "run")
    stored = json.loads((tmp_path / "config.run.json").read_text())
    del stored["fit"]["policy"], stored["fit"]["options"], stored["bits"], stored["sequence"]  # as an older version
    (tmp_path / "config.run.json").write_text(json.dumps(stored))
    keys = ("bits", "fit.policy", "fit.options", "T")
    folder.check_same_settings(settings, keys)  # the same settings
    settings.fit.policy = "topk"
    with pytest.raises(SnnexitError, match="other settings"):
        folder.check_same_settings(settings, keys)


def test_evaluate_takes_the_policy_that_fit_fitted(runs, tmp_path, capsys):
    """fit --policy topk --policy-option k=3, then evaluate with no flag evaluates (and records) topk with
    k = 3; evaluate --policy-option k=2 is refused, as is a policy.json that is not what the folder says."""
    copy = tmp_path / "copy"
    shutil.copytree(runs["chain"], copy)
    fit = ["fit", "--config", str(runs["config"]), "--out", str(copy), "--quiet", "--policy", "topk"]
    assert main([*fit, "--policy-option", "k=3"]) == 0
    assert main(["evaluate", "--config", str(runs["config"]), "--out", str(copy), "--quiet"]) == 0
    results = json.loads((copy / "results.json").read_text())
    assert results["fitted_policy"] == "topk"
    assert results["policies"]["topk"]["mean_steps"] == _expected_row(copy, "topk", k=3)["mean_steps"]
    assert json.loads((copy / "config.evaluate.json").read_text())["fit"]["options"] == {"k": 3}
    capsys.readouterr()
    for flags, said in ((["--policy-option", "k=2"], "--policy-option k=2 contradicts"),
                        (["--policy", "dynamic_confidence"], "--policy 'dynamic_confidence' contradicts")):
        assert main(["evaluate", "--out", str(copy), "--quiet", *flags]) == 2
        assert said in capsys.readouterr().err
    # a policy.json that differs from the folder's settings (put there by hand): evaluated as it is, never as said
    shutil.copy(runs["chain"] / POLICY_FILE, copy / POLICY_FILE)  # dynamic_confidence
    assert main(["evaluate", "--out", str(copy), "--quiet"]) == 2
    assert "policy.json holds dynamic_confidence, this config says topk; drop --policy" in capsys.readouterr().err
    assert main([*fit, "--policy-option", "k=2"]) == 0
    shutil.copy(runs["chain"] / "config.fit.json", copy / "config.x.json")  # as if the folder said k = 3 now
    record = json.loads((copy / "config.fit.json").read_text())
    record["fit"]["options"], record["sequence"] = {"k": 3}, 99
    (copy / "config.x.json").write_text(json.dumps(record))
    assert main(["evaluate", "--out", str(copy), "--quiet"]) == 2
    assert "holds topk fitted with k = 2, this config says k = 3" in capsys.readouterr().err


def test_a_T_whose_traces_cannot_fit_is_refused_before_training(tmp_path, monkeypatch, capsys):
    from snnexit.runs import network

    monkeypatch.setattr(network, "memory_bytes", lambda: 2 ** 30)  # a machine with 1 GiB
    cache = tmp_path / "cache"
    code = main(["run", "--dataset", "digits", "--T", "20000", "--width", "4", "--epochs", "1", "--cache-dir",
                 str(cache), "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 2
    assert "T = 20000 needs about" in capsys.readouterr().err
    assert not list(cache.glob("ann-*"))  # nothing was trained
    from snnexit.convert import convert
    from snnexit.data import load_dataset
    from snnexit.runs.ann import build_ann
    from snnexit.runs.settings import RunConfig

    data, config = load_dataset("digits", 0), RunConfig(dataset="digits", T=20000, width=4)
    layers = len(convert(build_ann(config, data).eval(), "qcfs").spiking_layers())  # the real SNN's
    expected = 2 * 4 * 20000 * (len(data.val) + len(data.test)) * (data.num_classes + layers)
    assert network.trace_bytes(config, data) == expected


def test_the_certified_exit_is_a_file_that_deploys(runs):
    """certified.json gives back the certified exit of results.json: the same rule, the same decisions
    offline and in both engines, on the run's own network."""
    from snnexit.data import load_dataset
    from snnexit.exit import load_certified
    from snnexit.runs.artifacts import CERTIFIED_FILE, RunFolder
    from snnexit.runtime import ChunkedEngine, EarlyExitEngine

    for folder in (runs["chain"], runs["run"]):
        row = json.loads((folder / "results.json").read_text())["policies"]["certified"]
        certified = RunFolder(folder).load_certified()
        test = Trace.load(folder / "trace_test.safetensors")
        assert certified.name == row["policy"] and certified.policy.threshold_ == row["threshold"]
        assert certified.evaluate(test) == {k: v for k, v in row.items() if k != "cost"}
        assert certified.to_dict() == load_certified(folder / CERTIFIED_FILE).to_dict()
    snn, _ = load_converted(runs["run"] / SNN_FILE)
    x = load_dataset("digits", seed=0).test.x[:40]
    expected = certified.exit_steps(test)[:40]
    assert torch.equal(EarlyExitEngine(snn, certified, 8).run(x).exit_steps, expected)
    assert torch.equal(ChunkedEngine(snn, certified, 8, chunks=3).run(x).exit_steps, expected)
    assert "stop when" in certified.describe(test.meta) and repr(certified.policy.threshold_) in \
        certified.describe(test.meta)


def test_a_certified_exit_of_another_trace_is_refused(runs, tmp_path):
    import shutil

    from snnexit.errors import SnnexitError
    from snnexit.runs.artifacts import RunFolder

    copy = tmp_path / "copy"
    shutil.copytree(runs["run"], copy)
    RunFolder(copy).load_certified()
    val = Trace.load(copy / "trace_val.safetensors")
    Trace(val.outputs[:, :-1], val.labels[:-1], val.spikes[:, :-1], val.meta).save(copy / "trace_val.safetensors")
    with pytest.raises(SnnexitError, match="certified on another trace_val.safetensors"):
        RunFolder(copy).load_certified()


def test_export_writes_the_certified_exit_beside_the_graph(runs, tmp_path, capsys):
    run, cache = runs["run"], str(runs["tmp"] / "cache")
    out = tmp_path / "model.nir"
    assert main(["export", "--in", str(run), "--out", str(out), "--cache-dir", cache, "--policy", "certified"]) == 0
    rule = tmp_path / "model.exit.json"
    assert rule.read_text() == (run / "certified.json").read_text()
    printed = capsys.readouterr().out
    assert f"Wrote {rule}" in printed and "stop when" in printed
    # refused before any work: a checkpoint has no certified.json, a missing file, an output over its source
    assert main(["export", "--in", str(run / "ann.safetensors"), "--dataset", "digits", "--model", "vgg_small",
                 "--width", "8", "--out", str(out), "--policy", "certified"]) == 2
    assert "reads the certified.json of a run folder" in capsys.readouterr().err
    assert main(["export", "--in", str(run), "--out", str(out), "--policy", str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["export", "--in", str(run), "--out", str(tmp_path / "model.nir"), "--policy", str(rule)]) == 2
    assert "would overwrite its own source" in capsys.readouterr().err  # model.exit.json is the rule read
