"""The event record every reader returns: a numpy structured array with fields (x, y, t, p).

``x``, ``y``: pixel column and row (0-based), ``t``: timestamp in microseconds (int64),
``p``: polarity, 1 = ON (brightness went up), 0 = OFF.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnexit.errors import SnnexitError

EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])


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
    """``source`` is a path or the file's bytes; returns (bytes, a name for error messages)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), f"<{what} bytes>"
    path = Path(source)
    if not path.is_file():
        raise SnnexitError(f"{path}: no such {what} file")
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise SnnexitError(f"{path}: cannot read ({exc})") from None
