"""A CLI that talks: progress lines without a terminal, "resuming" on resume, --quiet, a fast
--version / --help, and output files that honour the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from snnexit.cli import COMMANDS, build_parser, main
from snnexit.io import write_json

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--dataset", "digits", "--epochs", "2", "--T", "6", "--width", "4"]
HEAVY = ("torch", "scipy", "matplotlib", "sklearn", "numpy")


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []])
def test_version_and_help_import_no_heavy_module(argv):
    code = ("import sys\nfrom snnexit.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in %r if m in sys.modules))" % (argv, HEAVY))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "LOADED []" in proc.stdout, proc.stdout + proc.stderr
    if argv == ["--help"]:
        for name in COMMANDS:
            assert name in proc.stdout


def test_command_table_matches_the_modules():
    """The lazy listing (COMMANDS) names every registered command with the module's own help."""
    parser = build_parser("*")
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert helps == {name: text for name, (_, text) in COMMANDS.items()}


def test_piped_run_prints_a_line_per_epoch_and_stage(tmp_path, capsys):
    assert main(["run", *FAST, "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err.splitlines()  # capsys is no terminal: no bars, plain lines
    assert [line.split("] ", 1)[1].split(":")[0] for line in err if "] epoch " in line] == ["epoch 1/2", "epoch 2/2"]
    assert all(line.startswith("[") and " s] " in line for line in err), err
    for stage in ("loaded digits", "training", "ANN test accuracy", "tracing", "traced", "fitted", "wrote the report"):
        assert any(stage in line for line in err), stage


def test_quiet_prints_no_progress(tmp_path, capsys):
    assert main(["run", *FAST, "--quiet", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "Dynamic Confidence" in captured.out
    # before the command too (fit takes the flags it uses: the T of the traces)
    assert main(["--quiet", "fit", "--dataset", "digits", "--T", "6", "--out", str(tmp_path / "o")]) == 0
    assert capsys.readouterr().err == ""


def test_resumed_run_says_so_and_leaves_no_checkpoint(tmp_path, monkeypatch, capsys):
    from snnexit.train import loop

    real = loop.save_checkpoint

    def stop_after_first_epoch(path, state):
        real(path, state)
        raise KeyboardInterrupt  # as if killed after epoch 1's checkpoint

    monkeypatch.setattr(loop, "save_checkpoint", stop_after_first_epoch)
    args = ["run", *FAST, "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 130
    assert len(list((tmp_path / "c").glob("train-*.pt"))) == 1
    monkeypatch.setattr(loop, "save_checkpoint", real)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "resuming from epoch 1 of 2" in err and sum("] epoch " in line for line in err.splitlines()) == 1
    assert not list((tmp_path / "c").glob("train-*.pt"))


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == mode
