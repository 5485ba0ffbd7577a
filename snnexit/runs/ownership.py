"""Which files in an output folder snnexit may replace: its own, written by the same kind of command.

A command writes its files into a folder (``--out``). Nothing the user did not ask to replace is
replaced: where a file of the names a command writes already exists, the command goes on only
if snnexit wrote that folder, and that file was written by the same kind of command (a run and
its stages are one kind; ``compare``, ``table``, ``cutoff-train`` each another), or with
``--overwrite``. So ``snnexit run --out notes/`` does not replace the user's own ``notes/report.md``,
and ``cutoff-train --out runs/a`` does not replace the ``results.json`` of the run there.

Every command that writes a folder marks it (``.snnexit-folder``: JSON naming, file by file,
the command that wrote it). A folder written before the mark existed is recognised by its saved
configs or by files in snnexit's tensor formats; its files count as replaceable.
"""

from __future__ import annotations

import os
from pathlib import Path

from snnexit.errors import SnnexitError
from snnexit.io import read_json_file, write_json
from snnexit.runs.config_file import CONFIG_FORMAT

FOLDER_MARK = ".snnexit-folder"
MARK_FORMAT, MARK_VERSION = "snnexit-folder", 2
RUN_COMMANDS = ("run", "train", "convert", "trace", "fit", "evaluate", "report")  # one kind: a run and its stages


def kind(command: str) -> str:
    """The kind of command that writes a folder: ``run`` for a run and its stages, else the command."""
    return "run" if command in RUN_COMMANDS else command


def _mark(folder: Path) -> dict | None:
    path = folder / FOLDER_MARK
    if not path.is_file():
        return None
    try:
        record = read_json_file(path)
    except SnnexitError:
        return {}  # a mark that cannot be read still marks the folder; it names no file
    return record if isinstance(record, dict) else {}


def writers(folder: str | os.PathLike) -> dict[str, str]:
    """File name -> the kind of command that wrote it, as the folder's mark says (empty: none known)."""
    record = _mark(Path(folder)) or {}
    files = record.get("files")
    return {k: v for k, v in files.items() if isinstance(v, str)} if isinstance(files, dict) else {}


def is_snnexit_folder(folder: str | os.PathLike) -> bool:
    """Did snnexit write ``folder``? Its mark, a saved config (``config.<command>.json``) or a
    file in one of snnexit's tensor formats says so."""
    folder = Path(folder)
    if _mark(folder) is not None or any(_is_snnexit_config(path) for path in folder.glob("config.*.json")):
        return True
    return any(_is_snnexit_tensors(path) for path in folder.glob("*.safetensors"))


def _is_snnexit_config(path: Path) -> bool:
    try:
        values = read_json_file(path)
    except SnnexitError:
        return False
    return isinstance(values, dict) and values.get("format") == CONFIG_FORMAT


def _is_snnexit_tensors(path: Path) -> bool:
    """A safetensors file with snnexit's header (:func:`snnexit.io.save_tensors` writes these keys)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = f.read(min(n, 1 << 20)) if 0 < n <= path.stat().st_size else b""
    except OSError:
        return False
    return b'"__metadata__"' in header and b'"format_version"' in header and b'"sha256"' in header


def check_replaceable(folder: str | os.PathLike, names, command: str, overwrite: bool = False,
                      flag: str = "--out") -> None:
    """Refuse to write ``names`` into ``folder`` (for ``command``) where one of them exists and is
    not snnexit's to replace (module docstring), unless ``overwrite``."""
    folder = Path(folder)
    existing = [name for name in names if (folder / name).exists()]
    if not existing or overwrite:
        return
    if not is_snnexit_folder(folder):
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise SnnexitError(f"{folder} holds {existing[0]}{more} and is no folder snnexit wrote: this command would "
                           f"replace it; pass --overwrite to replace it, or choose another {flag}")
    owners = writers(folder)
    other = [name for name in existing if owners.get(name, kind(command)) != kind(command)]
    if other:
        raise SnnexitError(f"{folder / other[0]} was written by `snnexit {owners[other[0]]}`, and `snnexit {command}` "
                           f"would replace it; pass --overwrite to replace it, or choose another {flag}")


def mark_folder(folder: str | os.PathLike, command: str, names) -> None:
    """Record in ``folder``'s mark that ``command`` writes ``names`` there."""
    folder = Path(folder)
    owners = writers(folder)
    wanted = {**owners, **{name: kind(command) for name in names}}
    if _mark(folder) is None or wanted != owners:
        write_json(folder / FOLDER_MARK, {"format": MARK_FORMAT, "version": MARK_VERSION, "files": wanted})
