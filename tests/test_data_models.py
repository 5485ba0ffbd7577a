import numpy as np
import pytest
import torch
from torch import nn

from snnexit.convert import convert
from snnexit.data import load_dataset, stratified_split
from snnexit.errors import SnnexitError
from snnexit.models import MODELS, create_model
from snnexit.quant import QCFS


def test_split_is_seeded_stratified_and_disjoint():
    y = np.repeat(np.arange(5), 40)
    a = stratified_split(np.zeros(200), y, (0.6, 0.2, 0.2), seed=3)
    b = stratified_split(np.zeros(200), y, (0.6, 0.2, 0.2), seed=3)
    c = stratified_split(np.zeros(200), y, (0.6, 0.2, 0.2), seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert len(set(np.concatenate(a))) == 200
    for part, size in zip(a, (24, 8, 8)):
        assert np.bincount(y[part]).tolist() == [size] * 5


def test_digits_loads():
    d = load_dataset("digits", seed=0)
    assert d.train.x.shape[1:] == (1, 8, 8) and d.num_classes == 10
    assert float(d.train.x.max()) <= 1.0
    assert len(d.train) + len(d.val) + len(d.test) == 1797


def test_unknown_dataset_lists_known():
    with pytest.raises(SnnexitError, match="Known: .*digits.*mnist5k"):
        load_dataset("cifar11")


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("size,channels,classes", [(8, 1, 10), (28, 1, 10), (32, 3, 7)])
def test_every_model_runs_and_converts(name, size, channels, classes):
    width = {"resnet20": 4}.get(name, 8)
    m = create_model(name, num_classes=classes, in_channels=channels, input_size=size,
                     activation=lambda: QCFS(4, 1.0), width=width).eval()
    x = torch.rand(3, channels, size, size)
    assert m(x).shape == (3, classes)
    snn = convert(m, "qcfs")
    assert snn.step(x).shape == (3, classes)
    assert snn.spike_counts().shape == (3, sum(isinstance(a, QCFS) for a in m.modules()))


def test_unsupported_layer_is_named_with_its_path():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), QCFS(), nn.Sequential(nn.MaxPool2d(2)), nn.Flatten())
    with pytest.raises(SnnexitError, match=r"MaxPool2d at '2\.0'"):
        convert(m, "qcfs")
    with pytest.raises(SnnexitError, match="Known: .*qcfs"):
        convert(m, "nope")
