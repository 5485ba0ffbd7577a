"""The command line in an odd environment: empty variables, ``~`` in paths, names longer than the
file system allows, the reader of a pipe going away, a full disk, Ctrl-C in the first second.

Each runs the real command (a subprocess where the environment is the point: a pipe, a file-size
limit, a signal), on a small run folder made here from a seeded trace (``fit`` needs no training).
The property everywhere: exit 0, 2 or 130 with at most one error line and never a traceback; no
file lands where the user did not put it; nothing half-written is left.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnexit import environment
from snnexit.cli import main
from snnexit.errors import SnnexitError
from snnexit.runs.artifacts import POLICY_FILE
from run_folders import fit_folder

ROOT = Path(__file__).resolve().parents[1]


def snnexit(*args: str, **kwargs) -> subprocess.Popen:
    """``python -m snnexit ARGS`` in a subprocess (this worktree's package)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **kwargs.pop("env", {})}
    return subprocess.Popen([sys.executable, "-m", "snnexit", *args], env=env, **kwargs)


# ---- empty variables and ~ ---------------------------------------------------------------------
@pytest.mark.parametrize("value", ["", " ", "\t"])
def test_an_empty_cache_variable_is_an_unset_one(tmp_path, monkeypatch, value):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SNNEXIT_CACHE", value)
    assert environment.default_cache_dir() == tmp_path / "home" / ".cache" / "snnexit"  # never the current folder


def test_an_empty_home_is_the_accounts_home(monkeypatch):
    import pwd

    monkeypatch.setenv("HOME", "")
    monkeypatch.delenv("SNNEXIT_CACHE", raising=False)
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert environment.home() == home and environment.expand_user("~/x") == str(home / "x")
    assert environment.default_cache_dir() == home / ".cache" / "snnexit"


@given(path=st.sampled_from(["~", "~/", "~/a/b", "~/a b/~c", "x/~/y", "~no-such-user-3141/x", "", "a~"]),
       home=st.sampled_from(["/h", "/h/", "/home/someone else"]))
@settings(max_examples=40, deadline=None)
def test_tilde_expands_as_a_shell_expands_it(path, home):
    """``~`` at the start of a path only, ``HOME`` as a shell reads it (os.path.expanduser is the
    independent truth where HOME is set and not empty)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", home)
        assert environment.expand_user(path) == os.path.expanduser(path)


def test_a_real_stage_with_an_empty_cache_variable_and_tilde_in_its_config(tmp_path, monkeypatch):
    """SNNEXIT_CACHE="" and ``~`` in the TOML's paths: the trained ANN lands in the home's cache and
    the run folder under the home, nothing in the current folder."""
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SNNEXIT_CACHE", "")
    monkeypatch.chdir(work)
    (work / "my.toml").write_text('dataset = "digits"\nepochs = 1\nwidth = 4\nout = "~/runs/a"\n')
    assert main(["train", "--config", "my.toml", "--quiet"]) == 0
    assert (home / "runs" / "a" / "ann.safetensors").is_file()
    assert list((home / ".cache" / "snnexit").glob("ann-digits-*.safetensors"))
    assert sorted(p.name for p in work.iterdir()) == ["my.toml"]
    # a flag written --out=~/x (no shell expands it) and --cache-dir=~/c
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--width", "4", "--out=~/runs/b",
                 "--cache-dir=~/c", "--quiet"]) == 0
    assert (home / "runs" / "b" / "ann.safetensors").is_file() and list((home / "c").glob("ann-*"))
    assert sorted(p.name for p in work.iterdir()) == ["my.toml"]


# ---- names longer than the file system allows --------------------------------------------------
LONG = "a" * (environment.NAME_MAX + 45)


@pytest.mark.parametrize("argv", [
    ["run", "--dataset", "digits", "--out", LONG],
    ["run", "--dataset", "digits", "--out", f"x/{LONG}/y"],
    ["fit", "--out", LONG],
    ["run", "--dataset", "digits", "--config", LONG],
    ["run", "--dataset", "digits", "--cache-dir", LONG],
    ["run", "--dataset", "digits", "--calibration-inputs", LONG],
    ["compare", "--val", LONG, "--test", LONG, "--out", "x"],
    ["compare", "--run", LONG],
    ["export", "--in", LONG, "--out", "x.nir"],
    ["export", "--in", ".", "--out", LONG + ".nir"],
    ["bench", "--policy", LONG],
    ["bench", "--out", LONG],
    ["table", "--out", LONG],
    ["cutoff-train", "--out", LONG],
])
def test_a_name_longer_than_the_file_system_allows_is_one_line(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv + ["--quiet"])
    except SystemExit as exc:  # argparse: the flag's own check
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "bytes" in err.strip().splitlines()[-1] and f"allows {environment.NAME_MAX}" in err
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_names_of_the_limit_pass_and_a_nul_byte_is_refused(tmp_path):
    environment.check_path_name(tmp_path / ("b" * environment.NAME_MAX))
    with pytest.raises(SnnexitError, match="NUL byte"):
        environment.check_path_name("a\0b")
    with pytest.raises(SnnexitError, match="shorter than"):
        environment.check_path_name("a/" * environment.PATH_MAX)


def test_a_nul_byte_in_a_config_path_is_one_line(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('dataset = "digits"\nout = "a\\u0000b"\n')
    assert main(["run", "--config", str(tmp_path / "c.toml")]) == 2
    assert "contains a NUL byte" in capsys.readouterr().err


# ---- the reader of a pipe goes away ------------------------------------------------------------
def test_stdout_closed_by_its_reader_exits_0_quietly(tmp_path):
    """``snnexit fit ... | (close at once)``: the work is done, exit 0, no traceback on stderr."""
    folder = fit_folder(tmp_path / "run")
    proc = snnexit("fit", "--out", str(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away before the command prints anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "fit: done" in err  # the log goes on: only stdout is gone
    assert (folder / POLICY_FILE).is_file()


def test_a_reader_that_takes_one_line_then_closes(tmp_path):
    """``snnexit fit ... 2>&1 | head -1``: stdout and stderr in one pipe whose reader stops after a
    line; the command finishes its work and exits 0."""
    folder = fit_folder(tmp_path / "run")
    proc = snnexit("fit", "--out", str(folder), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = proc.stdout.readline().decode()
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0
    assert "fit: started" in first
    assert (folder / POLICY_FILE).is_file() and (folder / "config.fit.json").is_file()


def test_help_into_a_closed_pipe_exits_0():
    proc = snnexit("fit", "--help", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0 and "Traceback" not in err


# ---- a full disk: a file-size limit makes every write past it fail -----------------------------
def _file_size_limit(limit: int):
    def start():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return start


@pytest.mark.parametrize("limit", [0, 1000])
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, limit):
    folder = fit_folder(tmp_path / "run")
    before = {p.name for p in folder.iterdir()}
    proc = snnexit("fit", "--out", str(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   preexec_fn=_file_size_limit(limit))
    out, err = proc.communicate(timeout=300)
    err = err.decode()
    assert proc.returncode == 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("snnexit fit: error: ") and "File too large" in line and "Traceback" not in err
    assert not list(folder.glob(".*.tmp"))  # no temporary file left behind
    assert {p.name for p in folder.iterdir()} <= before | {".snnexit-folder"}  # nothing half-written appears


def test_a_full_disk_anywhere_in_the_work_is_one_line(tmp_path, monkeypatch, capsys):
    """A write that is not atomic_write's (a library's own file) meets a full disk: one line naming
    the file, exit 2, not a traceback."""
    import snnexit.runs.stages

    folder = fit_folder(tmp_path / "run")

    def full(_):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "somewhere.png"))

    monkeypatch.setitem(snnexit.runs.stages.STAGE_FUNCTIONS, "fit", full)
    assert main(["fit", "--out", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("snnexit fit: error: No space left on device") and "somewhere.png" in err
    assert len(err.splitlines()) == 1


def test_other_os_errors_keep_their_traceback(tmp_path, monkeypatch):
    """Only the environment's errors become one line: anything else is a bug, with its traceback."""
    import snnexit.runs.stages

    folder = fit_folder(tmp_path / "run")
    monkeypatch.setitem(snnexit.runs.stages.STAGE_FUNCTIONS, "fit",
                        lambda _: (_ for _ in ()).throw(OSError(errno.EBADF, "Bad file descriptor")))
    with pytest.raises(OSError):
        main(["fit", "--out", str(folder), "--quiet"])


