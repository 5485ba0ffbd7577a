"""The command line tells its choices: every name-valued flag lists its valid names in ``--help``.

The names come from one torch-free table (snnexit.names). Here it is held against the registries
themselves (imported), and every command's ``--help`` against the registries' names, flag by flag.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import snnexit.names as table
from snnexit.cli import COMMANDS, build_parser
from snnexit.convert import CONVERTERS
from snnexit.convert.fixes import CONVERSION_FIXES, NO_FIX
from snnexit.data import DATASETS
from snnexit.exit import POLICIES
from snnexit.exit.certify import certifiable_policies
from snnexit.exit.target import TARGET_KINDS
from snnexit.models import MODELS
from snnexit.neurons import NEURONS
from snnexit.neurons.surrogate import SURROGATES
from snnexit.nir.semantics import SEMANTICS
from snnexit.quant import QUANTIZERS
from snnexit.runs.artifacts import STAGES
from snnexit.experiments.workloads import WORKLOADS
from snnexit.train.losses import TASK_LOSSES

ROOT = Path(__file__).resolve().parents[1]
REGISTRIES = (DATASETS, MODELS, CONVERTERS, QUANTIZERS, CONVERSION_FIXES, POLICIES, SEMANTICS, NEURONS, SURROGATES,
              TASK_LOSSES, WORKLOADS)


# ---- the table equals the registries -------------------------------------------------------------
@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.kind)
def test_the_table_holds_each_registrys_names(registry):
    listed = table.REGISTERED.get(registry.kind)
    assert listed is not None, f"snnexit/names.py has no entry {registry.kind!r}: add {registry.names()}"
    assert sorted(listed) == registry.names(), (f"snnexit/names.py's {registry.kind!r} names differ from the "
                                                f"registry's: {sorted(listed)} vs {registry.names()}")


def test_the_derived_name_lists_equal_their_sources():
    assert set(table.names("target")) == set(TARGET_KINDS) and len(table.names("target")) == len(TARGET_KINDS)
    assert table.names("certifiable policy") == certifiable_policies()


def test_every_registry_in_the_source_is_in_the_table():
    """A registry added anywhere in snnexit (``Registry("kind")``) without its names in the table fails here."""
    kinds = {m for path in (ROOT / "snnexit").rglob("*.py")
             for m in re.findall(r'\bRegistry\("([^"]+)"\)', path.read_text())}
    assert kinds == {r.kind for r in REGISTRIES}, "a registry this test does not hold: add it to REGISTRIES"
    assert kinds <= set(table.REGISTERED)


def test_the_name_lists_without_a_registry_have_one_source():
    """Resets, event inputs, NIR variants and poolings, the no-fix name: the modules that check them use
    the table's own objects."""
    from snnexit.neurons import functional
    from snnexit.nir import export
    from snnexit.runs import settings

    assert functional.RESETS is table.RESETS and settings.ANN_EVENT_INPUTS is table.ANN_EVENT_INPUTS
    assert export.VARIANTS is table.NIR_VARIANTS and export.POOLINGS is table.NIR_POOLINGS
    assert NO_FIX is table.NO_FIX


def test_the_table_imports_nothing_heavy():
    code = "import sys, snnexit.names\nprint(sorted(m for m in ('torch', 'numpy', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "[]"


# ---- every command's --help shows every name -----------------------------------------------------
# the names each flag takes, from the registries (never from snnexit.names)
RUN_FLAGS = {
    "--dataset": DATASETS.names(), "--model": MODELS.names(), "--converter": CONVERTERS.names(),
    "--quantizer": QUANTIZERS.names(), "--conversion-fix": [NO_FIX, *CONVERSION_FIXES.names()],
    "--semantics": SEMANTICS.names(), "--ann-event-input": ["prefix_means", "mean_frame"],
    "--policy": POLICIES.names(), "--target": list(TARGET_KINDS), "--certify-policies": list(certifiable_policies()),
}
FLAGS = {
    "run": RUN_FLAGS,
    **{stage: RUN_FLAGS for stage in STAGES},  # those of the flags each stage uses (the others are hidden)
    "compare": {"--policies": POLICIES.names(), "--target": list(TARGET_KINDS)},
    "certify": {"--policies": list(certifiable_policies()), "--outputs": ["per-step", "accumulated"]},
    "table": {"--datasets": DATASETS.names(), "--models": MODELS.names(), "--converters": ["qcfs", "qffs"]},
    "cutoff-train": {"--dataset": DATASETS.names(), "--model": MODELS.names(), "--neuron": NEURONS.names(),
                     "--reset": ["soft", "hard"], "--surrogate": SURROGATES.names(), "--loss": TASK_LOSSES.names(),
                     "--init": ["scratch", "converted"]},
    "bench": {"--workload": WORKLOADS.names(), "--dataset": DATASETS.names(), "--model": MODELS.names(),
              "--policy": POLICIES.names()},
    "export": {"--format": ["nir"], "--dataset": DATASETS.names(), "--model": MODELS.names(),
               "--variant": ["exact", "hard-reset", "subtract"], "--pooling": ["avg", "sum"]},
}


def help_of(command: str, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100000")  # no wrapping: a name is never cut at a hyphen
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command].format_help()


def flag_block(text: str, flag: str) -> str | None:
    """The help of ``flag`` (its line, and the next when argparse puts its help there); None if not shown."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"\s+(-\S+ [^,]*, )*{re.escape(flag)}[ ,=]|\s+(-\S+ [^,]*, )*{re.escape(flag)}$", line):
            block = [line]
            for rest in lines[i + 1:]:
                if re.match(r"\s+-", rest) or not rest.strip():
                    break
                block.append(rest)
            return "\n".join(block)
    return None


def test_every_command_is_covered():
    assert set(COMMANDS) == set(FLAGS)


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_every_name_valued_flag_lists_its_names(command, monkeypatch):
    text = help_of(command, monkeypatch)
    shown = 0
    for flag, names in FLAGS[command].items():
        block = flag_block(text, flag)
        if block is None:
            assert command in STAGES, f"snnexit {command} --help does not show {flag}"
            continue  # a stage lists only the flags it uses
        shown += 1
        tokens = set(re.split(r"[^\w-]+", block))
        missing = [name for name in names if name not in tokens]
        assert not missing, f"snnexit {command} --help: {flag} does not list {missing}:\n{block}"
    assert shown >= 1


def test_every_run_flag_is_shown_by_some_stage(monkeypatch):
    shown = {flag for stage in STAGES for flag in RUN_FLAGS if flag_block(help_of(stage, monkeypatch), flag)}
    assert shown == set(RUN_FLAGS)


def test_top_level_help_lists_every_command(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100000")
    with pytest.raises(SystemExit):
        build_parser(None).parse_args(["--help"])
    out = capsys.readouterr().out
    assert all(re.search(rf"^\s+{re.escape(name)}\s", out, re.M) for name in COMMANDS)


def test_run_flags_are_declared_once():
    """snnexit run takes every run setting from the one declaration the stages use (config_args)."""
    source = (ROOT / "snnexit" / "cli" / "run.py").read_text()
    assert re.findall(r'add_argument\("(--[\w-]+)"', source) == ["--overwrite"]
