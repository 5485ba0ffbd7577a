"""An ImageNet-style folder of class subfolders, decoded with Pillow.

Two layouts are accepted (class names are the sorted subfolder names)::

    root/train/<class>/*.jpg  and  root/val/<class>/*.jpg   (or test/ instead of val/)
    root/<class>/*.jpg

With ``train/`` and ``val/`` the validation split is a seeded stratified 10% of ``train/``
and ``val/`` is the test split (ImageNet's labelled "val" set is the usual test set).
Without them the images are split 60/20/20 per class, seeded.

Every image is converted to RGB, its shorter side resized to ``image_size / 0.875`` and
center-cropped to ``image_size`` (the ImageNet evaluation recipe), scaled to [0, 1] and
normalised with the ImageNet mean and std. All images are decoded into memory once
(``N * 3 * image_size**2`` floats): meant for folders up to some ten thousand images
(subsets such as Imagenette), not for all of ImageNet. The training augmentation is
random-resized-crop + horizontal flip on the stored images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from snnexit.data.builtin import DATASETS
from snnexit.data.splits import Split, stratified_split
from snnexit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentedSplits, FolderAugment, center_crop, normalize, resize
from snnexit.errors import SnnexitError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif", ".tiff"}
LAYOUT = ("root/train/<class>/<image> with root/val/<class>/<image> (or root/test/...), "
          "or root/<class>/<image>; images in " + ", ".join(sorted(IMAGE_EXTENSIONS)))


def _scan(folder: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for every subfolder of ``folder``."""
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        classes[sub.name] = files
    return classes


def load_image(path: Path, image_size: int) -> torch.Tensor:
    """Decode one image to uint8 ``(3, image_size, image_size)`` (resize shorter side, center crop)."""
    from PIL import Image, UnidentifiedImageError  # Pillow: only image folders need it

    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SnnexitError(f"{path}: cannot decode image ({exc})") from None
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    x = center_crop(resize(x, max(image_size, round(image_size / 0.875))), image_size)
    return x[0].round().clamp(0, 255).to(torch.uint8)


def _decode(files: list[tuple[Path, int]], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.empty((len(files), 3, image_size, image_size), dtype=torch.uint8)
    for i, (path, _) in enumerate(files):
        x[i] = load_image(path, image_size)
    y = torch.tensor([label for _, label in files], dtype=torch.int64)
    return x, y


def _split(x: torch.Tensor, y: torch.Tensor) -> Split:
    return Split(normalize(x.float() / 255.0, IMAGENET_MEAN, IMAGENET_STD), y)


@DATASETS.register("imagefolder")
def imagefolder(seed: int = 0, root: str | None = None, image_size: int = 64) -> AugmentedSplits:
    """Images from ``root`` (see the module docstring for the layouts), ``image_size`` square."""
    if root is None:
        raise SnnexitError(f"imagefolder needs a folder: pass it as root (--data-dir); expected layout: {LAYOUT}")
    if image_size < 1:
        raise SnnexitError(f"image_size must be >= 1, got {image_size}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise SnnexitError(f"image folder {base} does not exist or is not a folder; expected layout: {LAYOUT}")
    held_out = next((base / n for n in ("val", "test") if (base / n).is_dir()), None)
    two_level = (base / "train").is_dir() and held_out is not None
    train_dir = base / "train" if two_level else base
    classes = _scan(train_dir)
    if len(classes) < 2:
        raise SnnexitError(f"{train_dir}: found {len(classes)} class subfolder(s), need at least 2; expected layout: {LAYOUT}")
    empty = [c for c, files in classes.items() if not files]
    if empty:
        raise SnnexitError(f"{train_dir}: class folder(s) without images: {', '.join(empty[:5])}; expected layout: {LAYOUT}")
    names = list(classes)
    index = {c: i for i, c in enumerate(names)}
    train_files = [(f, index[c]) for c, files in classes.items() for f in files]
    x, y = _decode(train_files, image_size)
    if two_level:
        held = _scan(held_out)
        unknown = [c for c in held if c not in index]
        if unknown:
            raise SnnexitError(f"{held_out}: class folder(s) not in {train_dir}: {', '.join(unknown[:5])}")
        x_te, y_te = _decode([(f, index[c]) for c, files in held.items() for f in files], image_size)
        if len(y_te) == 0:
            raise SnnexitError(f"{held_out}: no images; expected layout: {LAYOUT}")
        tr, va, _ = stratified_split(x.numpy(), y.numpy(), (0.9, 0.1, 0.0), seed)
        test = _split(x_te, y_te)
    else:
        tr, va, te = stratified_split(x.numpy(), y.numpy(), (0.6, 0.2, 0.2), seed)
        test = _split(x[te], y[te])
    pick = lambda idx: _split(x[torch.as_tensor(idx)], y[torch.as_tensor(idx)])  # noqa: E731
    return AugmentedSplits("imagefolder", pick(tr), pick(va), test, len(names),
                           augment=FolderAugment(image_size), class_names=names)
