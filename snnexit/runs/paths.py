"""Where a command writes, checked before any work (training, tracing, timing).

A cache folder that is a file, an output folder under ``/proc``, a ``results.json`` that is a
folder: each is a :class:`SnnexitError` naming it at the start of the command, not an
``OSError`` after the first training epoch. The checks themselves are
:func:`snnexit.io.check_output_folder` and :func:`snnexit.io.check_output_file`.
"""

from __future__ import annotations

import os
from pathlib import Path

from snnexit.errors import SnnexitError
from snnexit.io import check_output_file, check_output_folder, read_json_file, write_json
from snnexit.runs.ann import default_cache_dir
from snnexit.runs.config_file import CONFIG_FORMAT
from snnexit.runs.artifacts import (
    ANN_FILE,
    CALIBRATION_TRACE_FILE,
    CERTIFIED_FILE,
    POLICY_FILE,
    RESULTS_FILE,
    SNN_FILE,
    TIMINGS_FILE,
    TRACE_FILES,
)
from snnexit.runs.imported import NETWORK_FILE

# report.md and snnexit.report.markdown.FIGURES (not imported: it loads matplotlib; a test compares them)
REPORT_FILES = ("report.md", "fig1_accuracy_vs_steps.png", "fig2_confidence.png", "fig3_pareto.png",
                "fig4_exit_histogram.png")
# the files of the run folder that each stage writes (besides config.<stage>.json and timings.json)
STAGE_FILES = {
    "train": (ANN_FILE,),
    "convert": (SNN_FILE, NETWORK_FILE),
    "trace": (*TRACE_FILES, CALIBRATION_TRACE_FILE),
    "fit": (POLICY_FILE,),
    "evaluate": (CERTIFIED_FILE, RESULTS_FILE),
    "report": (RESULTS_FILE, *REPORT_FILES),
}
FOLDER_MARK = ".snnexit-folder"  # in every folder snnexit writes: its files there may be replaced
# the stages that read the data set or the ANN cache (the others read the run folder only)
CACHE_STAGES = ("train", "convert", "trace")


def check_cache_folder(cache_dir: str | os.PathLike | None) -> Path:
    """The cache folder (``None``: the default), made and checked writable; else a
    :class:`SnnexitError` such as ``cache folder c is a file, not a folder``."""
    if cache_dir is None:
        return check_output_folder(default_cache_dir(), "cache folder ($SNNEXIT_CACHE or ~/.cache/snnexit)")
    return check_output_folder(cache_dir, "cache folder")


def is_snnexit_folder(folder: str | os.PathLike) -> bool:
    """Did snnexit write ``folder``? Its mark (:func:`mark_folder`), a saved config
    (``config.<command>.json``) or a file in one of snnexit's tensor formats says so."""
    folder = Path(folder)
    if (folder / FOLDER_MARK).is_file() or any(_is_snnexit_config(path) for path in folder.glob("config.*.json")):
        return True
    return any(_is_snnexit_tensors(path) for path in folder.glob("*.safetensors"))


def _is_snnexit_config(path: Path) -> bool:
    try:
        values = read_json_file(path)
    except SnnexitError:
        return False
    return isinstance(values, dict) and values.get("format") == CONFIG_FORMAT


def _is_snnexit_tensors(path: Path) -> bool:
    """A safetensors file with snnexit's header (its format names one of ours)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = f.read(min(n, 1 << 20)) if 0 < n <= path.stat().st_size else b""
    except OSError:
        return False
    return b'"__metadata__"' in header and b'"format_version"' in header and b'"sha256"' in header


def check_replaceable(folder: str | os.PathLike, names, overwrite: bool = False, flag: str = "--out") -> None:
    """Refuse to write ``names`` into ``folder`` where one of them exists and the folder is not one
    snnexit wrote (a user's own ``report.md``), unless ``overwrite``: nothing the user did not ask to
    replace is replaced."""
    folder = Path(folder)
    existing = [name for name in names if (folder / name).exists()]
    if existing and not overwrite and not is_snnexit_folder(folder):
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise SnnexitError(f"{folder} holds {existing[0]}{more} and is no folder snnexit wrote: this command would "
                           f"replace it; pass --overwrite to replace it, or choose another {flag}")


def mark_folder(folder: str | os.PathLike, command: str) -> None:
    """Mark ``folder`` as one snnexit writes (:func:`is_snnexit_folder`), once."""
    path = Path(folder) / FOLDER_MARK
    if not path.is_file():
        write_json(path, {"format": "snnexit-folder", "version": 1, "command": command})


def check_files_in(folder: str | os.PathLike, names) -> Path:
    """Each of ``names`` in ``folder`` can be written as a file (none is a folder)."""
    folder = Path(folder)
    for name in names:
        check_output_file(folder / name)
    return folder


def check_run_paths(settings, command: str, overwrite: bool = False) -> Path:
    """A run's folder and the files ``command`` (``run`` or a stage) writes in it (none of them
    a user's own file, unless ``overwrite``: :func:`check_replaceable`), and the cache folder where
    the command uses it. Returns the run folder."""
    config = settings.run
    folder = check_output_folder(config.out, "run folder")
    stages = tuple(STAGE_FILES) if command == "run" else (command,)
    if not set(stages) <= set(STAGE_FILES):
        raise SnnexitError(f"unknown stage {command!r}")  # a bug in the caller, named
    names = [f"config.{command}.json", TIMINGS_FILE] + [n for s in stages for n in STAGE_FILES[s]]
    check_files_in(folder, dict.fromkeys(names))
    check_replaceable(folder, names, overwrite)
    if config.cache_dir is not None or any(s in CACHE_STAGES for s in stages):  # a cache given is checked anyway
        check_cache_folder(config.cache_dir)
    return folder
