"""Fuzzing the command line: every command, flags drawn from its own argparse parser.

Each example is an argument vector for one command: a valid base (``--dataset digits``, a fresh
``--out``, a tmp ``--cache-dir``) with flags drawn from the command's parser (its actions, as
:func:`snnexit.cli.build_parser` registers them), each with a value of one of three kinds:

* **good**: valid in any combination with the base and the other good values;
* **bad**: certainly refused (nan, negative, huge, a file where a folder goes, a folder where a
  file goes, a place under ``/proc``, a device this machine lacks, a flag the stage does not use);
* **junk**: anything else (random text, values whose validity depends on other flags).

``snnexit.cli.main(argv)`` runs in process with the expensive work (training, tracing, fitting,
timing, data loading) replaced by stubs that raise :class:`Reached`. The property:

* nothing raises but :class:`Reached` (no traceback, whatever the input), and exit codes are 0 or 2;
* an exit code 2 comes with one error line on stderr, the last one;
* good input reaches the work; bad input exits 2 and never reaches it; junk may do either.

A flag the tables below do not know fails the test: a new flag gets its values here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import snnexit.cli.compare
import snnexit.cli.cutoff
import snnexit.cli.table
import snnexit.experiments.bench
import snnexit.runs.exportable
import snnexit.runs.outputs
import snnexit.runs.stages
from snnexit.cli import COMMANDS, build_parser, main
from snnexit.cli.stages import EVERY_STAGE, USES
from snnexit.io import save_tensors
from snnexit.runs.artifacts import SNN_FORMAT, SNN_VERSION, STAGES
from snnexit.simulate.trace import Trace
from test_nir_run import digits_mlp

SECONDS_PER_EXAMPLE = 10.0  # the checks are cheap: an example that takes longer did real work
FAST = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
MANY = settings(max_examples=int(os.environ.get("SNNEXIT_FUZZ_EXAMPLES", "400")), deadline=None,
               suppress_health_check=list(HealthCheck))  # per command; more with SNNEXIT_FUZZ_EXAMPLES


class Reached(Exception):
    """Raised by the stubs of the expensive work: the command got past its checks."""


def _stub(name):
    def stub(*args, **kwargs):
        raise Reached(name)

    return stub


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The files and folders the paths are drawn from, and the stubs, for the whole module."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "afile").write_text("x")
    (root / "adir").mkdir()
    (root / "cache").mkdir()
    (root / "good.toml").write_text('dataset = "digits"\nepochs = 2\n')
    (root / "bad.toml").write_text("dataset = [\n")
    np.save(root / "calibration.npy", np.zeros((4, 1, 8, 8), dtype=np.float32))
    (root / "empty.npy").write_bytes(b"")
    np.savez(root / "archive.npz", x=np.zeros((4, 1, 8, 8), dtype=np.float32))
    (root / "deep.json").write_text("[" * 100_000)  # nested past Python's recursion limit
    (root / "deep.toml").write_text("a = " + "[" * 100_000)
    (root / "home").mkdir()  # HOME: where ~ leads
    (root / "userdir").mkdir()  # a folder snnexit did not write, holding a user's own file of a name it writes
    (root / "userdir" / "report.md").write_text("# my notes\n")
    digits_mlp(root / "mlp.nir")  # a NIR graph written as snnTorch writes one (flat digits inputs)
    g = np.random.default_rng(0)
    np.savez(root / "val.npz", outputs=g.normal(size=(6, 40, 3)), labels=g.integers(0, 3, 40))
    np.savez(root / "test.npz", outputs=g.normal(size=(6, 30, 3)))
    run = root / "run"  # a finished run: results.json names its settings, its network for export, traces for compare
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"config": {"dataset": "digits", "model": "vgg_small"}}))
    save_tensors(run / "snn.safetensors", {"snn.x": torch.zeros(1)}, fmt=SNN_FORMAT, version=SNN_VERSION,
                 meta={"config": {"dataset": "digits", "model": "vgg_small"}, "converter": "qcfs", "snn_meta": {}})
    g = torch.Generator().manual_seed(0)
    for name in ("trace_val.safetensors", "trace_test.safetensors"):
        Trace(torch.randn(4, 12, 3, generator=g).cumsum(0), torch.randint(0, 3, (12,), generator=g), None,
              {"alpha": "T"}).save(run / name)
    build_parser("*")  # import every command's module before the clock starts
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # junk --out values are relative paths: whatever they create stays in the sandbox
        mp.setenv("HOME", str(root / "home"))  # ~ in a path leads into the sandbox too
        mp.setattr(snnexit.runs.stages, "_chain", _stub("run"))
        for stage in STAGES:
            mp.setitem(snnexit.runs.stages.STAGE_FUNCTIONS, stage, _stub(stage))
        mp.setattr(snnexit.cli.compare, "compare_policies", _stub("compare"))
        mp.setattr(snnexit.cli.table, "run_grid", _stub("table"))
        mp.setattr(snnexit.experiments.bench, "load_dataset", _stub("bench"))
        mp.setattr(snnexit.cli.cutoff, "single_run", _stub("cutoff-train"))
        mp.setattr(snnexit.cli.cutoff, "cutoff_table", _stub("cutoff-train"))
        mp.setattr(snnexit.runs.exportable, "load_dataset", _stub("export"))
        mp.setattr(snnexit.runs.exportable, "load_converted", _stub("export"))  # a run folder's network
        mp.setattr(snnexit.runs.outputs, "certify_outputs", _stub("certify"))
        mp.setattr(snnexit.runs.stages, "load_dataset", _stub("data loading past the stubs"))
        yield {"root": root, "count": itertools.count()}


# ---- the values --------------------------------------------------------------------------------
# Symbolic paths, made concrete per example: "<fresh>" is a new path under the sandbox each time.
FILE, FOLDER, FRESH, PROC = "<file>", "<folder>", "<fresh>", "<proc>"
HOME_FRESH = "~/<n>"  # a fresh path under HOME, given with ~ (in --out=~/x no shell expands it)
LONG = "a" * 300  # a name longer than NAME_MAX (255 bytes): ENAMETOOLONG from the first stat
DEEP = "<deep.json>"
CUDA = torch.cuda.is_available()
GOOD_DEVICES = ["cpu"] + (["cuda", "cuda:0"] if CUDA else [])
BAD_DEVICES = ["gpu0", "tpu", "cuda:99", "meta", "", "CPU"] + ([] if CUDA else ["cuda", "cuda:0"])
NOT_INT = ["x", "1.5", "1e3", ""]
NOT_NUMBER = ["x", "", "1,2"]
NON_FINITE = ["nan", "inf", "-inf", "1e400"]
OUT_FOLDER = {"good": [FRESH, HOME_FRESH], "bad": [FILE, PROC, f"{FILE}/sub", LONG, f"{FRESH}/{LONG}/x"]}
OUT_FILE = {"good": [FRESH + ".json", HOME_FRESH + ".json"], "bad": [FOLDER, PROC + "/x.json", "", f"{FILE}/x.json",
                                                                 LONG + ".json"]}
CACHE = {"good": ["<cache>", FRESH, HOME_FRESH], "bad": [FILE, PROC, "", f"{FILE}/sub", LONG]}


def ints(good, bad=(), junk=()):
    return {"good": [str(v) for v in good], "bad": [str(v) for v in bad] + NOT_INT, "junk": [str(v) for v in junk]}


def floats(good, bad=(), junk=()):
    return {"good": [str(v) for v in good], "bad": [str(v) for v in bad] + NON_FINITE + NOT_NUMBER,
            "junk": [str(v) for v in junk]}


def names(good, bad=("bogus", ""), junk=()):
    return {"good": list(good), "bad": list(bad), "junk": list(junk)}


# dest -> values, for the run settings (run and the stages) and shared flags
COMMON = {
    "dataset": names(["digits", "mnist5k"], junk=["event_mnist", "cifar10"]),
    "model": names(["vgg_small", "resnet20"], ["alexnet", ""]),
    "T": ints([4, 32], [0, -1, 100_001, 10 ** 30]),
    "epochs": ints([1, 3], [0, -1, 100_001]),
    "seed": ints([0, 12345], [-1, 2 ** 63]),
    "levels": ints([1, 4, 16], [0, -2, 70_000]),  # the base's quantizer is qcfs: L is read
    "converter": names(["qcfs"], ["magic", ""], junk=["qffs", "max", "robust"]),
    "conversion_fix": names(["none", "step_bias"], ["ftbc", ""], junk=["mean_bias"]),
    "conversion_fix_inputs": ints([1, 256], [0, -1, 2_000_000]),
    "ann_event_input": names(["prefix_means", "mean_frame"], ["sum", ""]),
    "width": ints([4, 16], [0, -3, 100_000, 10 ** 7]),
    "lr": floats([0.002, 0.1], [0, -1, 11]),
    "batch_size": ints([8, 64], [0, -1, 2_000_000]),
    "cache_dir": CACHE,
    "data_dir": {"good": [], "bad": [FOLDER, FRESH], "junk": [FILE, ""]},  # the data sets drawn are built in
    "download": {},  # a switch, refused: the data sets drawn are built in (REFUSED_SWITCHES)
    "device": {"good": GOOD_DEVICES, "bad": BAD_DEVICES},
    "init_threshold": floats([1, 8], [0, -1, 2e6]),
    "quantizer": names(["qcfs"], ["bogus", ""], junk=["lsq", "relu", "clip"]),  # lsq: --L would be refused
    "bits": ints([], [0, 17, 64], junk=[2, 8]),  # read by lsq only: refused with the base's qcfs
    "out": OUT_FOLDER,
    "config": {"good": ["<good.toml>"], "bad": [FOLDER, "<missing>", "<bad.toml>", FILE, "", DEEP, "<deep.toml>", LONG]},
    "progress": {},
    "overwrite": {},
    "quiet": {},
    "trace.batch_size": ints([1, 250], [0, -5, 2_000_000]),
    "fit.policy": names(["dynamic_confidence"], junk=["topk", "fixed", "conformal", "oracle"]),
    "fit.target": names(["no_loss"], junk=["max_drop", "max_steps", "risk", "coverage"]),
    "fit.threshold": floats([0.9, 0.5, -1]),
    "fit.temperature": floats([1.5], [-1, 0]),
    # read by some targets only: refused with the base's no_loss (a junk --target may make them valid)
    "fit.eps": floats([], [2, -0.1, 0.01, 0.5]),
    "fit.max_steps": floats([], [0, -1, 3, 1]),
    "fit.delta": floats([], [0, 1, 2, 0.1]),
    "fit.options": {"good": ["use_alpha=true"], "bad": ["k=3", "x", "=3", "1x=2"]},
    "certify.eps": floats([0.05], [0, 1, 2]),
    "certify.delta": floats([0.05], [0, 1, -1]),
    "certify.policies": names(["all", "topk", "dynamic_confidence,entropy"], ["", "bogus", ","]),
    "certify.calibration_inputs": {"good": ["<calibration.npy>"], "bad": ["<missing>", FOLDER, "", "<empty.npy>",
                                                                     "<archive.npz>", DEEP, LONG]},
    # the base reads NIR files as snnTorch does: the graph's LIF nodes need a reader that has them
    "nir": {"good": ["<mlp.nir>"], "bad": ["<missing>", FOLDER, FILE, "", LONG]},
    "semantics": names(["snntorch", "norse"], ["bogus", ""], junk=["nir", "snnexit", "sinabs", "spikingjelly"]),
    "dt": {"good": [], "bad": ["0", "-1"] + NON_FINITE + NOT_NUMBER, "junk": ["0.001", "1", "1e-4"]},
}
NPZ = {"good": ["<val.npz>"], "bad": ["<missing>", FOLDER, FILE, "<test.npz>"]}  # test.npz has no labels
PER_COMMAND = {
    "compare": {
        "run": {"good": ["<run>"], "bad": ["<missing>", FOLDER, FILE, LONG]},
        "val": {"good": [], "bad": ["<run>/trace_val.safetensors", "<missing>", FILE, LONG]},  # --run is in the base
        "test": {"good": [], "bad": ["<run>/trace_test.safetensors", "<missing>", FILE, LONG]},
        "out": {"good": [FRESH, HOME_FRESH], "bad": [FILE, PROC, f"{FILE}/sub", LONG]},
        "policies": names(["dynamic_confidence", "fixed,oracle", "topk"], ["bogus", ",", "fixed,bogus"]),
        "target": names(["no_loss"], ["bogus", ""], junk=["max_drop", "max_steps", "risk"]),  # they need --eps ...
        "eps": floats([], [2, -0.1, 0.01, 0.5]),  # with the base's target no_loss: does nothing, refused
        "max_steps": floats([], [0, -1, 3, 1]),
        "delta": floats([], [0, 1, 0.1]),
        "risk": {"good": ["0.1 0.1"], "bad": ["2 0.1", "nan 0.5", "0.1", "x y"]},
    },
    "table": {
        "datasets": {"good": ["digits", "digits mnist5k"], "bad": ["bogus", "digits bogus"]},
        "models": {"good": ["vgg_small", "vgg_small resnet20"], "bad": ["alexnet", "vgg_small alexnet"]},
        "converters": {"good": ["qcfs qffs"], "bad": ["max", "bogus"], "junk": ["qcfs"]},  # qcfs: --T-qffs refused
        "bits": ints([1, 2, 8], [0, 17, -1]),
        "epochs": ints([1, 3], [0, -1, 100_001]),
        "T_qcfs": ints([8, 32], [0, 100_001]),
        "T_qffs": ints([4, 16], [0, 100_001]),
        "overwrite": {},
        "seed": ints([0, 7], [-1, 2 ** 63]),
        "threads": ints([1, 2], [0, -1, 100_000]),
    },
    "bench": {
        "out": OUT_FILE,
        "T": ints([4, 32], [0, 100_001]),
        "epochs": ints([1, 30], [0, -1, 100_001]),
        "seed": ints([0, 7], [-1, 2 ** 63]),
        "policy": names(["dynamic_confidence", "topk"], ["oracle", "oracle_stable", "bogus", ""]),
        "latency_inputs": ints([1, 200], [0, -3]),
        "batch_size": ints([1, 256], [0, -1]),
        "throughput_inputs": ints([10], [0]),
        "check_inputs": ints([1, 64], [0, -2]),
        "repeats": ints([1, 5], [0, 5000]),
        "threads": ints([1, 2], [0, 100_000]),
        "workload": names(["default"], ["vgg17", "", "Default"], junk=["vgg16", "resnet20", "event_cnn"]),
        "batch_sizes": ints([1, 16], [0, -1]),
        "thread_counts": {"good": ["1", "all"], "bad": ["0", "-1", "100000", "most"] + NOT_INT},
        "floor": {},
        "busy": {},
        "busy_inputs": ints([1, 20], [0]),
        "energy": names(["fp32", "int8", "4.6,0.9"], ["fp64", "1,2,3", "nan,1", "-1,1", "inf,1", ""]),
        "devices": {"good": GOOD_DEVICES, "bad": BAD_DEVICES},
    },
    "cutoff-train": {
        "width": ints([4, 8], [0, 100_000]),
        "init": names(["scratch"], junk=["converted"]),  # converted: --epochs, --lr, --neuron ... refused
        "neuron": names(["lif"], junk=["if"]),  # if: --tau refused
        "reset": names(["soft", "hard"]),
        "tau": floats([2, 1.5], [0.5, -1, 0]),
        "surrogate": names(["triangle", "sigmoid", "atan"]),
        "T": ints([2, 8], [0, -1, 100_001]),
        "epochs": ints([1], [-1, 100_001], junk=[0]),  # 0 from scratch trains nothing (refused) unless --table
        "finetune_epochs": ints([], [-1], junk=[0, 2]),  # read with --table or --init converted only
        "loss": names(["tet", "mean"]),
        "reg_weight": {"good": ["0", "0.1"], "bad": ["nan", "-1", "x", "inf"], "junk": ["0.1,0.2", ""]},
        "lr": floats([0.01], [0, -1, 11]),
        "finetune_lr": floats([], [0, -1, 11], junk=[0.002]),  # read with --table or --init converted only
        "ann_epochs": ints([], [-1], junk=[0, 1, 15]),  # read with --init converted only
        "seed": ints([0, 3], [-1, 2 ** 63]),
        "table": {},
    },
    "certify": {
        "val": NPZ,
        "test": {"good": ["<test.npz>"], "bad": ["<missing>", FOLDER, FILE, "<val.npz>", LONG]},  # val.npz: the base's --val
        "calibration": {"good": ["<test.npz>"], "bad": ["<missing>", FOLDER, FILE, LONG]},
        "outputs": names(["per-step", "accumulated"]),
        "eps": floats([0.05, 0.5], [0, 1, 2]),
        "delta": floats([0.05], [0, 1, -1]),
        "policies": names(["all", "topk", "dynamic_confidence,entropy"], ["", "bogus", ","]),
        "out": {"good": [FRESH + ".json", HOME_FRESH + ".json"],
                "bad": [FOLDER, PROC + "/x.json", "", f"{FILE}/x.json", FILE, "<val.npz>", LONG + ".json"]},
    },
    "export": {
        "source": {"good": ["<run>"], "bad": ["<missing>", FOLDER, "", LONG], "junk": [FILE]},
        "out": {"good": [FRESH + ".nir", HOME_FRESH + ".nir"], "bad": [FOLDER, PROC + "/x.nir", "", f"{FILE}/x.nir",
                                                                  FILE, LONG + ".nir"]},
        "format": names(["nir"]),
        # with a run folder (the base), the checkpoint flags are refused
        "dataset": {"good": [], "bad": ["digits", "bogus"]},
        "model": {"good": [], "bad": ["vgg_small", "alexnet"]},
        "levels": {"good": [], "bad": ["4", "0"]},
        "width": {"good": [], "bad": ["4", "0"]},
        "data_dir": {"good": [], "bad": [FOLDER]},
        "variant": names(["exact"], junk=["hard-reset", "subtract"]),
        "pooling": names(["avg", "sum"]),
        # hard-reset and subtract only: with the base's exact variant they do nothing, refused
        "threshold_scale": {"good": [], "bad": ["nan", "-1", "0", "x", "inf", "2e6", "auto", "1.5", "0.8"]},
        "T": ints([], [0, 100_001, 8]),
        # the base's run folder has no certified.json: certified is refused; a file that is no exit rule may fail late
        "policy": {"good": [], "bad": ["certified", "<missing>", FOLDER], "junk": [FILE]},
        "overwrite": {},
    },
}
# always given (a drawn flag of the same dest replaces it)
BASE = {
    "run": {"dataset": "digits", "out": FRESH, "cache_dir": "<cache>", "semantics": "snntorch"},
    **{stage: {"dataset": "digits", "out": FRESH, "cache_dir": "<cache>", "semantics": "snntorch"} for stage in STAGES},
    "certify": {"val": "<val.npz>", "test": "<test.npz>", "outputs": "per-step"},
    "compare": {"run": "<run>", "out": FRESH},
    "table": {"datasets": "digits", "models": "vgg_small", "out": FRESH, "cache_dir": "<cache>"},
    "bench": {"dataset": "digits", "out": FRESH + ".json", "cache_dir": "<cache>", "devices": "cpu"},
    "cutoff-train": {"dataset": "digits", "out": FRESH, "cache_dir": "<cache>"},
    "export": {"source": "<run>", "out": FRESH + ".nir"},
}
# switches that are refused whatever the command: the data sets drawn are built in, nothing to download
REFUSED_SWITCHES = {"download"}
JUNK = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8) | st.sampled_from(
    ["", "-1", "0", "1", "nan", "inf", "1e400", "9" * 30, "abc", "3.5", FILE, FOLDER, PROC, "cuda", "gpu0", " ",
     "é", "--", "-", "~", "~/x", "~no-such-user/x", LONG, "a" * 255, DEEP])


def actions(command: str) -> dict[str, argparse.Action]:
    """dest -> action of every option of ``command``, from its own parser."""
    sub = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)}


def unused(command: str, dest: str) -> bool:
    """A flag the stage ``command`` does not use: refused whatever its value."""
    return command in STAGES and dest not in USES[command] and dest not in EVERY_STAGE


def values(command: str, dest: str) -> dict:
    spec = PER_COMMAND.get(command, {}).get(dest, COMMON.get(dest))
    if spec is None:
        raise AssertionError(f"snnexit {command}: no values for the flag of {dest!r}; add them to the tables above")
    return spec


def option(action: argparse.Action) -> str:
    return next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])


@st.composite
def argv_for(draw, command: str):
    """(argv with symbolic paths, verdict: 'good', 'bad' or 'junk')."""
    acts = actions(command)
    chosen = draw(st.lists(st.sampled_from(sorted(acts)), unique=True, max_size=5))
    given = {dest: (value, "good") for dest, value in BASE[command].items()}  # dest -> (text or None, kind)
    for dest in chosen:
        spec, action = values(command, dest), acts[dest]
        if action.nargs == 0:  # a switch
            given[dest] = (None, "bad" if unused(command, dest) or dest in REFUSED_SWITCHES else "good")
            continue
        kind = draw(st.sampled_from([k for k in ("good", "bad") if spec.get(k)] + ["junk"]))
        if kind == "junk" and (not spec.get("junk") or draw(st.booleans())):
            text = draw(JUNK)
        else:
            text = draw(st.sampled_from(spec.get(kind) or spec["junk"]))
        given[dest] = (text, "bad" if unused(command, dest) else kind)
    argv = [command]
    for dest, (text, _) in given.items():
        action = acts[dest]
        if text is None:
            argv.append(draw(st.sampled_from(action.option_strings)))
        elif action.nargs in ("+", 2):
            argv += [option(action), *(text.split(" ") if text else [text])]
        elif draw(st.booleans()):
            argv += [option(action), text]
        else:
            argv.append(f"{option(action)}={text}")
    kinds = {kind for _, kind in given.values()}
    return argv, "junk" if "junk" in kinds else "bad" if "bad" in kinds else "good"


def concrete(argv: list[str], world) -> list[str]:
    root, n = world["root"], next(world["count"])
    names = {FILE: root / "afile", FOLDER: root / "adir", FRESH: root / "fresh" / f"{n}", PROC: "/proc/snnexit-fuzz",
             "<cache>": root / "cache", "<run>": root / "run", "<missing>": root / "missing" / f"{n}",
             "<good.toml>": root / "good.toml", "<bad.toml>": root / "bad.toml",
             "<calibration.npy>": root / "calibration.npy", "<empty.npy>": root / "empty.npy",
             "<archive.npz>": root / "archive.npz", DEEP: root / "deep.json", "<deep.toml>": root / "deep.toml",
             "<userdir>": root / "userdir", "<n>": f"fresh-{n}", "<mlp.nir>": root / "mlp.nir",
             "<val.npz>": root / "val.npz", "<test.npz>": root / "test.npz"}
    out = []
    for word in argv:
        for token, path in names.items():
            word = word.replace(token, str(path))
        out.append(word)
    return out


def run_main(argv: list[str]) -> tuple[object, str, float]:
    """``main(argv)`` in process: (exit code, or "reached" / "SystemExit(code)", stderr, seconds)."""
    err, threads = io.StringIO(), torch.get_num_threads()
    started = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            outcome = main(argv)
    except Reached:
        outcome = "reached"
    except SystemExit as exc:  # argparse's own errors (exit 2)
        outcome = f"SystemExit({exc.code})"
    finally:
        torch.set_num_threads(threads)  # table and bench set it
    return outcome, err.getvalue(), time.perf_counter() - started


def check(command: str, argv: list[str], verdict: str, world) -> None:
    argv = concrete(argv, world)
    try:
        outcome, err, seconds = run_main(argv)
    except Exception as exc:
        raise AssertionError(f"snnexit {' '.join(argv)} raised {type(exc).__name__}: {exc}") from exc
    shown = f"snnexit {' '.join(argv)} -> {outcome}\n{err}"
    assert "Traceback" not in err, shown
    assert not (world["root"] / "~").exists(), shown  # ~ was expanded, never made a folder of that name
    assert outcome in ("reached", 0, 2, "SystemExit(2)"), shown
    assert seconds < SECONDS_PER_EXAMPLE, shown
    if outcome == 2:
        lines = [line for line in err.splitlines() if line.startswith("snnexit ")]
        assert len(lines) == 1 and err.rstrip("\n").endswith(lines[0]), shown
    if verdict == "good":
        assert outcome == "reached", "good input did not reach the work: " + shown
    elif verdict == "bad":
        assert outcome in (2, "SystemExit(2)"), "bad input was not refused: " + shown


def _fuzz(command, data, world):
    argv, verdict = data.draw(argv_for(command))
    check(command, argv, verdict, world)


@pytest.mark.parametrize("command", list(COMMANDS))
@FAST
@given(data=st.data())
def test_fuzz_command_line(world, command, data):
    _fuzz(command, data, world)


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
@MANY
@given(data=st.data())
def test_fuzz_command_line_at_length(world, command, data):
    _fuzz(command, data, world)


# ---- the property's own examples: each kind of bad input, by name --------------------------------
@pytest.mark.parametrize("argv,message", [
    (["run", "--cache-dir", FILE], "cache folder"),
    (["run", "--cache-dir", PROC], "cache folder /proc/snnexit-fuzz is not writable"),
    (["train", "--cache-dir", FILE], "is a file, not a folder"),
    (["bench", "--cache-dir", FILE], "cache folder"),
    (["cutoff-train", "--cache-dir", PROC], "cache folder"),
    (["run", "--device", "gpu0"], "device 'gpu0' is not a torch device"),
    (["trace", "--device", "gpu0"], "device 'gpu0' is not a torch device"),
    (["cutoff-train", "--device", "gpu0"], "device 'gpu0' is not a torch device"),
    (["bench", "--devices", "tpu"], "timed device 'tpu' is not a torch device"),
    (["table", "--device", "cuda:99"], "cuda:99"),
    (["export", "--out", FOLDER], "is a folder, not a file"),
    (["export", "--out", PROC + "/x.nir"], "cannot write output file (--out) /proc/snnexit-fuzz/x.nir"),
    (["export", "--out", ""], "the name is empty"),
    (["bench", "--out", FOLDER], "is a folder, not a file"),
    (["run", "--bits", "64"], "'bits' must lie in 1..16"),
    (["run", "--width", "100000"], "'width' = 100000 makes vgg_small too large to train here"),
    (["run", "--lr", "nan"], "'lr' must be a positive number"),
    (["run", "--init-threshold", "inf"], "'init_threshold' must be a positive number"),
    (["run", "--seed", "-1"], "'seed' must lie in"),
    (["compare", "--eps", "2"], "--eps must lie in [0, 1]"),
    (["compare", "--max-steps", "0"], "--max-steps must lie in [1, 100000]"),
    (["report", "--epochs", "3"], "report does not use --epochs (it reads results.json and the traces)"),
    (["train", "--T", "8"], "train does not use --T"),
    (["fit", "--trace-batch-size", "8"], "fit does not use --trace-batch-size"),
    (["export", "--dataset", "digits"], "--dataset: for a checkpoint"),
    (["run", "--download"], "data set 'digits' is built in: --download does not apply"),
    (["cutoff-train", "--download"], "data set 'digits' is built in: --download does not apply"),
    (["report", "--download"], "report does not use --download"),
    (["train", "--dataset", "imagefolder", "--download"], "'imagefolder' has no public download"),
    # the second hostile sweep (issue 24): data lost, idle flags, late checks, odd paths, deep files
    (["run", "--out", "<userdir>"], "userdir holds report.md and is no folder snnexit wrote"),
    (["report", "--out", "<userdir>"], "userdir holds report.md and is no folder snnexit wrote"),
    (["export", "--in", FILE, "--dataset", "digits", "--model", "vgg_small", "--out", FILE],
     "is an input of this export"),
    (["export", "--out", FILE], "exists and is no NIR graph"),
    (["export", "--threshold-scale", "0.8"], "--threshold-scale does nothing with --variant exact"),
    (["export", "--T", "8"], "--T does nothing with --variant exact"),
    (["export", "--variant", "hard-reset", "--threshold-scale", "0.8", "--T", "8"],
     "--T does nothing with --threshold-scale 0.8"),
    (["run", "--bits", "3"], "--bits 3 does nothing with quantizer 'qcfs'"),
    (["run", "--quantizer", "lsq", "--L", "8"], "--L 8 does nothing with quantizer 'lsq'"),
    (["run", "--quantizer", "relu", "--converter", "max", "--init-threshold", "2"],
     "--init-threshold 2.0 does nothing with quantizer 'relu'"),
    (["fit", "--eps", "0.01"], "fit.eps (--eps) does nothing with target 'no_loss'"),
    (["fit", "--target", "max_drop", "--eps", "0.01", "--max-steps", "3"], "fit.max_steps (--max-steps) does nothing"),
    (["fit", "--threshold", "2", "--target", "max_drop", "--eps", "0.1"], "does nothing with a fixed threshold"),
    (["compare", "--eps", "0.01"], "--eps does nothing with --target no_loss"),
    (["compare", "--target", "max_drop", "--eps", "0.01", "--delta", "0.1"], "--delta does nothing"),
    (["cutoff-train", "--neuron", "if", "--tau", "2"], "--tau does nothing with --neuron if"),
    (["cutoff-train", "--epochs", "0"], "--epochs 0 with --init scratch trains nothing"),
    (["cutoff-train", "--ann-epochs", "3"], "--ann-epochs does nothing with --init scratch"),
    (["cutoff-train", "--init", "converted", "--epochs", "3"], "--epochs does nothing with --init converted"),
    (["cutoff-train", "--finetune-lr", "0.01"], "--finetune-lr does nothing with --init scratch"),
    (["table", "--datasets", "event_mnist"], "the qffs converter cannot run its frames"),
    (["table", "--datasets", "event_mnist", "--converters", "qcfs"], "pass --T-qcfs 16 or fewer"),
    (["table", "--converters", "qcfs", "--T-qffs", "4"], "--T-qffs does nothing without qffs in --converters"),
    (["run", "--calibration-inputs", "<empty.npy>"], "the file is empty"),
    (["run", "--calibration-inputs", "<archive.npz>"], "an .npz archive, not one .npy array"),
    (["run", "--config", DEEP], "invalid JSON (nested too deeply to read)"),
    (["fit", "--config", "<deep.toml>"], "invalid TOML (nested too deeply to read)"),
    (["trace", "--policy-option", "k=" + "[" * 50_000], "trace does not use --policy-option"),
    (["fit", "--policy", "topk", "--policy-option", "k=" + "[" * 50_000], "k (top-1 minus top-k) must be an integer"),
    (["run", "--out", LONG], "a name of 300 bytes, the file system allows"),
    (["run", "--cache-dir", f"{FRESH}/{LONG}"], "a name of 300 bytes"),
    (["run", "--config", LONG], "config file"),
    (["certify", "--out", "<val.npz>"], "is the --val file"),
    (["certify", "--out", FILE], "exists and holds no exit rule"),
    (["certify", "--test", "<val.npz>"], "--val and --test are the same file"),
])
def test_bad_input_is_one_line_and_exit_2(world, argv, message):
    command = argv[0]
    base = [w for dest, value in BASE[command].items() if not any(option(actions(command)[dest]) == a for a in argv)
            for w in (option(actions(command)[dest]), value)]
    argv = concrete(argv + base, world)
    outcome, err, _ = run_main(argv)
    assert outcome == 2, (argv, outcome, err)
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"snnexit {command}: error: ") and message in line, (argv, err)


def test_good_base_reaches_the_work(world):
    """Each command's base alone passes its checks (so the fuzzer's 'good' means something)."""
    for command in COMMANDS:
        argv = [command] + [w for dest, value in BASE[command].items()
                            for w in (option(actions(command)[dest]), value)]
        outcome, err, _ = run_main(concrete(argv, world))
        assert outcome == "reached", (command, outcome, err)


def test_every_flag_has_values():
    """The tables cover every flag of every command (a new flag must get good and bad values)."""
    for command in COMMANDS:
        for dest in actions(command):
            values(command, dest)


def test_report_files_are_the_reports():
    from snnexit.report.markdown import FIGURES
    from snnexit.runs.paths import REPORT_FILES

    assert set(REPORT_FILES) == {"report.md", *FIGURES.values()}
