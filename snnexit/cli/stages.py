"""``snnexit train | convert | trace | fit | evaluate | report``: one stage of a run at a time.

Every stage takes ``--config FILE`` plus command-line overrides, reads the previous stage's
files from the run folder (``--out``) and writes its own there, with its resolved config beside
them (``config.<stage>.json``). The stages themselves are :mod:`snnexit.runs.stages`; the files
and their checks :mod:`snnexit.runs.artifacts`.

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

# settings that determine the trained ANN (RunConfig.train_key): the stages that check a file
# against them (ann.safetensors, snn.safetensors) use them as much as train does
TRAINING = ("dataset", "model", "epochs", "seed", "levels", "init_threshold", "quantizer", "bits", "batch_size", "lr",
            "width", "data_dir", "ann_event_input")
FIT = ("fit.policy", "fit.target", "fit.threshold", "fit.temperature", "fit.eps", "fit.max_steps", "fit.delta",
       "fit.options")
CONVERSION = ("converter", "conversion_fix", "conversion_fix_inputs")  # how snn.safetensors was made from the ANN
CERTIFY = ("certify.eps", "certify.delta", "certify.policies", "certify.calibration_inputs")
# where and how a stage runs, not what it computes: every stage takes them
EVERY_STAGE = ("out", "device", "progress", "cache_dir", "config", "quiet")
# stage -> the settings (argparse dests: RunConfig fields, "section.key") it uses
USES = {  # download: the stages that load the data
    "train": TRAINING + ("download",),
    # T: the horizon a conversion fix is fitted over
    "convert": TRAINING + CONVERSION + ("T", "download"),
    "trace": TRAINING + CONVERSION + ("T", "trace.batch_size", "certify.calibration_inputs", "download"),
    # T and the converter: the traces must be this run's; the data set: T defaults to an event data set's frames
    "fit": ("dataset", "T") + CONVERSION + FIT,
    # the training settings: snn.safetensors's; the fit settings: the policy's name in results.json, and
    # they must make a valid policy together (--policy conformal needs --target coverage)
    "evaluate": TRAINING + CONVERSION + ("T",) + FIT + CERTIFY,
    "report": ("dataset", "T") + CONVERSION,
}
WHAT_IT_DOES = {
    "train": "it trains the ANN",
    "convert": "it converts ann.safetensors",
    "trace": "it simulates snn.safetensors",
    "fit": "it fits the policy on the validation trace",
    "evaluate": "it evaluates policy.json on the traces",
    "report": "it reads results.json and the traces",
}

HELP = {
    "train": "train the QCFS ANN (or reuse the cached one) -> ann.safetensors",
    "convert": "calibrate and convert the trained ANN to an SNN -> snn.safetensors",
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
        written, r = run_stage(stage, settings, log=log)
        if stage == "evaluate":
            print(TABLE1_HEADER)
            print("\n".join(table1_rows(settings.run.dataset, settings.run.model, settings.run.converter, r.results)))
        names = ", ".join(str(p) for p in written) if isinstance(written, tuple) else str(written)
        log(f"{stage}: done")
        print(f"Wrote {names}")
        return 0

    return main


def register(sub) -> None:
    for stage in STAGES:
        p = sub.add_parser(stage, help=HELP[stage], description=f"{HELP[stage]}. Reads the previous stage's "
                           "files from the run folder (--out); settings from --config FILE (which may hold every "
                           "stage's settings), overridden by the flags below; other flags are refused.")
        add_config_arguments(p, stages=("trace", "fit", "certify"))  # every setting: one config file fits all
        options = {a.dest: "/".join(a.option_strings) for a in p._actions if a.option_strings}
        for action in p._actions:
            if action.dest in options and action.dest not in USES[stage] and action.dest not in EVERY_STAGE:
                action.help = argparse.SUPPRESS  # parsed (to name it when refused), not listed
        p.set_defaults(func=_main(stage, options))
