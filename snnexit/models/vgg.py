"""VGG-style CNNs with average pooling (max pooling does not convert to rate-coded SNNs).

The layout follows the QCFS authors' code (``layer1`` .. ``layer5`` of conv-BN-act-dropout
blocks, then ``classifier``) so their checkpoints map onto ours key by key.
"""

from __future__ import annotations

from torch import nn

from snnexit.models.registry import ActivationFactory, register_model


def _conv_stage(widths: list[int], in_channels: int, activation: ActivationFactory,
                dropout: float, pool: bool) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), activation()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_channels = width
    if pool:
        layers.append(nn.AvgPool2d(2))
    return nn.Sequential(*layers), in_channels


class VGG(nn.Module):
    """Stages of 3x3 conv blocks, each ending in a 2x2 average pool while the map is >= 2 wide."""

    def __init__(self, stages: list[list[int]], hidden: list[int], *, num_classes: int,
                 in_channels: int, input_size: int, activation: ActivationFactory, dropout: float = 0.0):
        super().__init__()
        side = input_size
        for i, widths in enumerate(stages, start=1):
            pool = side >= 2
            stage, in_channels = _conv_stage(widths, in_channels, activation, dropout, pool)
            self.add_module(f"layer{i}", stage)
            side = side // 2 if pool else side
        self.num_stages = len(stages)
        features = in_channels * side * side
        head: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            head += [nn.Linear(features, width), activation()]
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            features = width
        head.append(nn.Linear(features, num_classes))
        self.classifier = nn.Sequential(*head)

    def input_layer(self) -> nn.Module:
        """The layer that reads the input (for input checks: snnexit.simulate.inputs)."""
        return self.layer1[0]

    def forward(self, x):
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.classifier(x)


@register_model("vgg_small")
def vgg_small(*, width: int = 32, **kw) -> VGG:
    """Four conv layers in two stages and one hidden FC layer: the default for 28x28 input."""
    return VGG([[width, width], [2 * width, 2 * width]], [4 * width], **kw)


@register_model("vgg16")
def vgg16(*, width: int = 64, dropout: float = 0.0, **kw) -> VGG:
    """CIFAR-style VGG-16 (13 conv + 3 FC); ``width`` 64 is the original, smaller is cheaper."""
    w = width
    stages = [[w, w], [2 * w, 2 * w], [4 * w] * 3, [8 * w] * 3, [8 * w] * 3]
    return VGG(stages, [64 * w, 64 * w], dropout=dropout, **kw)
