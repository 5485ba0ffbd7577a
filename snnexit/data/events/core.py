"""The event record every reader returns: a numpy structured array with fields (x, y, t, p).

``x``, ``y``: pixel column and row (0-based), ``t``: timestamp in microseconds (int64),
``p``: polarity, 1 = ON (brightness went up), 0 = OFF.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnexit.errors import SnnexitError

EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
# Sensors deliver events in time order, up to rare exceptions (a timestamp wrap or reset, packets
# that arrive out of order); random bytes go back in time at about half of all events.
MAX_BACKWARD_SHARE = 0.05


def make_events(x, y, t, p) -> np.ndarray:
    """Pack equal-length x, y, t, p arrays into an :data:`EVENT_DTYPE` structured array."""
    x, y, t, p = (np.asarray(a).reshape(-1) for a in (x, y, t, p))
    n = len(x)
    if not (len(y) == len(t) == len(p) == n):
        raise SnnexitError(f"event fields differ in length: x {n}, y {len(y)}, t {len(t)}, p {len(p)}")
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, p
    return ev


def check_events(events) -> np.ndarray:
    """Refuse anything that is not a 1-D structured array with fields x, y, t, p."""
    if not isinstance(events, np.ndarray) or events.dtype.names is None or events.ndim != 1:
        raise SnnexitError("events must be a 1-D numpy structured array with fields (x, y, t, p)")
    missing = [f for f in ("x", "y", "t", "p") if f not in events.dtype.names]
    if missing:
        raise SnnexitError(f"events lack the field(s) {', '.join(missing)}; expected fields (x, y, t, p)")
    return events


def read_source(source, what: str) -> tuple[bytes, str]:
    """``source`` is a path or the file's bytes; returns (bytes, a name for error messages).
    An empty file (0 bytes) is refused: no format has an empty recording."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), f"<{what} bytes>"
    else:
        path = Path(source)
        if not path.is_file():
            raise SnnexitError(f"{path}: no such {what} file")
        try:
            data, name = path.read_bytes(), str(path)
        except OSError as exc:
            raise SnnexitError(f"{path}: cannot read ({exc})") from None
    if not data:
        raise SnnexitError(f"{name}: empty file (0 bytes), not a {what} file")
    return data, name


def check_recording(events: np.ndarray, name: str, what: str, sensor_size: tuple[int, int] | None) -> np.ndarray:
    """Refuse what no recording in the format ``what`` holds: no events at all, events outside
    the ``(H, W)`` sensor (None: not checked) or timestamps that go back in time at more than
    :data:`MAX_BACKWARD_SHARE` of consecutive events (garbage read as events)."""
    n = len(events)
    if n == 0:
        raise SnnexitError(f"{name}: no events in this {what} file")
    if sensor_size is not None:
        H, W = sensor_size
        bad = (events["x"] >= W) | (events["y"] >= H)
        if bad.any():
            i = int(np.argmax(bad))
            raise SnnexitError(f"{name}: {int(bad.sum())} of {n} events lie outside the {W}x{H} (W x H) sensor "
                               f"(the first, event {i}, at x = {int(events['x'][i])}, y = {int(events['y'][i])}): "
                               f"not a {what} recording, or a corrupt one")
    back = int(np.count_nonzero(np.diff(events["t"]) < 0))
    if back > MAX_BACKWARD_SHARE * (n - 1):
        raise SnnexitError(f"{name}: timestamps go back in time at {back} of {n - 1} consecutive events: not a "
                           f"{what} recording (corrupt, or another format)")
    return events
