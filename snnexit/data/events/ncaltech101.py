"""N-Caltech101 (and N-MNIST) ``.bin`` files: 5 bytes per event, no header.

    byte 0        x (column)
    byte 1        y (row)
    byte 2 bit 7  polarity (1 = ON)
    bits 22-0     timestamp in microseconds (byte 2 bits 6-0, byte 3, byte 4; big-endian)

As in the data set authors' loader, an event with y = 240 is a timestamp-overflow marker:
it is dropped and every later timestamp grows by 2**13.
"""

from __future__ import annotations

import numpy as np

from snnexit.data.events.core import check_recording, make_events, read_source
from snnexit.errors import SnnexitError

NCALTECH101_SIZE = (180, 240)  # (H, W)
_OVERFLOW_Y = 240
_OVERFLOW_STEP = 1 << 13


def parse_ncaltech101(source, sensor_size: tuple[int, int] | None = NCALTECH101_SIZE) -> np.ndarray:
    """Events (x, y, t, p) of one N-Caltech101 / N-MNIST ``.bin`` file (a path or its bytes).

    Refused (:class:`SnnexitError` naming the file): a size that is not whole 5-byte records,
    no events, events outside ``sensor_size`` (H, W; None: not checked) or timestamps that
    are not a recording's (:func:`~snnexit.data.events.core.check_recording`)."""
    data, name = read_source(source, "N-Caltech101 .bin")
    if len(data) % 5:
        raise SnnexitError(f"{name}: {len(data)} bytes is not a multiple of 5 bytes per event: truncated file")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5).astype(np.int64)  # (n, 5)
    x, y = raw[:, 0], raw[:, 1]
    p = raw[:, 2] >> 7
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    overflow = y == _OVERFLOW_Y
    t = t + np.cumsum(overflow) * _OVERFLOW_STEP
    keep = ~overflow
    events = make_events(x[keep], y[keep], t[keep], p[keep])
    return check_recording(events, name, "N-Caltech101 .bin", sensor_size)
