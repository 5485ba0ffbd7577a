"""Image transforms written with torch alone (torchvision has no CPU build here).

Every function works on a batch ``(N, C, H, W)`` float tensor on any device; random ones
draw from an explicit CPU ``torch.Generator`` so a seeded run is reproducible. The two
training augmentations are callables ``augment(x, gen) -> x`` as the training loop
(:func:`snnexit.train.train`) expects them:

* :class:`CifarAugment`: random crop of the zero-padded image (padding 4) + horizontal flip;
* :class:`FolderAugment`: random-resized-crop (scale 0.08..1, aspect 3/4..4/3) + flip;

and for event frames :class:`PrefixMeans`, the mean of a random number of first frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from snnexit.data.splits import DataSplits
from snnexit.errors import SnnexitError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise SnnexitError(f"expected a float image batch (N, C, H, W), got "
                           f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking). An int resizes the shorter side to
    ``size`` and keeps the aspect ratio; a pair ``(h, w)`` sets both sides."""
    _check_batch(x)
    H, W = x.shape[-2:]
    if isinstance(size, int):
        if size < 1:
            raise SnnexitError(f"resize size must be >= 1, got {size}")
        if H <= W:
            size = (size, max(1, round(W * size / H)))
        else:
            size = (max(1, round(H * size / W)), size)
    if tuple(size) == (H, W):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window (the top-left one of the two middles when odd)."""
    _check_batch(x)
    H, W = x.shape[-2:]
    if size > H or size > W:
        raise SnnexitError(f"cannot center-crop {size}x{size} from a {H}x{W} image")
    top, left = (H - size) // 2, (W - size) // 2
    return x[..., top : top + size, left : left + size]


def random_crop(x: torch.Tensor, size: int, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Per image, a random ``size x size`` window of the image zero-padded by ``padding``."""
    _check_batch(x)
    N, C, H, W = x.shape
    padded = F.pad(x, (padding,) * 4)  # (N, C, H + 2p, W + 2p)
    if size > H + 2 * padding or size > W + 2 * padding:
        raise SnnexitError(f"cannot crop {size}x{size} from a {H}x{W} image padded by {padding}")
    top = torch.randint(0, H + 2 * padding - size + 1, (N,), generator=gen).to(x.device)
    left = torch.randint(0, W + 2 * padding - size + 1, (N,), generator=gen).to(x.device)
    ar = torch.arange(size, device=x.device)
    rows = (top[:, None] + ar)[:, None, :, None]  # (N, 1, size, 1)
    cols = (left[:, None] + ar)[:, None, None, :]  # (N, 1, 1, size)
    n = torch.arange(N, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[n, c, rows, cols]  # (N, C, size, size)


def random_horizontal_flip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    _check_batch(x)
    flip = (torch.rand(x.shape[0], generator=gen) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_resized_crop(x: torch.Tensor, size: int, gen: torch.Generator, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """Per image, crop a random area fraction in ``scale`` with aspect ratio in ``ratio``
    (log-uniform), then resize it to ``size x size``. After 10 failed draws the image is
    center-cropped to its largest square (as in the Inception recipe)."""
    _check_batch(x)
    H, W = x.shape[-2:]
    area = H * W
    out = []
    for i in range(x.shape[0]):
        box = None
        for _ in range(10):
            target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(1, generator=gen).item())
            log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(1, generator=gen).item()
            r = math.exp(log_r)
            w = int(round(math.sqrt(target * r)))
            h = int(round(math.sqrt(target / r)))
            if 0 < w <= W and 0 < h <= H:
                top = int(torch.randint(0, H - h + 1, (1,), generator=gen))
                left = int(torch.randint(0, W - w + 1, (1,), generator=gen))
                box = (top, left, h, w)
                break
        if box is None:
            side = min(H, W)
            box = ((H - side) // 2, (W - side) // 2, side, side)
        top, left, h, w = box
        out.append(resize(x[i : i + 1, :, top : top + h, left : left + w], (size, size)))
    return torch.cat(out)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """``(x - mean) / std`` per channel."""
    _check_batch(x)
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise SnnexitError(f"normalize: {x.shape[1]} channels but {len(mean)} means and {len(std)} stds")
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device)[None, :, None, None]
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device)[None, :, None, None]
    return (x - m) / s


class CifarAugment:
    """Random crop of the padded image, then a random horizontal flip (the usual CIFAR recipe).

    The usual recipe pads with black *before* normalising; our images are stored normalised,
    so ``pad_value`` (per channel) should be black after normalisation, ``(0 - mean) / std``.
    ``None`` pads with zeros.
    """

    def __init__(self, size: int = 32, padding: int = 4, pad_value=None):
        self.size, self.padding = size, padding
        self.pad_value = pad_value

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.pad_value is not None:
            v = torch.as_tensor(self.pad_value, dtype=x.dtype, device=x.device)[None, :, None, None]
            x = random_crop(x - v, self.size, self.padding, gen) + v  # pads with pad_value
        else:
            x = random_crop(x, self.size, self.padding, gen)
        return random_horizontal_flip(x, gen)

    def __repr__(self) -> str:
        return f"CifarAugment(size={self.size}, padding={self.padding})"


class FolderAugment:
    """Random-resized-crop to ``size``, then a random horizontal flip (ImageNet recipe)."""

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return random_horizontal_flip(random_resized_crop(x, self.size, gen, self.scale, self.ratio), gen)

    def __repr__(self) -> str:
        return f"FolderAugment(size={self.size}, scale={self.scale})"


@dataclass
class AugmentedSplits(DataSplits):
    """Data splits with the training augmentation that suits them (``augment(x, gen)``;
    the pipeline passes it to the training loop). Validation and test stay un-augmented."""

    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    class_names: list[str] | None = None


@dataclass
class PrefixMeans:
    """Event frames ``(N, T, C, H, W)`` -> the mean of each recording's first ``k`` frames
    ``(N, C, H, W)``, ``k`` drawn uniformly from ``1..T`` per input: what a rate-coded SNN fed one
    frame per step has integrated after ``k`` steps (``k`` times this mean), so an ANN trained on
    them is right about what its converted network sees from the first frame on (``k = T`` is
    the mean frame it is tested on). ``then``: an image augmentation applied after."""

    then: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 3 or not x.is_floating_point():
            raise SnnexitError(f"expected float event frames (N, T, ...), got "
                               f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        n, T = x.shape[:2]
        k = torch.randint(1, T + 1, (n,), generator=gen).to(x.device)  # (N,) frames seen
        steps = torch.arange(1, T + 1, device=x.device)
        weights = (steps.view(1, T) <= k.view(n, 1)).to(x.dtype) / k.view(n, 1).to(x.dtype)  # (N, T)
        out = (x * weights.view(n, T, *([1] * (x.dim() - 2)))).sum(1)
        return out if self.then is None else self.then(out, gen)
