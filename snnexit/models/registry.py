"""Model registry: ``@register_model`` and ``create_model(name, **kwargs)`` (as in timm).

Every factory takes ``num_classes``, ``in_channels``, ``input_size`` (square side) and
``activation`` (a zero-argument callable returning a fresh activation module, e.g.
``lambda: QCFS(levels=4)``), so every model works for any data set and converter.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from snnexit.registry import Registry

ActivationFactory = Callable[[], nn.Module]
MODELS: Registry = Registry("model")
register_model = MODELS.register


def create_model(name: str, *, num_classes: int, in_channels: int, input_size: int,
                 activation: ActivationFactory = nn.ReLU, **kwargs) -> nn.Module:
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels,
                            input_size=input_size, activation=activation, **kwargs)
