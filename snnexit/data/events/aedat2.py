"""CIFAR10-DVS files: AEDAT 2.0 (jAER).

Layout: ASCII header lines that start with ``#`` and end with a newline (the first one is
``#!AER-DAT2.0``), then events of 8 bytes, big-endian: uint32 address, uint32 timestamp
(microseconds). CIFAR10-DVS (128x128 DVS) packs the address as

    bit 0      polarity bit          -> p = 1 - bit (1 = ON)
    bits 1-7   jAER x field (7 bits) -> y = 127 - field
    bits 8-14  jAER y field (7 bits) -> x = 127 - field

as in the data set's published loaders (jAER's DVS128 layout, transposed and flipped; the
readers of SpikingJelly and tonic decode it the same way). Other address bits are ignored.
"""

from __future__ import annotations

import numpy as np

from snnexit.data.events.core import make_events, read_source
from snnexit.errors import SnnexitError

CIFAR10_DVS_SIZE = (128, 128)  # (H, W)
_MAX_HEADER_LINE = 1 << 16


def split_aedat_header(data: bytes, name: str, version: bytes) -> int:
    """Offset of the first byte after the ``#`` header lines; checks the version line if any."""
    pos = 0
    first = True
    while pos < len(data) and data[pos : pos + 1] == b"#":
        end = data.find(b"\n", pos, pos + _MAX_HEADER_LINE)
        if end < 0:
            raise SnnexitError(f"{name}: AEDAT header line at byte {pos} does not end (no newline): truncated or not an AEDAT file")
        line = data[pos:end]
        if first and line.startswith(b"#!AER-DAT") and not line.startswith(b"#!AER-DAT" + version):
            found = line[len(b"#!AER-DAT"):].strip().decode("ascii", "replace")[:20]
            raise SnnexitError(f"{name}: AEDAT version {found!r}, expected {version.decode()}")
        first = False
        pos = end + 1
        if line.startswith(b"#!END-HEADER"):  # AEDAT 3: binary data follows, even if it starts with '#'
            break
    return pos


def parse_cifar10_dvs(source) -> np.ndarray:
    """Events (x, y, t, p) of one CIFAR10-DVS ``.aedat`` file (a path or its bytes)."""
    data, name = read_source(source, "AEDAT 2.0")
    start = split_aedat_header(data, name, b"2")
    body = len(data) - start
    if body % 8:
        raise SnnexitError(f"{name}: {body} bytes of events is not a multiple of 8 (address, timestamp): truncated file")
    words = np.frombuffer(data, dtype=">u4", count=body // 4, offset=start).reshape(-1, 2)  # (n, [addr, t])
    addr, t = words[:, 0], words[:, 1]
    x_field = (addr & 0xFE) >> 1
    y_field = (addr & 0x7F00) >> 8
    pol = addr & 1
    return make_events(127 - y_field, 127 - x_field, t.astype(np.int64), 1 - pol)
