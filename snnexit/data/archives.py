"""Unpacking a verified archive into a data folder: every member checked first, nothing half-made.

* **Checked first.** Every member of a ``.zip`` or ``.tar(.gz|.bz2|.xz)`` is checked before
  one byte is written: a member whose path is absolute, climbs out with ``..``, names a drive,
  or that is a link (symbolic or hard), a device or a FIFO is refused with one line naming it.
* **Atomic.** The members are extracted into ``<folder>/.snnexit-partial/<archive>/``; only
  when all are there are its top-level entries moved into place (renames within one file
  system), and only then does the journal ``<folder>/.snnexit-downloads.json`` mark the
  archive done. A run killed while extracting leaves only the partial folder, which the next
  run removes; one killed while moving has journalled the entries it was moving, which the
  next run replaces. Nothing that a later run trusts (the journal) is written early.
* An entry already in the folder that no download of ours made is never overwritten: it is
  refused with one line (move it away, or point ``--data-dir`` elsewhere).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from snnexit.errors import SnnexitError
from snnexit.io import write_json

PARTIAL = ".snnexit-partial"
JOURNAL = ".snnexit-downloads.json"


def _member_problem(name: str) -> str | None:
    """Why a member's path would land outside the target folder (None: it stays inside)."""
    path = name.replace("\\", "/")
    if path.startswith("/") or PurePosixPath(path).is_absolute():
        return "is an absolute path"
    first = path.split("/", 1)[0]
    if len(first) >= 2 and first[1] == ":":
        return "names a drive"
    if any(part == ".." for part in path.split("/")):
        return "climbs out with '..'"
    if not path.strip("/").strip():
        return "has no name"
    return None


def _zip_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    for info in members:
        problem = _member_problem(info.filename)
        mode = info.external_attr >> 16
        if problem is None and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            problem = "is a link or a special file"
        if problem:
            raise SnnexitError(f"archive {zf.filename}: member {info.filename!r} {problem}: refused, nothing was "
                               f"extracted (a safe archive keeps every member inside its folder)")
    return members


def _tar_members(tf: tarfile.TarFile, where: Path) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    for info in members:
        problem = _member_problem(info.name)
        if problem is None and not (info.isfile() or info.isdir()):
            problem = "is a link or a special file"
        if problem:
            raise SnnexitError(f"archive {where}: member {info.name!r} {problem}: refused, nothing was extracted "
                               f"(a safe archive keeps every member inside its folder)")
    return members


def _write_member(target: Path, is_dir: bool, open_member) -> None:
    """A checked member (a folder or a regular file) written under the partial folder, with the
    permissions the umask gives (the archive's modes and owners are not kept)."""
    if is_dir:
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_member() as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _extract_all(archive: Path, stage: Path) -> None:
    """Check every member, then write them under ``stage`` (regular files and folders only)."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in _zip_members(zf):
                    _write_member(stage / info.filename.replace("\\", "/"), info.is_dir(), lambda: zf.open(info))
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for info in _tar_members(tf, archive):
                    _write_member(stage / info.name, info.isdir(), lambda: tf.extractfile(info))
        else:
            raise SnnexitError(f"{archive}: neither a zip nor a tar archive; nothing was extracted")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise SnnexitError(f"{archive}: cannot extract it ({type(exc).__name__}: {exc}); remove it and run "
                           f"again to download it") from None


def read_journal(folder: Path) -> dict:
    try:
        journal = json.loads((Path(folder) / JOURNAL).read_text())
        return journal if isinstance(journal, dict) and isinstance(journal.get("archives"), dict) else {"archives": {}}
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, nested too deeply: trust nothing
        return {"archives": {}}


def is_done(folder: Path, filename: str, checksum: str) -> bool:
    entry = read_journal(folder)["archives"].get(filename)
    return isinstance(entry, dict) and entry.get("state") == "done" and entry.get("checksum") == checksum


def _record(folder: Path, filename: str, entry: dict) -> None:
    journal = read_journal(folder)
    journal["archives"][filename] = entry
    write_json(folder / JOURNAL, journal)


def extract(archive: Path, folder: Path, checksum: str, into: str = "", log=print) -> None:
    """Unpack ``archive`` (already verified) into ``folder / into`` as the module doc says."""
    archive, folder = Path(archive), Path(folder)
    stage = folder / PARTIAL / archive.name
    shutil.rmtree(stage, ignore_errors=True)  # a killed extraction's leftovers: never trusted
    stage.mkdir(parents=True)
    log(f"extracting {archive.name}")
    try:
        _extract_all(archive, stage)
        target = folder / into if into else folder
        entries = sorted(p.name for p in stage.iterdir())
        previous = read_journal(folder)["archives"].get(archive.name) or {}
        ours = set(previous.get("entries", [])) if previous.get("state") == "placing" else set()
        for name in entries:
            dest = target / name
            if (dest.exists() or dest.is_symlink()) and name not in ours:
                raise SnnexitError(f"{dest} already exists and is not from a download of {archive.name}: move it "
                                   f"away (or point --data-dir at another folder) and run again")
        _record(folder, archive.name, {"state": "placing", "checksum": checksum, "into": into, "entries": entries})
        target.mkdir(parents=True, exist_ok=True)
        for name in entries:
            dest = target / name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            os.replace(stage / name, dest)
        _record(folder, archive.name, {"state": "done", "checksum": checksum, "into": into, "entries": entries})
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        try:
            (folder / PARTIAL).rmdir()
        except OSError:
            pass
