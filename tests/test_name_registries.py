"""The name registries of neurons, task losses and quantizers: filled on import, an unknown name
gives one line that lists the known ones, and QUANTIZERS builds the activations each name stands for."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.neurons import NEURONS, TrainableIF, TrainableLIF
from snnexit.quant import LSQ, QCFS, QUANTIZERS
from snnexit.registry import Registry
from snnexit.train.losses import TASK_LOSSES, mean_output_ce, tet_loss


@pytest.mark.parametrize("registry,names,kind", [
    (NEURONS, ["if", "lif"], "neuron"),
    (TASK_LOSSES, ["mean", "tet"], "loss"),
])
def test_registry_lists_its_names_and_refuses_unknown_ones_in_one_line(registry, names, kind):
    assert isinstance(registry, Registry)
    assert registry.names() == names
    assert all(name in registry for name in names) and "bogus" not in registry
    with pytest.raises(SnnexitError) as info:
        registry.get("bogus")
    assert str(info.value) == f"Unknown {kind} 'bogus'. Known: {', '.join(names)}"


def test_registries_hold_the_definitions():
    assert NEURONS.get("if") is TrainableIF and NEURONS.get("lif") is TrainableLIF
    assert TASK_LOSSES.get("mean") is mean_output_ce and TASK_LOSSES.get("tet") is tet_loss
    assert isinstance(NEURONS.create("lif", tau=3.0), TrainableLIF)
    outputs, labels = torch.randn(3, 4, 5), torch.tensor([0, 1, 2, 3])
    assert torch.equal(TASK_LOSSES.create("mean", outputs, labels), mean_output_ce(outputs, labels))


# ---- quantizers --------------------------------------------------------------------------------
SETTINGS = dict(levels=3, bits=3, init_threshold=2.5)


def describe(module: nn.Module) -> tuple:
    """Type, plain attributes and state of an activation module: equal descriptions, equal modules."""
    attrs = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}
    return type(module), attrs, {k: v.tolist() for k, v in module.state_dict().items()}


def test_quantizers_are_registered():
    assert QUANTIZERS.names() == ["clip", "lsq", "qcfs", "relu"]
    with pytest.raises(SnnexitError) as info:
        QUANTIZERS.get("lsqq")
    assert str(info.value) == "Unknown quantizer 'lsqq'. Known: clip, lsq, qcfs, relu"


def test_quantizers_build_the_activations_they_name():
    expected = {"qcfs": QCFS(3, 2.5), "lsq": LSQ(3, init_step=2.5 / 7), "relu": nn.ReLU(),
                "clip": nn.Hardtanh(0.0, 2.5)}
    for name, module in expected.items():
        make = QUANTIZERS.get(name)(**SETTINGS)
        a, b = make(), make()
        assert a is not b  # a fresh module per call: each layer trains its own threshold
        assert describe(a) == describe(module), name
    assert QUANTIZERS.get("lsq")(**SETTINGS)().threshold.item() == pytest.approx(2.5)  # s * Q = lam


def test_registries_are_filled_by_importing_them_alone():
    """A registry filled by decorators must be full whichever module a caller imports first."""
    root = Path(__file__).resolve().parents[1]
    code = ("from snnexit.quant.factories import QUANTIZERS\nfrom snnexit.neurons.modules import NEURONS\n"
            "from snnexit.train.losses import TASK_LOSSES\n"
            "print(QUANTIZERS.names(), NEURONS.names(), TASK_LOSSES.names())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert out.strip() == "['clip', 'lsq', 'qcfs', 'relu'] ['if', 'lif'] ['mean', 'tet']"
