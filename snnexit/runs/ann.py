"""The trained ANN of a run: built from the settings, trained once, cached by its training key.

A cached ANN is the file ``ann-<dataset>-<model>-<key>.safetensors`` in the cache folder, where
``key`` hashes every setting that determines the weights (:meth:`RunConfig.train_key`). A run
with the same settings reuses it; an interrupted training resumes from its per-epoch checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from snnexit import environment
from snnexit.data import DataSplits, Split
from snnexit.data.transforms import PrefixMeans
from snnexit.errors import SnnexitError
from snnexit.io import load_tensors, save_tensors
from snnexit.models import create_model
from snnexit.quant import QUANTIZERS
from snnexit.runs.settings import RunConfig
from snnexit.train import TrainConfig, train

ANN_FORMAT, ANN_VERSION = "ann", 1


def default_cache_dir() -> Path:
    """``$SNNEXIT_CACHE`` unless unset or empty, else ``~/.cache/snnexit`` (:mod:`snnexit.environment`)."""
    return environment.default_cache_dir()


def data_dims(data) -> dict:
    """The sizes a model is built for: classes, input channels, input size."""
    return {"num_classes": data.num_classes, "in_channels": data.in_channels, "input_size": data.input_size}


def build_ann(config: RunConfig, data) -> nn.Module:
    """A freshly initialised ANN (seeded) for ``data`` (anything with ``num_classes``,
    ``in_channels`` and ``input_size``), with the activation ``config.quantizer`` names."""
    kwargs = {} if config.width is None else {"width": config.width}
    activation = QUANTIZERS.get(config.quantizer)(levels=config.levels, bits=config.bits,
                                                   init_threshold=config.init_threshold)
    torch.manual_seed(config.seed)
    return create_model(config.model, num_classes=data.num_classes, in_channels=data.in_channels,
                        input_size=data.input_size, activation=activation, **kwargs)


def ann_view(data: DataSplits) -> DataSplits:
    """What the ANN sees: the data itself, or for event data ``(N, T, 2, H, W)`` the mean frame
    ``(N, 2, H, W)`` of each recording.

    The converted SNN is then fed one frame per step. Its first layer is affine, so over T steps
    it integrates ``T * layer(mean of the frames seen)``: the rate code of the ANN on the mean
    frame, which is what conversion needs. (Direct training on the frames is ``cutoff-train``.)
    """
    if not data.temporal:
        return data
    mean = lambda split: Split(split.x.mean(1), split.y)  # noqa: E731  (N, T, C, H, W) -> (N, C, H, W)
    view = DataSplits(data.name, mean(data.train), mean(data.val), mean(data.test), data.num_classes)
    if getattr(data, "augment", None) is not None:
        view.augment = data.augment
    return view


def ann_training_split(data: DataSplits, config: RunConfig) -> tuple[Split, object]:
    """``(split, augment)`` the ANN trains on: :func:`ann_view`'s, or for event data with
    ``config.ann_event_input == "prefix_means"`` the frames themselves, each batch reduced to the
    mean of a random number of first frames (:class:`~snnexit.data.transforms.PrefixMeans`).

    Why: the converted SNN sees one frame per step, so after ``k`` steps its first layer has
    integrated ``k`` times the mean of the first ``k`` frames, not of all of them. An ANN trained
    on mean frames only has never seen those prefixes (a saccade's first frames hold other edges
    than the whole recording), and the SNN's early answers are those of an ANN off its training
    distribution. Trained on prefix means it is right about every step's input."""
    view = ann_view(data)
    if not data.temporal or config.ann_event_input == "mean_frame":
        return view.train, getattr(view, "augment", None)
    return data.train, PrefixMeans(then=getattr(data, "augment", None))


def ann_cache_paths(config: RunConfig) -> tuple[Path, str, Path]:
    """(cache folder, training key, path of the cached weights) of the ANN ``config`` trains."""
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    key = config.train_key()
    return cache, key, cache / f"ann-{config.dataset}-{config.model}-{key}.safetensors"


def load_ann(path: str | Path, config: RunConfig, data, tensors: dict | None = None) -> nn.Module:
    """The ANN saved at ``path`` (the cache or a run's ``ann.safetensors``), built for ``config``
    and ``data``'s sizes: the one way a trained ANN is loaded (``tensors``: the file's, when the
    caller has read them already)."""
    if tensors is None:
        tensors, _ = load_tensors(path, fmt=ANN_FORMAT, version=ANN_VERSION)
    model = build_ann(config, data)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise SnnexitError(f"{path}: weights do not fit model {config.model!r}: {str(exc)[:200]}") from None
    return model.eval()


def save_ann(path: str | Path, model: nn.Module, config: RunConfig, meta: dict | None = None) -> None:
    save_tensors(path, model.state_dict(), fmt=ANN_FORMAT, version=ANN_VERSION,
                 meta={"key": config.train_key(), **(meta or {})})


def trained_ann(config: RunConfig, data: DataSplits, log=print, *, trainer=train, write_cache: bool = True) -> nn.Module:
    """Train the ANN, or load it from the cache when the same settings were trained before
    (event data: on prefix means or mean frames of the recordings, see :func:`ann_training_split`).

    ``trainer``: :func:`snnexit.train.train` or a function with its signature (the distributed
    one); ``write_cache``: False in all processes but one when several train together."""
    view = ann_view(data)
    cache, key, weights = ann_cache_paths(config)
    if weights.exists():
        log(f"reusing trained ANN {weights}")
        return load_ann(weights, config, view).to(config.device)
    model = build_ann(config, view)
    log(f"training {config.model} on {config.dataset} for {config.epochs} epochs")
    tc = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed)
    checkpoint = cache / f"train-{key}.pt"
    split, augment = ann_training_split(data, config)
    trainer(model, split, tc, device=config.device, checkpoint=checkpoint, progress=config.progress,
            augment=augment, log=log)
    if write_cache:
        save_ann(weights, model, config)
        checkpoint.unlink(missing_ok=True)  # the cached weights replace it: a finished run leaves no checkpoint
    return model.eval()
