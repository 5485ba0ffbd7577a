"""Local copies of the real event data sets, binned into frames and split.

Nothing is downloaded: ``root`` is the folder the official archive unpacks to.

* ``cifar10_dvs``: ``root/<class>/*.aedat`` with the ten CIFAR-10 classes (airplane,
  automobile, bird, cat, deer, dog, frog, horse, ship, truck); 128x128 sensor.
* ``dvs_gesture``: ``root/`` (or ``root/DvsGesture/``) holding ``userXX_<lighting>.aedat``
  with ``userXX_<lighting>_labels.csv`` beside each; 128x128 sensor; 11 classes. When
  ``trials_to_test.txt`` is there, the recordings it lists are the test split (the official
  split) and the rest is split 80/20 into train / validation.
* ``ncaltech101``: ``root/<category>/*.bin`` (the ``Caltech101`` folder of the archive); the
  categories are the sorted subfolder names; 180x240 sensor (pooled to a square ``size``).

Each sample becomes ``T`` frames by time (or by event count: ``by="count"``) pooled to
``size x size`` pixels; splits are seeded and stratified (60/20/20 unless an official split
exists). Binned frames are cached (keyed by the files' names, sizes and modification times
and every setting), so a second load skips the parsing.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from snnexit.data.builtin import DATASETS
from snnexit.data.events.aedat2 import CIFAR10_DVS_SIZE, parse_cifar10_dvs
from snnexit.data.events.aedat31 import (DVS_GESTURE_CLASSES, DVS_GESTURE_SIZE, parse_aedat31, parse_gesture_labels,
                                         segment_gestures)
from snnexit.data.events.binning import to_frames
from snnexit.data.events.simulator import default_cache_dir
from snnexit.data.events.ncaltech101 import NCALTECH101_SIZE, parse_ncaltech101
from snnexit.data.splits import DataSplits, Split, make_splits, stratified_split
from snnexit.errors import SnnexitError
from snnexit.io import load_tensors, save_tensors

CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
LAYOUTS = {
    "cifar10_dvs": "root/<class>/*.aedat with class folders " + ", ".join(CIFAR10_DVS_CLASSES),
    "dvs_gesture": "root/ (or root/DvsGesture/) with userXX_<lighting>.aedat and userXX_<lighting>_labels.csv "
                   "beside each (optionally trials_to_train.txt / trials_to_test.txt)",
    "ncaltech101": "root/<category>/*.bin (the Caltech101 folder of the N-Caltech101 archive)",
}
CACHE_FORMAT, CACHE_VERSION = "event_frames", 1
READERS_VERSION = 2  # in the cache key: 2, the strict readers (frames cached by laxer ones are not reused)


def _folder(name: str, root) -> Path:
    if root is None:
        raise SnnexitError(f"{name} needs the local folder of the data set: pass it as root (--data-dir); "
                           f"expected layout: {LAYOUTS[name]}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise SnnexitError(f"{name}: {base} does not exist or is not a folder; expected layout: {LAYOUTS[name]}")
    return base


def list_cifar10_dvs(root) -> list[tuple[Path, int]]:
    """(file, label) for every ``.aedat`` under the class folders of a CIFAR10-DVS copy."""
    base = _folder("cifar10_dvs", root)
    items = [(f, label) for label, cls in enumerate(CIFAR10_DVS_CLASSES) if (base / cls).is_dir()
             for f in sorted((base / cls).glob("*.aedat"))]
    if not items:
        raise SnnexitError(f"cifar10_dvs: no .aedat files in class folders under {base}; "
                           f"expected layout: {LAYOUTS['cifar10_dvs']}")
    return items


def list_ncaltech101(root) -> tuple[list[tuple[Path, int]], list[str]]:
    """(file, label) for every ``.bin`` of an N-Caltech101 copy, and the category names."""
    base = _folder("ncaltech101", root)
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and any(d.glob("*.bin")))
    if len(classes) < 2:
        raise SnnexitError(f"ncaltech101: found {len(classes)} category folder(s) with .bin files under {base}, "
                           f"need at least 2; expected layout: {LAYOUTS['ncaltech101']}")
    items = [(f, label) for label, cls in enumerate(classes) for f in sorted((base / cls).glob("*.bin"))]
    return items, classes


def list_dvs_gesture(root) -> list[tuple[Path, Path, bool]]:
    """(recording, its labels csv, in the official test split) for a DVS128 Gesture copy."""
    base = _folder("dvs_gesture", root)
    if not any(base.glob("*.aedat")) and (base / "DvsGesture").is_dir():
        base = base / "DvsGesture"
    recordings = sorted(base.glob("*.aedat"))
    if not recordings:
        raise SnnexitError(f"dvs_gesture: no .aedat recordings in {base}; expected layout: {LAYOUTS['dvs_gesture']}")
    test_list = base / "trials_to_test.txt"
    test_names = set()
    if test_list.is_file():
        test_names = {ln.strip() for ln in test_list.read_text(errors="replace").splitlines() if ln.strip()}
    out = []
    for rec in recordings:
        csv = rec.with_name(rec.stem + "_labels.csv")
        if not csv.is_file():
            raise SnnexitError(f"dvs_gesture: {rec.name} has no {csv.name} beside it; expected layout: {LAYOUTS['dvs_gesture']}")
        out.append((rec, csv, rec.name in test_names))
    return out


def _fingerprint(files: Iterable[Path]) -> list:
    return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def _cached_frames(name: str, files: list[Path], settings: dict, cache_dir,
                   build: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """frames (N, T, 2, h, w) float32, labels (N,), is_test (N,) bool: from the cache or ``build``."""
    key = hashlib.sha256(json.dumps({"name": name, "files": _fingerprint(files), "readers": READERS_VERSION, **settings},
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir or default_cache_dir()) / name / f"{key}.safetensors"
    if path.is_file():
        try:
            t, _ = load_tensors(path, fmt=CACHE_FORMAT, version=CACHE_VERSION)
            return t["frames"].float().numpy(), t["labels"].numpy(), t["is_test"].numpy().astype(bool)
        except (SnnexitError, KeyError) as exc:
            warnings.warn(f"rebuilding the {name} cache: {exc}", stacklevel=3)
    frames, labels, is_test = build()
    try:  # event counts: int32 is exact and half the size of float64
        save_tensors(path, {"frames": torch.from_numpy(frames.astype(np.int32)), "labels": torch.from_numpy(labels),
                            "is_test": torch.from_numpy(is_test.astype(np.uint8))},
                     fmt=CACHE_FORMAT, version=CACHE_VERSION, meta={"name": name, **settings})
    except OSError as exc:
        warnings.warn(f"cannot cache {name} frames at {path}: {exc}", stacklevel=3)
    return frames, labels, is_test


def _bin(events: np.ndarray, where, T: int, sensor, size, by: str) -> np.ndarray:
    try:
        return to_frames(events, T, sensor, by=by, size=size)
    except SnnexitError as exc:
        raise SnnexitError(f"{where}: {exc}") from None


def _check_settings(T, size, by):
    if not isinstance(T, int) or T < 1:
        raise SnnexitError(f"T must be a positive integer, got {T!r}")
    if not isinstance(size, int) or size < 1:
        raise SnnexitError(f"size must be a positive integer, got {size!r}")
    if by not in ("time", "count"):
        raise SnnexitError(f"unknown binning {by!r}. Known: count, time")


SPLIT_NAMES = ("training", "validation", "test")
MIN_PER_CLASS = 3  # round(0.2 * 3) = 1: the least count that reaches every split (60/20/20 and 80/20)


def _check_splits(name: str, splits: DataSplits, labels: np.ndarray, class_names) -> None:
    """Refuse splits of which one is empty, naming the split and the classes too small to fill it
    (``labels``: those of the samples that were split by class)."""
    for split_name, split in zip(SPLIT_NAMES, (splits.train, splits.val, splits.test)):
        if len(split) == 0:
            counts = np.bincount(labels, minlength=len(class_names))
            small = [f"{class_names[c]} ({counts[c]})" for c in np.flatnonzero((counts > 0) & (counts < MIN_PER_CLASS))]
            raise SnnexitError(f"{name}: the {split_name} split is empty ({len(labels)} samples split in "
                               f"{int((counts > 0).sum())} classes); every class needs at least {MIN_PER_CLASS} "
                               f"samples to reach each split, fewer in: {', '.join(small[:10]) or 'none'}")


def _splits(name: str, frames, labels, is_test, class_names, seed: int) -> DataSplits:
    num_classes = len(class_names)
    if is_test.any() and not is_test.all():  # the official test split; train / val from the rest
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
        y = torch.from_numpy(labels.astype(np.int64))
        rest = np.flatnonzero(~is_test)
        tr, va, _ = stratified_split(frames[rest], labels[rest], (0.8, 0.2, 0.0), seed)
        te = np.random.default_rng(seed).permutation(np.flatnonzero(is_test))
        pick = lambda idx: Split(x[torch.as_tensor(idx)], y[torch.as_tensor(idx)])  # noqa: E731
        splits = DataSplits(name, pick(rest[tr]), pick(rest[va]), pick(te), num_classes)
    else:
        splits = make_splits(name, frames, labels, num_classes, seed)
    _check_splits(name, splits, labels[~is_test] if is_test.any() and not is_test.all() else labels, class_names)
    splits.temporal = True
    return splits


@DATASETS.register("cifar10_dvs")
def cifar10_dvs(seed: int = 0, root: str | None = None, *, T: int = 10, size: int = 48, by: str = "time",
                cache_dir=None) -> DataSplits:
    """CIFAR10-DVS from a local folder (module doc): x (N, T, 2, size, size) float32 event counts."""
    _check_settings(T, size, by)
    items = list_cifar10_dvs(root)

    def build():
        frames = np.stack([_bin(parse_cifar10_dvs(f), f, T, CIFAR10_DVS_SIZE, size, by) for f, _ in items])
        return frames, np.array([lab for _, lab in items], dtype=np.int64), np.zeros(len(items), bool)

    frames, labels, is_test = _cached_frames("cifar10_dvs", [f for f, _ in items],
                                             {"T": T, "size": size, "by": by}, cache_dir, build)
    return _splits("cifar10_dvs", frames, labels, is_test, CIFAR10_DVS_CLASSES, seed)


@DATASETS.register("ncaltech101")
def ncaltech101(seed: int = 0, root: str | None = None, *, T: int = 10, size: int = 48, by: str = "time",
                cache_dir=None) -> DataSplits:
    """N-Caltech101 from a local folder (module doc); the 180x240 sensor is pooled to size x size."""
    _check_settings(T, size, by)
    items, classes = list_ncaltech101(root)

    def build():
        frames = np.stack([_bin(parse_ncaltech101(f), f, T, NCALTECH101_SIZE, size, by) for f, _ in items])
        return frames, np.array([lab for _, lab in items], dtype=np.int64), np.zeros(len(items), bool)

    frames, labels, is_test = _cached_frames("ncaltech101", [f for f, _ in items],
                                             {"T": T, "size": size, "by": by, "classes": classes}, cache_dir, build)
    return _splits("ncaltech101", frames, labels, is_test, classes, seed)


@DATASETS.register("dvs_gesture")
def dvs_gesture(seed: int = 0, root: str | None = None, *, T: int = 16, size: int = 32, by: str = "time",
                cache_dir=None) -> DataSplits:
    """DVS128 Gesture from a local folder (module doc): one sample per labelled segment."""
    _check_settings(T, size, by)
    recordings = list_dvs_gesture(root)

    def build():
        frames, labels, is_test = [], [], []
        for rec, csv, test in recordings:
            events = parse_aedat31(rec)
            for i, (label, seg) in enumerate(segment_gestures(events, parse_gesture_labels(csv))):
                if len(seg) == 0:
                    warnings.warn(f"{csv}: gesture {i + 1} (class {label + 1}) has no events; skipped", stacklevel=4)
                    continue
                frames.append(_bin(seg, f"{rec} gesture {i + 1}", T, DVS_GESTURE_SIZE, size, by))
                labels.append(label)
                is_test.append(test)
        if not frames:
            raise SnnexitError(f"dvs_gesture: no labelled gesture with events under {root}")
        return np.stack(frames), np.array(labels, dtype=np.int64), np.array(is_test, dtype=bool)

    files = [f for rec, csv, _ in recordings for f in (rec, csv)]
    settings = {"T": T, "size": size, "by": by, "test": [rec.name for rec, _, test in recordings if test]}
    frames, labels, is_test = _cached_frames("dvs_gesture", files, settings, cache_dir, build)
    return _splits("dvs_gesture", frames, labels, is_test, [f"class {c}" for c in range(1, DVS_GESTURE_CLASSES + 1)], seed)
