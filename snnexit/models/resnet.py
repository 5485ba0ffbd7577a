"""CIFAR-style ResNets (3x3 stem, no max pool) with a pluggable activation.

Key layout as in the QCFS authors' code: ``conv1`` (conv-BN-act), ``conv2_x`` ..
``conv5_x`` of ``BasicBlock`` (``residual_function``, ``shortcut``, ``act`` after the sum),
global average pool, ``fc``.
"""

from __future__ import annotations

from torch import nn

from snnexit.models.registry import ActivationFactory, register_model


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: ActivationFactory):
        super().__init__()
        self.residual_function = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            activation(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.act = activation()

    def forward(self, x):
        return self.act(self.residual_function(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, widths: list[int], blocks: list[int], *, num_classes: int, in_channels: int,
                 input_size: int, activation: ActivationFactory):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            activation(),
        )
        channels, side = widths[0], input_size
        self.stage_names = []
        for i, (width, count) in enumerate(zip(widths, blocks)):
            stride = 2 if i > 0 and side >= 2 else 1
            side = (side + 1) // 2 if stride == 2 else side
            layers = []
            for j in range(count):
                layers.append(BasicBlock(channels, width, stride if j == 0 else 1, activation))
                channels = width
            name = f"conv{i + 2}_x"
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def input_layer(self) -> nn.Module:
        """The layer that reads the input (for input checks: snnexit.simulate.inputs)."""
        return self.conv1[0]

    def forward(self, x):
        x = self.conv1(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(self.flatten(self.avg_pool(x)))


@register_model("resnet18")
def resnet18(*, width: int = 64, **kw) -> ResNet:
    return ResNet([width, 2 * width, 4 * width, 8 * width], [2, 2, 2, 2], **kw)


@register_model("resnet20")
def resnet20(*, width: int = 16, **kw) -> ResNet:
    return ResNet([width, 2 * width, 4 * width], [3, 3, 3], **kw)
