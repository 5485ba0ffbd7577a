"""The README is true: its Python snippet runs as written, and every ``snnexit`` command it
shows is one the command line accepts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_python_snippet_runs_as_written(tmp_path):
    block = "\n".join(python_blocks())  # later snippets continue the first one
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "SNNEXIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", proc.stdout).group(1))
    assert accuracy > 0.8, proc.stdout
    eps, disagreement = map(float, re.search(r"<= ([0-9.]+)% of new inputs \(95%\); on test ([0-9.]+)%",
                                             proc.stdout).groups())
    assert 0 < eps < 5 and 0 <= disagreement <= 100, proc.stdout


def readme_commands() -> list[str]:
    """Every ``snnexit ...`` command in the README's code blocks and inline code."""
    found = []
    for block in re.findall(r"```(?:\w*)\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("snnexit "):
                found.append(line)
    for inline in re.findall(r"`(snnexit [^`]+)`", README):
        found.append(inline)
    return found


# usage synopses with placeholders, and option lists written as alternatives
PLACEHOLDER = re.compile(r"[\[\]{}|]|\.\.\.|\bCOMMAND\b|NAME|PATH|FILE|\bDIR\b")


def test_every_readme_command_is_accepted_by_the_cli():
    from snnexit.cli import build_parser

    commands = [c for c in readme_commands() if not PLACEHOLDER.search(c)]
    assert len(commands) >= 10
    parser = build_parser()
    for command in commands:
        argv = shlex.split(command)[1:]
        if {"--version", "--help", "-h"} & set(argv):
            with pytest.raises(SystemExit) as exit_info:
                parser.parse_args(argv)
            assert exit_info.value.code == 0, command
            continue
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"README command does not parse: {command} ({exc})")
        assert callable(args.func), command


def test_flags_in_readme_synopses_exist():
    """Usage lines with placeholders: the command exists and every ``--flag`` is one of its options."""
    from snnexit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in readme_commands():
        words = command.split()
        if not PLACEHOLDER.search(command) or words[1] == "COMMAND":
            continue
        options = {o for a in sub.choices[words[1]]._actions for o in a.option_strings}
        for flag in re.findall(r"(--[a-z][a-z-]*)", command):
            assert flag in options, f"{flag} in README line {command!r} is not an option of snnexit {words[1]}"


# fast settings appended to the README's commands (later flags win), so each runs on digits in seconds
FAST = {
    "run": ["--dataset", "digits", "--epochs", "1", "--T", "4", "--width", "4"],
    "table": ["--datasets", "digits", "--models", "vgg_small", "--epochs", "1", "--width", "4", "--T-qcfs", "4",
              "--T-qffs", "4"],
    "bench": ["--dataset", "digits", "--epochs", "1", "--T", "4", "--latency-inputs", "4", "--repeats", "1",
              "--batch-size", "32", "--out", "bench.json"],
    "cutoff-train": ["--dataset", "digits", "--epochs", "1", "--width", "4", "--T", "2"],
    "export": ["--threshold-scale", "0.8"],
    "compare": ["--run", "runs/default"],  # prose names it bare: "`snnexit compare` shows every policy"
}
MY_TOML = 'dataset = "digits"\nepochs = 1\nT = 4\nwidth = 4\n'


def write_outputs_from_elsewhere(folder: Path, T: int = 4, C: int = 10) -> None:
    """``val.npz`` and ``test.npz`` as the README's "Outputs from anywhere" asks for them: per-step
    outputs ``(T, N, C)`` of a network that gets better with time, labels on validation only."""
    import numpy as np

    g = np.random.default_rng(0)
    for name, n in (("val", 600), ("test", 400)):
        labels = g.integers(0, C, n)
        outputs = g.normal(size=(T, n, C)) + 1.5 * np.eye(C)[labels][None]
        np.savez(folder / f"{name}.npz", outputs=outputs.astype(np.float32),
                 **({"labels": labels} if name == "val" else {}))


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path, monkeypatch):
    """Each ``snnexit`` command of the README (the usage synopses aside), in the order a reader
    meets them, in a fresh folder with ``my.toml`` and fast settings appended."""
    from snnexit.cli import main

    monkeypatch.chdir(tmp_path)
    cache = str(tmp_path / "cache")
    monkeypatch.setenv("SNNEXIT_CACHE", cache)
    (tmp_path / "my.toml").write_text(MY_TOML)
    for line in sorted(set(re.findall(r"^\.venv/bin/python (examples/\S+\.py[^\n#]*)", README, flags=re.M))):
        # the README's examples make files its commands read (snntorch_digits.nir): run them first
        script, *args = shlex.split(line)
        args = ["bench.json" if a.startswith("benchmarks/results/") else a for a in args]
        proc = subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                              timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, f"{line}: {proc.stderr[-2000:]}"
    write_outputs_from_elsewhere(tmp_path)
    commands = list(dict.fromkeys(c for c in readme_commands() if not PLACEHOLDER.search(c)))
    first = [c for c in commands if c == "snnexit run"]  # the run folder others read
    for command in first + [c for c in commands if c not in first]:
        argv = shlex.split(command)[1:]
        extra = FAST.get(argv[0], []) if "--config" not in argv else []
        if "--nir" in argv:  # an imported network trains nothing: training flags are refused as idle
            extra = ["--T", "4"]
        if argv[0] == "export" and "hard-reset" not in argv:
            extra = []  # --threshold-scale is for the hard-reset variant only (refused with exact)
        if "--version" in argv or "--help" in argv:
            with pytest.raises(SystemExit):
                main(argv)
            continue
        assert main(argv + extra + ["--quiet"]) == 0, command


def test_the_speed_tables_are_rendered_from_the_benchmark_jsons():
    """The README's speed tables at the sizes users run are benchmarks/speed_tables.py's rendering
    of the committed JSONs, cell for cell."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import speed_tables
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rendered = [speed_tables.bench_table(), speed_tables.race_table(), speed_tables.budget_table()]
    with_rows = [table for table in rendered if table.count("\n") >= 2]
    assert with_rows, "no bench_<workload>.json or speed_race_<workload>.json in benchmarks/results"
    for table in with_rows:
        assert table in README, f"README lacks the table {table.splitlines()[0][:60]}... as rendered from the JSONs"
