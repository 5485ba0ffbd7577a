"""The converted SNN of a run folder or of an ANN checkpoint, ready to export.

A run folder gives its own network: ``snn.safetensors`` as ``snnexit convert`` wrote it (the ANN
weights, the converter's thresholds and the temperature fitted on the run's validation split),
loaded exactly; nothing is rebuilt from the ANN cache, so the export is the network the run's
traces, policy and certificate were made with. A checkpoint (an ANN's weights) is converted here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Callable

from snnexit.convert.fixes import NO_FIX
from snnexit.data import DataSplits, load_dataset
from snnexit.errors import SnnexitError
from snnexit.io import load_tensors
from snnexit.runs.ann import load_ann
from snnexit.runs.artifacts import SNN_FILE, SNN_FORMAT, SNN_VERSION, conversion_fix_of, load_converted, run_config_from
from snnexit.runs.config_file import newest_saved_config
from snnexit.runs.imported import NETWORK_FILE
from snnexit.runs.network import converted, needs_calibration_data
from snnexit.runs.settings import RunConfig


def _run_steps(folder: Path, converted_with: RunConfig) -> int:
    """T of the run in ``folder``: the newest settings saved there (``snnexit trace --T`` may have
    changed it after the conversion), else the conversion's."""
    saved = newest_saved_config(folder)
    T = (saved[0].get("T") if saved is not None else None) or converted_with.T
    return int(T)


def _run_network(folder: Path, cache_dir: str | None):
    """``(snn, config)`` of the run folder ``folder``: its ``snn.safetensors``, checked."""
    path = folder / SNN_FILE
    if not path.is_file():
        if (folder / NETWORK_FILE).is_file():
            raise SnnexitError(f"run {folder} runs a NIR graph it imported ({NETWORK_FILE}); export that graph "
                               f"file itself, or the network it came from")
        raise SnnexitError(f"{folder}: no {SNN_FILE} (not a run folder, or its network is not converted yet); run "
                           f"`snnexit convert --out {folder}`, or pass an ANN checkpoint")
    tensors, meta = load_tensors(path, fmt=SNN_FORMAT, version=SNN_VERSION)
    try:
        config = run_config_from(meta["config"])
    except (KeyError, TypeError, AttributeError):
        raise SnnexitError(f"{path}: converted-SNN metadata is incomplete (no 'config')") from None
    if conversion_fix_of(meta.get("snn_meta")) != NO_FIX:
        fix = meta["snn_meta"]["conversion_fix"].get("name")
        raise SnnexitError(f"run {folder} corrects its converted network with conversion fix {fix!r} (an input current "
                           f"per step or channel), which NIR cannot express: export a run made with --conversion-fix "
                           f"none")
    if cache_dir is not None:
        config.cache_dir = cache_dir
    config.device = "cpu"
    config.T = _run_steps(folder, config)
    return (tensors, meta), config


def exportable_snn(source: str | Path, checkpoint_config: RunConfig | None = None,
                   cache_dir: str | None = None) -> tuple[object, Callable[[], DataSplits]]:
    """``(snn, data)``: the SNN of the run folder ``source`` (its ``snn.safetensors``), or of the ANN
    checkpoint ``source`` built as ``checkpoint_config`` says; ``data()`` loads the run's data set
    (once, when asked: the exact export needs none). ``snn.meta`` names the input shape (one
    frame), T, the data set and, for a run, the temperature fitted on its validation split."""
    source = Path(source)
    if not source.exists():
        raise SnnexitError(f"{source}: no such run folder or checkpoint")
    if source.is_dir():
        stored, config = _run_network(source, cache_dir)
    elif checkpoint_config is None:
        raise SnnexitError("exporting a checkpoint needs --dataset and --model (and --L/--width if not the defaults)")
    else:
        config = checkpoint_config
        if cache_dir is not None:
            config.cache_dir = cache_dir
        config.device = "cpu"
    config.validate()

    @cache
    def data() -> DataSplits:
        return load_dataset(config.dataset, config.seed, root=config.data_dir, cache_dir=config.cache_dir)

    if source.is_dir():
        needs = data() if needs_calibration_data(stored[1].get("converter", config.converter)) else None
        snn, meta = load_converted(source / SNN_FILE, "cpu", needs, stored=stored)
        dims = meta["dims"]
        snn.meta["input_shape"] = [dims["in_channels"], dims["input_size"], dims["input_size"]]  # one frame
    else:
        splits = data()
        snn = converted(load_ann(source, config, splits), config.converter, splits)
        snn.meta["input_shape"] = list(splits.train.x.shape[2:] if splits.temporal else splits.train.x.shape[1:])
    snn.meta["T"] = config.T
    snn.meta["dataset"] = config.dataset
    return snn, data
