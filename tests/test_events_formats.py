"""Event file readers: files written byte for byte here (with struct, independently of the
readers), read back; truncated and fuzzed files raise SnnexitError, never anything else."""

import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnexit.data import load_dataset
from snnexit.data.events import (CIFAR10_DVS_CLASSES, EVENT_DTYPE, parse_aedat31, parse_cifar10_dvs,
                                 parse_gesture_labels, parse_ncaltech101, segment_gestures, to_frames)
from snnexit.data.events.aedat31 import LABEL_DTYPE
from snnexit.errors import SnnexitError

AEDAT2_HEADER = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
                 b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
                 b"# Timestamps tick is 1 us\r\n")
AEDAT31_HEADER = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
                  b"#Start-Time: 2017-01-01 12:00:00 (TZ+0000)\r\n#!END-HEADER\r\n")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_events(n, H, W, t_max=2**22, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["x"] = rng.integers(0, W, n)
    ev["y"] = rng.integers(0, H, n)
    ev["t"] = np.sort(rng.integers(0, t_max, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev


# ---------------------------------------------------------------- CIFAR10-DVS (AEDAT 2.0)
def cifar10_dvs_bytes(ev, junk_bits=0) -> bytes:
    """Encode as the CIFAR10-DVS loaders decode: x = 127 - bits 8-14, y = 127 - bits 1-7, p = 1 - bit 0."""
    out = bytearray(AEDAT2_HEADER)
    for x, y, t, p in ev.tolist():
        addr = ((127 - x) << 8) | ((127 - y) << 1) | (1 - p) | junk_bits
        out += struct.pack(">II", addr, t)
    return bytes(out)


def test_cifar10_dvs_golden_event():
    data = AEDAT2_HEADER + struct.pack(">II", 0x00000301, 42)  # bit 0 set, bits 1-7 = 0, bits 8-14 = 3
    ev = parse_cifar10_dvs(data)
    assert ev.tolist() == [(124, 127, 42, 0)]


@pytest.mark.parametrize("junk", [0, 0x80000000 | 0x00FF0000])
def test_cifar10_dvs_round_trip(tmp_path, junk):
    ev = random_events(500, 128, 128, t_max=2**32 - 1)
    path = tmp_path / "cifar10_cat_0.aedat"
    path.write_bytes(cifar10_dvs_bytes(ev, junk))  # address bits outside the layout are ignored
    got = parse_cifar10_dvs(path)
    assert got.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(got, ev)


def test_cifar10_dvs_headerless_and_empty_are_refused():
    ev = random_events(5, 128, 128)
    with pytest.raises(SnnexitError, match="must start with the line '#!AER-DAT2.0'"):
        parse_cifar10_dvs(cifar10_dvs_bytes(ev)[len(AEDAT2_HEADER):])
    with pytest.raises(SnnexitError, match="no events"):
        parse_cifar10_dvs(AEDAT2_HEADER)


@pytest.mark.parametrize("cut", [1, 3, 7])
def test_cifar10_dvs_truncated(cut):
    data = cifar10_dvs_bytes(random_events(10, 128, 128))
    with pytest.raises(SnnexitError, match="truncated"):
        parse_cifar10_dvs(data[:-cut])


def test_aedat_header_without_newline_and_wrong_version():
    with pytest.raises(SnnexitError, match="does not end"):
        parse_cifar10_dvs(b"#!AER-DAT2.0")
    with pytest.raises(SnnexitError, match="version"):
        parse_cifar10_dvs(AEDAT31_HEADER)
    with pytest.raises(SnnexitError, match="no such"):
        parse_cifar10_dvs("/nonexistent/file.aedat")


# ---------------------------------------------------------------- DVS128 Gesture (AEDAT 3.1)
def packet(ev_type, events: bytes, size, number, capacity=None, overflow=0, ts_offset=4, valid=None):
    capacity = number if capacity is None else capacity
    header = struct.pack("<HHIIIIII", ev_type, 1, size, ts_offset, overflow, capacity, number,
                         number if valid is None else valid)
    return header + events + b"\0" * (size * capacity - len(events))


def polarity_bytes(ev, valid=True) -> bytes:
    out = bytearray()
    for x, y, t, p in ev.tolist():
        word = (x << 17) | (y << 2) | (p << 1) | int(valid)
        out += struct.pack("<Ii", word, t & 0x7FFFFFFF)
    return bytes(out)


def gesture_file(ev_chunks, overflow=0) -> bytes:
    """Polarity packets, one per chunk, with a special-event packet, padding and an invalid event between."""
    out = bytearray(AEDAT31_HEADER)
    # first packet: type 35 = ASCII '#', so its first byte looks like a header line
    out += packet(35, b"\x01" * 16, 8, 2)
    for i, ev in enumerate(ev_chunks):
        out += packet(1, polarity_bytes(ev), 8, len(ev), capacity=len(ev) + i, overflow=overflow)
        out += packet(0, struct.pack("<Ii", 5, 7), 8, 1)  # a special event: skipped
    return bytes(out)


def test_aedat31_round_trip(tmp_path):
    ev = random_events(300, 128, 128, t_max=2**31 - 1)
    path = tmp_path / "user01_fluorescent.aedat"
    path.write_bytes(gesture_file(np.array_split(ev, 3)))
    got = parse_aedat31(path)
    assert got.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(got, ev)


def test_aedat31_overflow_and_invalid_events():
    ev = random_events(20, 128, 128, t_max=2**31 - 1)
    data = AEDAT31_HEADER + packet(1, polarity_bytes(ev[:10]), 8, 10, overflow=3) \
        + packet(1, polarity_bytes(ev[10:], valid=False), 8, 10)
    got = parse_aedat31(data)
    assert len(got) == 10  # invalid-marked events are dropped
    np.testing.assert_array_equal(got["t"], ev["t"][:10] + (3 << 31))
    np.testing.assert_array_equal(got[["x", "y", "p"]], ev[:10][["x", "y", "p"]])


def test_aedat31_empty_packets_terminate():
    data = AEDAT31_HEADER + packet(1, b"", 0, 0) * 1000 + packet(2, b"", 8, 0)
    with pytest.raises(SnnexitError, match="no polarity events"):  # read to the end, then refused: no events
        parse_aedat31(data)


@pytest.mark.parametrize("cut", [1, 5, 27, 29, 100])
def test_aedat31_truncated(cut):
    data = gesture_file([random_events(30, 128, 128)])
    with pytest.raises(SnnexitError, match="truncated|corrupt"):
        parse_aedat31(data[:-cut])


def test_aedat31_corrupt_headers():
    with pytest.raises(SnnexitError, match="truncated"):  # claims 2**32-1 events of 2**32-1 bytes
        parse_aedat31(AEDAT31_HEADER + struct.pack("<HHIIIIII", 1, 1, 2**32 - 1, 4, 0, 2**32 - 1, 1, 1))
    with pytest.raises(SnnexitError, match="eventNumber"):
        parse_aedat31(AEDAT31_HEADER + packet(1, b"", 8, 5, capacity=2))
    with pytest.raises(SnnexitError, match="eventSize"):
        parse_aedat31(AEDAT31_HEADER + packet(1, b"\0" * 4, 4, 1))
    with pytest.raises(SnnexitError, match="AEDAT 3.1"):
        parse_aedat31(AEDAT2_HEADER)


def test_gesture_labels_and_segments():
    csv = b"class,startTime_usec,endTime_usec\r\n3,100,250\r\n11,250,400\r\n\r\n1,390,1000\r\n"
    seg = parse_gesture_labels(csv)
    assert seg.tolist() == [(2, 100, 250), (10, 250, 400), (0, 390, 1000)]
    ev = random_events(400, 128, 128, t_max=1200, seed=3)
    got = segment_gestures(ev, seg)
    assert [label for label, _ in got] == [2, 10, 0]
    for (label, part), (_, start, end) in zip(got, seg.tolist()):
        brute = [e for e in ev.tolist() if start <= e[2] < end]  # overlapping segments share events
        assert part.tolist() == brute


@pytest.mark.parametrize("bad", [b"class,start,end\n12,0,10\n", b"class,start,end\n1,0\n", b"1,a,3\n",
                                 b"\xff\xfe", b"1,0," + b"9" * 5000 + b"\n"])
def test_gesture_labels_malformed(bad):
    with pytest.raises(SnnexitError):
        parse_gesture_labels(bad)


# ---------------------------------------------------------------- N-Caltech101 (.bin)
def ncaltech_bytes(ev) -> bytes:
    out = bytearray()
    for x, y, t, p in ev.tolist():
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def test_ncaltech101_round_trip(tmp_path):
    ev = random_events(400, 180, 240, t_max=2**23)
    path = tmp_path / "image_0001.bin"
    path.write_bytes(ncaltech_bytes(ev))
    got = parse_ncaltech101(path)
    assert got.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(got, ev)


def test_ncaltech101_overflow_marker():
    ev = random_events(6, 180, 240, t_max=1000)
    marker = bytes([0, 240, 0, 0, 0])  # y = 240: timestamp overflow, later events + 2**13
    data = ncaltech_bytes(ev[:2]) + marker + ncaltech_bytes(ev[2:4]) + marker + ncaltech_bytes(ev[4:])
    got = parse_ncaltech101(data)
    np.testing.assert_array_equal(got["t"], ev["t"] + np.array([0, 0, 1, 1, 2, 2]) * 2**13)
    np.testing.assert_array_equal(got[["x", "y", "p"]], ev[["x", "y", "p"]])


@pytest.mark.parametrize("cut", [1, 2, 4])
def test_ncaltech101_truncated(cut):
    with pytest.raises(SnnexitError, match="truncated"):
        parse_ncaltech101(ncaltech_bytes(random_events(10, 180, 240))[:-cut])


# ---------------------------------------------------------------- fuzzing: SnnexitError or events, nothing else
def _only_clean_errors(parser, data):
    try:
        ev = parser(data)
    except SnnexitError:
        return
    assert ev.dtype == (LABEL_DTYPE if parser is parse_gesture_labels else EVENT_DTYPE) and ev.ndim == 1


PARSERS = {"aedat2": parse_cifar10_dvs, "aedat31": parse_aedat31, "bin": parse_ncaltech101,
           "csv": parse_gesture_labels}
VALID = {
    "aedat2": cifar10_dvs_bytes(random_events(8, 128, 128)),
    "aedat31": gesture_file([random_events(5, 128, 128), random_events(4, 128, 128)]),
    "bin": ncaltech_bytes(random_events(8, 180, 240)),
    "csv": b"class,startTime_usec,endTime_usec\r\n1,10,20\r\n2,20,30\r\n",
}


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@FUZZ
@given(data=st.binary(max_size=400))
def test_fuzz_random_bytes(fmt, data):
    _only_clean_errors(PARSERS[fmt], data)
    if fmt in ("aedat2", "aedat31"):  # get past the header check too
        header = AEDAT2_HEADER if fmt == "aedat2" else AEDAT31_HEADER
        _only_clean_errors(PARSERS[fmt], header + data)


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@FUZZ
@given(st.data())
def test_fuzz_mutations(fmt, data):
    raw = bytearray(VALID[fmt])
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        i = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[i:]
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del raw[i : i + data.draw(st.integers(1, 8))]
    _only_clean_errors(PARSERS[fmt], bytes(raw))


# ---------------------------------------------------------------- folder-level loaders
def test_folder_errors(tmp_path):
    for name in ("cifar10_dvs", "dvs_gesture", "ncaltech101"):
        with pytest.raises(SnnexitError, match="expected layout"):
            load_dataset(name, 0, None)
        with pytest.raises(SnnexitError, match="expected layout"):
            load_dataset(name, 0, str(tmp_path / "missing"))
        with pytest.raises(SnnexitError, match="expected layout"):
            load_dataset(name, 0, str(tmp_path))  # exists, but empty


def test_cifar10_dvs_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNEXIT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "CIFAR10-DVS"
    files = {}
    for label, cls in enumerate(CIFAR10_DVS_CLASSES):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            ev = random_events(50, 128, 128, seed=10 * label + i)
            (root / cls / f"cifar10_{cls}_{i}.aedat").write_bytes(cifar10_dvs_bytes(ev))
            files[(label, i)] = ev
    d = load_dataset("cifar10_dvs", 0, str(root))
    assert d.temporal and d.num_classes == 10 and d.in_channels == 2 and d.input_size == 48
    assert d.train.x.shape[1:] == (10, 2, 48, 48) and len(d.train) + len(d.val) + len(d.test) == 50
    # every sample is the binned events of one file, with its class label
    expected = {k: torch.from_numpy(to_frames(ev, 10, 128, size=48)) for k, ev in files.items()}
    for split in (d.train, d.val, d.test):
        for x, y in zip(split.x, split.y):
            assert any(torch.equal(x, f) for (label, _), f in expected.items() if label == int(y))
    again = load_dataset("cifar10_dvs", 0, str(root))  # from the cache
    assert torch.equal(again.test.x, d.test.x) and torch.equal(again.train.y, d.train.y)


def test_cifar10_dvs_folder_bad_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNEXIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.aedat").write_bytes(cifar10_dvs_bytes(random_events(5, 128, 128))[:-3])
    with pytest.raises(SnnexitError, match="a.aedat.*truncated"):
        load_dataset("cifar10_dvs", 0, str(tmp_path))


def test_dvs_gesture_folder_official_split(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNEXIT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "DvsGesture"
    root.mkdir()
    names = [f"user{u:02d}_led" for u in range(1, 6)]
    for k, name in enumerate(names):
        ev = random_events(2000, 128, 128, t_max=11 * 1000, seed=k)
        (root / f"{name}.aedat").write_bytes(gesture_file(np.array_split(ev, 4)))
        rows = "".join(f"{c},{(c - 1) * 1000},{c * 1000}\r\n" for c in range(1, 12))
        (root / f"{name}_labels.csv").write_text("class,startTime_usec,endTime_usec\r\n" + rows)
    (root / "trials_to_test.txt").write_text(f"{names[-1]}.aedat\n")
    d = load_dataset("dvs_gesture", 1, str(tmp_path))  # finds the DvsGesture subfolder
    assert d.temporal and d.num_classes == 11 and d.train.x.shape[1:] == (16, 2, 32, 32)
    assert len(d.test) == 11 and sorted(d.test.y.tolist()) == list(range(11))
    assert len(d.train) + len(d.val) == 44
    ev = parse_aedat31(root / f"{names[-1]}.aedat")
    first = ev[(ev["t"] >= 0) & (ev["t"] < 1000)]
    assert any(torch.equal(x, torch.from_numpy(to_frames(first, 16, 128, size=32))) for x in d.test.x[d.test.y == 0])


def test_dvs_gesture_missing_labels(tmp_path):
    (tmp_path / "user01_led.aedat").write_bytes(gesture_file([random_events(5, 128, 128)]))
    with pytest.raises(SnnexitError, match="_labels.csv"):
        load_dataset("dvs_gesture", 0, str(tmp_path))


def test_ncaltech101_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNEXIT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "Caltech101"
    for c, cls in enumerate(["accordion", "airplanes", "anchor"]):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            (root / cls / f"image_{i:04d}.bin").write_bytes(ncaltech_bytes(random_events(30, 180, 240, seed=c * 9 + i)))
    d = load_dataset("ncaltech101", 0, str(root))
    assert d.num_classes == 3 and d.temporal and d.train.x.shape[1:] == (10, 2, 48, 48)
    assert sum(len(s) for s in (d.train, d.val, d.test)) == 15
    assert all(float(x.sum()) == 30 for s in (d.train, d.val, d.test) for x in s.x)  # every event counted once
