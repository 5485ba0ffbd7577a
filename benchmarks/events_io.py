"""Event data throughput: vectorised readers vs a per-event loop, binning, event_mnist build.

* Readers: a synthetic file of each format (CIFAR10-DVS AEDAT 2.0, DVS128 Gesture AEDAT 3.1,
  N-Caltech101 .bin) is parsed by snnexit's numpy reader and by a plain per-event ``struct``
  loop written the way the data sets' published Python loaders are (the baseline); both must
  give the same events. Repeats are interleaved; medians are reported, with the speed-up ratio.
* Binning: ``to_frames`` by time and by count, events per second.
* ``event_mnist``: the first build (simulation + cache write) and a load from the cache.

Writes ``benchmarks/results/events_io.json``.

    .venv/bin/python benchmarks/events_io.py [--events 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snnexit.data.events import (EVENT_DTYPE, event_mnist, parse_aedat31, parse_cifar10_dvs,  # noqa: E402
                                 parse_ncaltech101, to_frames)
from snnexit.io import write_json  # noqa: E402


def random_events(n, H, W, t_max, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["x"], ev["y"] = rng.integers(0, W, n), rng.integers(0, H, n)
    ev["t"], ev["p"] = np.sort(rng.integers(0, t_max, n)), rng.integers(0, 2, n)
    return ev


def write_files(ev128, ev_nc) -> dict[str, bytes]:
    x, y, t, p = (ev128[f].astype(np.int64) for f in "xytp")
    addr = ((127 - x) << 8) | ((127 - y) << 1) | (1 - p)
    aedat2 = b"#!AER-DAT2.0\r\n" + np.stack([addr, t], 1).astype(">u4").tobytes()
    words = np.stack([(x << 17) | (y << 2) | (p << 1) | 1, t], 1).astype("<u4")
    packets = bytearray(b"#!AER-DAT3.1\r\n#!END-HEADER\r\n")
    for chunk in np.array_split(words, max(1, len(words) // 5000)):  # packets of ~5000 events
        packets += struct.pack("<HHIIIIII", 1, 1, 8, 4, 0, len(chunk), len(chunk), len(chunk)) + chunk.tobytes()
    x, y, t, p = (ev_nc[f].astype(np.int64) for f in "xytp")
    nbin = np.stack([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF], 1).astype(np.uint8).tobytes()
    return {"cifar10_dvs": aedat2, "dvs_gesture": bytes(packets), "ncaltech101": nbin}


# ---- per-event baselines, the way the published loaders read these files
def loop_aedat2(data: bytes):
    pos = 0
    while data[pos : pos + 1] == b"#":
        pos = data.index(b"\n", pos) + 1
    out = []
    for off in range(pos, len(data), 8):
        addr, t = struct.unpack_from(">II", data, off)
        out.append((127 - ((addr & 0x7F00) >> 8), 127 - ((addr & 0xFE) >> 1), t, 1 - (addr & 1)))
    return np.array(out, dtype=EVENT_DTYPE)


def loop_aedat31(data: bytes):
    pos = data.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    out = []
    while pos < len(data):
        etype, _, size, ts_off, overflow, cap, num, _ = struct.unpack_from("<HHIIIIII", data, pos)
        pos += 28
        if etype == 1:
            for i in range(num):
                word, ts = struct.unpack_from("<II", data, pos + i * size)
                if word & 1:
                    out.append(((word >> 17) & 0x7FFF, (word >> 2) & 0x7FFF, ts | overflow << 31, (word >> 1) & 1))
        pos += cap * size
    return np.array(out, dtype=EVENT_DTYPE)


def loop_bin(data: bytes):
    out = []
    for off in range(0, len(data), 5):
        x, y, b2, b3, b4 = data[off : off + 5]
        out.append((x, y, ((b2 & 0x7F) << 16) | (b3 << 8) | b4, b2 >> 7))
    return np.array(out, dtype=EVENT_DTYPE)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/events_io.json")
    args = ap.parse_args()
    n = args.events
    ev128 = random_events(n, 128, 128, 2**31 - 1, seed=1)
    ev_nc = random_events(n, 180, 240, 2**23 - 1, seed=2)
    files = write_files(ev128, ev_nc)
    readers = {"cifar10_dvs": (parse_cifar10_dvs, loop_aedat2, ev128),
               "dvs_gesture": (parse_aedat31, loop_aedat31, ev128),
               "ncaltech101": (parse_ncaltech101, loop_bin, ev_nc)}
    times = {k: {"numpy": [], "loop": []} for k in readers}
    for _ in range(args.repeats):  # interleaved repeats
        for name, (fast, slow, truth) in readers.items():
            dt, got = timed(fast, files[name])
            assert np.array_equal(got, truth), name
            times[name]["numpy"].append(dt)
            dt, got = timed(slow, files[name])
            assert np.array_equal(got, truth), name
            times[name]["loop"].append(dt)
    result = {"events": n, "repeats": args.repeats, "machine": platform.processor() or platform.machine(),
              "readers": {}}
    for name, tt in times.items():
        fast, slow = statistics.median(tt["numpy"]), statistics.median(tt["loop"])
        result["readers"][name] = {"numpy_s": fast, "loop_s": slow, "numpy_events_per_s": n / fast,
                                   "loop_events_per_s": n / slow, "speedup": slow / fast}
    result["binning"] = {}
    for by in ("time", "count"):
        dts = [timed(lambda: to_frames(ev128, 16, 128, by=by))[0] for _ in range(args.repeats)]
        result["binning"][by] = {"seconds": statistics.median(dts), "events_per_s": n / statistics.median(dts)}
    with tempfile.TemporaryDirectory() as cache:
        cold, _ = timed(lambda: event_mnist(seed=0, cache_dir=cache))
        warm = statistics.median(timed(lambda: event_mnist(seed=0, cache_dir=cache))[0] for _ in range(3))
    result["event_mnist"] = {"first_build_s": cold, "cached_load_s": warm,
                             "note": "default settings: 2000 digits, T=16, 34x34; first build includes parsing MNIST-5k"}
    write_json(args.out, result)
    for name, r in result["readers"].items():
        print(f"{name:12s} numpy {r['numpy_events_per_s'] / 1e6:7.1f} M ev/s   loop {r['loop_events_per_s'] / 1e6:6.2f} M ev/s"
              f"   x{r['speedup']:.0f}")
    for by, r in result["binning"].items():
        print(f"binning by {by:5s} {r['events_per_s'] / 1e6:7.1f} M ev/s")
    print(f"event_mnist: first build {cold:.1f} s, cached load {warm:.2f} s -> {args.out}")


if __name__ == "__main__":
    main()
