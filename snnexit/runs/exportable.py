"""The converted SNN of a finished run folder or of an ANN checkpoint, ready to export."""

from __future__ import annotations

from pathlib import Path

from snnexit.convert.fixes import NO_FIX
from snnexit.data import load_dataset
from snnexit.errors import SnnexitError
from snnexit.io import read_json_file
from snnexit.runs.ann import ann_cache_paths, load_ann
from snnexit.runs.artifacts import RESULTS_FILE, run_config_from
from snnexit.runs.network import converted
from snnexit.runs.settings import RunConfig


def run_folder_config(folder: Path) -> tuple[RunConfig, float | None]:
    """The settings of the run in ``folder`` and its temperature, from its ``results.json``."""
    results_file = folder / RESULTS_FILE
    if not results_file.is_file():
        raise SnnexitError(f"{folder}: not a run folder (no results.json); pass a run folder or an ANN checkpoint")
    results = read_json_file(results_file, "results")
    try:
        config = run_config_from(results["config"])
        temperature = (results.get("calibration") or {}).get("temperature")
    except (KeyError, TypeError, AttributeError):
        raise SnnexitError(f"{results_file}: corrupt results (no 'config')") from None
    return config, temperature


def exportable_snn(source: str | Path, checkpoint_config: RunConfig | None = None, cache_dir: str | None = None):
    """``(snn, data)``: the SNN of the run folder ``source`` (its trained ANN from the cache), or of
    the ANN checkpoint ``source`` built as ``checkpoint_config`` says; ``snn.meta`` names the input
    shape (one frame), T, the data set and, for a run, the temperature."""
    source = Path(source)
    if not source.exists():
        raise SnnexitError(f"{source}: no such run folder or checkpoint")
    if source.is_dir():
        config, temperature = run_folder_config(source)
        if config.fix_name() != NO_FIX:
            raise SnnexitError(f"run {source} corrects its converted network with conversion fix {config.fix_name()!r} "
                               f"(an input current per step or channel), which NIR cannot express: export a run made "
                               f"with --conversion-fix none")
    elif checkpoint_config is None:
        raise SnnexitError("exporting a checkpoint needs --dataset and --model (and --L/--width if not the defaults)")
    else:
        config, temperature = checkpoint_config, None
    if cache_dir is not None:
        config.cache_dir = cache_dir
    config.device = "cpu"
    config.validate()
    data = load_dataset(config.dataset, config.seed, root=config.data_dir, cache_dir=config.cache_dir)
    weights = source
    if source.is_dir():
        _, _, weights = ann_cache_paths(config)
        if not weights.is_file():
            raise SnnexitError(f"the trained ANN of run {source} is not in the cache ({weights}); rerun "
                               f"`snnexit run` with the same settings, or pass --cache-dir")
    snn = converted(load_ann(weights, config, data), config.converter, data, temperature)
    snn.meta["input_shape"] = list(data.train.x.shape[2:] if data.temporal else data.train.x.shape[1:])  # one frame
    snn.meta["T"] = config.T
    snn.meta["dataset"] = config.dataset
    return snn, data
