"""DVS128 Gesture files: AEDAT 3.1 (libcaer) recordings plus ``*_labels.csv`` segments.

An AEDAT 3.1 file is ASCII header lines (``#!AER-DAT3.1`` ... ``#!END-HEADER``), then packets.
Each packet is a 28-byte little-endian header

    int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset,
    int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber, int32 eventValid

followed by ``eventCapacity * eventSize`` bytes of events, of which the first ``eventNumber``
are used. Polarity events (eventType 1) are 8 bytes: a uint32 data word (bit 0 valid mark,
bit 1 polarity, bits 2-16 y, bits 17-31 x) and an int32 timestamp at ``eventTSOffset``; the
full timestamp is ``eventTSOverflow << 31 | timestamp`` microseconds. Packets of other types
(special, frame, IMU events) are skipped, and so are events whose valid mark is 0.

``userXX_<lighting>_labels.csv`` has a header line ``class,startTime_usec,endTime_usec`` and
one gesture per row; classes 1..11 become labels 0..10 and a gesture is the events with
``startTime_usec <= t < endTime_usec``.
"""

from __future__ import annotations

import numpy as np

from snnexit.data.events.aedat2 import split_aedat_header
from snnexit.data.events.core import check_events, check_recording, make_events, read_source
from snnexit.errors import SnnexitError

DVS_GESTURE_SIZE = (128, 128)  # (H, W)
DVS_GESTURE_CLASSES = 11
POLARITY_EVENT = 1
PACKET_HEADER = np.dtype([
    ("type", "<u2"), ("source", "<u2"), ("size", "<u4"), ("ts_offset", "<u4"), ("ts_overflow", "<u4"),
    ("capacity", "<u4"), ("number", "<u4"), ("valid", "<u4"),
])
LABEL_DTYPE = np.dtype([("label", "<i8"), ("start", "<i8"), ("end", "<i8")])


def parse_aedat31(source, sensor_size: tuple[int, int] | None = DVS_GESTURE_SIZE) -> np.ndarray:
    """Polarity events (x, y, t, p) of one AEDAT 3.1 file (a path or its bytes), in file order.

    Refused (:class:`SnnexitError` naming the file): a header that is not ``#!AER-DAT3.1`` ...
    ``#!END-HEADER``, packets that do not fit the file or whose counts and sizes contradict
    each other or the format (polarity events are 8 bytes, timestamp at offset 4), no valid
    polarity event, events outside ``sensor_size`` (H, W) (None: not checked) or timestamps
    that are not a recording's (:func:`~snnexit.data.events.core.check_recording`)."""
    data, name = read_source(source, "AEDAT 3.1")
    pos = split_aedat_header(data, name, "3.1")
    words, stamps = [], []  # per polarity packet: data words, full timestamps
    while pos < len(data):
        if len(data) - pos < PACKET_HEADER.itemsize:
            raise SnnexitError(f"{name}: {len(data) - pos} bytes at offset {pos} are too few for a 28-byte packet header: truncated file")
        h = np.frombuffer(data, dtype=PACKET_HEADER, count=1, offset=pos)[0]
        size, cap, num = int(h["size"]), int(h["capacity"]), int(h["number"])
        nbytes = size * cap
        body = pos + PACKET_HEADER.itemsize
        if nbytes > len(data) - body:
            raise SnnexitError(f"{name}: packet at offset {pos} claims {cap} events of {size} bytes, "
                               f"but only {len(data) - body} bytes remain: truncated or corrupt file")
        if num > cap or int(h["valid"]) > num:
            raise SnnexitError(f"{name}: packet at offset {pos} has eventNumber {num} / eventValid {int(h['valid'])} "
                               f"beyond eventCapacity {cap}: corrupt file")
        if cap > 0 and size == 0:
            raise SnnexitError(f"{name}: packet at offset {pos} has eventCapacity {cap} but eventSize 0: corrupt file")
        if int(h["type"]) == POLARITY_EVENT and num > 0:
            ts_off = int(h["ts_offset"])
            if size != 8 or ts_off != 4:
                raise SnnexitError(f"{name}: polarity packet at offset {pos} has eventSize {size} and "
                                   f"eventTSOffset {ts_off} (expected 8 and 4): corrupt file")
            ev = np.frombuffer(data, dtype="<u4", count=2 * num, offset=body).reshape(num, 2)  # (num, [word, ts])
            words.append(ev[:, 0])
            stamps.append(ev[:, 1].astype(np.int64) | (int(h["ts_overflow"]) << 31))
        pos = body + nbytes
    if not words:
        raise SnnexitError(f"{name}: no polarity events in this AEDAT 3.1 file")
    word, t = np.concatenate(words), np.concatenate(stamps)
    ok = (word & 1) == 1  # valid mark
    word, t = word[ok], t[ok]
    events = make_events((word >> 17) & 0x7FFF, (word >> 2) & 0x7FFF, t, (word >> 1) & 1)
    return check_recording(events, name, "AEDAT 3.1", sensor_size)


def parse_gesture_labels(source) -> np.ndarray:
    """The segments of a ``*_labels.csv`` as a structured array (label 0..10, start, end) in microseconds."""
    data, name = read_source(source, "labels .csv")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise SnnexitError(f"{name}: not a text file; expected 'class,startTime_usec,endTime_usec' rows") from None
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        if i == 1 and not fields[0].lstrip("-").isdigit():  # the header line
            continue
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            raise SnnexitError(f"{name}, line {i}: expected three non-negative integers "
                               f"'class,startTime_usec,endTime_usec', got {line[:60]!r}")
        if any(len(f) > 18 for f in fields):
            raise SnnexitError(f"{name}, line {i}: number out of range in {line[:60]!r}")
        cls, start, end = (int(f) for f in fields)
        if not 1 <= cls <= DVS_GESTURE_CLASSES:
            raise SnnexitError(f"{name}, line {i}: class {cls} is not in 1..{DVS_GESTURE_CLASSES}")
        rows.append((cls - 1, start, end))
    return np.array(rows, dtype=LABEL_DTYPE)


def segment_gestures(events: np.ndarray, segments: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Cut a recording into labelled samples: ``[(label, events with start <= t < end), ...]``."""
    events = check_events(events)
    t = events["t"]
    return [(int(s["label"]), events[(t >= s["start"]) & (t < s["end"])]) for s in segments]
