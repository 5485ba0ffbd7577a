"""N-MNIST, and the event data sets as tonic and SpikingJelly leave them on disk.

Independent truth: the same events written in each tool's layout (SpikingJelly's ``np.savez``
of t, x, y, p; tonic's ``(N, 4)`` x, y, p, t[ms] arrays) give exactly the data set that the
published files give; frames equal :func:`to_frames` of the events that were written.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_events_formats import cifar10_dvs_bytes, ncaltech_bytes, random_events
from snnexit.cli import main
from snnexit.data import load_dataset
from snnexit.data.events import CIFAR10_DVS_CLASSES, find_layout, parse_nmnist, to_frames
from snnexit.data.events.foreign import pool_frames
from snnexit.errors import SnnexitError


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SNNEXIT_CACHE", str(tmp_path / "cache"))


def nmnist_events(train_per_class=3, test_per_class=1):
    """{(part, digit, index): events} on the 34x34 sensor, 300 ms as N-MNIST's three saccades."""
    out = {}
    for part, n in (("Train", train_per_class), ("Test", test_per_class)):
        for d in range(10):
            for i in range(n):
                out[(part, d, i)] = random_events(40 + i, 34, 34, t_max=300_000, seed=(part == "Test") * 1000 + 10 * d + i)
    return out


def write_nmnist_bin(root, events):
    for (part, d, i), ev in events.items():
        (root / part / str(d)).mkdir(parents=True, exist_ok=True)
        (root / part / str(d) / f"{i:05d}.bin").write_bytes(ncaltech_bytes(ev))


def write_sj_events(folder, path_parts, ev):
    folder = folder.joinpath(*path_parts[:-1])
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{path_parts[-1]}.npz", t=ev["t"], x=ev["x"], y=ev["y"], p=ev["p"])  # SpikingJelly's keys


def splits_equal(a, b):
    return all(torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
               for sa, sb in ((a.train, b.train), (a.val, b.val), (a.test, b.test)))


def test_nmnist_bin_reader():
    ev = random_events(50, 34, 34, t_max=300_000)
    got = parse_nmnist(ncaltech_bytes(ev))
    assert all(np.array_equal(got[f], ev[f]) for f in ("x", "y", "t", "p"))
    bad = ev.copy()
    bad["x"][3] = 34
    with pytest.raises(SnnexitError, match="N-MNIST .bin.*34x34"):
        parse_nmnist(ncaltech_bytes(bad))


def test_nmnist_published_layout(tmp_path):
    events = nmnist_events()
    write_nmnist_bin(tmp_path / "nm", events)
    d = load_dataset("nmnist", 0, str(tmp_path / "nm"))
    assert d.temporal and d.num_classes == 10 and d.in_channels == 2 and d.input_size == 34
    assert d.train.x.shape[1:] == (10, 2, 34, 34) and (len(d.train), len(d.val), len(d.test)) == (20, 10, 10)
    # the test split is the Test folder, each recording binned into 10 frames by time
    expected = {d_: torch.from_numpy(to_frames(ev, 10, 34)) for (part, d_, _), ev in events.items() if part == "Test"}
    for x, y in zip(d.test.x, d.test.y):
        assert torch.equal(x, expected[int(y)])
    train = {(d_, i): torch.from_numpy(to_frames(ev, 10, 34)) for (part, d_, i), ev in events.items() if part == "Train"}
    for split in (d.train, d.val):
        for x, y in zip(split.x, split.y):
            assert any(torch.equal(x, f) for (label, _), f in train.items() if label == int(y))


def test_nmnist_in_every_layout_gives_the_same_data(tmp_path):
    events = nmnist_events()
    write_nmnist_bin(tmp_path / "published", events)
    write_nmnist_bin(tmp_path / "tonic" / "NMNIST", events)  # tonic: save_to/NMNIST/Train/<digit>/*.bin
    write_nmnist_bin(tmp_path / "sj" / "extract", events)  # SpikingJelly: root/extract/Train/...
    for (part, d, i), ev in events.items():  # and root/events_np/train/<digit>/*.npz
        write_sj_events(tmp_path / "sj_events" / "events_np", (part.lower(), str(d), f"{i:05d}"), ev)
    ref = load_dataset("nmnist", 3, str(tmp_path / "published"))
    for root, kind in (("tonic", "published"), ("sj", "published"), ("sj_events", "spikingjelly events")):
        assert find_layout("nmnist", tmp_path / root).kind == kind
        assert splits_equal(load_dataset("nmnist", 3, str(tmp_path / root)), ref), root


