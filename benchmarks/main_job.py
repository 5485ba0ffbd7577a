"""The finished main job a benchmark measures (``make run``'s folder, ``runs/default``): its
settings, data, converted network, test trace and certified exit, loaded as the stages wrote them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from snnexit.data import DataSplits, load_dataset
from snnexit.exit import deployable_policy, load_exit_rule
from snnexit.runs.artifacts import CERTIFIED_FILE, SNN_FILE, load_converted, run_config_from
from snnexit.runs.settings import RunConfig
from snnexit.simulate import SpikingNetwork, Trace

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUN = ROOT / "runs" / "default"


@dataclass
class MainJob:
    path: Path
    config: RunConfig
    data: DataSplits
    snn: SpikingNetwork
    test: Trace
    rule: object | None  # the certified exit as a deployable policy (None: the run certified none)

    @property
    def shown_path(self) -> str:
        return shown_path(self.path)


def shown_path(path: str | Path) -> str:
    """``path`` relative to the repository where it lies inside it (results carry no home folders)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def load_main_job(run: str | Path = DEFAULT_RUN) -> MainJob:
    run = Path(run)
    config = run_config_from(json.loads((run / "config.run.json").read_text()))
    data = load_dataset(config.dataset, config.seed)
    snn, _ = load_converted(run / SNN_FILE, "cpu", data)
    test = Trace.load(run / "trace_test.safetensors")
    certified = run / CERTIFIED_FILE
    rule = deployable_policy(load_exit_rule(certified)[0]) if certified.is_file() else None
    return MainJob(run, config, data, snn, test, rule)
