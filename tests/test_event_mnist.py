"""The built-in event_mnist: MNIST-5k through a simulated saccading event camera."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from snnexit.data import DATASETS, load_dataset
from snnexit.data.events import SaccadeCamera, event_mnist, simulate_events, simulate_frames, to_frames
from snnexit.data.events import simulator as em
from snnexit.errors import SnnexitError


@pytest.fixture(scope="module")
def digits():
    x, y = em._mnist_subset(2)  # 20 digits, two per class
    return x, y


def independent_log_frames(image, cam):
    """log(I + eps) of the image at each path sample, drawn with scipy's linear shift."""
    h, w = image.shape
    S, a = cam.sensor, cam.amplitude
    c = np.array([(S - w) / 2, (S - h) / 2])
    corners = [c + (-a, -a), c + (a, -a), c + (0, a), c + (-a, -a)]
    canvas = np.zeros((S, S))
    canvas[:h, :w] = image
    out = []
    for k in range(cam.steps + 1):
        s = 3 * k / cam.steps
        leg = min(int(s), 2)
        ox, oy = corners[leg] + (s - leg) * (corners[leg + 1] - corners[leg])
        out.append(np.log(ndimage.shift(canvas, (oy, ox), order=1, mode="constant") + cam.eps))
    return np.stack(out)  # (steps + 1, S, S)


def test_registered_shapes_and_split(tmp_path):
    assert "event_mnist" in DATASETS
    d = event_mnist(seed=0, T=8, n_per_class=5, cache_dir=tmp_path)
    assert d.temporal and d.num_classes == 10 and d.in_channels == 2 and d.input_size == 34
    assert d.train.x.shape == (30, 8, 2, 34, 34) and d.train.x.dtype == torch.float32
    assert len(d.val) == len(d.test) == 10
    for split, per_class in ((d.train, 3), (d.val, 1), (d.test, 1)):  # stratified
        assert torch.bincount(split.y, minlength=10).tolist() == [per_class] * 10
    assert (d.train.x >= 0).all() and d.train.x.sum() > 0 and torch.equal(d.train.x, d.train.x.round())


def test_deterministic_and_seeded(tmp_path):
    a = event_mnist(seed=0, T=4, n_per_class=3, cache_dir=tmp_path / "a")
    b = event_mnist(seed=0, T=4, n_per_class=3, cache_dir=tmp_path / "b")  # built again from scratch
    for s in ("train", "val", "test"):
        assert torch.equal(getattr(a, s).x, getattr(b, s).x) and torch.equal(getattr(a, s).y, getattr(b, s).y)
    c = event_mnist(seed=1, T=4, n_per_class=3, cache_dir=tmp_path / "a")
    assert not torch.equal(a.train.y, c.train.y)  # another split ...
    everything = lambda d: sorted(x.sum().item() for s in (d.train, d.val, d.test) for x in s.x)  # noqa: E731
    assert everything(a) == everything(c)  # ... of the same recordings


def test_cache_reuse_and_corrupt_cache(tmp_path, monkeypatch):
    first = event_mnist(seed=0, T=4, n_per_class=2, cache_dir=tmp_path)
    files = list(Path(tmp_path).rglob("*.safetensors"))
    assert len(files) == 1

    def boom(*args, **kwargs):
        raise AssertionError("simulated again despite the cache")

    monkeypatch.setattr(em, "simulate_frames", boom)
    again = event_mnist(seed=0, T=4, n_per_class=2, cache_dir=tmp_path)
    assert torch.equal(first.test.x, again.test.x)
    monkeypatch.undo()
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated: rebuilt, with a warning
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = event_mnist(seed=0, T=4, n_per_class=2, cache_dir=tmp_path)
    assert torch.equal(first.train.x, rebuilt.train.x)


def test_env_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNEXIT_CACHE", str(tmp_path))
    event_mnist(seed=0, T=2, n_per_class=1)
    assert list(Path(tmp_path, "event_mnist").glob("*.safetensors"))