# ---- Ctrl-C in the first second (while torch imports) ------------------------------------------
def sigint_as_in_a_terminal():
    """A child's SIGINT as a terminal leaves it: a harness that starts the tests in the background
    passes them SIGINT ignored, and Python (rightly) keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("delay", [0.1, 0.2, 0.3, 0.45, 0.6, 1.0])
def test_ctrl_c_in_the_first_second_says_interrupted(tmp_path, delay):
    """Whenever in the first second the Ctrl-C lands (inside torch's C++ initialisation, which once
    swallowed it and let the job run to the end, or in the first epoch on a fast machine), the
    command stops: exit 130, ``interrupted`` as the last line, no traceback, no abort."""
    proc = snnexit("run", "--dataset", "digits", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c"),
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=sigint_as_in_a_terminal)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 130 and lines[-1] == "interrupted", err.decode()[-2000:]
    assert all(line.startswith("[") for line in lines[:-1]), err.decode()[-2000:]  # log lines only


NOTED_THEN_RAISED = """
import os, signal
from snnexit import interrupt
interrupt.install()
os.kill(os.getpid(), signal.SIGINT)  # during the imports: noted, not raised
print("went on", interrupt.was_interrupted(), flush=True)
try:
    interrupt.raise_from_now_on()
except KeyboardInterrupt:
    print("raised when the imports were done", flush=True)
