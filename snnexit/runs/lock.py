"""One run at a time in a run folder: a lock file that names its holder.

``.snnexit.lock`` holds the pid, host, command and start time of the process that works in the
folder. A second process fails at once with a line naming the holder; a lock left by a process
that died (same host, pid gone) is taken over. The holder removes the temporary files that an
interrupted atomic write left behind (``.<name>.*.tmp``): while it holds the lock nobody else
can be writing them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from snnexit.errors import SnnexitError

LOCK_FILE = ".snnexit.lock"
_UNREADABLE_GRACE_S = 30.0  # a lock file still empty after this long: its writer died between create and write


def _holder(path: Path) -> dict | None:
    with contextlib.suppress(OSError, ValueError, RecursionError):  # unreadable: a holder unknown
        holder = json.loads(path.read_text())
        if isinstance(holder, dict):
            return holder
    return None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _stale(path: Path, holder: dict | None) -> bool:
    if holder is None:
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime > _UNREADABLE_GRACE_S
        return True
    return holder.get("host") == socket.gethostname() and not _alive(holder.get("pid"))


def remove_leftover_temporaries(folder: Path) -> list[Path]:
    """Delete what interrupted atomic writes left in ``folder`` (call only while holding its lock)."""
    removed = []
    for path in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str):
    """Hold ``folder``'s lock for the duration of the block, or fail naming its holder."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
          "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if _stale(path, holder):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            who = ("another process" if holder is None else
                   f"`snnexit {holder.get('command')}` (pid {holder.get('pid')} on {holder.get('host')}, "
                   f"since {holder.get('started')})")
            raise SnnexitError(f"run folder {folder} is in use by {who}; wait for it to finish or choose another "
                               f"--out (remove {path} only if that process is gone)") from None
        except OSError as exc:
            raise SnnexitError(f"run folder {folder}: cannot create its lock file ({exc.strerror or exc})") from None
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
        except OSError as exc:  # a full disk, a file-size limit: no lock may stay behind, unreadable
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise SnnexitError(f"run folder {folder}: cannot write its lock file {path} "
                               f"({exc.strerror or exc})") from None
        break
    else:
        raise SnnexitError(f"run folder {folder}: could not take its lock ({path})")
    try:
        remove_leftover_temporaries(folder)
        yield
    finally:
        if _holder(path) == me:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
