"""Where the files of an event data set are: the published layout, and the layouts that tonic
and SpikingJelly leave on disk, so that a copy another tool downloaded is read where it is.

``root`` (``--data-dir``) may be the folder of the files or a folder above it that the tool
made (tonic's ``save_to``, SpikingJelly's ``root``). Tried in this order, the first found wins:

| data set | published files (also tonic's, and SpikingJelly's ``extract/``) | tonic | SpikingJelly ``events_np/`` | SpikingJelly frames |
|---|---|---|---|---|
| nmnist | ``[NMNIST/]Train/<digit>/*.bin``, ``Test/...`` | (the published files) | ``train/<digit>/*.npz``, ``test/...`` | ``frames_number_<T>_split_by_<time|number>/train/<digit>/*.npz`` |
| cifar10_dvs | ``<class>/*.aedat`` (AEDAT 2.0) | ``CIFAR10DVS/<class>/*.aedat4``: not read | ``<class>/*.npz`` | ``frames_number_.../<class>/*.npz`` |
| dvs_gesture | ``[DvsGesture/]userXX_<lighting>.aedat`` + ``_labels.csv`` | ``[DVSGesture/]ibmGestureTrain/userXX_<lighting>/<label>.npy``, ``ibmGestureTest/...`` | ``train/<label>/*.npz``, ``test/...`` | ``frames_number_.../train/<label>/*.npz`` |
| ncaltech101 | ``[Caltech101/]<category>/*.bin`` (SpikingJelly: ``extract/Caltech101/``) | ``NCALTECH101/Caltech101/...`` | | |

Events (files and ``events_np``) are binned by :func:`~snnexit.data.events.binning.to_frames`
at any T; SpikingJelly's frames are read only when no events are there and only for the T and
binning asked (``by="time"``: ``split_by_time``, ``by="count"``: ``split_by_number``), as
SpikingJelly cut them (:mod:`snnexit.data.events.foreign`).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snnexit.errors import SnnexitError

CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS = tuple(str(d) for d in range(10))
GESTURES = tuple(str(c) for c in range(11))  # tonic's and SpikingJelly's labels 0..10 (classes 1..11)
FRAMES_FOLDER = re.compile(r"frames_number_(\d+)_split_by_(time|number)")
SPLIT_BY = {"time": "time", "count": "number"}  # our binning -> SpikingJelly's split_by

LAYOUTS = {
    "nmnist": "root/Train/<digit>/*.bin and root/Test/<digit>/*.bin (the published N-MNIST zips; tonic's "
              "save_to/NMNIST/; SpikingJelly's root/extract/), SpikingJelly's root/events_np/{train,test}/<digit>/*.npz, "
              "or its root/frames_number_<T>_split_by_<time|number>/",
    "cifar10_dvs": "root/<class>/*.aedat with class folders " + ", ".join(CIFAR10_DVS_CLASSES)
                   + " (also SpikingJelly's root/extract/), SpikingJelly's root/events_np/<class>/*.npz or its "
                     "root/frames_number_<T>_split_by_<time|number>/",
    "dvs_gesture": "root/ (or root/DvsGesture/, SpikingJelly's root/extract/DvsGesture/) with userXX_<lighting>.aedat "
                   "and userXX_<lighting>_labels.csv beside each (optionally trials_to_train.txt / trials_to_test.txt), "
                   "tonic's root/ibmGestureTrain/ and ibmGestureTest/ (or root/DVSGesture/...), SpikingJelly's "
                   "root/events_np/{train,test}/<label>/*.npz or its root/frames_number_<T>_split_by_<time|number>/",
    "ncaltech101": "root/<category>/*.bin (the Caltech101 folder of the N-Caltech101 archive; also root/Caltech101/, "
                   "tonic's root/NCALTECH101/Caltech101/)",
}


@dataclass
class Sample:
    path: Path
    label: int  # -1 for a DVS128 Gesture recording (its labels csv says what each segment is)
    is_test: bool  # in the official test split
    labels_csv: Path | None = None


@dataclass
class Layout:
    """The files of one data set as one tool left them."""

    dataset: str
    kind: str  # "published", "tonic", "spikingjelly events", "spikingjelly frames"
    folder: Path
    samples: list[Sample]
    classes: list[str]
    frames: int | None = None  # SpikingJelly frames: their T

    def files(self) -> list[Path]:
        return [f for s in self.samples for f in (s.path, s.labels_csv) if f is not None]


def _dirs(folder: Path) -> list[Path]:
    try:
        return sorted(d for d in folder.iterdir() if d.is_dir())
    except OSError:
        return []


def _by_class(folder: Path, classes, pattern: str, is_test: bool = False, deep: bool = False) -> list[Sample]:
    """Samples in ``folder/<class>/`` for every class present (label = index in ``classes``)."""
    out = []
    for label, cls in enumerate(classes):
        sub = folder / cls
        if sub.is_dir():
            files = sub.rglob(pattern) if deep else sub.glob(pattern)
            out += [Sample(f, label, is_test) for f in sorted(files) if f.is_file()]
    return out


def _npz_holds(sample: Sample) -> str:
    """"events" or "frames": what a SpikingJelly ``.npz`` holds (from its array names)."""
    try:
        with zipfile.ZipFile(sample.path) as zf:
            names = {n.removesuffix(".npy") for n in zf.namelist()}
    except (OSError, zipfile.BadZipFile):
        raise SnnexitError(f"{sample.path}: not a readable .npz (a zip of .npy arrays)") from None
    if "frames" in names:
        return "frames"
    if {"t", "x", "y", "p"} <= names:
        return "events"
    raise SnnexitError(f"{sample.path}: a SpikingJelly .npz holds 'frames' or t, x, y, p; found {sorted(names)}")


def _split_folders(folder: Path, classes, pattern: str) -> list[Sample]:
    """``folder/{train,test}/<class>/`` (both needed: the official split)."""
    if not ((folder / "train").is_dir() and (folder / "test").is_dir()):
        return []
    train = _by_class(folder / "train", classes, pattern)
    test = _by_class(folder / "test", classes, pattern, is_test=True)
    return train + test if train and test else []


def _spikingjelly(dataset: str, root: Path, classes, T: int | None, by: str, split: bool) -> Layout | None:
    """SpikingJelly's events (``events_np``), else its frames for (T, by): at ``root`` or below."""
    def samples_in(folder: Path) -> list[Sample]:
        return _split_folders(folder, classes, "*.npz") if split else _by_class(folder, classes, "*.npz")

    for folder in (root / "events_np", root):
        samples = samples_in(folder)
        if samples and _npz_holds(samples[0]) == "events":
            return Layout(dataset, "spikingjelly events", folder, samples, list(classes))
    wanted = None if T is None else f"frames_number_{T}_split_by_{SPLIT_BY[by]}"
    candidates = [root] if FRAMES_FOLDER.fullmatch(root.name) else [d for d in _dirs(root) if FRAMES_FOLDER.fullmatch(d.name)]
    present = [d for d in candidates if samples_in(d)]
    for folder in present:
        if wanted is None or folder.name == wanted:
            samples = samples_in(folder)
            if _npz_holds(samples[0]) == "frames":
                T_found = int(FRAMES_FOLDER.fullmatch(folder.name).group(1))
                return Layout(dataset, "spikingjelly frames", folder, samples, list(classes), frames=T_found)
    if present:
        raise SnnexitError(f"{dataset}: SpikingJelly frames in {', '.join(str(d) for d in present)}, but none binned "
                           f"as asked ({wanted}); SpikingJelly's events (events_np/) or the published files can be "
                           f"binned at any T")
    return None