def test_frames_are_the_binned_event_stream(digits):
    x, _ = digits
    T, cam = 8, SaccadeCamera(steps=32)
    frames = simulate_frames(x[:4], T, cam)
    for i in range(4):
        ev = simulate_events(x[i], cam)
        assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].min() >= 0 and ev["t"].max() < cam.steps * cam.step_us
        assert ev["x"].max() < 34 and ev["y"].max() < 34 and set(np.unique(ev["p"])) == {0, 1}
        binned = to_frames(ev, T, 34, t_start=0, duration=cam.steps * cam.step_us)
        np.testing.assert_array_equal(binned, frames[i].astype(np.float32))


def test_events_exactly_where_the_intensity_changes(digits):
    """A pixel fires iff its log intensity ever moves a whole threshold away from its start."""
    x, _ = digits
    cam = SaccadeCamera(steps=48)
    C = cam.thresholds().astype(np.float64)
    for image in x[::4]:
        L = independent_log_frames(image, cam)
        dev = np.abs(L - L[0]).max(axis=0)  # (S, S)
        frames = simulate_frames(image[None], 4, cam)[0]
        fired = frames.sum(axis=(0, 1)) > 0
        clear = np.abs(dev - C) > 1e-3 * C  # leave out pixels within float noise of the threshold
        np.testing.assert_array_equal(fired[clear], (dev >= C)[clear])
        # ... which is only near the digit's edges: within the motion range of a nonzero gradient
        edges = (np.abs(ndimage.sobel(L[0], 0)) + np.abs(ndimage.sobel(L[0], 1))) > 1e-6
        near = ndimage.binary_dilation(edges, iterations=4)
        assert fired.any() and not (fired & ~near).any()
        assert not fired[(L[0] == L[0].min()) & ~near].any()  # blank background far away: silent


def test_polarity_balance(digits):
    x, _ = digits
    cam = SaccadeCamera()
    frames = simulate_frames(x, 16, cam).astype(np.int64)  # (N, T, 2, S, S)
    on, off = frames[:, :, 1].sum(axis=1), frames[:, :, 0].sum(axis=1)
    # the path is closed: every pixel ends at its starting intensity, so ON and OFF cancel
    np.testing.assert_array_equal(on, off)
    # each of the three saccades shows both leading (ON) and trailing (OFF) edges
    for leg in np.array_split(np.arange(16), 3):
        assert (frames[:, leg, 1].sum(axis=(1, 2, 3)) > 0).all() and (frames[:, leg, 0].sum(axis=(1, 2, 3)) > 0).all()
    per_image = on.sum(axis=(1, 2))
    assert (per_image > 100).all()  # a digit gives hundreds of events per polarity


def test_camera_settings_matter(digits):
    x, _ = digits
    still = simulate_frames(x[:3], 4, SaccadeCamera(amplitude=0.0))
    assert still.sum() == 0  # no motion, no events
    base = simulate_frames(x[:3], 4, SaccadeCamera()).sum()
    assert simulate_frames(x[:3], 4, SaccadeCamera(threshold=0.5)).sum() < base


def test_bad_arguments(digits, tmp_path):
    x, _ = digits
    with pytest.raises(SnnexitError, match="multiple of T"):
        simulate_frames(x[:1], 5, SaccadeCamera(steps=32))
    with pytest.raises(SnnexitError, match="n_per_class"):
        event_mnist(n_per_class=0, cache_dir=tmp_path)
    with pytest.raises(SnnexitError, match="T and steps_per_frame"):
        event_mnist(T=0, cache_dir=tmp_path)
    with pytest.raises(SnnexitError, match="does not fit"):
        simulate_frames(x[:1], 4, SaccadeCamera(amplitude=4.0))
    with pytest.raises(SnnexitError, match="invalid camera"):
        simulate_frames(x[:1], 4, SaccadeCamera(threshold=0.0))


@pytest.mark.slow
def test_default_load(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNEXIT_CACHE", str(tmp_path))
    d = load_dataset("event_mnist", 0)
    assert d.temporal and d.train.x.shape == (1200, 16, 2, 34, 34) and len(d.val) == len(d.test) == 400
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_dataset("event_mnist", 0)  # from the cache, silently
    assert torch.equal(again.val.x, d.val.x)
