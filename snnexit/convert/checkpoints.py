"""Import the QCFS authors' checkpoints into our VGG-16 / ResNet-18 / ResNet-20.

Their checkpoints are plain state_dicts (``torch.save(model.state_dict())``). Activation
thresholds sit in keys ending ``.thresh`` (the current code, ``IF`` modules) or ``.up`` (the
older code, e.g. ``...relu.up``); everything else is Conv / BatchNorm / Linear tensors with the
usual names. Our models mirror their layouts (``layer1``..``layer5`` + ``classifier``;
``conv1``, ``conv2_x``.., ``residual_function``, ``shortcut``, ``fc``), but the Sequential indices
differ where they keep a ``Dropout(0)`` we omit, and their block activation may be called
``relu`` where ours is ``act``. So the import matches *modules in order*: both state_dicts list
modules in registration order, which for these models is forward order; the k-th module of
theirs must be the same kind (conv, batchnorm, linear, activation) and have the same shapes as
the k-th of ours, or the import fails naming both keys.

Their activation is QCFS with threshold ``thresh`` (or ``up``) and ``L`` levels, ``L`` not
being stored: build our model with ``QCFS(levels=L)`` (their default L = 8) and load into it.
Files are read with ``torch.load(weights_only=True)``: no code in a checkpoint is ever run.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from snnexit.errors import SnnexitError
from snnexit.quant.qcfs import QCFS

THRESHOLD_SUFFIXES = ("thresh", "up")
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def read_state_dict(source) -> dict[str, torch.Tensor]:
    """A state_dict from a path (``weights_only=True``) or a dict; unwraps ``{'state_dict': ...}``
    / ``{'model': ...}`` and DataParallel's ``module.`` prefix."""
    if isinstance(source, (str, Path)):
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # missing, corrupt, or a pickle that wants to run code
            raise SnnexitError(f"{source}: cannot load checkpoint ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    else:
        state = source
    for wrapper in ("state_dict", "model", "net"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SnnexitError("checkpoint is not a state_dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _their_modules(state: dict[str, torch.Tensor]) -> list[tuple[str, str, dict[str, torch.Tensor]]]:
    """(prefix, kind, tensors) per module, in key order."""
    groups: "OrderedDict[str, dict[str, torch.Tensor]]" = OrderedDict()
    for key, value in state.items():
        prefix, _, name = key.rpartition(".")
        groups.setdefault(prefix, {})[name] = value
    out = []
    for prefix, tensors in groups.items():
        names = set(tensors)
        if names & set(THRESHOLD_SUFFIXES):
            kind = "activation"
        elif "running_mean" in names:
            kind = "batchnorm"
        elif "weight" in names and tensors["weight"].dim() >= 3:
            kind = "conv"
        elif "weight" in names and tensors["weight"].dim() == 2:
            kind = "linear"
        else:
            raise SnnexitError(f"checkpoint module '{prefix}' with keys {sorted(names)} is of no known kind "
                               f"(conv, batchnorm, linear, or an activation with .thresh / .up)")
        out.append((prefix, kind, tensors))
    return out


def _our_modules(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    out = []
    for path, m in model.named_modules():
        if isinstance(m, QCFS):
            out.append((path, "activation", m))
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            out.append((path, "batchnorm", m))
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            out.append((path, "conv", m))
        elif isinstance(m, nn.Linear):
            out.append((path, "linear", m))
    return out


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def map_qcfs_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Their state_dict renamed to ``model``'s keys (activations: ``thresh``/``up`` -> ``threshold``)."""
    theirs, ours = _their_modules(state), _our_modules(model)
    if any(type(m) is not QCFS for _, kind, m in ours if kind == "activation"):
        raise SnnexitError("import QCFS checkpoints into a model built with QCFS activations (activation=QCFS)")
    mapped: dict[str, torch.Tensor] = {}
    for i in range(max(len(theirs), len(ours))):
        if i >= len(theirs):
            raise SnnexitError(f"checkpoint ends before our module '{ours[i][0]}' ({ours[i][1]}): "
                               f"it has {len(theirs)} modules, the model {len(ours)}")
        if i >= len(ours):
            raise SnnexitError(f"checkpoint module '{theirs[i][0]}' ({theirs[i][1]}) has no counterpart: "
                               f"it has {len(theirs)} modules, the model {len(ours)}")
        (tp, tkind, tensors), (op, okind, module) = theirs[i], ours[i]
        if tkind != okind:
            raise SnnexitError(f"checkpoint module '{tp}' is {_a(tkind)} but model module '{op}' is {_a(okind)}")
        prefix = f"{op}." if op else ""
        if tkind == "activation":
            key = next(k for k in THRESHOLD_SUFFIXES if k in tensors)
            mapped[prefix + "threshold"] = tensors[key].reshape(1).float()
            continue
        own = module.state_dict()
        for name, value in tensors.items():
            if name not in own:
                raise SnnexitError(f"checkpoint key '{tp}.{name}' has no counterpart in model module '{op}'")
            if tuple(value.shape) != tuple(own[name].shape):
                raise SnnexitError(f"checkpoint key '{tp}.{name}' has shape {tuple(value.shape)} but "
                                   f"'{op}.{name}' has shape {tuple(own[name].shape)}")
            mapped[prefix + name] = value
        missing = set(own) - set(tensors)
        if missing:
            raise SnnexitError(f"checkpoint module '{tp}' lacks {sorted(missing)} needed by model module '{op}'")
    return mapped


def load_qcfs_checkpoint(model: nn.Module, source) -> nn.Module:
    """Load the QCFS authors' checkpoint (path or state_dict) into ``model`` in place; returns it."""
    mapped = map_qcfs_state_dict(read_state_dict(source), model)
    model.load_state_dict(mapped, strict=True)
    return model
