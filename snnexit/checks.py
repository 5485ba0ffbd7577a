"""Checks of numbers, devices and the machine, shared by every layer (one definition each).

Each raises :class:`SnnexitError` with one line naming the setting and what it must be.
"""

from __future__ import annotations

import math
import operator
import os

import torch

from snnexit.errors import SnnexitError

DEVICE_TYPES = ("cpu", "cuda", "mps")
MAX_SEED = 2 ** 63 - 1  # a seed torch and the splits take


def check_device(device, what: str = "device") -> str:
    """``device`` if this machine has it, else a :class:`SnnexitError` naming it: a torch device
    string (``cpu``, ``cuda``, ``cuda:1``, ``mps``) whose accelerator is available and whose index
    is within the devices present. Every command checks its devices with this, before any work."""
    if not isinstance(device, str) or not device.strip():
        raise SnnexitError(f"{what} must name a torch device (cpu, cuda, cuda:1, ...), got {device!r}")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise SnnexitError(f"{what} {device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if parsed.type not in DEVICE_TYPES:
        raise SnnexitError(f"{what} {device!r}: snnexit runs on {', '.join(DEVICE_TYPES)}, not {parsed.type}")
    if parsed.type == "cpu":
        if parsed.index not in (None, 0):
            raise SnnexitError(f"{what} {device!r}: the CPU is cpu (or cpu:0)")
    elif parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise SnnexitError(f"{what} {device!r} requested but CUDA is not available")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise SnnexitError(f"{what} {device!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise SnnexitError(f"{what} {device!r} requested but MPS is not available")
        if parsed.index not in (None, 0):
            raise SnnexitError(f"{what} {device!r}: there is one MPS device, mps (or mps:0)")
    return device


def check_flag(name: str, value) -> None:
    """Refuse anything but True or False (a tensor, a string, None) for a yes/no setting."""
    if not isinstance(value, bool):
        raise SnnexitError(f"{name} must be true or false, got {value!r:.60}")


def check_range(key: str, value, low, high, what: str = "") -> None:
    """``low <= value <= high`` for a number (ints and floats, never bools; floats finite), else a
    :class:`SnnexitError` naming ``key``: ``config key 'lr' must lie in (0, 10], got nan``."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and (not isinstance(value, float) or math.isfinite(value)) and low <= value <= high)
    if not ok:
        shown = f"{low}..{high}" if isinstance(low, int) and isinstance(high, int) else f"[{low:g}, {high:g}]"
        raise SnnexitError(f"{key} must lie in {shown}{what}, got {value!r}")


def check_positive(key: str, value, high: float, what: str = "") -> None:
    """``0 < value <= high``, finite, else a :class:`SnnexitError` naming ``key``."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and 0 < value <= high)
    if not ok:
        raise SnnexitError(f"{key} must be a positive number up to {high:g}{what}, got {value!r}")


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_integer(key: str, value, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int in ``low..high`` (``high`` None: no bound); never a bool, a float such as
    8.7 (which ``int`` would silently turn into 8), a string or None."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        span = f"in {low}..{high}" if high is not None else f">= {low}"
        raise SnnexitError(f"{key} must be an integer {span}, got {value!r}")
    return number
