"""Hardening: SIGKILL during training resumes to the same result, atomic writes, checksummed and
versioned files that refuse truncated or foreign input, no unpickled code, and fuzzing of the
trace loader, the config loader and the policies' input validation."""

from __future__ import annotations

import ast
import errno
import io
import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from snnexit.cli import main
from snnexit.runs.config_file import load_config, settings_from_dict
from snnexit.errors import SnnexitError
from snnexit.exit import DynamicConfidence
from snnexit.io import atomic_write, check_output_file, check_output_folder, load_tensors, save_tensors, write_json
from snnexit.runs.settings import RunConfig, check_device, parameter_count
from snnexit.simulate.trace import TRACE_FORMAT, TRACE_VERSION, Trace
from snnexit.train import load_checkpoint
from snnexit.train.loop import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "snnexit"
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- SIGKILL during training ---------------------------------------------------------------
# The child runs `snnexit train` with a hook that stops it at a chosen point (mid-epoch, or
# half-way through writing a checkpoint) and tells the parent, which then kills it with SIGKILL.
CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import torch
    from snnexit.train import loop
    from snnexit.cli import main

    marker, where = Path(sys.argv[1]), sys.argv[2]
    # The parent's thread count: a different count sums in another order, and the rounding noise
    # in a conv bias before BatchNorm (exact gradient 0) is what Adam amplifies.
    torch.set_num_threads(int(os.environ["SNNEXIT_TEST_THREADS"]))

    def hang(note):
        marker.write_text(note)
        time.sleep(600)

    if where == "mid-epoch":  # stop after 2 batches of the 2nd epoch (the 1st is checkpointed)
        real_tqdm = loop.tqdm

        class Bar:
            def __init__(self, iterable, desc="", **kw):
                self.items, self.desc = iterable, desc
            def __iter__(self):
                for i, item in enumerate(self.items):
                    if self.desc.startswith("epoch 2/") and i == 2:
                        hang("mid-epoch")
                    yield item
            def set_postfix(self, **kw):
                pass

        loop.tqdm = Bar
    else:  # stop half-way through writing the 2nd epoch's checkpoint
        real_atomic_write = loop.atomic_write
        from contextlib import contextmanager

        @contextmanager
        def slow_atomic_write(path, mode="wb"):
            with real_atomic_write(path, mode) as f:
                class Half:
                    def write(self, data):
                        if Path(path).exists() and loop.load_checkpoint(path)["epoch"] == 1:
                            f.write(data[: len(data) // 2])
                            f.flush()
                            hang("mid-write")
                        f.write(data)
                yield Half()

        loop.atomic_write = slow_atomic_write
    sys.exit(main(sys.argv[3:]))
""")


def _train_args(out, cache):
    return ["train", "--dataset", "digits", "--epochs", "3", "--width", "8", "--no-progress",
            "--out", str(out), "--cache-dir", str(cache)]


def _weights(out) -> dict:
    return load_tensors(Path(out) / "ann.safetensors", fmt="ann", version=1)[0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    assert main(_train_args(tmp / "out", tmp / "cache")) == 0
    return _weights(tmp / "out")


@pytest.mark.parametrize("where", ["mid-epoch", pytest.param("mid-write", marks=pytest.mark.slow)])
def test_sigkill_during_training_resumes_to_the_same_result(tmp_path, uninterrupted, where):
    out, cache, marker = tmp_path / "out", tmp_path / "cache", tmp_path / "marker"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SNNEXIT_TEST_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, str(script), str(marker), where, *_train_args(out, cache)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "ann.safetensors").exists()
    (checkpoint,) = cache.glob("train-*.pt")
    assert load_checkpoint(checkpoint)["epoch"] == 1  # the last complete checkpoint survived intact
    if where == "mid-write":
        assert list(cache.glob(".train-*.tmp")), "the half-written checkpoint should be a temporary file"
    assert main(_train_args(out, cache)) == 0  # resumes from epoch 1
    resumed = _weights(out)
    assert resumed.keys() == uninterrupted.keys()
    for name, value in uninterrupted.items():
        assert torch.equal(resumed[name], value), name


# ---- atomic writes ------------------------------------------------------------------------------
WRITERS = {  # call -> index of its file argument
    "torch.save": 1, "np.save": 0, "np.savez": 0, "np.savez_compressed": 0, "numpy.save": 0, "savefig": 0,
    "nir.write": 0, "json.dump": 1, "pickle.dump": 1, "st_save_file": 1, "save_file": 1,
}
ALLOWED = {
    ("snnexit/runs/lock.py", "folder_lock"),  # created with O_EXCL (a rename would not exclude); never a result
    ("snnexit/data/sources.py", "_folder_lock"),  # an empty file to flock; never a result
    # downloads: the .part file is renamed to its name only when whole and verified; archive members are
    # written into a partial folder that is moved into place whole (snnexit.data.archives)
    ("snnexit/data/download.py", "_transfer"),
    ("snnexit/data/archives.py", "_write_member"),
}


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def non_atomic_writes(source: str, filename: str) -> list[str]:
    """Writes in ``source`` that bypass snnexit.io: open() for writing, write_text/write_bytes,
    shutil copies, and writers (torch.save, savefig, ...) whose target is not an in-memory
    buffer or a file opened by ``atomic_write``."""
    found = []
    tree = ast.parse(source)
    functions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)

    def own_nodes(scope):  # the nodes of a scope, not those of functions nested in it
        stack = list(ast.iter_child_nodes(scope))
        while stack:
            node = stack.pop()
            yield node
            if not isinstance(node, functions):
                stack.extend(ast.iter_child_nodes(node))

    for func in [tree] + [n for n in ast.walk(tree) if isinstance(n, functions[:2])]:
        nodes = list(own_nodes(func))
        safe = set()
        for node in nodes:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                    _dotted(node.value.func).endswith("BytesIO"):
                safe.update(t.id for t in node.targets if isinstance(t, ast.Name))
            if isinstance(node, ast.withitem) and isinstance(node.context_expr, ast.Call) and \
                    _dotted(node.context_expr.func).endswith("atomic_write") and \
                    isinstance(node.optional_vars, ast.Name):
                safe.add(node.optional_vars.id)
        name = getattr(func, "name", "<module>")
        if (filename, name) in ALLOWED:
            continue
        for node in nodes:
            if not isinstance(node, ast.Call):
                continue
            call = _dotted(node.func)
            where = (node.lineno, f"{filename}:{node.lineno} in {name}: {call}")
            if call == "open":
                mode = node.args[1] if len(node.args) > 1 else \
                    next((k.value for k in node.keywords if k.arg == "mode"), None)
                if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+"):
                    found.append(where)
            elif call.endswith((".write_text", ".write_bytes")) or call.startswith("shutil.") and \
                    call.split(".")[-1] in ("copy", "copy2", "copyfile", "move"):
                found.append(where)
            else:
                for writer, index in WRITERS.items():
                    if call == writer or call.endswith("." + writer) and writer == "savefig":
                        args = node.args
                        target = args[index] if len(args) > index else None
                        if not (isinstance(target, ast.Name) and target.id in safe):
                            found.append(where)
    return [text for _, text in sorted(set(found))]


def test_the_checker_finds_non_atomic_writes():
    bad = textwrap.dedent("""
        import torch, json
        def a(path, x):
            torch.save(x, path)
        def b(path):
            open(path, "w").write("x")
        def c(path):
            path.write_text("x")
        def d(path, obj):
            with open(path, "ab") as f:
                json.dump(obj, f)
        def good(path, x):
            buf = io.BytesIO()
            torch.save(x, buf)
            with atomic_write(path) as f:
                f.write(buf.getvalue())
                fig.savefig(f)
    """)
    found = non_atomic_writes(bad, "bad.py")
    assert [line.split(" in ")[1].split(":")[0] for line in found] == ["a", "b", "c", "d", "d"]


def test_every_writer_in_the_package_goes_through_snnexit_io():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "snnexit/io.py":
            continue
        found += non_atomic_writes(path.read_text(), rel)
    assert found == [], "files written without snnexit.io (atomic_write / write_json / save_tensors):\n" + \
        "\n".join(found)


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as f:
            f.write("half of the new cont")
            raise RuntimeError("crash while writing")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind


def test_atomic_write_names_a_folder_an_unwritable_place_and_a_full_disk(tmp_path):
    (tmp_path / "results.json").mkdir()
    with pytest.raises(SnnexitError, match=r"results.json is a folder, not a file$"):
        write_json(tmp_path / "results.json", {})
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SnnexitError, match=r"cannot write .*afile/x.json: its folder .*afile is a file, not a folder"):
        write_json(tmp_path / "afile" / "x.json", {})
    with pytest.raises(SnnexitError, match="cannot write /proc/snnexit-x.json: its folder /proc is not writable"):
        write_json("/proc/snnexit-x.json", {})
    path = tmp_path / "x.json"
    path.write_text("old")
    with pytest.raises(SnnexitError, match=r"cannot write .*x.json: No space left on device"), \
            atomic_write(path, "w") as f:
        f.write("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "results.json", "x.json"]  # no temporary file


@pytest.mark.parametrize("check,path,message", [
    (check_output_file, "<dir>", "output file {} is a folder, not a file"),
    (check_output_file, "", "output file: the name is empty; give a file"),
    (check_output_file, "/proc/x.nir", "cannot write output file /proc/x.nir: its folder /proc is not writable"),
    (check_output_file, "<file>/x.json", "its folder {}/afile is a file, not a folder"),
    (check_output_folder, "<file>", "output folder {} is a file, not a folder"),
    (check_output_folder, "<file>/a/b", "is not writable: {}/afile is a file, not a folder"),
    (check_output_folder, "/proc/snnexit-x", "output folder /proc/snnexit-x is not writable: cannot make it"),
    (check_output_folder, "", "output folder: the name is empty"),
])
def test_output_paths_are_checked_before_any_work(tmp_path, check, path, message):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    path = path.replace("<dir>", str(tmp_path / "adir")).replace("<file>", str(tmp_path / "afile"))
    with pytest.raises(SnnexitError) as info:
        check(path)
    assert message.format(path if "{}/" not in message else tmp_path) in str(info.value)
    assert check(tmp_path / "new" / "x") == tmp_path / "new" / "x"  # a good one passes (and its folder is made)


@pytest.mark.parametrize("device,message", [
    ("gpu0", "device 'gpu0' is not a torch device"),
    ("tpu", "device 'tpu' is not a torch device"),
    ("", "must name a torch device"),
    ("meta", "snnexit runs on cpu, cuda, mps, not meta"),
    ("cpu:1", "the CPU is cpu"),
    ("cuda:99", "cuda:99"),
])
def test_devices_are_checked_in_one_place(device, message):
    with pytest.raises(SnnexitError, match=re.escape(message)):
        check_device(device)
    assert check_device("cpu") == "cpu"


def test_width_too_large_for_memory_is_refused_and_counted_without_memory():
    from torch import nn

    from snnexit.models import create_model

    real = create_model("resnet20", num_classes=10, in_channels=1, input_size=8, activation=nn.ReLU, width=6)
    assert parameter_count("resnet20", 6) == sum(p.numel() for p in real.parameters())
    with pytest.raises(SnnexitError, match="width' = 100000 makes vgg_small too large to train here"):
        RunConfig(width=100_000).validate()
    RunConfig(width=64).validate()


@pytest.mark.parametrize("flags,message", [
    (["--cache-dir", "<file>"], "cache folder {} is a file, not a folder"),
    (["--cache-dir", "/proc/snnexit-cache"], "cache folder /proc/snnexit-cache is not writable"),
    (["--device", "gpu0"], "device 'gpu0' is not a torch device"),
    (["--out", "<file>"], "run folder {} is a file, not a folder"),
    (["--bits", "64"], "'bits' must lie in 1..16"),
])
def test_bad_input_fails_before_training(tmp_path, monkeypatch, capsys, flags, message):
    """Not the first epoch's end: the trainer is never called."""
    from snnexit.runs import stages

    def trainer(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(stages, "train_ann", trainer)
    monkeypatch.setattr(stages, "load_dataset", trainer)
    (tmp_path / "afile").write_text("x")
    flags = [f.replace("<file>", str(tmp_path / "afile")) for f in flags]
    argv = ["run", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "o"),
            "--cache-dir", str(tmp_path / "c"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(tmp_path / "afile") in err[0], err


def test_a_file_the_run_writes_that_is_a_folder_is_refused_before_training(tmp_path, monkeypatch, capsys):
    from snnexit.runs import stages

    monkeypatch.setattr(stages, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    for name in ("results.json", "fig3_pareto.png", "config.run.json", "trace_val.safetensors"):
        out = tmp_path / name.replace(".", "-")
        (out / name).mkdir(parents=True)
        assert main(["run", "--dataset", "digits", "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 2
        assert f"{out / name} is a folder, not a file" in capsys.readouterr().err


# ---- checksums, versions, foreign and truncated files -----------------------------------------
@pytest.fixture
def trace_file(tmp_path, make_trace):
    path = tmp_path / "trace.safetensors"
    make_trace(T=5, N=7, C=3, meta={"alpha": "t", "temperature": 1.5}).save(path)
    return path


def test_trace_files_refuse_truncation_corruption_and_foreign_files(trace_file, tmp_path):
    data = trace_file.read_bytes()
    assert Trace.load(trace_file).N == 7
    for cut in (0, 5, 8, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(SnnexitError, match="corrupt or truncated|not a valid"):
            Trace.load(bad)
    flipped = bytearray(data)
    flipped[-3] ^= 0x40  # a bit of the last tensor's payload
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(SnnexitError, match="checksum mismatch"):
        Trace.load(tmp_path / "flip.safetensors")
    (tmp_path / "plain.safetensors").write_bytes(st_save({"outputs": torch.zeros(2, 3, 4)}))
    with pytest.raises(SnnexitError, match="expected a snnexit trace file"):
        Trace.load(tmp_path / "plain.safetensors")
    save_tensors(tmp_path / "ann.safetensors", {"w": torch.ones(3)}, fmt="ann", version=1)
    with pytest.raises(SnnexitError, match="expected a snnexit trace file, found format 'ann'"):
        Trace.load(tmp_path / "ann.safetensors")
    save_tensors(tmp_path / "v9.safetensors", {"outputs": torch.zeros(2, 3, 4)}, fmt=TRACE_FORMAT, version=9)
    with pytest.raises(SnnexitError, match="version '9' is not supported"):
        Trace.load(tmp_path / "v9.safetensors")
    (tmp_path / "x.pt").write_bytes(pickle.dumps({"outputs": 1}))
    with pytest.raises(SnnexitError, match="not a valid snnexit trace file"):
        Trace.load(tmp_path / "x.pt")


def _checkpoint(tmp_path) -> Path:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    path = tmp_path / "train.pt"
    save_checkpoint(path, {"format": "snnexit-train", "version": 2, "epoch": 1, "config": {"epochs": 2},
                           "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": {}})
    return path


def test_checkpoint_with_a_flipped_bit_is_refused(tmp_path):
    """Regression: torch's zip format has no checksum of tensor bytes, so a corrupted checkpoint
    used to load silently with wrong weights."""
    path = _checkpoint(tmp_path)
    state = load_checkpoint(path)
    data = bytearray(path.read_bytes())
    weight = state["model"]["weight"].numpy().tobytes()
    at = bytes(data).find(weight)
    assert at > 0
    data[at + 1] ^= 0x01
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=True)["model"]["weight"], state["model"]["weight"])
    with pytest.raises(SnnexitError, match="checksum mismatch"):
        load_checkpoint(path)


def test_checkpoints_refuse_truncated_foreign_and_old_files(tmp_path):
    path = _checkpoint(tmp_path)
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(SnnexitError, match="cannot load checkpoint"):
            load_checkpoint(path)
    foreign = tmp_path / "qcfs_authors.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), foreign)  # a plain state_dict
    with pytest.raises(SnnexitError, match="not a snnexit training checkpoint"):
        load_checkpoint(foreign)
    old = tmp_path / "old.pt"
    torch.save({"format": "snnexit-train", "version": 1, "epoch": 1}, old)
    with pytest.raises(SnnexitError, match="version 1 is not supported"):
        load_checkpoint(old)
    incomplete = tmp_path / "incomplete.pt"
    save_checkpoint(incomplete, {"format": "snnexit-train", "version": 2, "epoch": "1"})
    with pytest.raises(SnnexitError, match="lacks a valid 'epoch'"):
        load_checkpoint(incomplete)


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_with_a_code_payload_is_refused_and_never_run(tmp_path):
    target = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    buf = io.BytesIO()
    torch.save({"format": "snnexit-train", "version": 2, "x": _Payload(target)}, buf)  # torch's zip format
    for blob in (buf.getvalue(), pickle.dumps({"format": "snnexit-train", "x": _Payload(target)})):
        evil.write_bytes(blob)
        with pytest.raises(SnnexitError, match="cannot load checkpoint"):
            load_checkpoint(evil)
        with pytest.raises(SnnexitError):
            Trace.load(evil)
        assert not target.exists()


def test_stage_with_a_truncated_input_file_exits_2(tmp_path, capsys):
    from snnexit.runs.artifacts import SNN_FILE

    out = tmp_path / "run"
    out.mkdir()
    save_tensors(out / SNN_FILE, {"w": torch.ones(2)}, fmt="snn", version=1, meta={})
    data = (out / SNN_FILE).read_bytes()
    (out / SNN_FILE).write_bytes(data[: len(data) - 4])
    assert main(["trace", "--dataset", "digits", "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "snn.safetensors" in err and "corrupt or truncated" in err


# ---- fuzzing ----------------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_fuzz_trace_loader_with_mutated_files(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("fuzz")
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 1000)))
    trace = Trace(torch.randn(3, 4, 3, generator=g).cumsum(0), torch.tensor([0, 1, 2, 0]),
                  torch.rand(3, 4, 2, generator=g), {"alpha": "t"})
    path = tmp / "t.safetensors"
    trace.save(path)
    blob = bytearray(path.read_bytes())
    kind = data.draw(st.sampled_from(["truncate", "flip", "splice", "random"]))
    if kind == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            blob[data.draw(st.integers(0, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
    elif kind == "splice":
        at = data.draw(st.integers(0, len(blob)))
        blob[at:at] = data.draw(st.binary(min_size=1, max_size=32))
    else:
        blob = bytearray(data.draw(st.binary(max_size=200)))
    path.write_bytes(bytes(blob))
    try:
        loaded = Trace.load(path)
    except SnnexitError:
        return
    assert isinstance(loaded, Trace)  # a harmless change (e.g. in header padding) may still load


def mostly(good, bad):
    """Draw from ``good`` seven times in eight, so that many fuzz inputs get past the first check."""
    return st.integers(0, 7).flatmap(lambda i: bad if i == 0 else good)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() |
                           st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4),
                           max_leaves=10)


@FUZZ
@given(meta=mostly(st.fixed_dictionaries({}, optional={"alpha": mostly(st.just("t") | st.floats(0.5, 8), json_values),
                                                      "temperature": mostly(st.floats(0.01, 100), json_values)}),
                   json_values),
       T=mostly(st.integers(1, 3), st.just(0)), C=mostly(st.integers(2, 4), st.just(1)),
       extra_dim=mostly(st.just(False), st.just(True)),
       dtype=mostly(st.sampled_from([torch.float32, torch.float16, torch.float64]),
                    st.sampled_from([torch.int64, torch.uint8, torch.bool])),
       labels=mostly(st.lists(st.integers(0, 1), min_size=1, max_size=4), st.lists(st.integers(-1, 4), max_size=4)),
       spikes=mostly(st.sampled_from(["ok", "none"]), st.just("bad")))
def test_fuzz_trace_loader_with_well_formed_files_of_bad_content(tmp_path_factory, meta, T, C, extra_dim, dtype,
                                                                  labels, spikes):
    """Checksum and format are right, but tensors and metadata are anything."""
    path = tmp_path_factory.mktemp("fuzz") / "t.safetensors"
    shape = (T, len(labels), C) + ((2,) if extra_dim else ())
    tensors = {"outputs": (torch.arange(math.prod(shape)) % 5).reshape(shape).to(dtype),
               "labels": torch.tensor(labels, dtype=torch.int64)}
    if spikes != "none":
        tensors["spikes"] = torch.ones(T, len(labels), 2) if spikes == "ok" else torch.ones(3)
    save_tensors(path, tensors, fmt=TRACE_FORMAT, version=TRACE_VERSION, meta=None)
    blob = path.read_bytes()  # put arbitrary JSON where the metadata goes
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    header["__metadata__"]["meta"] = json.dumps(meta, allow_nan=True)
    new = json.dumps(header).encode()
    path.write_bytes(len(new).to_bytes(8, "little") + new + blob[8 + n :])
    try:
        trace = Trace.load(path)
    except SnnexitError:
        return
    _fit_and_use(trace)


def _fit_and_use(trace):
    try:
        policy = DynamicConfidence().fit(trace)
    except SnnexitError:
        return
    steps = policy.exit_steps(trace)
    assert steps.shape == (trace.N,) and int(steps.min()) >= 1 and int(steps.max()) <= trace.T
    policy.evaluate(trace)


@FUZZ
@given(T=mostly(st.integers(1, 4), st.just(0)), N=mostly(st.integers(1, 4), st.just(0)),
       C=mostly(st.integers(2, 4), st.integers(0, 1)),
       dtype=mostly(st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64]),
                    st.sampled_from([torch.int32, torch.bool, torch.complex64])),
       special=mostly(st.sampled_from([None, 1e38, -1e38, 0.0, 1e-30]), st.sampled_from([math.nan, math.inf])),
       label_dtype=mostly(st.sampled_from([torch.int64, torch.int32, torch.uint8]), st.just(torch.float32)),
       label_shift=mostly(st.just(0), st.integers(-2, 5)),
       spikes=mostly(st.sampled_from(["ok", "none", "nan"]), st.sampled_from(["wrong_shape", "list"])),
       meta=mostly(st.fixed_dictionaries({}, optional={"alpha": mostly(st.just("t"), json_values),
                                                       "temperature": mostly(st.floats(0.01, 100), json_values),
                                                       "neurons_per_layer": json_values}), json_values))
def test_fuzz_trace_construction_and_dynamic_confidence_fit(T, N, C, dtype, special, label_dtype, label_shift,
                                                            spikes, meta):
    g = torch.Generator().manual_seed(T * 100 + N * 10 + C)
    outputs = (torch.randn(T, N, C, generator=g) * 3).to(dtype)
    if special is not None and outputs.numel() and outputs.is_floating_point():
        outputs.view(-1)[0] = special
    labels = torch.tensor([(n + label_shift) % (C + 1 if label_shift else max(C, 1)) - (label_shift < 0)
                           for n in range(N)], dtype=torch.int64).to(label_dtype)
    spike_value = {"ok": torch.ones(T, N, 2), "none": None, "wrong_shape": torch.ones(T + 1, N, 2),
                   "list": [[1.0]], "nan": torch.full((T, N, 1), math.nan)}[spikes]
    try:
        trace = Trace(outputs, labels, spike_value, meta)
    except SnnexitError:
        return
    _fit_and_use(trace)


toml_keys = st.sampled_from(["dataset", "model", "T", "epochs", "seed", "out", "levels", "init_threshold", "converter",
                             "batch_size", "lr", "width", "device", "progress", "extra", "fit", "trace", "target",
                             "threshold", "temperature", "eps", "batch_size", "bogus", "format"]) | st.text(max_size=6)


@FUZZ
@given(values=st.dictionaries(toml_keys, json_values | st.dictionaries(toml_keys, json_values, max_size=4),
                              max_size=6))
def test_fuzz_config_mappings(values):
    try:
        settings = load_config(None, values)
    except SnnexitError:
        return
    settings_from_dict(settings.to_dict())  # what it saves loads back


@FUZZ
@given(text=st.text(max_size=200) | st.sampled_from([
    'T = 3\n[fit]\ntarget = "max_drop"\neps = 0.5\n', 'T = 1e400', 'lr = inf', 'lr = nan', 'T = -1',
    '[fit]\nthreshold = nan', 'width = 0', '[[fit]]\nx = 1', 'trace = 3', 'extra = {a = 1}', 'T = "3"',
    'T = 9999999999999999999', 'dataset = "digits"\nmodel = ""', 'device = "cuda:7"', 'seed = 1979-05-27']),
       suffix=st.sampled_from([".toml", ".json"]))
def test_fuzz_config_files(tmp_path_factory, text, suffix):
    path = tmp_path_factory.mktemp("cfg") / f"c{suffix}"
    path.write_text(text)
    try:
        load_config(path)
    except SnnexitError:
        pass


def test_fuzzers_reject_what_they_should(tmp_path):
    """The fuzz tests above pass when errors are SnnexitErrors; here the messages themselves."""
    with pytest.raises(SnnexitError, match="trace meta must be a dict"):
        Trace(torch.zeros(2, 3, 4), torch.zeros(3, dtype=torch.long), None, [1])
    with pytest.raises(SnnexitError, match="trace spikes must be a tensor"):
        Trace(torch.zeros(2, 3, 4), torch.zeros(3, dtype=torch.long), [[1.0]], {})
    with pytest.raises(SnnexitError, match="temperature must be a positive number"):
        Trace(torch.zeros(2, 3, 4), torch.zeros(3, dtype=torch.long), None, {"temperature": "hot"})
