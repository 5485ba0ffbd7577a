"""``snnexit train | convert | trace | fit | evaluate | report``: one stage of a run at a time.

Every stage takes ``--config FILE`` plus command-line overrides, reads the previous stage's
files from the run folder (``--out``) and writes its own there, with its resolved config beside
them (``config.<stage>.json``). The stages themselves are :mod:`snnexit.runs.stages`; the files
and their checks :mod:`snnexit.runs.artifacts`.

A stage run on a folder that holds a run takes that run's settings unless told otherwise, and
refuses a value that contradicts the files it reads (:mod:`snnexit.runs.resolve`).

Every stage accepts every setting in its config file (one file fits all stages), but a flag on
the command line that the stage does not use is an error (``snnexit report --epochs 3``:
``report does not use --epochs``), so that what a command line says is what the stage does.
:data:`USES` lists the settings each stage uses; where and how it runs (:data:`EVERY_STAGE`) every
stage takes.
"""

from __future__ import annotations

import argparse

from snnexit.cli.common import progress_log
from snnexit.cli.config_args import add_config_arguments, settings_from_args
from snnexit.errors import SnnexitError
from snnexit.report import TABLE1_HEADER, table1_rows
from snnexit.runs import run_stage
from snnexit.runs.artifacts import STAGES
from snnexit.runs.resolve import EVERY_STAGE, USES

WHAT_IT_DOES = {
    "train": "it trains the ANN",
    "convert": "it converts ann.safetensors",
    "trace": "it simulates snn.safetensors",
    "fit": "it fits the policy on the validation trace",
    "evaluate": "it evaluates policy.json on the traces",
    "report": "it reads results.json and the traces",
}

HELP = {
    "train": "train the QCFS ANN (or reuse the cached one) -> ann.safetensors; nothing with --nir",
    "convert": "calibrate and convert the trained ANN to an SNN -> snn.safetensors; with --nir FILE: import it -> "
               "network.json",
    "trace": "simulate the SNN on validation and test -> trace_val/trace_test.safetensors",
    "fit": "fit an exit policy (--policy NAME, default Dynamic Confidence) on the validation trace -> policy.json",
    "evaluate": "evaluate fixed T, the fitted policy, a certified exit and the oracle on the test trace -> results.json",
    "report": "write report.md and the figures from results.json and the traces",
}


def check_flags_used(stage: str, args, options: dict[str, str]) -> None:
    """Refuse a flag given on the command line (``options``: dest -> its option strings) that
    ``stage`` does not use."""
    for dest in vars(args):
        if dest in options and dest not in USES[stage] and dest not in EVERY_STAGE:
            flag = options[dest]
            users = [s for s in STAGES if dest in USES[s]]
            raise SnnexitError(f"{stage} does not use {flag} ({WHAT_IT_DOES[stage]}); {flag} is for "
                               f"{', '.join(users + ['run'])}")


def _main(stage: str, options: dict[str, str]):
    def main(args) -> int:
        check_flags_used(stage, args, options)
        settings = settings_from_args(args)
        log = progress_log(args)
        settings.run.progress = settings.run.progress and not log.quiet
        log(f"{stage}: started")
        written, r = run_stage(stage, settings, log=log, overwrite=args.overwrite)
        if stage == "evaluate":
            print(TABLE1_HEADER)
            print("\n".join(table1_rows(settings.run.dataset, *settings.run.labels(), r.results)))
        names = ", ".join(str(p) for p in written) if isinstance(written, tuple) else str(written)
        log(f"{stage}: done")
        print(f"Wrote {names}" if written is not None else f"Nothing to {stage}: the network comes from {settings.run.nir}")
        return 0

    return main


def register(sub) -> None:
    for stage in STAGES:
        p = sub.add_parser(stage, help=HELP[stage], description=f"{HELP[stage]}. Reads the previous stage's "
                           "files from the run folder (--out); settings from --config FILE (which may hold every "
                           "stage's settings), overridden by the flags below; other flags are refused.")
        p.add_argument("--overwrite", action="store_true",
                       help="replace files in --out that snnexit did not write (default: refuse them)")
        add_config_arguments(p, stages=("trace", "fit", "certify"))  # every setting: one config file fits all
        options = {a.dest: "/".join(a.option_strings) for a in p._actions if a.option_strings}
        for action in p._actions:
            if action.dest in options and action.dest not in USES[stage] and action.dest not in EVERY_STAGE:
                action.help = argparse.SUPPRESS  # parsed (to name it when refused), not listed
        p.set_defaults(func=_main(stage, options))
