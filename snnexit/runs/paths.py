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
from snnexit.io import check_output_file, check_output_folder
from snnexit.runs.ann import default_cache_dir
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
from snnexit.runs.ownership import check_replaceable
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
# the stages that read the data set or the ANN cache (the others read the run folder only)
CACHE_STAGES = ("train", "convert", "trace")


def check_cache_folder(cache_dir: str | os.PathLike | None) -> Path:
    """The cache folder (``None``: the default), made and checked writable; else a
    :class:`SnnexitError` such as ``cache folder c is a file, not a folder``."""
    if cache_dir is None:
        return check_output_folder(default_cache_dir(), "cache folder ($SNNEXIT_CACHE or ~/.cache/snnexit)")
    return check_output_folder(cache_dir, "cache folder")


def check_files_in(folder: str | os.PathLike, names) -> Path:
    """Each of ``names`` in ``folder`` can be written as a file (none is a folder)."""
    folder = Path(folder)
    for name in names:
        check_output_file(folder / name)
    return folder


def run_files(command: str) -> tuple[str, ...]:
    """The files ``command`` (``run`` or a stage) writes in its run folder."""
    stages = tuple(STAGE_FILES) if command == "run" else (command,)
    return tuple(dict.fromkeys([f"config.{command}.json", TIMINGS_FILE] + [n for s in stages for n in STAGE_FILES[s]]))


def check_run_paths(settings, command: str, overwrite: bool = False) -> Path:
    """A run's folder and the files ``command`` (``run`` or a stage) writes in it (none of them
    a user's own file, unless ``overwrite``: :func:`check_replaceable`), and the cache folder where
    the command uses it. Returns the run folder."""
    config = settings.run
    folder = check_output_folder(config.out, "run folder")
    stages = tuple(STAGE_FILES) if command == "run" else (command,)
    if not set(stages) <= set(STAGE_FILES):
        raise SnnexitError(f"unknown stage {command!r}")  # a bug in the caller, named
    names = run_files(command)
    check_files_in(folder, names)
    check_replaceable(folder, names, command, overwrite)
    if config.cache_dir is not None or any(s in CACHE_STAGES for s in stages):  # a cache given is checked anyway
        check_cache_folder(config.cache_dir)
    return folder
