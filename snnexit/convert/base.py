"""Converter registry and the model walk shared by every converter.

A converter takes a trained ANN and returns a :class:`SpikingNetwork`. Layer surgery goes by
module *type*, never by name; a module the converter does not know raises an error naming
its type and its path in the model.
"""

from __future__ import annotations

import copy
from typing import Callable

from torch import nn

from snnexit.errors import SnnexitError
from snnexit.registry import Registry

CONVERTERS: Registry = Registry("converter")


def register_converter(name: str, *, quantizers: tuple[str, ...], needs_calibration: bool = False,
                       temporal: bool = True):
    """Register a converter under ``name`` with what it declares about itself, so that every check
    runs from the registry before any work (and the conformance tests build each kind from it):

    * ``quantizers``: the ANN activations (``--quantizer`` names) whose layers it turns into neurons;
    * ``needs_calibration``: it sets thresholds from data (``calibration_data=`` training inputs);
    * ``temporal``: its network can take a sequence of frames (one per step); False for a network
      that delivers a static input for a fixed window (QFFS).
    """

    def decorator(fn):
        fn.quantizers = tuple(quantizers)
        fn.needs_calibration = bool(needs_calibration)
        fn.temporal = bool(temporal)
        return CONVERTERS.register(name)(fn)

    return decorator

# Linear (or affine at inference) layers that an SNN can apply once per time step unchanged.
PASS_THROUGH = (nn.Conv2d, nn.Conv1d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d,
                nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity,
                nn.Sequential)  # an empty Sequential (a ResNet identity shortcut) is a leaf


def replace_modules(model: nn.Module, replace: Callable[[str, nn.Module], nn.Module | None],
                    allowed: tuple[type, ...] = PASS_THROUGH) -> nn.Module:
    """Deep-copy ``model`` and swap leaves: ``replace(path, module)`` returns the new module,
    or None to keep a module of an ``allowed`` type. Any other leaf is an error."""
    model = copy.deepcopy(model)
    for path, module in list(model.named_modules()):
        if any(True for _ in module.children()):
            continue  # a container: its forward only routes tensors between leaves
        new = replace(path, module)
        if new is None:
            if not isinstance(module, allowed):
                raise SnnexitError(
                    f"cannot convert module {type(module).__name__} at '{path or '<root>'}': "
                    f"unsupported layer for this converter")
            continue
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, attr, new)
    return model


def require_spiking_layers(snn, name: str):
    """Refuse the network converter ``name`` built when it has no spiking layer (the ANN had no
    activation the converter turns into neurons: its "SNN" would be the ANN's affine layers)."""
    if not snn.spiking_layers():
        raise SnnexitError(f"converter {name!r} gave a network without spiking layers: the model has no activation "
                           f"that it turns into spiking neurons")
    return snn


def convert(model: nn.Module, name: str = "qcfs", **kwargs):
    """Convert a trained ANN with the converter registered as ``name`` (refused when the result
    has no spiking layer; the built-in converters refuse such a model themselves)."""
    return require_spiking_layers(CONVERTERS.get(name)(model, **kwargs), name)
