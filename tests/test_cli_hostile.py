"""The second hostile sweep (issue 24), command-line half: nothing lost, nothing silently wrong.

A user's file is never replaced unasked; a stage takes its run folder's settings and refuses a
flag against the files it reads (also in tests/test_stages.py, on a trained run); compare refuses
validation and test swapped; a late check comes first. The flag-level cases (idle flags, deep
files, long names) are examples of the fuzz test's property (tests/test_cli_fuzz.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from snnexit.cli import main
from snnexit.runs import Settings
from snnexit.runs.artifacts import POLICY_FILE, TRACE_FILES, RunFolder
from snnexit.runs.ownership import check_replaceable, is_snnexit_folder, mark_folder
from snnexit.runs.paths import run_files
from snnexit.runs.settings import CertifySettings, RunConfig
from snnexit.simulate import Trace
from run_folders import fit_folder


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---- nothing the user did not ask to replace is replaced ---------------------------------------
def test_a_users_own_folder_is_not_written_over(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("# my notes\n")
    for argv in (["run", "--dataset", "digits"], ["report"], ["train", "--dataset", "digits"]):
        (mine / "ann.safetensors").write_bytes(b"my own weights")
        assert main([*argv, "--out", str(mine), "--quiet"]) == 2
        assert "is no folder snnexit wrote" in _one_line(capsys) or argv[0] == "report"
    assert (mine / "report.md").read_text() == "# my notes\n"
    assert (mine / "ann.safetensors").read_bytes() == b"my own weights"
    assert sorted(p.name for p in mine.iterdir()) == ["ann.safetensors", "report.md"]


def test_what_counts_as_a_folder_snnexit_wrote(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "results.json").write_text("{}")
    with pytest.raises(Exception, match="is no folder snnexit wrote"):
        check_replaceable(folder, ["results.json"], "run")
    check_replaceable(folder, ["results.json"], "run", overwrite=True)  # told to
    check_replaceable(folder, ["report.md"], "run")  # nothing there to replace
    (folder / "config.x.json").write_text('{"not": "ours"}')
    assert not is_snnexit_folder(folder)
    RunFolder(folder).save_config(Settings(), "fit")  # a config of ours
    assert is_snnexit_folder(folder)
    other = tmp_path / "g"
    other.mkdir()
    Trace(torch.zeros(2, 3, 4), None, None, {}).save(other / "trace_val.safetensors")  # a file of ours
    assert is_snnexit_folder(other)
    third = tmp_path / "h"
    third.mkdir()
    mark_folder(third, "compare", ["compare.md"])
    assert is_snnexit_folder(third)
    (third / "compare.md").write_text("a comparison")
    check_replaceable(third, ["compare.md"], "compare")  # the same command's own file
    with pytest.raises(Exception, match="was written by `snnexit compare`, and `snnexit table` would replace it"):
        check_replaceable(third, ["compare.md"], "table")


def test_one_kind_of_command_does_not_replace_anothers_files(tmp_path, capsys):
    """cutoff-train into a run's folder, or run into cutoff-train's, would replace results.json and the
    traces of another kind of run: refused unless --overwrite, before any training."""
    run = fit_folder(tmp_path / "run")
    mark_folder(run, "run", run_files("run"))
    (run / "results.json").write_text("{}")
    assert main(["cutoff-train", "--dataset", "digits", "--out", str(run), "--quiet"]) == 2
    assert "results.json was written by `snnexit run`, and `snnexit cutoff-train` would replace it" in _one_line(capsys)
    cutoff = tmp_path / "cutoff"
    cutoff.mkdir()
    mark_folder(cutoff, "cutoff-train", ["results.json", "report.md", *TRACE_FILES])
    (cutoff / "report.md").write_text("# cutoff-train on digits\n")
    assert main(["run", "--dataset", "digits", "--out", str(cutoff), "--quiet"]) == 2
    assert "report.md was written by `snnexit cutoff-train`, and `snnexit run` would replace it" in _one_line(capsys)
    assert (cutoff / "report.md").read_text() == "# cutoff-train on digits\n"


def test_compare_writes_only_where_it_may(tmp_path, capsys):
    run = fit_folder(tmp_path / "run")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "compare.md").write_text("mine")
    argv = ["compare", "--run", str(run), "--out", str(out), "--policies", "fixed,oracle"]
    assert main(argv) == 2
    assert "holds compare.md" in _one_line(capsys) and (out / "compare.md").read_text() == "mine"
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "compare.md").read_text() != "mine" and is_snnexit_folder(out)


# ---- compare: validation and test are never swapped --------------------------------------------
@pytest.mark.parametrize("which,message", [
    ("swapped", "holds the test trace, not the val one (--val and --test are swapped?)"),
    ("same", "are both of the val split"),
    ("test twice", "are both of the test split"),
    ("same file, no split", "--val and --test are the same file"),
])
def test_compare_refuses_swapped_or_repeated_splits(tmp_path, capsys, which, message):
    run = fit_folder(tmp_path / "run")
    val, test = run / TRACE_FILES[0], run / TRACE_FILES[1]
    copy = tmp_path / "copy.safetensors"
    if which == "test twice":
        Trace.load(test).save(copy)
    if which == "same file, no split":  # a trace made in Python, which names no split
        trace = Trace.load(val)
        Trace(trace.outputs, trace.labels, None, {k: v for k, v in trace.meta.items() if k != "split"}).save(copy)
    pairs = {"swapped": (test, val), "same": (val, val), "test twice": (test, copy), "same file, no split": (copy, copy)}
    first, second = pairs[which]
    assert main(["compare", "--val", str(first), "--test", str(second), "--out", str(tmp_path / "cmp")]) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "cmp").exists()  # refused before anything was fitted or written


# ---- stages take the folder's settings ---------------------------------------------------------
def test_a_stage_on_a_folder_takes_its_settings(tmp_path, capsys):
    """The folder says digits, T = 4: fit needs no flag, and a flag against it is refused, unrecorded."""
    folder = fit_folder(tmp_path / "run", T=4)
    assert main(["fit", "--out", str(folder), "--quiet"]) == 0
    saved = json.loads((folder / "config.fit.json").read_text())
    assert (saved["dataset"], saved["T"]) == ("digits", 4)
    capsys.readouterr()
    for flag, value in (("--dataset", "mnist5k"), ("--T", "32"), ("--converter", "qffs")):
        assert main(["fit", "--out", str(folder), flag, value]) == 2
        err = _one_line(capsys)
        assert f"{flag} " in err and "contradicts the run in" in err and "again" not in err
    assert json.loads((folder / "config.fit.json").read_text()) == saved


def test_fit_keeps_the_folders_fit_settings_unless_told(tmp_path):
    folder = fit_folder(tmp_path / "run")
    assert main(["fit", "--out", str(folder), "--policy", "topk", "--policy-option", "k=3", "--target", "max_drop",
                 "--eps", "0.05", "--quiet"]) == 0
    assert main(["fit", "--out", str(folder), "--quiet"]) == 0  # the same fit again
    fit = json.loads((folder / "config.fit.json").read_text())["fit"]
    assert (fit["policy"], fit["options"], fit["target"], fit["eps"]) == ("topk", {"k": 3}, "max_drop", 0.05)
    assert main(["fit", "--out", str(folder), "--target", "no_loss", "--quiet"]) == 0  # a new target: its eps goes
    fit = json.loads((folder / "config.fit.json").read_text())["fit"]
    assert (fit["policy"], fit["options"], fit["target"], fit["eps"]) == ("topk", {"k": 3}, "no_loss", None)
    assert main(["fit", "--out", str(folder), "--policy", "entropy", "--quiet"]) == 0  # another policy: no k
    fit = json.loads((folder / "config.fit.json").read_text())["fit"]
    assert (fit["policy"], fit["options"]) == ("entropy", {})
    assert json.loads((folder / POLICY_FILE).read_text())["policy"] == "entropy"


def test_run_refuses_a_folder_whose_files_have_other_settings(tmp_path, capsys):
    folder = fit_folder(tmp_path / "run", T=4)  # traces of T = 4, made stage by stage
    assert main(["run", "--dataset", "digits", "--T", "8", "--out", str(folder), "--quiet"]) == 2
    assert "holds a run with other settings (T=4 there, 8 now); pass --overwrite" in _one_line(capsys)


def test_evaluate_refuses_calibration_inputs_without_their_trace(tmp_path, capsys):
    np.save(tmp_path / "extra.npy", np.zeros((5, 1, 8, 8), dtype=np.float32))
    folder = tmp_path / "run"
    fit_folder(folder)
    settings = Settings(run=RunConfig(dataset="digits", T=4, out=str(folder)),
                        certify=CertifySettings(calibration_inputs=str(tmp_path / "extra.npy")))
    RunFolder(folder).save_config(settings, "trace")  # as if traced with them, but their trace is gone
    assert main(["fit", "--out", str(folder), "--quiet"]) == 0
    assert main(["evaluate", "--out", str(folder), "--quiet"]) == 2
    assert "trace_calibration.safetensors: no such file; run `snnexit trace`" in _one_line(capsys)


@pytest.mark.parametrize("name,argv,message", [
    ("config.trace.json", ["fit"], "run folder config"),
    ("results.json", ["report"], "results.json: invalid JSON (nested too deeply to read)"),
    ("results.json", ["export", "--out", "x.nir"], "results"),
    ("timings.json", ["fit"], None),  # rewritten: the seconds of a stage are no input
])
def test_run_folder_files_nested_too_deeply(tmp_path, monkeypatch, capsys, name, argv, message):
    folder = fit_folder(tmp_path / "run")
    (folder / name).write_text("[" * 100_000)
    monkeypatch.chdir(tmp_path)
    where = ["--in", str(folder)] if argv[0] == "export" else ["--out", str(folder)]
    code = main([*argv, *where, "--quiet"])
    if message is None:
        assert code == 0 and json.loads((folder / name).read_text())["fit"] >= 0
    else:
        line = _one_line(capsys)
        assert code == 2 and message in line and "nested too deeply to read" in line, line


# ---- late checks come first --------------------------------------------------------------------
def test_trace_checks_the_calibration_inputs_before_anything_else(tmp_path, capsys):
    """Wrong-shaped calibration inputs are refused before the stage reads or simulates its network
    (the folder has none: the shape error must come first)."""
    np.save(tmp_path / "wrong.npy", np.zeros((3, 1, 9, 9), dtype=np.float32))
    code = main(["trace", "--dataset", "digits", "--out", str(tmp_path / "run"), "--calibration-inputs",
                 str(tmp_path / "wrong.npy"), "--quiet"])
    assert code == 2
    assert "shape (3, 1, 9, 9), expected (N, 1, 8, 8) like the digits inputs" in _one_line(capsys)


@pytest.mark.parametrize("content,message", [
    (b"", "the file is empty"),
    (b"not an array", "not a readable .npy array"),
])
def test_calibration_files_that_are_no_array(tmp_path, capsys, content, message):
    (tmp_path / "x.npy").write_bytes(content)
    assert main(["run", "--dataset", "digits", "--calibration-inputs", str(tmp_path / "x.npy"), "--out",
                 str(tmp_path / "run")]) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "run").exists()
