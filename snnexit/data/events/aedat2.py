"""CIFAR10-DVS files: AEDAT 2.0 (jAER).

Layout: ASCII header lines that start with ``#`` and end with a newline (the first one is
``#!AER-DAT2.0``), then events of 8 bytes, big-endian: uint32 address, uint32 timestamp
(microseconds), in time order. CIFAR10-DVS (128x128 DVS) packs the address as

    bit 0      polarity bit          -> p = 1 - bit (1 = ON)
    bits 1-7   jAER x field (7 bits) -> y = 127 - field
    bits 8-14  jAER y field (7 bits) -> x = 127 - field

as in the data set's published loaders (jAER's DVS128 layout, transposed and flipped; the
readers of SpikingJelly and tonic decode it the same way). Other address bits are ignored.
"""

from __future__ import annotations

import numpy as np

from snnexit.data.events.core import check_recording, make_events, read_source
from snnexit.errors import SnnexitError

CIFAR10_DVS_SIZE = (128, 128)  # (H, W)
_MAX_HEADER_LINE = 1 << 16


def split_aedat_header(data: bytes, name: str, version: str) -> int:
    """Offset of the first byte after the ``#`` header lines, whose first must be
    ``#!AER-DAT<version>``; an AEDAT 3 header must end with its ``#!END-HEADER`` line."""
    magic = b"#!AER-DAT"
    if not data.startswith(magic):
        raise SnnexitError(f"{name}: not an AEDAT {version} file: it must start with the line "
                           f"'#!AER-DAT{version}', found {data[:16]!r}")
    pos = 0
    first = True
    ended = False
    while pos < len(data) and data[pos : pos + 1] == b"#":
        end = data.find(b"\n", pos, pos + _MAX_HEADER_LINE)
        if end < 0:
            raise SnnexitError(f"{name}: AEDAT header line at byte {pos} does not end (no newline): truncated or not an AEDAT file")
        line = data[pos:end]
        if first:
            found = line[len(magic):].strip().decode("ascii", "replace")[:20]
            if found != version:
                raise SnnexitError(f"{name}: AEDAT version {found!r}, expected {version}")
        first = False
        pos = end + 1
        if line.startswith(b"#!END-HEADER"):  # AEDAT 3: binary data follows, even if it starts with '#'
            ended = True
            break
    if version.startswith("3") and not ended:
        raise SnnexitError(f"{name}: the AEDAT {version} header has no '#!END-HEADER' line: truncated or corrupt file")
    return pos


def parse_cifar10_dvs(source) -> np.ndarray:
    """Events (x, y, t, p) of one CIFAR10-DVS ``.aedat`` file (a path or its bytes).

    Refused (:class:`SnnexitError` naming the file): no ``#!AER-DAT2.0`` header, a body that is
    not whole 8-byte events, no events, or timestamps that are not a recording's
    (:func:`~snnexit.data.events.core.check_recording`)."""
    data, name = read_source(source, "AEDAT 2.0")
    start = split_aedat_header(data, name, "2.0")
    body = len(data) - start
    if body % 8:
        raise SnnexitError(f"{name}: {body} bytes of events is not a multiple of 8 (address, timestamp): truncated file")
    words = np.frombuffer(data, dtype=">u4", count=body // 4, offset=start).reshape(-1, 2)  # (n, [addr, t])
    addr, t = words[:, 0], words[:, 1]
    x_field = (addr & 0xFE) >> 1
    y_field = (addr & 0x7F00) >> 8
    pol = addr & 1
    events = make_events(127 - y_field, 127 - x_field, t.astype(np.int64), 1 - pol)
    return check_recording(events, name, "AEDAT 2.0", CIFAR10_DVS_SIZE)