"""


def python_with_a_terminals_sigint(code: str) -> subprocess.CompletedProcess:
    """``python -c CODE`` with this worktree's package and a terminal's SIGINT; its text output."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=sigint_as_in_a_terminal)


def test_a_ctrl_c_during_the_imports_is_noted_and_raised_after_them():
    out = python_with_a_terminals_sigint(NOTED_THEN_RAISED)
    assert out.stdout.splitlines() == ["went on True", "raised when the imports were done"], out.stderr


RAISED_WHERE_IT_LANDS = """
import os, signal, time
from snnexit import interrupt
interrupt.install()
interrupt.raise_from_now_on()
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
    print("not raised")
except KeyboardInterrupt:
    print("raised")
"""


def test_a_ctrl_c_after_the_imports_raises_where_it_lands():
    out = python_with_a_terminals_sigint(RAISED_WHERE_IT_LANDS)
    assert out.stdout.strip() == "raised", out.stderr


# ---- the environment, fuzzed -------------------------------------------------------------------
ODD = ["", " ", "~", "~/", "~/cache", "~no-such-user-3141/x", "rel/cache", LONG, f"~/{LONG}", "/proc/snnexit/x"]


@given(cache=st.sampled_from(ODD + [None]), home=st.sampled_from(["<home>", "", LONG, "/nonexistent/home"]))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_the_cache_and_home_variables(tmp_path_factory, cache, home):
    """Whatever SNNEXIT_CACHE and HOME hold, a stage that checks the cache (train) passes its checks
    or exits 2 with one line; an empty or blank SNNEXIT_CACHE means the home's cache, never the
    current folder."""
    import snnexit.runs.stages

    root = tmp_path_factory.mktemp("env")
    home = str(root / "home") if home == "<home>" else home
    if home == "" and (cache is None or not cache.strip() or cache.startswith("~/") or cache == "~"):
        cache = str(root / "cache")  # else the account's real home would get the cache: keep to the sandbox
    reached, err = [], io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("HOME", home)
        if cache is None:
            mp.delenv("SNNEXIT_CACHE", raising=False)
        else:
            mp.setenv("SNNEXIT_CACHE", cache)
        mp.setitem(snnexit.runs.stages.STAGE_FUNCTIONS, "train", lambda r: reached.append(r.folder.path))
        with contextlib.redirect_stderr(err):
            code = main(["train", "--dataset", "digits", "--out", str(root / "run"), "--quiet"])
        used = environment.default_cache_dir()
        made = code == 0 and used.is_dir()  # relative to this folder
    assert code in (0, 2) and "Traceback" not in err.getvalue(), err.getvalue()
    if code == 2:
        assert len(err.getvalue().strip().splitlines()) == 1 and "cache folder" in err.getvalue()
    else:
        assert reached and made
    if cache is None or not cache.strip():
        assert used == Path(home) / ".cache" / "snnexit"
    if cache in ("~", "~/", "~/cache"):
        assert used == Path(home) / cache[2:]
    made_here = {p.name for p in root.iterdir()} - {"home", "run", "cache"}  # the sandbox's own
    assert made_here <= {"rel", "~no-such-user-3141"}  # only the relative caches asked for