def _nmnist(root: Path, T, by) -> Layout | None:
    for folder in (root, root / "NMNIST", root / "extract"):
        if (folder / "Train").is_dir() and (folder / "Test").is_dir():
            train = _by_class(folder / "Train", DIGITS, "*.bin")
            test = _by_class(folder / "Test", DIGITS, "*.bin", is_test=True)
            if train and test:
                return Layout("nmnist", "published", folder, train + test, list(DIGITS))
    return _spikingjelly("nmnist", root, DIGITS, T, by, split=True)


def _cifar10_dvs(root: Path, T, by) -> Layout | None:
    for folder in (root, root / "extract"):
        samples = _by_class(folder, CIFAR10_DVS_CLASSES, "*.aedat", deep=True)
        if samples:
            return Layout("cifar10_dvs", "published", folder, samples, list(CIFAR10_DVS_CLASSES))
    found = _spikingjelly("cifar10_dvs", root, CIFAR10_DVS_CLASSES, T, by, split=False)
    if found is None:
        for folder in (root, root / "CIFAR10DVS"):
            if _by_class(folder, CIFAR10_DVS_CLASSES, "*.aedat4"):
                raise SnnexitError(f"cifar10_dvs: {folder} holds tonic's AEDAT 4 conversions (*.aedat4), which snnexit "
                                   f"does not read; the published AEDAT 2.0 files come with --download")
    return found


