import os
import pickle

import numpy as np
import pytest
import torch

from snnexit.data import load_dataset
from snnexit.data.cifar import safe_unpickle
from snnexit.data.transforms import CIFAR10_MEAN, CIFAR10_STD, AugmentedSplits
from snnexit.errors import SnnexitError


def write_cifar10(folder, per_batch=20, protocol=2, seed=0):
    """A miniature cifar-10-batches-py in the real format: pickled dicts with bytes keys."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batches[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, f, protocol=protocol)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}, f, protocol=protocol)
    return batches


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_reads_the_python_batches(tmp_path, protocol):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py", protocol=protocol)
    data = load_dataset("cifar10", seed=0, root=str(tmp_path))  # the parent folder works too
    assert isinstance(data, AugmentedSplits) and data.num_classes == 10 and data.input_size == 32
    assert len(data.train) + len(data.val) == 100 and len(data.test) == 20
    assert data.class_names[3] == "class3"
    # test split: the official test batch, channel-major, scaled and normalised
    raw, labels = batches["test_batch"]
    img = raw.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    expected = (img - np.array(CIFAR10_MEAN, dtype=np.float32)[:, None, None]) / np.array(CIFAR10_STD, dtype=np.float32)[:, None, None]
    assert np.allclose(data.test.x.numpy(), expected, atol=1e-5)
    assert data.test.y.tolist() == labels
    # train + val: every training image exactly once
    all_train = np.concatenate([b[0] for n, b in batches.items() if n != "test_batch"])
    got = torch.cat([data.train.x, data.val.x]).numpy()
    got_raw = np.round((got * np.array(CIFAR10_STD)[:, None, None] + np.array(CIFAR10_MEAN)[:, None, None]) * 255)
    assert sorted(map(bytes, got_raw.reshape(100, -1).astype(np.uint8))) == sorted(map(bytes, all_train))
    again = load_dataset("cifar10", seed=0, root=str(tmp_path / "cifar-10-batches-py"))
    assert torch.equal(again.val.y, data.val.y)


def test_cifar100_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    for name, n in (("train", 200), ("test", 30)):
        with open(root / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
                         b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)]}, f, protocol=2)
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)]}, f, protocol=2)
    data = load_dataset("cifar100", seed=0, root=str(root))
    assert data.num_classes == 100 and len(data.test) == 30 and len(data.train) + len(data.val) == 200
    assert data.class_names[99] == "f99"
    out = data.augment(data.train.x[:4], torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 32, 32)


def test_malicious_pickle_is_refused(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10(root)
    with open(root / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Payload(), b"labels": [0]}, f, protocol=2)
    with pytest.raises(SnnexitError, match=r"refusing to load global (posix|os)\.system"):
        load_dataset("cifar10", root=str(root))
    with pytest.raises(SnnexitError, match="refusing"):
        safe_unpickle(root / "data_batch_3")


@pytest.mark.parametrize("payload", [
    {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},  # wrong dtype
    {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},  # wrong shape
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]},  # label out of range
    {b"pixels": np.zeros((2, 3072), np.uint8)},  # wrong keys
    [1, 2, 3],  # not a dict
])
def test_malformed_batches_name_the_problem(tmp_path, payload):
    root = tmp_path / "c"
    write_cifar10(root)
    with open(root / "test_batch", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    with pytest.raises(SnnexitError, match="test_batch"):
        load_dataset("cifar10", root=str(root))


def test_missing_or_truncated_files(tmp_path):
    with pytest.raises(SnnexitError, match="does not exist.*cifar-10-batches-py"):
        load_dataset("cifar10", root=str(tmp_path / "nope"))
    with pytest.raises(SnnexitError, match="needs a local copy"):
        load_dataset("cifar100", root=None)
    root = tmp_path / "c"
    write_cifar10(root)
    (root / "data_batch_5").unlink()
    with pytest.raises(SnnexitError, match="missing data_batch_5"):
        load_dataset("cifar10", root=str(root))
    write_cifar10(root)
    blob = (root / "data_batch_2").read_bytes()
    (root / "data_batch_2").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SnnexitError, match="data_batch_2"):
        load_dataset("cifar10", root=str(root))
