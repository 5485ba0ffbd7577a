"""``snnexit train | convert | trace | fit | evaluate | report``: one stage of a run at a time.

Every stage takes ``--config FILE`` plus command-line overrides, reads the previous stage's
files from the run folder (``--out``) and writes its own there, with its resolved config beside
them (``config.<stage>.json``). The stages themselves are :mod:`snnexit.runs.stages`; the files
and their checks :mod:`snnexit.runs.artifacts`.
"""

from __future__ import annotations

from snnexit.cli.common import progress_log
from snnexit.cli.config_args import add_config_arguments, settings_from_args
from snnexit.report import TABLE1_HEADER, table1_rows
from snnexit.runs import run_stage
from snnexit.runs.artifacts import STAGES

HELP = {
    "train": "train the QCFS ANN (or reuse the cached one) -> ann.safetensors",
    "convert": "calibrate and convert the trained ANN to an SNN -> snn.safetensors",
    "trace": "simulate the SNN on validation and test -> trace_val/trace_test.safetensors",
    "fit": "fit an exit policy (--policy NAME, default Dynamic Confidence) on the validation trace -> policy.json",
    "evaluate": "evaluate fixed T, the fitted policy, a certified exit and the oracle on the test trace -> results.json",
    "report": "write report.md and the figures from results.json and the traces",
}


def _main(stage: str):
    def main(args) -> int:
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
                           "files from the run folder (--out); settings from --config FILE, overridden by flags.")
        add_config_arguments(p, stages=("trace", "fit", "certify"))  # every stage takes every flag: one command line fits all
        p.set_defaults(func=_main(stage))