def test_spikingjelly_frames(tmp_path):
    rng = np.random.default_rng(0)
    frames = {}
    root = tmp_path / "sj"
    for part, n in (("train", 3), ("test", 1)):
        for d in range(10):
            for i in range(n):
                f = rng.integers(0, 4, (10, 2, 34, 34)).astype(np.float64)  # SpikingJelly saves float frames
                (root / "frames_number_10_split_by_time" / part / str(d)).mkdir(parents=True, exist_ok=True)
                np.savez(root / "frames_number_10_split_by_time" / part / str(d) / f"{i:05d}.npz", frames=f)
                frames[(part, d, i)] = f
    d = load_dataset("nmnist", 0, str(root))
    assert find_layout("nmnist", root, 10, "time").kind == "spikingjelly frames"
    for x, y in zip(d.test.x, d.test.y):
        assert torch.equal(x, torch.from_numpy(frames[("test", int(y), 0)].astype(np.float32)))
    with pytest.raises(SnnexitError, match="none binned as asked \\(frames_number_10_split_by_number\\)"):
        find_layout("nmnist", root, 10, "count")
    # the events win over frames when both are there
    for d_ in range(10):
        for part, n in (("train", 3), ("test", 1)):
            for i in range(n):
                write_sj_events(root / "events_np", (part, str(d_), f"{i:05d}"), random_events(20, 34, 34, seed=d_ + i))
    assert find_layout("nmnist", root, 10, "time").kind == "spikingjelly events"


def test_pooling_spikingjelly_frames_equals_binning_at_that_size():
    for sensor, size in (((128, 128), (48, 48)), ((180, 240), (48, 48)), ((34, 34), (17, 17))):
        ev = random_events(3000, *sensor, seed=sensor[1])
        full = to_frames(ev, 5, sensor)
        assert np.array_equal(pool_frames(full, size), to_frames(ev, 5, sensor, size=size))


def test_dvs_gesture_tonic_and_spikingjelly(tmp_path):
    samples = {}  # (is_test, user, label) -> events with t in ms
    for u in range(1, 5):
        for label in range(11):
            samples[(u == 4, u, label)] = random_events(80, 128, 128, t_max=6000, seed=20 * u + label)
    for (test, u, label), ev in samples.items():
        folder = tmp_path / "tonic" / "DVSGesture" / ("ibmGestureTest" if test else "ibmGestureTrain") / f"user{u:02d}_led"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{label}.npy", np.stack([ev["x"], ev["y"], ev["p"], ev["t"]], axis=1).astype(np.int64))
        us = ev.copy()
        us["t"] *= 1000  # SpikingJelly keeps the microseconds of the recordings
        write_sj_events(tmp_path / "sj" / "events_np", ("test" if test else "train", str(label), f"user{u:02d}_led_0"), us)
    tonic = load_dataset("dvs_gesture", 0, str(tmp_path / "tonic"))
    sj = load_dataset("dvs_gesture", 0, str(tmp_path / "sj"))
    assert find_layout("dvs_gesture", tmp_path / "tonic").kind == "tonic"
    assert len(tonic.test) == 11 and sorted(tonic.test.y.tolist()) == list(range(11))
    assert tonic.train.x.shape[1:] == (16, 2, 32, 32) and len(tonic.train) + len(tonic.val) == 33
    for x, y in zip(tonic.test.x, tonic.test.y):
        ev = samples[(True, 4, int(y))].copy()
        ev["t"] *= 1000
        assert torch.equal(x, torch.from_numpy(to_frames(ev, 16, 128, size=32)))
    assert torch.equal(torch.sort(tonic.test.x.flatten(1).sum(1))[0], torch.sort(sj.test.x.flatten(1).sum(1))[0])
    assert torch.equal(tonic.test.x[tonic.test.y.argsort()], sj.test.x[sj.test.y.argsort()])


def test_cifar10_dvs_spikingjelly_events_equal_the_aedat_files(tmp_path):
    for c, cls in enumerate(CIFAR10_DVS_CLASSES):
        (tmp_path / "pub" / cls).mkdir(parents=True)
        for i in range(3):
            ev = random_events(40, 128, 128, seed=10 * c + i)
            (tmp_path / "pub" / cls / f"cifar10_{cls}_{i}.aedat").write_bytes(cifar10_dvs_bytes(ev))
            write_sj_events(tmp_path / "sj" / "events_np", (cls, f"cifar10_{cls}_{i}"), ev)
    (tmp_path / "sj" / "extract").mkdir()  # SpikingJelly's extract/ emptied: its events_np/ is read
    assert splits_equal(load_dataset("cifar10_dvs", 1, str(tmp_path / "pub")),
                        load_dataset("cifar10_dvs", 1, str(tmp_path / "sj")))


def test_ncaltech101_where_tonic_and_spikingjelly_unpack_it(tmp_path):
    for where in ("pub/Caltech101", "tonic/NCALTECH101/Caltech101", "sj/extract/Caltech101"):
        for c, cls in enumerate(["accordion", "airplanes", "anchor"]):
            (tmp_path / where / cls).mkdir(parents=True)
            for i in range(3):
                ev = random_events(30, 180, 240, seed=c * 9 + i)
                (tmp_path / where / cls / f"image_{i:04d}.bin").write_bytes(ncaltech_bytes(ev))
    ref = load_dataset("ncaltech101", 0, str(tmp_path / "pub"))
    assert ref.num_classes == 3
    for root in ("tonic", "sj"):
        assert splits_equal(load_dataset("ncaltech101", 0, str(tmp_path / root)), ref), root


