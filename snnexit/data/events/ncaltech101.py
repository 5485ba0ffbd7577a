"""N-Caltech101 and N-MNIST ``.bin`` files (ATIS recordings): 5 bytes per event, no header.

    byte 0        x (column)
    byte 1        y (row)
    byte 2 bit 7  polarity (1 = ON)
    bits 22-0     timestamp in microseconds (byte 2 bits 6-0, byte 3, byte 4; big-endian)

As in the data set authors' loader, an event with y = 240 is a timestamp-overflow marker:
it is dropped and every later timestamp grows by 2**13.

Both data sets were recorded the same way (Orchard et al. 2015) and share this encoding; they
differ in the sensor area: N-Caltech101 up to 240x180, N-MNIST a 34x34 crop.
"""

from __future__ import annotations

import numpy as np

from snnexit.data.events.core import check_recording, make_events, read_source
from snnexit.errors import SnnexitError

NCALTECH101_SIZE = (180, 240)  # (H, W)
NMNIST_SIZE = (34, 34)  # (H, W)
_OVERFLOW_Y = 240
_OVERFLOW_STEP = 1 << 13


def parse_atis_bin(source, sensor_size: tuple[int, int] | None, what: str) -> np.ndarray:
    """Events (x, y, t, p) of one ATIS ``.bin`` file (a path or its bytes); ``what`` names the
    format in messages.

    Refused (:class:`SnnexitError` naming the file): a size that is not whole 5-byte records,
    no events, events outside ``sensor_size`` (H, W; None: not checked) or timestamps that
    are not a recording's (:func:`~snnexit.data.events.core.check_recording`)."""
    data, name = read_source(source, what)
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
    return check_recording(events, name, what, sensor_size)


def parse_ncaltech101(source, sensor_size: tuple[int, int] | None = NCALTECH101_SIZE) -> np.ndarray:
    """Events (x, y, t, p) of one N-Caltech101 ``.bin`` file (a path or its bytes): :func:`parse_atis_bin`."""
    return parse_atis_bin(source, sensor_size, "N-Caltech101 .bin")


def parse_nmnist(source, sensor_size: tuple[int, int] | None = NMNIST_SIZE) -> np.ndarray:
    """Events (x, y, t, p) of one N-MNIST ``.bin`` file (a path or its bytes) on the 34x34 sensor."""
    return parse_atis_bin(source, sensor_size, "N-MNIST .bin")
