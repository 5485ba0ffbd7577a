"""Files we write: atomically, versioned, checksummed; loaded without unpickling code.

Every writer goes through :func:`atomic_write` (write a temporary file in the same
folder, fsync, ``os.replace``) so a crash never leaves a half-written file behind.
Tensors are stored with safetensors; its string metadata carries a format name, a
format version and a SHA-256 of the tensor payload so a truncated or foreign file is
refused with a clear error.
"""

from __future__ import annotations

import contextlib
import errno
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

from snnexit.environment import check_path_name
from snnexit.errors import SnnexitError


# errors of the body of ``atomic_write`` that mean the file cannot be written (not a bug): the disk
# or the quota is full, the file too large, the device failing
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def loads_json(text: str | bytes, where: str):
    """``json.loads(text)``, or a :class:`SnnexitError` naming ``where`` for anything that is not
    JSON, nesting too deep for the parser (``[[[[...`` 100,000 deep: a RecursionError) included."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "nested too deeply to read" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise SnnexitError(f"{where}: invalid JSON ({reason})") from None


def read_json_file(path: str | os.PathLike, what: str = "file"):
    """The JSON in the file ``path``, or a :class:`SnnexitError` naming it (unreadable, not UTF-8,
    not JSON, too deeply nested)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SnnexitError(f"{what} {path}: cannot read it ({_reason(exc)})") from None
    return loads_json(data, f"{what} {path}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary sibling of ``path``; on success it replaces ``path`` at once.

    A path that cannot be written (a folder, an unwritable or missing place, a full disk) is a
    :class:`SnnexitError` naming it (``X is a folder, not a file`` / ``cannot write X: reason``);
    the old file, if any, is left as it was."""
    path = Path(path)
    if not str(path).strip() or path.name in ("", ".", ".."):
        raise SnnexitError(f"cannot write {str(path)!r}: not a file name")
    check_path_name(path, "cannot write")
    if path.is_dir():
        raise SnnexitError(f"{path} is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        problem = _folder_problem(path.parent)
        raise SnnexitError(f"cannot write {path}: its folder {path.parent} {problem}" if problem else
                           f"cannot write {path}: {_reason(exc)}") from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a result file gets what open() gives
        with os.fdopen(fd, mode) as f:
            try:
                yield f
            except OSError as exc:
                if exc.errno in _WRITE_ERRNOS:
                    raise SnnexitError(f"cannot write {path}: {_reason(exc)}") from None
                raise
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise SnnexitError(f"cannot write {path}: {_reason(exc)}") from None
        try:
            os.replace(tmp, path)
        except IsADirectoryError:
            raise SnnexitError(f"{path} is a folder, not a file") from None
        except OSError as exc:
            raise SnnexitError(f"cannot write {path}: {_reason(exc)}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Check, before any work, that ``path`` can be written as a file (what :func:`atomic_write`
    needs: it is no folder, its folder exists or can be made, and a file can be made there);
    else a :class:`SnnexitError` naming it, e.g. ``output file out.json is a folder, not a file``.
    Makes the missing folders. Returns the path."""
    if not str(path).strip():
        raise SnnexitError(f"{what}: the name is empty; give a file")
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise SnnexitError(f"{what} {path}: not a file name")
    check_path_name(path, what)
    if path.is_dir():
        raise SnnexitError(f"{what} {path} is a folder, not a file")
    problem = _folder_problem(path.parent)
    if problem:
        raise SnnexitError(f"cannot write {what} {path}: its folder {path.parent} {problem}")
    return path


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Check, before any work, that ``path`` is a folder files can be written in: it and its
    parents are folders or missing, it can be made, and a file can be made there; else a
    :class:`SnnexitError` naming it, e.g. ``cache folder c is a file, not a folder``. Makes the
    folder. Returns the path."""
    if not str(path).strip():
        raise SnnexitError(f"{what}: the name is empty; give a folder")
    path = Path(path)
    check_path_name(path, what)
    problem = _folder_problem(path)
    if problem:
        raise SnnexitError(f"{what} {path} {problem}")
    return path


def _folder_problem(path: Path) -> str | None:
    """Why files cannot be written in the folder ``path`` (made if missing), or None."""
    if path.exists() and not path.is_dir():
        return "is a file, not a folder"
    for part in path.parents:
        if part.exists() and not part.is_dir():
            return f"is not writable: {part} is a file, not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"is not writable: cannot make it ({_reason(exc)})"
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"is not writable ({_reason(exc)})"
    return None


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
    path = check_path_name(path, "file")
    if not path.is_file():
        raise SnnexitError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        header = _safetensors_metadata(data)
    except (SafetensorError, ValueError, OSError, RuntimeError, RecursionError) as exc:
        reason = "its header is nested too deeply" if isinstance(exc, RecursionError) else exc
        raise SnnexitError(f"{path}: not a valid snnexit {fmt} file (corrupt or truncated: {reason})") from None
    if header.get("format") != fmt:
        raise SnnexitError(f"{path}: expected a snnexit {fmt} file, found format {header.get('format')!r}")
    if header.get("format_version") != str(version):
        raise SnnexitError(
            f"{path}: {fmt} format version {header.get('format_version')!r} is not supported (expected {version})"
        )
    if header.get("sha256") != _digest(tensors):
        raise SnnexitError(f"{path}: checksum mismatch, the file is corrupt")
    meta = loads_json(header.get("meta", "{}"), f"{path}: corrupt metadata")
    return tensors, meta