def test_tonic_cifar10_dvs_aedat4_is_refused_in_one_line(tmp_path):
    (tmp_path / "CIFAR10DVS" / "cat").mkdir(parents=True)
    (tmp_path / "CIFAR10DVS" / "cat" / "cat_0.aedat4").write_bytes(b"#!AER-DAT4.0\r\n")
    with pytest.raises(SnnexitError, match="tonic's AEDAT 4 conversions .* --download") as exc:
        load_dataset("cifar10_dvs", 0, str(tmp_path))
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("folder,write,message", [
    ("events_np", lambda p: np.savez(p, a=np.zeros(3)), "holds 'frames' or t, x, y, p"),
    ("events_np", lambda p: np.savez(p, t=np.arange(3), x=np.zeros(3), y=np.zeros(3), p=np.full(3, 2)),
     "polarity p must be 0 or 1"),
    ("events_np", lambda p: np.savez(p, t=np.arange(3), x=np.full(3, 0.5), y=np.zeros(3), p=np.zeros(3)),
     "not whole numbers"),
    ("events_np", lambda p: np.savez(p, t=np.arange(3), x=np.zeros(2), y=np.zeros(3), p=np.zeros(3)), "differ in length"),
    ("events_np", lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "not a readable"),
    ("frames_number_10_split_by_time", lambda p: np.savez(p, frames=np.zeros((4, 2, 34, 34))),
     "expected \\(10, 2, 34, 34\\)"),
    ("frames_number_10_split_by_time", lambda p: np.savez(p, frames=np.full((10, 2, 34, 34), -1.0)), "event counts"),
])
def test_malformed_foreign_files_name_the_file(tmp_path, folder, write, message):
    for part in ("train", "test"):
        for d in range(10):
            (tmp_path / folder / part / str(d)).mkdir(parents=True)
            write(tmp_path / folder / part / str(d) / "00000.npz")
    with pytest.raises(SnnexitError, match=message) as exc:
        load_dataset("nmnist", 0, str(tmp_path))
    assert "00000.npz" in str(exc.value) and "\n" not in str(exc.value)


def test_tonic_gesture_npy_of_another_shape(tmp_path):
    for part in ("ibmGestureTrain", "ibmGestureTest"):
        (tmp_path / part / "user01_led").mkdir(parents=True)
        np.save(tmp_path / part / "user01_led" / "0.npy", np.zeros((5, 3)))
    with pytest.raises(SnnexitError, match="0.npy: a tonic DVS128 Gesture .npy is an \\(N, 4\\) array"):
        load_dataset("dvs_gesture", 0, str(tmp_path))


def test_nmnist_missing_test_folder_names_the_layouts(tmp_path):
    write_nmnist_bin(tmp_path, {k: v for k, v in nmnist_events().items() if k[0] == "Train"})
    with pytest.raises(SnnexitError, match="nmnist: no copy of the data set found .*expected layout: root/Train"):
        load_dataset("nmnist", 0, str(tmp_path))


@pytest.mark.slow
def test_nmnist_through_run_and_cutoff_train(tmp_path, monkeypatch):
    """``snnexit run`` and ``cutoff-train`` on a synthetic N-MNIST folder in the published layout;
    with ``--download`` too, which finds the copy there and makes no request (the mirror is a
    closed port: a request would fail)."""
    monkeypatch.setenv("SNNEXIT_DATA_MIRROR", "http://127.0.0.1:9")
    write_nmnist_bin(tmp_path / "N-MNIST", nmnist_events(train_per_class=6, test_per_class=2))
    data = ["--dataset", "nmnist", "--data-dir", str(tmp_path / "N-MNIST"), "--cache-dir", str(tmp_path / "c")]
    assert main(["--quiet", "run", *data, "--epochs", "1", "--width", "4", "--T", "4", "--out", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["dataset"] == "nmnist" and results["config"]["T"] == 4
    assert main(["--quiet", "cutoff-train", *data, "--download", "--epochs", "1", "--width", "4", "--T", "4",
                 "--out", str(tmp_path / "cutoff")]) == 0
    cutoff = json.loads((tmp_path / "cutoff" / "results.json").read_text())
    assert cutoff["dataset"] == "nmnist" and cutoff["T"] == 4 and cutoff["summary"]["test_size"] == 20
    assert main(["--quiet", "train", *data, "--download", "--epochs", "1", "--width", "4",
                 "--out", str(tmp_path / "run")]) == 0  # the cached ANN, the data found in place
