"""CIFAR-10 and CIFAR-100 from a local copy of the "python version" pickle batches.

Expected layouts (the folders the official archives unpack to, where torchvision's
``download=True`` leaves them; ``root`` may be the folder itself or its parent)::

    cifar-10-batches-py/   data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/      train, test, meta

Each batch is a pickled dict of numpy arrays and lists (``b'data'``: uint8 ``(N, 3072)``,
channel-major 32x32 RGB; ``b'labels'`` for CIFAR-10, ``b'fine_labels'`` for CIFAR-100).
Pickles can run code, so they are read with :class:`RestrictedUnpickler`, which resolves
only the few numpy functions that rebuild arrays and refuses every other global.

The official test set is the test split; the validation split is a seeded stratified 10%
of the official training set. Images are scaled to [0, 1] and normalised per channel; the
training augmentation is random crop (padding 4) + horizontal flip.
"""

from __future__ import annotations

import io
import importlib
import pickle
from pathlib import Path

import numpy as np
import torch

from snnexit.data.builtin import DATASETS
from snnexit.data.splits import Split, stratified_split
from snnexit.data.transforms import (CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, AugmentedSplits,
                                     CifarAugment, normalize)
from snnexit.errors import SnnexitError

# (module, name) pairs that rebuild numpy arrays; numpy 1 pickles name numpy.core, numpy 2
# pickles numpy._core. _codecs.encode turns text back into bytes in protocol-2 pickles
# written by Python 3 (it cannot run code).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays, lists, dicts, strings and numbers only."""

    def find_class(self, module: str, name: str):
        target = _ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")
        try:
            mod = importlib.import_module(target[0])
        except ImportError:  # numpy 1 has numpy.core, not numpy._core
            mod = importlib.import_module(target[0].replace("numpy._core", "numpy.core"))
        return getattr(mod, target[1])


def safe_unpickle(path: Path):
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (bytes keys as in the Python 2 originals)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnnexitError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise SnnexitError(f"{path}: {exc}") from None
    except Exception as exc:  # truncated or not a pickle at all
        raise SnnexitError(f"{path}: not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from None


def _get(d: dict, key: str):
    """Look a key up as bytes (Python 2 pickles) or str (Python 3 ones)."""
    if key.encode() in d:
        return d[key.encode()]
    return d.get(key)


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_unpickle(path)
    if not isinstance(batch, dict):
        raise SnnexitError(f"{path}: expected a pickled dict with 'data' and '{label_key}', got {type(batch).__name__}")
    data, labels = _get(batch, "data"), _get(batch, label_key)
    if data is None or labels is None:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
        raise SnnexitError(f"{path}: expected keys 'data' and '{label_key}', found {keys}")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise SnnexitError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise SnnexitError(f"{path}: '{label_key}' must hold {data.shape[0]} integers, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise SnnexitError(f"{path}: labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _find_root(root: str | None, folder: str, files: list[str], name: str) -> Path:
    layout = f"{folder}/ with {', '.join(files)} (the python version of {name})"
    if root is None:
        raise SnnexitError(f"{name} needs a local copy: pass its folder as root (--data-dir) or download it (--download); "
                           f"expected layout: {layout}")
    base = Path(root).expanduser()
    for candidate in (base, base / folder):
        if all((candidate / f).is_file() for f in files):
            return candidate
    if not base.exists():
        raise SnnexitError(f"{name} folder {base} does not exist; expected layout: {layout}")
    missing = [f for f in files if not (base / f).is_file() and not (base / folder / f).is_file()]
    raise SnnexitError(f"{base} is not a {name} folder: missing {', '.join(missing)}; expected layout: {layout}")


# data set -> (the folder its archive unpacks to, the files read there, its name in messages)
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "CIFAR-10"),
    "cifar100": ("cifar-100-python", ["train", "test"], "CIFAR-100"),
}


def find_cifar_root(name: str, root) -> Path:
    """The folder of ``name``'s batches: ``root`` itself or its ``cifar-10-batches-py`` /
    ``cifar-100-python`` subfolder (where torchvision and the official archive put them)."""
    folder, files, title = CIFAR_FILES[name]
    return _find_root(root, folder, files, title)


def _class_names(path: Path, key: str) -> list[str] | None:
    if not path.is_file():
        return None
    names = _get(safe_unpickle(path), key)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names is not None else None


def _to_splits(name: str, train: tuple, test: tuple, num_classes: int, seed: int, mean, std,
               val_fraction: float = 0.1) -> AugmentedSplits:
    (x_tr, y_tr), (x_te, y_te) = train, test
    tr, va, _ = stratified_split(x_tr, y_tr, (1 - val_fraction, val_fraction, 0.0), seed)

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        xt = normalize(torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0), mean, std)
        return Split(xt, torch.from_numpy(y))

    pad = tuple(-m / s for m, s in zip(mean, std))  # black after normalisation
    return AugmentedSplits(name, split(x_tr[tr], y_tr[tr]), split(x_tr[va], y_tr[va]), split(x_te, y_te),
                           num_classes, augment=CifarAugment(32, 4, pad_value=pad))


@DATASETS.register("cifar10")
def cifar10(seed: int = 0, root: str | None = None) -> AugmentedSplits:
    """CIFAR-10 from ``root`` (``cifar-10-batches-py``): 50k train (10% of it validation), 10k test."""
    files = CIFAR_FILES["cifar10"][1]
    base = find_cifar_root("cifar10", root)
    parts = [_read_batch(base / f, "labels", 10) for f in files[:5]]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = _read_batch(base / "test_batch", "labels", 10)
    data = _to_splits("cifar10", train, test, 10, seed, CIFAR10_MEAN, CIFAR10_STD)
    data.class_names = _class_names(base / "batches.meta", "label_names")
    return data


@DATASETS.register("cifar100")
def cifar100(seed: int = 0, root: str | None = None) -> AugmentedSplits:
    """CIFAR-100 (fine labels) from ``root`` (``cifar-100-python``): 50k train (10% validation), 10k test."""
    base = find_cifar_root("cifar100", root)
    train = _read_batch(base / "train", "fine_labels", 100)
    test = _read_batch(base / "test", "fine_labels", 100)
    data = _to_splits("cifar100", train, test, 100, seed, CIFAR100_MEAN, CIFAR100_STD)
    data.class_names = _class_names(base / "meta", "fine_label_names")
    return data
