import numpy as np
import pytest
import torch
from PIL import Image

from snnexit.data import load_dataset
from snnexit.data.imagefolder import imagefolder, load_image
from snnexit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from snnexit.errors import SnnexitError


def solid(path, color, size=(20, 14), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def write_folder(root, classes=("cat", "dog", "eel"), per_class=5, ext="png"):
    colors = {"cat": (255, 0, 0), "dog": (0, 255, 0), "eel": (0, 0, 255)}
    for c in classes:
        for i in range(per_class):
            solid(root / c / f"{i}.{ext}", colors[c])


def denorm(x):
    return x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]


def test_flat_layout_decodes_and_labels_by_sorted_folder(tmp_path):
    write_folder(tmp_path, per_class=5)
    solid(tmp_path / "dog" / "gray.jpg", 128, mode="L")  # grayscale JPEG becomes RGB
    (tmp_path / "cat" / "notes.txt").write_text("not an image")  # ignored
    data = load_dataset("imagefolder", seed=0, root=str(tmp_path))
    assert data.class_names == ["cat", "dog", "eel"] and data.num_classes == 3
    assert len(data.train) + len(data.val) + len(data.test) == 16 and data.input_size == 64
    for split in (data.train, data.val, data.test):
        rgb = denorm(split.x).mean((2, 3))  # solid colours survive resize and crop
        for img, label in zip(rgb, split.y):
            if label == 0:
                assert torch.allclose(img, torch.tensor([1.0, 0, 0]), atol=1e-2)
            if label == 2:
                assert torch.allclose(img, torch.tensor([0, 0, 1.0]), atol=1e-2)


def test_train_val_layout_uses_val_as_test(tmp_path):
    write_folder(tmp_path / "train", per_class=10)
    write_folder(tmp_path / "val", classes=("cat", "eel"), per_class=2, ext="jpg")
    data = imagefolder(seed=1, root=str(tmp_path), image_size=16)
    assert len(data.test) == 4 and sorted(data.test.y.tolist()) == [0, 0, 2, 2]
    assert len(data.train) + len(data.val) == 30 and data.train.x.shape[1:] == (3, 16, 16)
    out = data.augment(data.train.x[:3], torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 16, 16)


def test_load_image_resizes_shorter_side_then_center_crops(tmp_path):
    img = np.zeros((40, 80, 3), dtype=np.uint8)
    img[:, 40:] = 255  # left half black, right half white
    Image.fromarray(img).save(tmp_path / "half.png")
    x = load_image(tmp_path / "half.png", 7)  # shorter side 8, crop 7 from the middle
    assert x.shape == (3, 7, 7) and x.dtype == torch.uint8
    assert (x[:, :, 0] == 0).all() and (x[:, :, -1] == 255).all()


def test_bad_folders_say_what_layout_is_expected(tmp_path):
    with pytest.raises(SnnexitError, match="needs a folder"):
        load_dataset("imagefolder", root=None)
    with pytest.raises(SnnexitError, match="does not exist.*root/<class>/<image>"):
        load_dataset("imagefolder", root=str(tmp_path / "missing"))
    solid(tmp_path / "one" / "only" / "a.png", (1, 2, 3))
    with pytest.raises(SnnexitError, match="need at least 2"):
        load_dataset("imagefolder", root=str(tmp_path / "one"))
    write_folder(tmp_path / "e")
    (tmp_path / "e" / "empty").mkdir()
    with pytest.raises(SnnexitError, match="without images: empty"):
        load_dataset("imagefolder", root=str(tmp_path / "e"))
    write_folder(tmp_path / "bad")
    (tmp_path / "bad" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(SnnexitError, match="broken.jpg: cannot decode"):
        load_dataset("imagefolder", root=str(tmp_path / "bad"))
    write_folder(tmp_path / "tv" / "train")
    write_folder(tmp_path / "tv" / "val", classes=("cat",))
    solid(tmp_path / "tv" / "val" / "yak" / "0.png", (9, 9, 9))
    with pytest.raises(SnnexitError, match="not in .*: yak"):
        load_dataset("imagefolder", root=str(tmp_path / "tv"))
