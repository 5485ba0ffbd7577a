"""Files that other tools write from the event data sets (read without unpickling: numpy's
``allow_pickle=False``).

* **SpikingJelly events** (``events_np/**/*.npz``): arrays ``t``, ``x``, ``y``, ``p`` of one
  sample (SpikingJelly's ``np.savez(t=..., x=..., y=..., p=...)``), timestamps in microseconds.
* **SpikingJelly frames** (``frames_number_<T>_split_by_<time|number>/**/*.npz``): one array
  ``frames`` of shape ``(T, 2, H, W)``, channel 0 the OFF and channel 1 the ON counts (SpikingJelly
  integrates ``p * H * W + y * W + x``), as our frames. SpikingJelly cuts a recording by its own
  rule (by time: T windows of ``(t_last - t_first) // T`` microseconds, the last one open-ended;
  by number: ``N // T`` events per frame, the last one takes the rest), so frames read from
  these files are SpikingJelly's, not :func:`~snnexit.data.events.binning.to_frames`'s.
* **tonic's DVS128 Gesture** (``ibmGesture{Train,Test}/userXX_<lighting>/<label>.npy``): an
  ``(N, 4)`` array of columns x, y, p, t with t in milliseconds (tonic multiplies by 1000).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from snnexit.data.events.core import check_recording, make_events
from snnexit.errors import SnnexitError


def _load(path: Path, what: str):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SnnexitError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from None


def _whole(values: np.ndarray, path: Path, what: str, field: str) -> np.ndarray:
    """Integer values of a numeric column (floats must be whole numbers), else a clear error."""
    values = np.asarray(values).reshape(-1)
    if values.dtype == bool:
        return values.astype(np.int64)
    if not np.issubdtype(values.dtype, np.number):
        raise SnnexitError(f"{path}: {what} field {field!r} holds {values.dtype}, not numbers")
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or np.any(values != np.floor(values)):
            raise SnnexitError(f"{path}: {what} field {field!r} holds values that are not whole numbers")
    if values.size and values.min() < 0:
        raise SnnexitError(f"{path}: {what} field {field!r} holds negative values")
    return values.astype(np.int64)


def read_spikingjelly_events(path: Path, sensor_size: tuple[int, int]) -> np.ndarray:
    """Events (x, y, t, p) of one SpikingJelly ``events_np`` ``.npz`` sample."""
    what = "SpikingJelly events .npz"
    with _load(path, what) as data:
        if not isinstance(data, np.lib.npyio.NpzFile) or not {"t", "x", "y", "p"} <= set(data.files):
            found = sorted(getattr(data, "files", []))
            raise SnnexitError(f"{path}: a {what} holds arrays t, x, y, p; found {found}")
        cols = {k: _whole(data[k], path, what, k) for k in ("x", "y", "t", "p")}
    n = len(cols["t"])
    if any(len(v) != n for v in cols.values()):
        raise SnnexitError(f"{path}: arrays t, x, y, p differ in length ({', '.join(str(len(v)) for v in cols.values())})")
    if np.any(cols["p"] > 1):
        raise SnnexitError(f"{path}: polarity p must be 0 or 1")
    return check_recording(make_events(cols["x"], cols["y"], cols["t"], cols["p"]), str(path), what, sensor_size)


def read_tonic_gesture(path: Path, sensor_size: tuple[int, int]) -> np.ndarray:
    """Events (x, y, t, p) of one gesture of tonic's DVS128 Gesture copy (t made microseconds)."""
    what = "tonic DVS128 Gesture .npy"
    data = _load(path, what)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 4:
        shape = getattr(data, "shape", None)
        raise SnnexitError(f"{path}: a {what} is an (N, 4) array of x, y, p, t (ms); got shape {shape}")
    x, y, p, t = (_whole(data[:, i], path, what, f) for i, f in enumerate("xypt"))
    if np.any(p > 1):
        raise SnnexitError(f"{path}: polarity p must be 0 or 1")
    return check_recording(make_events(x, y, t * 1000, p), str(path), what, sensor_size)


def read_spikingjelly_frames(path: Path, T: int, sensor_size: tuple[int, int]) -> np.ndarray:
    """The ``(T, 2, H, W)`` float32 frames of one SpikingJelly frames ``.npz`` (refused: another T,
    another sensor, negative or non-integer counts)."""
    what = "SpikingJelly frames .npz"
    with _load(path, what) as data:
        if not isinstance(data, np.lib.npyio.NpzFile) or "frames" not in data.files:
            raise SnnexitError(f"{path}: a {what} holds an array 'frames'; found {sorted(getattr(data, 'files', []))}")
        frames = np.asarray(data["frames"])
    H, W = sensor_size
    if frames.shape != (T, 2, H, W):
        raise SnnexitError(f"{path}: frames of shape {frames.shape}, expected {(T, 2, H, W)} (T frames of the "
                           f"{W}x{H} sensor, two polarities)")
    if not np.issubdtype(frames.dtype, np.number) or not np.all(np.isfinite(frames)) or frames.min() < 0 \
            or np.any(frames != np.floor(frames)):
        raise SnnexitError(f"{path}: frames must hold event counts (whole numbers >= 0)")
    return frames.astype(np.float32)


def pool_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Sum ``(T, 2, H, W)`` counts into ``(T, 2, h, w)`` with the pixel map of
    :func:`~snnexit.data.events.binning.to_frames` (x -> x * w // W): the frames it gives from
    the same events."""
    H, W = frames.shape[-2:]
    h, w = size
    rows = np.zeros((h, H))  # rows[r, y] = 1 where sensor row y lands in row r
    rows[np.arange(H) * h // H, np.arange(H)] = 1
    cols = np.zeros((w, W))
    cols[np.arange(W) * w // W, np.arange(W)] = 1
    return (rows @ frames.astype(np.float64) @ cols.T).astype(np.float32)  # (T, 2, h, w)
