"""The name registries of neurons, task losses and quantizers: filled on import, an unknown name
gives one line that lists the known ones, and QUANTIZERS builds what the pipeline built before."""

import pytest
import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.neurons import NEURONS, TrainableIF, TrainableLIF
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
