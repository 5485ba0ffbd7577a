"""Runs: the settings of a run, its files, and its stages from data to report.

    settings.py     RunConfig and each stage's settings
    config_file.py  TOML config files (and the JSON saved beside results)
    ann.py          the trained ANN and its cache
    network.py      ANN -> calibrated, converted SNN -> traces
    evaluation.py   the policies on test, and results.json
    artifacts.py    the run folder: file names, formats, checks
    stages.py       train -> convert -> trace -> fit -> evaluate -> report, and run(): their chain
"""

from snnexit.runs.config_file import load_config, save_config
from snnexit.runs.settings import CertifySettings, FitSettings, RunConfig, Settings, TraceSettings
from snnexit.runs.stages import STAGE_FUNCTIONS, Run, run, run_stage

__all__ = ["STAGE_FUNCTIONS", "CertifySettings", "FitSettings", "Run", "RunConfig", "Settings", "TraceSettings",
           "load_config", "run", "run_stage", "save_config"]
