"""What a command takes from its environment: the home folder, the cache folder, ``~`` in paths,
and the limits on file names.

Each is read so that an odd environment gives a default or a one-line :class:`SnnexitError`,
never a file in the wrong place or a traceback:

* an empty variable is an unset one (``SNNEXIT_CACHE=""`` means the default cache, not the current
  folder; ``HOME=""`` means the home folder of the user's account);
* ``~`` and ``~user`` at the start of a path are expanded wherever a path is given (flags, config
  files, ``SNNEXIT_CACHE``), as a shell expands them only at the start of a word;
* a name longer than the file system allows (``NAME_MAX``, 255 bytes on Linux, per name;
  ``PATH_MAX`` for the whole path) or with a NUL byte is refused before any work, where the
  system would raise ``ENAMETOOLONG`` from the first ``stat``.

Light on purpose (no torch): ``snnexit --help`` imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

from snnexit.errors import SnnexitError

CACHE_ENV = "SNNEXIT_CACHE"
NAME_MAX, PATH_MAX = 255, 4096  # Linux's limits, where the file system does not say


def env_value(name: str) -> str | None:
    """The variable ``name``, or None when it is unset, empty or only blanks."""
    value = os.environ.get(name)
    return value if value is not None and value.strip() else None


def home() -> Path:
    """The user's home folder: ``$HOME`` unless empty, else the account's (``pwd``)."""
    value = env_value("HOME")
    if value is not None:
        return Path(value)
    try:
        import pwd  # POSIX only, and only when HOME is empty

        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except (ImportError, KeyError, OSError):
        raise SnnexitError("HOME is empty and this account has no home folder: set HOME, or give the folder "
                           f"itself (--cache-dir, {CACHE_ENV})") from None


def expand_user(path: str | os.PathLike) -> str:
    """``path`` with a leading ``~`` (the home folder, :func:`home`) or ``~user`` expanded."""
    text = os.fspath(path)
    if not isinstance(text, str) or not text.startswith("~"):
        return text
    head, sep, tail = text.partition(os.sep)
    if head == "~":
        return str(home()) + sep + tail if sep else str(home())
    expanded = os.path.expanduser(text)  # ~user; an unknown user stays as written
    return expanded


def default_cache_dir() -> Path:
    """``$SNNEXIT_CACHE`` (``~`` expanded) unless unset or empty, else ``~/.cache/snnexit``."""
    value = env_value(CACHE_ENV)
    if value is not None:
        return Path(expand_user(value))
    return home() / ".cache" / "snnexit"


def shorten(text: str, keep: int = 40) -> str:
    """``text`` cut to about ``keep`` characters for a message (``aaaa...aaaa (300 characters)``)."""
    return text if len(text) <= keep else f"{text[:keep // 2]}...{text[-keep // 2:]} ({len(text)} characters)"


def _limit(path: Path, name: str, default: int) -> int:
    """The file system's limit ``name`` (``PC_NAME_MAX``) at the deepest existing folder of ``path``."""
    for folder in (path, *path.parents):
        try:
            if folder.is_dir():
                return int(os.pathconf(folder, name))
        except (OSError, ValueError):
            continue
    return default


def check_path_name(path: str | os.PathLike, what: str = "path") -> Path:
    """``path`` if the system can name it: no NUL byte, no name longer than the file system's
    ``NAME_MAX``, the whole no longer than ``PATH_MAX``; else a :class:`SnnexitError` naming it."""
    text = os.fspath(path)
    if "\0" in text:
        raise SnnexitError(f"{what} {shorten(text)!r} contains a NUL byte")
    try:
        raw = os.fsencode(text)
    except UnicodeError:
        raise SnnexitError(f"{what} {shorten(text)!r} cannot be encoded as a file name") from None
    if len(raw) >= PATH_MAX:
        raise SnnexitError(f"{what} {shorten(text)}: {len(raw)} bytes, the system takes paths shorter than {PATH_MAX}")
    longest = max(Path(text).parts, key=lambda part: len(os.fsencode(part)), default="")
    if len(os.fsencode(longest)) > NAME_MAX:  # the usual limit; a file system may allow more
        name_max = _limit(Path(os.path.abspath(text)).parent, "PC_NAME_MAX", NAME_MAX)
        if len(os.fsencode(longest)) > name_max:
            where = "" if longest == text else f" (in {shorten(longest)})"
            raise SnnexitError(f"{what} {shorten(text)}: a name of {len(os.fsencode(longest))} bytes{where}, the file "
                               f"system allows {name_max}; choose a shorter name")
    return Path(text)


def user_path(path: str | os.PathLike, what: str = "path") -> str:
    """A path given by the user: ``~`` expanded, its names checked (:func:`check_path_name`)."""
    text = expand_user(path)
    check_path_name(text, what)
    return text
