"""The layout promises of the code base, checked on the source: small modules, one home for each
thing, imports that say why they wait."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "snnexit"
MAX_LINES = 400


def _sources(folder: Path):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in _sources(PACKAGE) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long


def test_an_import_inside_a_function_says_why():
    bare = []
    for path in _sources(PACKAGE):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        here, above = lines[sub.lineno - 1], lines[sub.lineno - 2]
                        if "#" not in here and not above.strip().startswith("#"):
                            bare.append(f"{path.relative_to(ROOT)}:{sub.lineno}: {here.strip()}")
    assert not bare


def test_benchmarks_and_the_library_do_not_import_the_command_line():
    pattern = re.compile(r"^\s*(from|import)\s+snnexit\.cli\b", re.M)
    offenders = {str(p.relative_to(ROOT)) for folder in (ROOT / "benchmarks", PACKAGE)
                 for p in _sources(folder) if "cli" not in p.relative_to(ROOT).parts and pattern.search(p.read_text())}
    # the entry point `python -m snnexit` is the command line
    assert offenders <= {"snnexit/__main__.py"}


def test_a_network_gets_its_temperature_in_one_place():
    """Only :func:`snnexit.runs.network.attach_temperature` writes ``snn.meta["temperature"]``."""
    writes = [f"{p.relative_to(ROOT)}:{i}" for folder in (PACKAGE, ROOT / "benchmarks") for p in _sources(folder)
              for i, line in enumerate(p.read_text().splitlines(), 1)
              if re.search(r"\bsnn\.meta\[\"temperature\"\]\s*=", line)]
    assert writes == ["snnexit/runs/network.py:" + str(_line_of("snnexit/runs/network.py", 'snn.meta["temperature"] ='))]


def _line_of(relative: str, text: str) -> int:
    return next(i for i, line in enumerate((ROOT / relative).read_text().splitlines(), 1) if text in line)
