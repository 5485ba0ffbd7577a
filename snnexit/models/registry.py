"""Model registry: ``@register_model`` and ``create_model(name, **kwargs)`` (as in timm).

Every factory takes ``num_classes``, ``in_channels``, ``input_size`` (square side) and
``activation`` (a zero-argument callable returning a fresh activation module, e.g.
``lambda: QCFS(levels=4)``), so every model works for any data set and converter.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.registry import Registry

ActivationFactory = Callable[[], nn.Module]
MODELS: Registry = Registry("model")
register_model = MODELS.register


def create_model(name: str, *, num_classes: int, in_channels: int, input_size: int,
                 activation: ActivationFactory = nn.ReLU, **kwargs) -> nn.Module:
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels,
                            input_size=input_size, activation=activation, **kwargs)


def parameter_count(name: str, **kwargs) -> int:
    """The number of parameters ``create_model(name, **kwargs)`` would have, counted on a model
    built on the meta device: no memory is allocated, so the size of a model far too large
    (``--width 100000``) is known before anything is built. Settings the model refuses raise
    :class:`SnnexitError` naming the model."""
    MODELS.get(name)  # an unknown name: the registry's error, listing the known ones
    try:
        with torch.device("meta"):
            model = create_model(name, **kwargs)
    except SnnexitError:
        raise
    except (TypeError, ValueError, RuntimeError) as exc:
        raise SnnexitError(f"model {name!r} cannot be built with {kwargs}: {exc}") from None
    return sum(p.numel() for p in model.parameters())
