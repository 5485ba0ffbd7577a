"""Files we write: atomically, versioned, checksummed; loaded without unpickling code.

Every writer goes through :func:`atomic_write` (write a temporary file in the same
folder, fsync, ``os.replace``) so a crash never leaves a half-written file behind.
Tensors are stored with safetensors; its string metadata carries a format name, a
format version and a SHA-256 of the tensor payload so a truncated or foreign file is
refused with a clear error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from snnexit.errors import SnnexitError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary sibling of ``path``; on success it replaces ``path`` at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a result file gets what open() gives
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (``/proc/self/status``,
    thread-safe); elsewhere set and restored at once."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_tensors(path, tensors: dict[str, torch.Tensor], *, fmt: str, version: int,
                 meta: dict | None = None) -> None:
    """Save ``tensors`` with safetensors, tagged with ``fmt``/``version``/checksum/``meta``."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {
        "format": fmt,
        "format_version": str(version),
        "sha256": _digest(tensors),
        "meta": json.dumps(meta or {}),
    }
    blob = st_save(tensors, metadata=header)
    with atomic_write(path) as f:
        f.write(blob)


def _safetensors_metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors blob: 8-byte little-endian length, then JSON."""
    if len(data) < 8:
        raise ValueError("file shorter than the safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header length exceeds the file size")
    return json.loads(data[8 : 8 + n]).get("__metadata__") or {}


def load_tensors(path, *, fmt: str, version: int) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a file written by :func:`save_tensors`, refusing anything else."""
    path = Path(path)
    if not path.is_file():
        raise SnnexitError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        header = _safetensors_metadata(data)
    except (SafetensorError, ValueError, OSError, RuntimeError) as exc:
        raise SnnexitError(f"{path}: not a valid snnexit {fmt} file (corrupt or truncated: {exc})") from None
    if header.get("format") != fmt:
        raise SnnexitError(f"{path}: expected a snnexit {fmt} file, found format {header.get('format')!r}")
    if header.get("format_version") != str(version):
        raise SnnexitError(
            f"{path}: {fmt} format version {header.get('format_version')!r} is not supported (expected {version})"
        )
    if header.get("sha256") != _digest(tensors):
        raise SnnexitError(f"{path}: checksum mismatch, the file is corrupt")
    try:
        meta = json.loads(header.get("meta", "{}"))
    except json.JSONDecodeError:
        raise SnnexitError(f"{path}: corrupt metadata") from None
    return tensors, meta
