"""The networks speed is measured on: the sizes users run, each a trained network (cached ANN).

A workload names a data set (whose input shape is the one timed), a model, T and the training
budget of its ANN. Speed depends on the spike rates, so every workload is a network that was
trained (briefly) to work, not a random one: its ANN is trained by the run pipeline and cached
by its settings (``snnexit.runs.ann``), so ``snnexit bench --workload vgg16`` and
``benchmarks/speed_race.py --workload vgg16`` share one network.

* ``default``: ``vgg_small`` on MNIST-5k (1 x 28 x 28), the network of ``snnexit run``;
* ``vgg16``: VGG-16 (width 64, 13 conv + 3 FC) on ``mnist5k_rgb32`` (3 x 32 x 32, the CIFAR shape);
* ``resnet20``: ResNet-20 (width 16) on ``mnist5k_rgb32``;
* ``event_cnn``: ``vgg_small`` on ``event_mnist`` frames (2 x 34 x 34, the N-MNIST shape), T = its 16 frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from snnexit.registry import Registry
from snnexit.runs.config_file import EVENT_INIT_THRESHOLD
from snnexit.runs.settings import RunConfig


@dataclass(frozen=True)
class Workload:
    """A trained network to time: data set (input shape), model, T, training epochs of its ANN."""

    name: str
    dataset: str
    model: str
    T: int
    epochs: int
    about: str
    settings: dict = field(default_factory=dict)  # further run settings (as `snnexit run` sets them)

    def config(self, **overrides) -> RunConfig:
        """The run settings that train (or reuse) this workload's ANN."""
        settings = dict(dataset=self.dataset, model=self.model, T=self.T, epochs=self.epochs, progress=False)
        settings.update(self.settings)
        settings.update(overrides)
        return RunConfig(**settings)


WORKLOADS: Registry = Registry("workload")


def register_workload(workload: Workload) -> Workload:
    WORKLOADS.register(workload.name)(workload)
    return workload


register_workload(Workload("default", "mnist5k", "vgg_small", 32, RunConfig().epochs,
                           "vgg_small on MNIST-5k, 1 x 28 x 28 (the network of snnexit run)"))
# VGG-16 with lam = 1 and Adam 2e-3 stayed at chance for 2 epochs (its activations died, as on
# event data): lam = 4 and lr 1e-3 train it
register_workload(Workload("vgg16", "mnist5k_rgb32", "vgg16", 32, 3,
                           "VGG-16 on MNIST-5k resized to 3 x 32 x 32, 3 epochs (lam = 4 at init, Adam 1e-3)",
                           {"init_threshold": 4.0, "lr": 1e-3}))
register_workload(Workload("resnet20", "mnist5k_rgb32", "resnet20", 32, 4,
                           "ResNet-20 on MNIST-5k resized to 3 x 32 x 32, 4 epochs"))
register_workload(Workload("event_cnn", "event_mnist", "vgg_small", 16, 5,
                           "vgg_small on event MNIST frames, 2 x 34 x 34, T = 16 frames, 5 epochs",
                           {"init_threshold": EVENT_INIT_THRESHOLD}))  # as `snnexit run` trains on event data


def workload(name: str) -> Workload:
    """The registered workload ``name`` (an unknown name lists the known ones)."""
    return WORKLOADS.get(name)
