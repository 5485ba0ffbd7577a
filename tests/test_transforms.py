import numpy as np
import pytest
import torch
from PIL import Image

from snnexit.data.transforms import (CifarAugment, FolderAugment, center_crop, normalize, random_crop,
                                     random_horizontal_flip, random_resized_crop, resize)
from snnexit.errors import SnnexitError


def batch(n=5, c=3, h=8, w=8, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_random_crop_is_a_window_of_the_padded_image():
    x = batch()
    out = random_crop(x, 8, 2, torch.Generator().manual_seed(1))
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(len(x)):  # brute force: some offset reproduces the crop
        windows = [(a, b) for a in range(5) for b in range(5)
                   if np.array_equal(padded[i, :, a : a + 8, b : b + 8], out[i].numpy())]
        assert windows, f"crop {i} is no window of the padded image"


def test_random_crop_offsets_vary_and_are_seeded():
    x = batch(n=64)
    a = random_crop(x, 8, 4, torch.Generator().manual_seed(3))
    b = random_crop(x, 8, 4, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, x)  # 64 draws of 81 offsets: not all centred


def test_flip_mirrors_some_images_and_keeps_the_rest():
    x = batch(n=200)
    out = random_horizontal_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert (flipped | kept).all()
    assert 60 < flipped.sum() < 140  # p = 0.5


def test_center_crop_and_resize_shapes():
    x = batch(h=10, w=14)
    assert torch.equal(center_crop(x, 6), x[..., 2:8, 4:10])
    assert resize(x, 5).shape[-2:] == (5, 7)
    assert resize(x, (3, 4)).shape[-2:] == (3, 4)
    const = torch.full((1, 3, 9, 13), 0.3)
    assert torch.allclose(resize(const, 4), torch.full((1, 3, 4, 6), 0.3), atol=1e-6)
    with pytest.raises(SnnexitError, match="center-crop"):
        center_crop(x, 11)


def test_resize_matches_pillow_bilinear_on_upsampling():
    # PIL's bilinear upsampling is the textbook half-pixel-centre interpolation, as ours
    img = np.random.default_rng(0).integers(0, 256, (6, 5), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(img).resize((10, 12), Image.BILINEAR), dtype=np.float32)
    ours = resize(torch.from_numpy(img).float()[None, None], (12, 10))[0, 0].numpy()
    assert np.abs(ours - ref).max() <= 1.0  # PIL rounds to uint8


def test_normalize_closed_form():
    x = batch(c=2)
    out = normalize(x, (0.5, 0.25), (2.0, 0.5))
    assert torch.allclose(out[:, 0], (x[:, 0] - 0.5) / 2.0)
    assert torch.allclose(out[:, 1], (x[:, 1] - 0.25) / 0.5)
    with pytest.raises(SnnexitError, match="channels"):
        normalize(x, (0.5,), (1.0,))


def test_random_resized_crop_full_area_is_a_resize():
    x = batch(h=8, w=8)
    out = random_resized_crop(x, 4, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(out, resize(x, (4, 4)))
    out = random_resized_crop(batch(n=7, h=12, w=9), 5, torch.Generator().manual_seed(0))
    assert out.shape == (7, 3, 5, 5)


def test_cifar_augment_pads_with_the_given_value():
    x = torch.full((50, 3, 8, 8), 2.0)
    out = CifarAugment(8, 4, pad_value=(-1.0, -1.0, -1.0))(x, torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) <= {2.0, -1.0} and (out == -1.0).any()
    aug = FolderAugment(6)
    assert aug(batch(h=10, w=10), torch.Generator()).shape == (5, 3, 6, 6)
