"""JSON encoding of a policy's parameters and fitted attributes, exact both ways.

JSON numbers carry Python floats exactly (``json`` writes ``repr``), but JSON has no
infinity: ``inf`` and ``-inf`` are written as the strings ``"inf"`` and ``"-inf"`` wherever a
float may stand (NaN is never valid in a fitted policy). Arrays and tensors become nested
lists of the shape they have; their dtype is fixed per attribute by its declaration
(:class:`Fitted`, on the policy class), so decoding restores the same dtype, shape and bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from snnexit.errors import SnnexitError
from snnexit.exit.curve import ExitCurve
from snnexit.simulate.scaling import OutputScaling



@dataclass(frozen=True)
class Fitted:
    """One piece of a policy's fitted state, declared once on the policy class (``declare_fitted``):
    how it is saved and read back, and whether it was learned from labelled data.

    ``kind``: ``"int"``, ``"float"``, ``"curve"`` (an :class:`ExitCurve`), ``"scaling"`` (an
    :class:`OutputScaling`), ``"array"`` (numpy) or ``"tensor"`` (torch), the last two with
    ``dtype`` and ``ndim``. ``learned``: part of the score learned from labelled fitting data
    (tables, temperatures); a policy with such state certifies only on other inputs (its
    ``learns_score`` follows from this, it is never set by hand). ``optional``: set by some fits
    only (target ``risk``)."""

    kind: str
    dtype: str | None = None
    ndim: int | None = None
    learned: bool = False
    optional: bool = False

    def __post_init__(self):
        if self.kind not in ("int", "float", "curve", "scaling", "array", "tensor"):
            raise ValueError(f"unknown fitted kind {self.kind!r}")
        if (self.kind in ("array", "tensor")) != (self.dtype is not None and self.ndim is not None):
            raise ValueError("arrays and tensors declare their dtype and ndim (and nothing else does)")


CURVE_FIELDS = {"thresholds": "float64", "mean_steps": "float64", "correct": "int64", "agree": "int64"}
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf}


def encode_float(x: float) -> float | str:
    x = float(x)
    if math.isnan(x):
        raise ValueError("NaN cannot be saved in a policy record")
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def decode_float(value, what: str) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SnnexitError(f"{what} must be a number, 'inf' or '-inf', got {value!r}")
    return float(value)


def _decode_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SnnexitError(f"{what} must be an integer, got {value!r}")
    return value


def encode_array(x: np.ndarray | torch.Tensor, dtype: str, what: str) -> list:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray) or x.dtype != np.dtype(dtype):
        raise TypeError(f"{what}: expected a {dtype} array, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        if np.isnan(x).any():
            raise ValueError(f"{what} holds NaN: it cannot be saved")
        obj = x.astype(object)
        obj[np.isposinf(x)], obj[np.isneginf(x)] = "inf", "-inf"
        return obj.tolist()
    return x.tolist()


def decode_array(value, dtype: str, ndim: int, what: str) -> np.ndarray:
    """Nested lists (depth ``ndim``, rectangular) of numbers as a ``dtype`` array."""
    leaf = (lambda v: _decode_int(v, f"{what} entries")) if dtype == "int64" else \
        (lambda v: decode_float(v, f"{what} entries"))

    def walk(v, depth):
        if depth == 0:
            return leaf(v)
        if not isinstance(v, list):
            raise SnnexitError(f"{what} must be a {ndim}-dimensional list of numbers")
        return [walk(item, depth - 1) for item in v]

    nested = walk(value, ndim)
    try:
        out = np.array(nested, dtype=np.dtype(dtype))
    except (ValueError, OverflowError):
        raise SnnexitError(f"{what} is not a rectangular {ndim}-dimensional array") from None
    if out.ndim != ndim:
        raise SnnexitError(f"{what} is not a rectangular {ndim}-dimensional array")
    return out


def encode_curve(curve: ExitCurve) -> dict:
    out = {name: None if getattr(curve, name) is None else encode_array(getattr(curve, name), dtype, f"curve_.{name}")
           for name, dtype in CURVE_FIELDS.items()}
    return {**out, "n": int(curve.n), "T": int(curve.T)}


def decode_curve(value) -> ExitCurve:
    if not isinstance(value, dict) or set(value) != set(CURVE_FIELDS) | {"n", "T"}:
        raise SnnexitError(f"curve_ must be a table with {', '.join([*CURVE_FIELDS, 'n', 'T'])}")
    arrays = {name: None if value[name] is None else decode_array(value[name], dtype, 1, f"curve_.{name}")
              for name, dtype in CURVE_FIELDS.items()}
    n, T = _decode_int(value["n"], "curve_.n"), _decode_int(value["T"], "curve_.T")
    if n < 1 or T < 1:
        raise SnnexitError(f"curve_ needs n >= 1 and T >= 1, got n = {n}, T = {T}")
    th = arrays["thresholds"]
    sizes = {name: a.shape[0] for name, a in arrays.items() if a is not None}
    if th is None or arrays["mean_steps"] is None or len(set(sizes.values())) != 1 or th.size == 0:
        raise SnnexitError(f"curve_ arrays must have one length >= 1, got {sizes}")
    if arrays["correct"] is None and arrays["agree"] is None:
        raise SnnexitError("curve_ needs correct or agree counts")
    if not (np.diff(th) < 0).all():
        raise SnnexitError("curve_.thresholds must be strictly decreasing")
    for name in ("correct", "agree"):
        if arrays[name] is not None and not ((arrays[name] >= 0) & (arrays[name] <= n)).all():
            raise SnnexitError(f"curve_.{name} must count between 0 and n = {n}")
    return ExitCurve(th, arrays["mean_steps"], arrays["correct"], n, T, arrays["agree"])


def encode_param(name: str, value):
    """A parameter as JSON: None, a bool, a string, an integer or a finite float."""
    if value is None or isinstance(value, (bool, str, int)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise SnnexitError(f"parameter {name} = {value!r} cannot be saved (a record holds None, a bool, a string or a "
                       f"finite number)")


def encode_fitted(name: str, value, spec: Fitted):
    """The attribute ``name`` as JSON, as its declaration ``spec`` says."""
    kind = spec.kind
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    if kind == "float":
        return encode_float(value)
    if kind == "curve":
        return encode_curve(value)
    if kind == "scaling":
        if not isinstance(value, OutputScaling):
            raise TypeError(f"{name}: expected an OutputScaling, got {type(value).__name__}")
        return value.to_dict()
    container, dtype, ndim = kind, spec.dtype, spec.ndim
    if (container == "tensor") != isinstance(value, torch.Tensor) or value.ndim != ndim:
        raise TypeError(f"{name}: expected a {ndim}-dimensional {container}, got {type(value).__name__}")
    return encode_array(value, dtype, name)


def decode_fitted(name: str, value, spec: Fitted):
    """The attribute ``name`` from its JSON form (types and dtypes as ``fit`` leaves them)."""
    kind = spec.kind
    if kind == "int":
        return _decode_int(value, name)
    if kind == "float":
        return decode_float(value, name)
    if kind == "curve":
        return decode_curve(value)
    if kind == "scaling":
        try:
            return OutputScaling.from_dict(value)
        except SnnexitError as exc:
            raise SnnexitError(f"{name}: {exc}") from None
    container, dtype, ndim = kind, spec.dtype, spec.ndim
    array = decode_array(value, dtype, ndim, name)
    return torch.from_numpy(array) if container == "tensor" else array