def _gesture_recordings(root: Path) -> Layout | None:
    for folder in (root, root / "DvsGesture", root / "extract" / "DvsGesture"):
        recordings = sorted(folder.glob("*.aedat")) if folder.is_dir() else []
        if not recordings:
            continue
        test_list = folder / "trials_to_test.txt"
        test_names = set()
        if test_list.is_file():
            test_names = {ln.strip() for ln in test_list.read_text(errors="replace").splitlines() if ln.strip()}
        samples = []
        for rec in recordings:
            csv = rec.with_name(rec.stem + "_labels.csv")
            if not csv.is_file():
                raise SnnexitError(f"dvs_gesture: {rec.name} has no {csv.name} beside it; expected layout: "
                                   f"{LAYOUTS['dvs_gesture']}")
            samples.append(Sample(rec, -1, rec.name in test_names, csv))
        return Layout("dvs_gesture", "published", folder, samples, [f"class {c}" for c in range(1, 12)])
    return None


def _dvs_gesture(root: Path, T, by) -> Layout | None:
    found = _gesture_recordings(root)
    if found is not None:
        return found
    for folder in (root, root / "DVSGesture"):
        parts = [folder / "ibmGestureTrain", folder / "ibmGestureTest"]
        if all(p.is_dir() for p in parts):
            samples = []
            for part, is_test in zip(parts, (False, True)):
                for user in _dirs(part):
                    samples += [Sample(f, int(f.stem), is_test) for f in sorted(user.glob("*.npy"))
                                if f.stem in GESTURES]
            if any(s.is_test for s in samples) and not all(s.is_test for s in samples):
                return Layout("dvs_gesture", "tonic", folder, samples, [f"class {c}" for c in range(1, 12)])
    found = _spikingjelly("dvs_gesture", root, GESTURES, T, by, split=True)
    if found is not None:
        found.classes = [f"class {c}" for c in range(1, 12)]
    return found


def _ncaltech101(root: Path, T, by) -> Layout | None:
    for folder in (root, root / "Caltech101", root / "NCALTECH101" / "Caltech101", root / "extract" / "Caltech101"):
        classes = [d.name for d in _dirs(folder) if any(d.glob("*.bin"))]
        if len(classes) >= 2:
            return Layout("ncaltech101", "published", folder, _by_class(folder, classes, "*.bin"), classes)
    return None


FINDERS = {"nmnist": _nmnist, "cifar10_dvs": _cifar10_dvs, "dvs_gesture": _dvs_gesture, "ncaltech101": _ncaltech101}


def find_layout(dataset: str, root, T: int | None = None, by: str = "time") -> Layout:
    """The copy of ``dataset`` under ``root`` (module doc), or a one-line error naming the layouts read."""
    if root is None:
        raise SnnexitError(f"{dataset} needs the local folder of the data set: pass it as root (--data-dir) or "
                           f"download it (--download); expected layout: {LAYOUTS[dataset]}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise SnnexitError(f"{dataset}: {base} does not exist or is not a folder; expected layout: {LAYOUTS[dataset]}")
    found = FINDERS[dataset](base, T, by)
    if found is None:
        raise SnnexitError(f"{dataset}: no copy of the data set found under {base}; expected layout: {LAYOUTS[dataset]}")
    if found.kind == "spikingjelly frames" and T is not None and found.frames != T:
        raise SnnexitError(f"{dataset}: SpikingJelly frames in {found.folder} have T = {found.frames}, not {T}")
    return found


def labels_of(layout: Layout) -> np.ndarray:
    return np.array([s.label for s in layout.samples], dtype=np.int64)
