"""Events -> frames ``(T, 2, H, W)``: per-frame, per-polarity event counts.

Channel 0 counts OFF events (p = 0), channel 1 ON events (p = 1).

* ``by="time"``: the interval ``[t_start, t_start + duration)`` is cut into T windows of equal
  length; event ``e`` lands in frame ``floor((t_e - t_start) * T / duration)``. By default
  ``t_start`` is the first timestamp and ``duration = t_last - t_first + 1``, so every event
  counts; with an explicit window, events outside it are dropped.
* ``by="count"``: after a stable sort by time, N events are cut into T consecutive chunks
  whose sizes differ by at most one: frame k holds events ``[floor(k N / T),
  floor((k + 1) N / T))``. (SpikingJelly's ``split_by='number'`` instead gives every frame
  ``N // T`` events and the last one the remainder.) With N < T some frames are empty.

``size=(h, w)`` pools the sensor down: pixel (x, y) goes to (x * w // W, y * h // H).
"""

from __future__ import annotations

import numpy as np

from snnexit.data.events.core import check_events
from snnexit.errors import SnnexitError


def _pair(v, what: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        v = (int(v), int(v))
    try:
        h, w = (int(a) for a in v)
    except (TypeError, ValueError):
        raise SnnexitError(f"{what} must be an int or a pair (H, W), got {v!r}") from None
    if h < 1 or w < 1:
        raise SnnexitError(f"{what} must be positive, got {(h, w)}")
    return h, w


def frame_index_by_time(t: np.ndarray, T: int, t_start: int, duration: int) -> np.ndarray:
    """Frame of each timestamp for T equal windows over [t_start, t_start + duration); -1 outside."""
    rel = np.asarray(t, dtype=np.int64) - np.int64(t_start)
    idx = np.full(rel.shape, -1, dtype=np.int64)
    inside = (rel >= 0) & (rel < duration)
    # (rel * T) // duration in integers: exact, no float rounding at window borders
    if int(duration) <= (2**62) // T:
        idx[inside] = (rel[inside] * T) // duration
    else:  # rel * T could overflow int64 (timestamps near 2**63): exact Python integers
        idx[inside] = (rel[inside].astype(object) * T) // int(duration)
    return idx


def frame_index_by_count(n: int, T: int) -> np.ndarray:
    """Frame of each of n time-ordered events for T chunks of nearly equal count."""
    starts = (np.arange(T, dtype=np.int64) * n) // T  # first event of each frame
    return np.searchsorted(starts, np.arange(n, dtype=np.int64), side="right") - 1


def to_frames(events: np.ndarray, T: int, sensor_size, *, by: str = "time", size=None,
              t_start: int | None = None, duration: int | None = None) -> np.ndarray:
    """Bin ``events`` into float32 frames ``(T, 2, h, w)`` of event counts (see module doc).

    ``sensor_size`` is (H, W) (or one int for a square sensor); an event outside it or with a
    polarity other than 0/1 is an error, since it means the wrong sensor size or a bad file.
    """
    events = check_events(events)
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise SnnexitError(f"T must be a positive integer, got {T!r}")
    T = int(T)
    H, W = _pair(sensor_size, "sensor_size")
    h, w = (H, W) if size is None else _pair(size, "size")
    if h > H or w > W:
        raise SnnexitError(f"size {(h, w)} is larger than the sensor {(H, W)}; frames can only pool down")
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    p = events["p"].astype(np.int64)
    t = events["t"].astype(np.int64)
    bad = (x < 0) | (x >= W) | (y < 0) | (y >= H)
    if bad.any():
        raise SnnexitError(f"{int(bad.sum())} event(s) lie outside the {H}x{W} sensor "
                           f"(x up to {int(x.max())}, y up to {int(y.max())}): wrong sensor_size?")
    if ((p != 0) & (p != 1)).any():
        raise SnnexitError("polarity must be 0 (OFF) or 1 (ON)")

    if by == "time":
        if duration is not None and duration < 1:
            raise SnnexitError(f"duration must be >= 1 microsecond, got {duration}")
        if len(t) == 0 and (t_start is None or duration is None):
            return np.zeros((T, 2, h, w), dtype=np.float32)
        t0 = int(t.min()) if t_start is None else int(t_start)
        dur = int(t.max()) - t0 + 1 if duration is None else int(duration)
        if dur < 1:  # an explicit t_start after every event
            return np.zeros((T, 2, h, w), dtype=np.float32)
        frame = frame_index_by_time(t, T, t0, dur)
    elif by == "count":
        if t_start is not None or duration is not None:
            raise SnnexitError("t_start / duration apply to by='time' only")
        order = np.argsort(t, kind="stable")
        x, y, p = x[order], y[order], p[order]
        frame = frame_index_by_count(len(t), T)
    else:
        raise SnnexitError(f"unknown binning {by!r}. Known: count, time")

    keep = frame >= 0
    xo = x[keep] * w // W  # (n,) pooled column
    yo = y[keep] * h // H
    flat = ((frame[keep] * 2 + p[keep]) * h + yo) * w + xo
    counts = np.bincount(flat, minlength=T * 2 * h * w)
    return counts.astype(np.float32).reshape(T, 2, h, w)  # (T, 2, h, w)
