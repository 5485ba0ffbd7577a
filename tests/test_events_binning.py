"""Binning events into frames (T, 2, H, W), checked against brute-force loops."""

from fractions import Fraction

import numpy as np
import pytest

from snnexit.data.events import EVENT_DTYPE, make_events, to_frames
from snnexit.errors import SnnexitError


def random_events(n, H, W, t_max=10_000, seed=0, sort=True):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, t_max, n)
    return make_events(rng.integers(0, W, n), rng.integers(0, H, n), np.sort(t) if sort else t, rng.integers(0, 2, n))


def brute_by_time(ev, T, H, W, h, w, t_start=None, duration=None):
    t0 = min(int(t) for t in ev["t"]) if t_start is None else t_start
    dur = max(int(t) for t in ev["t"]) - t0 + 1 if duration is None else duration
    out = np.zeros((T, 2, h, w), dtype=np.float32)
    for x, y, t, p in ev.tolist():
        pos = Fraction(t - t0, dur) * T  # which window, exactly
        if 0 <= pos < T:
            out[int(pos), p, y * h // H, x * w // W] += 1
    return out


def brute_by_count(ev, T, H, W):
    order = sorted(range(len(ev)), key=lambda i: (int(ev["t"][i]), i))  # stable by time
    n = len(ev)
    out = np.zeros((T, 2, H, W), dtype=np.float32)
    for k in range(T):
        for rank in range(k * n // T, (k + 1) * n // T):
            x, y, _, p = ev[order[rank]].tolist()
            out[k, p, y, x] += 1
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("T", [1, 3, 7, 16])
def test_by_time_matches_brute_force(seed, T):
    ev = random_events(300, 10, 12, seed=seed, sort=seed % 2 == 0)
    np.testing.assert_array_equal(to_frames(ev, T, (10, 12)), brute_by_time(ev, T, 10, 12, 10, 12))


@pytest.mark.parametrize("seed", range(3))
def test_by_time_explicit_window_and_pooling(seed):
    ev = random_events(400, 16, 20, seed=seed)
    got = to_frames(ev, 5, (16, 20), size=(5, 7), t_start=1234, duration=5555)
    np.testing.assert_array_equal(got, brute_by_time(ev, 5, 16, 20, 5, 7, 1234, 5555))
    assert got.sum() < len(ev)  # events outside the window are dropped


def test_window_borders_are_exact():
    # duration 3000, T = 3: windows [0, 1000), [1000, 2000), [2000, 3000)
    ev = make_events([0] * 6, [0] * 6, [0, 999, 1000, 1999, 2000, 2999], [1] * 6)
    f = to_frames(ev, 3, 1, t_start=0, duration=3000)
    assert f[:, 1, 0, 0].tolist() == [2, 2, 2]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("T", [1, 4, 9])
def test_by_count_matches_brute_force(seed, T):
    ev = random_events(101, 6, 5, t_max=50, seed=seed, sort=False)  # ties and disorder
    got = to_frames(ev, T, (6, 5), by="count")
    np.testing.assert_array_equal(got, brute_by_count(ev, T, 6, 5))
    sizes = got.sum(axis=(1, 2, 3))
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == len(ev)


def test_by_count_fewer_events_than_frames():
    ev = random_events(3, 4, 4)
    got = to_frames(ev, 8, 4, by="count")
    np.testing.assert_array_equal(got, brute_by_count(ev, 8, 4, 4))
    assert got.sum() == 3


def test_pooling_equals_block_sum():
    ev = random_events(2000, 128, 128, seed=5)
    full = to_frames(ev, 4, 128)
    pooled = to_frames(ev, 4, 128, size=32)
    np.testing.assert_array_equal(pooled, full.reshape(4, 2, 32, 4, 32, 4).sum(axis=(3, 5)))


def test_empty_events():
    ev = np.zeros(0, dtype=EVENT_DTYPE)
    for by in ("time", "count"):
        f = to_frames(ev, 4, (3, 5), by=by)
        assert f.shape == (4, 2, 3, 5) and f.sum() == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"T": 0}, "T must"),
    ({"by": "volume"}, "unknown binning"),
    ({"sensor_size": (4, 4)}, "outside"),
    ({"size": 64}, "larger than the sensor"),
    ({"duration": 0}, "duration"),
])
def test_bad_arguments(kwargs, match):
    ev = random_events(50, 8, 8)
    args = {"T": 2, "sensor_size": 8, **kwargs}
    with pytest.raises(SnnexitError, match=match):
        to_frames(ev, **args)


def test_bad_polarity_and_not_events():
    ev = random_events(5, 8, 8)
    ev["p"][2] = 3
    with pytest.raises(SnnexitError, match="polarity"):
        to_frames(ev, 2, 8)
    with pytest.raises(SnnexitError, match="structured"):
        to_frames(np.zeros((5, 4)), 2, 8)


def test_huge_timestamps_do_not_overflow():
    t = np.array([0, 2**62, 2**63 - 2], dtype=np.int64)
    ev = make_events([0, 1, 2], [0, 0, 0], t, [1, 0, 1])
    f = to_frames(ev, 16, (1, 3))
    assert f.sum() == 3 and f[0, 1, 0, 0] == 1 and f[8, 0, 0, 1] == 1  # 16 * 2**62 // (2**63 - 1) = 8 and f[15, 1, 0, 2] == 1
