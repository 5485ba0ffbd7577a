"""The real event data sets from a local copy (or one fetched with ``--download``), binned into
frames and split.

``root`` is the folder the published archives unpack to, or a copy that tonic or SpikingJelly
left on disk (:mod:`~snnexit.data.events.layouts` lists the layouts read).

* ``nmnist``: N-MNIST, ``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin``; 34x34 sensor, the
  official train / test split (validation: 20% of train).
* ``cifar10_dvs``: ``root/<class>/*.aedat`` with the ten CIFAR-10 classes (airplane,
  automobile, bird, cat, deer, dog, frog, horse, ship, truck); 128x128 sensor.
* ``dvs_gesture``: ``root/`` (or ``root/DvsGesture/``) holding ``userXX_<lighting>.aedat``
  with ``userXX_<lighting>_labels.csv`` beside each; 128x128 sensor; 11 classes. When
  ``trials_to_test.txt`` is there, the recordings it lists are the test split (the official
  split) and the rest is split 80/20 into train / validation. tonic's copy (already cut into
  gestures) has its own train / test folders.
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
from snnexit.data.events.aedat31 import DVS_GESTURE_SIZE, parse_aedat31, parse_gesture_labels, segment_gestures
from snnexit.data.events.binning import to_frames
from snnexit.data.events.foreign import (pool_frames, read_spikingjelly_events, read_spikingjelly_frames,
                                         read_tonic_gesture)
from snnexit.data.events.layouts import CIFAR10_DVS_CLASSES, Layout, Sample, find_layout, labels_of
from snnexit.data.events.ncaltech101 import NCALTECH101_SIZE, NMNIST_SIZE, parse_ncaltech101, parse_nmnist
from snnexit.data.events.simulator import default_cache_dir
from snnexit.data.splits import DataSplits, Split, make_splits, stratified_split
from snnexit.errors import SnnexitError
from snnexit.io import load_tensors, save_tensors

CACHE_FORMAT, CACHE_VERSION = "event_frames", 1
READERS_VERSION = 2  # in the cache key: 2, the strict readers (frames cached by laxer ones are not reused)
SENSORS = {"cifar10_dvs": CIFAR10_DVS_SIZE, "dvs_gesture": DVS_GESTURE_SIZE, "ncaltech101": NCALTECH101_SIZE,
           "nmnist": NMNIST_SIZE}
PUBLISHED_READERS = {"cifar10_dvs": parse_cifar10_dvs, "ncaltech101": parse_ncaltech101, "nmnist": parse_nmnist,
                     "dvs_gesture": parse_aedat31}


def list_cifar10_dvs(root) -> list[tuple[Path, int]]:
    """(file, label) for every sample of a CIFAR10-DVS copy (:mod:`~snnexit.data.events.layouts`)."""
    return [(s.path, s.label) for s in find_layout("cifar10_dvs", root).samples]


def list_ncaltech101(root) -> tuple[list[tuple[Path, int]], list[str]]:
    """(file, label) for every ``.bin`` of an N-Caltech101 copy, and the category names."""
    layout = find_layout("ncaltech101", root)
    return [(s.path, s.label) for s in layout.samples], layout.classes


def list_dvs_gesture(root) -> list[tuple[Path, Path, bool]]:
    """(recording, its labels csv, in the official test split) for a DVS128 Gesture copy of the
    published recordings."""
    layout = find_layout("dvs_gesture", root)
    if layout.kind != "published":
        raise SnnexitError(f"dvs_gesture: {layout.folder} holds {layout.kind} samples, not the published recordings")
    return [(s.path, s.labels_csv, s.is_test) for s in layout.samples]


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


def _read_events(layout: Layout, sample: Sample, sensor) -> np.ndarray:
    if layout.kind == "spikingjelly events":
        return read_spikingjelly_events(sample.path, sensor)
    if layout.kind == "tonic":
        return read_tonic_gesture(sample.path, sensor)
    return PUBLISHED_READERS[layout.dataset](sample.path)


def _gesture_segments(layout: Layout, T: int, size: int, by: str):
    """The published DVS128 Gesture recordings, cut into one sample per labelled segment."""
    frames, labels, is_test = [], [], []
    for s in layout.samples:
        events = parse_aedat31(s.path)
        for i, (label, seg) in enumerate(segment_gestures(events, parse_gesture_labels(s.labels_csv))):
            if len(seg) == 0:
                warnings.warn(f"{s.labels_csv}: gesture {i + 1} (class {label + 1}) has no events; skipped", stacklevel=5)
                continue
            frames.append(_bin(seg, f"{s.path} gesture {i + 1}", T, DVS_GESTURE_SIZE, size, by))
            labels.append(label)
            is_test.append(s.is_test)
    if not frames:
        raise SnnexitError(f"dvs_gesture: no labelled gesture with events under {layout.folder}")
    return np.stack(frames), np.array(labels, dtype=np.int64), np.array(is_test, dtype=bool)


def _build(layout: Layout, T: int, size: int, by: str):
    """frames (N, T, 2, size, size) float32, labels (N,), is_test (N,): every sample read and binned."""
    if layout.dataset == "dvs_gesture" and layout.kind == "published":
        return _gesture_segments(layout, T, size, by)
    sensor = SENSORS[layout.dataset]
    frames = np.empty((len(layout.samples), T, 2, size, size), dtype=np.float32)  # filled in place: N-MNIST is large
    for i, s in enumerate(layout.samples):
        if layout.kind == "spikingjelly frames":
            frames[i] = pool_frames(read_spikingjelly_frames(s.path, T, sensor), (size, size))
        else:
            frames[i] = _bin(_read_events(layout, s, sensor), s.path, T, sensor, size, by)
    return frames, labels_of(layout), np.array([s.is_test for s in layout.samples], dtype=bool)


def _load(name: str, seed: int, root, T: int, size: int, by: str, cache_dir) -> DataSplits:
    _check_settings(T, size, by)
    if size > min(SENSORS[name]):
        raise SnnexitError(f"size must be at most {min(SENSORS[name])} for {name} (its sensor is "
                           f"{SENSORS[name][1]}x{SENSORS[name][0]}), got {size}")
    layout = find_layout(name, root, T, by)
    settings = {"T": T, "size": size, "by": by, "layout": layout.kind, "classes": layout.classes,
                "test": [str(s.path.name) for s in layout.samples if s.is_test and s.labels_csv is not None]}
    if layout.kind == "published":  # the keys of frames cached before the other layouts were read
        settings.pop("layout")
        if name != "ncaltech101":
            settings.pop("classes")
        if name != "dvs_gesture":
            settings.pop("test")
    frames, labels, is_test = _cached_frames(name, layout.files(), settings, cache_dir,
                                             lambda: _build(layout, T, size, by))
    return _splits(name, frames, labels, is_test, layout.classes, seed)


@DATASETS.register("cifar10_dvs")
def cifar10_dvs(seed: int = 0, root: str | None = None, *, T: int = 10, size: int = 48, by: str = "time",
                cache_dir=None) -> DataSplits:
    """CIFAR10-DVS from a local folder (module doc): x (N, T, 2, size, size) float32 event counts."""
    return _load("cifar10_dvs", seed, root, T, size, by, cache_dir)


@DATASETS.register("ncaltech101")
def ncaltech101(seed: int = 0, root: str | None = None, *, T: int = 10, size: int = 48, by: str = "time",
                cache_dir=None) -> DataSplits:
    """N-Caltech101 from a local folder (module doc); the 180x240 sensor is pooled to size x size."""
    return _load("ncaltech101", seed, root, T, size, by, cache_dir)


@DATASETS.register("dvs_gesture")
def dvs_gesture(seed: int = 0, root: str | None = None, *, T: int = 16, size: int = 32, by: str = "time",
                cache_dir=None) -> DataSplits:
    """DVS128 Gesture from a local folder (module doc): one sample per labelled segment."""
    return _load("dvs_gesture", seed, root, T, size, by, cache_dir)


@DATASETS.register("nmnist")
def nmnist(seed: int = 0, root: str | None = None, *, T: int = 10, size: int = 34, by: str = "time",
           cache_dir=None) -> DataSplits:
    """N-MNIST from a local folder (module doc): the official Train / Test split (validation: 20%
    of Train, stratified), x (N, T, 2, 34, 34) float32 event counts. The full set (70,000
    recordings) takes about 6.5 GB at T = 10."""
    return _load("nmnist", seed, root, T, size, by, cache_dir)
