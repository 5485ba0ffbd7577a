"""What a spiking network accepts as input, checked before any step is simulated.

A batch is a float tensor ``(N, ...)`` of static inputs (shown at every step) or, temporal,
``(N, T', ...)`` sequences whose step t is shown at step t; each input (or frame) has the
network's input shape. :func:`check_inputs` refuses with one line (:class:`SnnexitError`) a batch
that is not one: not a tensor or a numpy array, integer / bool / complex values, a missing
batch dimension, the wrong shape, NaN or infinite values; it takes a float numpy array as a
tensor and casts floats to the network's dtype.

The input shape of one input is ``snn.meta["input_shape"]`` when the run recorded it; else it is
read off the network's first layer where that is certain (the first leaf of ``nn.Sequential``
bodies, or a body's own ``input_layer()``, as snnexit's models have): a ``Conv2d`` takes
``(in_channels, H, W)``, a ``Conv1d`` ``(in_channels, L)``, a ``Linear`` ``(..., in_features)``
and ``Flatten`` then ``Linear`` any shape of ``in_features`` values. Otherwise only the dtype,
the batch dimension and finiteness are checked; a whole batch about to be run is also probed with
one step on its first input (``probe=True``), which turns what the layers cannot take (a height or
width) into the same one-line error.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from snnexit.checks import check_flag
from snnexit.errors import SnnexitError

_TRANSPARENT = (nn.Identity, nn.Dropout)  # leaves that leave the input's shape alone


def _leaves(module: nn.Module):
    """The leaves of ``module`` in the order it applies them, as far as that is certain."""
    inner = getattr(module, "input_layer", None)
    if callable(inner):  # a model that names its first layer (snnexit.models)
        yield from _leaves(inner())
        return
    layer = getattr(module, "layer", None)
    if type(module).__name__ == "WindowedBias" and isinstance(layer, nn.Module):  # QFFS: a wrapped affine layer
        yield layer
        return
    if isinstance(module, nn.Sequential):
        for child in module:
            yield from _leaves(child)
        return
    yield module


def input_rule(snn) -> tuple[str, object] | None:
    """How one input must look: ``("shape", shape)``, ``("channels", (ndim, C))``,
    ``("last", features)``, ``("numel", features)``, or None (unknown)."""
    shape = getattr(snn, "meta", {}).get("input_shape")
    if shape:
        return "shape", tuple(int(s) for s in shape)
    leaves = _leaves(getattr(snn, "body", snn))
    for m in leaves:
        if isinstance(m, _TRANSPARENT):
            continue
        if isinstance(m, nn.Conv2d):
            return "channels", (3, m.in_channels)
        if isinstance(m, nn.Conv1d):
            return "channels", (2, m.in_channels)
        if isinstance(m, nn.Linear):
            return "last", m.in_features
        if isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
            following = next((n for n in leaves if not isinstance(n, _TRANSPARENT)), None)
            return ("numel", following.in_features) if isinstance(following, nn.Linear) else None
        return None
    return None


def describe_rule(rule) -> str:
    kind, value = rule
    if kind == "shape":
        return f"{tuple(value)}"
    if kind == "channels":
        ndim, channels = value
        return f"({channels}, H, W)" if ndim == 3 else f"({channels}, L)"
    if kind == "last":
        return f"(..., {value})"
    return f"{value} values"


def _fits(rule, shape: tuple[int, ...]) -> bool:
    kind, value = rule
    if kind == "shape":
        return shape == tuple(value)
    if kind == "channels":
        return len(shape) == value[0] and shape[0] == value[1]
    if kind == "last":
        return len(shape) >= 1 and shape[-1] == value
    return math.prod(shape) == value


def network_dtype(snn) -> torch.dtype | None:
    """The floating dtype of the network's parameters (None: it has none)."""
    for tensor in itertools.chain(snn.parameters(), snn.buffers()):  # lazily: the first one usually answers
        if tensor.is_floating_point():
            return tensor.dtype
    return None


@torch.no_grad()
def probe_step(snn, one: torch.Tensor, shape: tuple[int, ...], what: str = "x") -> None:
    """Run one step of ``snn`` on one input ``one`` ``(1, ...)`` and reset it: a shape the
    layers cannot take becomes a :class:`SnnexitError` (``shape``: the batch's, for the message).
    Nothing is left changed: every module's train/eval mode is restored, the state reset, and
    the modules' forward hooks do not see the probe (it is no step of a run)."""
    modules = list(snn.modules())
    saved = [(m, m.training, m._forward_hooks, m._forward_pre_hooks) for m in modules]
    snn.eval()  # no BatchNorm statistics move
    for m in modules:
        m._forward_hooks, m._forward_pre_hooks = OrderedDict(), OrderedDict()
    params = next(iter(snn.parameters()), None)
    try:
        snn.reset()
        snn.step(one if params is None else one.to(params.device))
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SnnexitError(f"{what} has shape {tuple(shape)}, which the network cannot take: {reason}") from None
    finally:
        snn.reset()
        for m, mode, hooks, pre_hooks in saved:  # the same dicts: the callers' hook handles stay valid
            m.training, m._forward_hooks, m._forward_pre_hooks = mode, hooks, pre_hooks


def all_finite(x: torch.Tensor) -> bool:
    """No NaN or infinity in ``x``: one pass for its least and greatest value (a NaN or an infinity
    shows in one of them) instead of a mask of every value, which costs as much as a small step."""
    if x.numel() == 0:
        return True
    lo, hi = torch.aminmax(x)
    return math.isfinite(float(lo)) and math.isfinite(float(hi))


def check_inputs(snn, x, *, temporal: bool = False, T: int | None = None, what: str = "x",
                 probe: bool = False) -> torch.Tensor:
    """``x`` as a float tensor of the network's dtype, or :class:`SnnexitError` naming what is
    wrong (module doc). ``temporal``: ``(N, T', ...)`` with ``T' >= T`` (when T is given).
    ``probe``: also run one step on the first input (:func:`probe_step`; it resets the network),
    which catches the shapes the first layer alone does not tell (a height or width)."""
    check_flag("temporal", temporal)
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            raise SnnexitError(f"{what} must hold floating-point values (e.g. float32), got a numpy {x.dtype} array")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise SnnexitError(f"{what} must be a torch tensor or a numpy array of floats, got {type(x).__name__}")
    if not x.is_floating_point():
        raise SnnexitError(f"{what} must hold floating-point values (e.g. float32), got {x.dtype}")
    if temporal and not getattr(snn, "temporal_input", True):
        converter = getattr(snn, "meta", {}).get("converter", type(snn).__name__)
        raise SnnexitError(f"this network ({converter}) delivers a static input for a fixed window of steps: it cannot "
                           f"take a sequence of frames (temporal input); use another converter for event data")
    lead = 2 if temporal else 1  # batch (and time) dimensions before one input
    layout = "(N, T, ...)" if temporal else "(N, ...)"
    rule = input_rule(snn)
    if x.dim() <= lead:
        expected = f"(N, T, *{describe_rule(rule)})" if temporal and rule else layout
        raise SnnexitError(f"{what} has shape {tuple(x.shape)}: expected a batch {expected}")
    if rule is not None and not _fits(rule, tuple(x.shape[lead:])):
        one = "each frame" if temporal else "each input"
        hint = " (missing batch dimension?)" if _fits(rule, tuple(x.shape[lead - 1:])) else ""
        raise SnnexitError(f"{what} has shape {tuple(x.shape)}: {one} must have shape {describe_rule(rule)}, the "
                           f"network's input, in a batch {layout}{hint}")
    if x.shape[0] < 1:
        raise SnnexitError(f"{what} holds no inputs (shape {tuple(x.shape)})")
    if temporal and T is not None and x.shape[1] < T:
        raise SnnexitError(f"temporal input needs shape (N, T' >= {T}, ...), got {tuple(x.shape)}")
    if not all_finite(x):
        bad = (~torch.isfinite(x).flatten(1).all(1)).nonzero().flatten()
        raise SnnexitError(f"{what} contains NaN or infinite values ({bad.numel()} of {x.shape[0]} inputs, the first "
                           f"at index {int(bad[0])})")
    dtype = network_dtype(snn)
    x = x if dtype is None or x.dtype == dtype else x.to(dtype)
    if probe:
        probe_step(snn, x[:1, 0] if temporal else x[:1], tuple(x.shape), what)
    return x
