"""Fetching one archive over HTTP: resumed after an interruption, checked against its published
checksum before anything reads it, with progress on the terminal or in a log.

:func:`fetch` downloads into ``<file>.part`` beside the final name. An interrupted transfer
(a dropped connection, a body shorter than its ``Content-Length``) is resumed with an HTTP
``Range`` request, within the call (up to ``attempts`` tries) and across runs (the ``.part``
file stays). Only a whole file whose checksum matches is renamed to its final name; a file
whose checksum differs is removed and refused with one line. Every failure is a one-line
:class:`~snnexit.errors.SnnexitError` that names the URL, the expected checksum and the folder
where the archive can be put by hand.

``SNNEXIT_DATA_MIRROR`` (empty: unset) replaces the publisher's host: the archive is fetched from
``<mirror>/<data set>/<file name>``, and the published checksum still applies.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from snnexit.errors import SnnexitError

MIRROR_ENV = "SNNEXIT_DATA_MIRROR"
CHUNK = 1 << 16
ATTEMPTS = 3  # tries per call: a dropped connection is resumed this many times before giving up
TIMEOUT_S = 60.0  # seconds without a byte before a connection counts as dropped
UNKNOWN_SIZE_STEP = 16 << 20  # piped, without a Content-Length: one line per 16 MiB
ALGORITHMS = ("md5", "sha256")


@dataclass(frozen=True)
class Archive:
    """One published file of a data set: where it is, what its bytes hash to, where it unpacks.

    ``checksum`` is ``"md5:<hex>"`` or ``"sha256:<hex>"``; ``into`` is the subfolder of the data
    folder that the archive's members are extracted into (``""``: the data folder itself)."""

    url: str
    filename: str
    checksum: str
    into: str = ""

    def __post_init__(self):
        parse_checksum(self.checksum)


def parse_checksum(text: str) -> tuple[str, str]:
    algo, _, digest = str(text).partition(":")
    size = {"md5": 32, "sha256": 64}.get(algo)
    if size is None or not re.fullmatch(f"[0-9a-f]{{{size}}}", digest):
        raise SnnexitError(f"checksum {text!r} is not 'md5:<32 hex digits>' or 'sha256:<64 hex digits>'")
    return algo, digest


def file_checksum(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def matches(path: Path, checksum: str) -> bool:
    algo, digest = parse_checksum(checksum)
    return file_checksum(path, algo) == digest


def mirror() -> str | None:
    """The mirror named by ``SNNEXIT_DATA_MIRROR``; None when unset or empty (never the current folder)."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return value.rstrip("/") or None


def archive_url(archive: Archive, dataset: str, mirror_base: str | None = None) -> str:
    """The publisher's URL, or ``<mirror>/<dataset>/<file name>`` with a mirror."""
    return f"{mirror_base}/{dataset}/{archive.filename}" if mirror_base else archive.url


class TransferProgress:
    """A progress bar on a terminal (``bar``), else one ``log`` line per 10% of the file."""

    def __init__(self, desc: str, total: int | None, done: int, log, bar: bool):
        self.desc, self.total, self.done, self.log = desc, total, done, log
        self._bar = None
        if bar:
            self._bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=desc, file=sys.stderr,
                             leave=False)
        self._next = self._step_after(done)

    def _step_after(self, done: int) -> int:
        if not self.total:
            return (done // UNKNOWN_SIZE_STEP + 1) * UNKNOWN_SIZE_STEP
        tenth = done * 10 // self.total
        return -(-(tenth + 1) * self.total // 10)  # the first byte count at the next whole 10%

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        if self.done >= self._next:
            mb = self.done / 1e6
            shown = (f"{100 * self.done // self.total}% ({mb:.1f} of {self.total / 1e6:.1f} MB)" if self.total
                     else f"{mb:.1f} MB")
            self.log(f"{self.desc}: {shown}")
            self._next = self._step_after(self.done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _by_hand(url: str, checksum: str, dest: Path) -> str:
    return f"download {url} by hand ({checksum}) into {dest.parent}/ as {dest.name} and run again"


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    return int(match.group(1)) if match else None


def _open(url: str, have: int, timeout: float):
    headers = {"User-Agent": "snnexit", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _transfer(response, part: Path, have: int, desc: str, log, bar: bool) -> tuple[bool, int]:
    """Write the body of ``response`` to ``part`` (appending after ``have`` bytes when the server
    answered the range): (whole, bytes in ``part``)."""
    start = _content_range_start(response.headers.get("Content-Range")) if response.status == 206 else None
    if start != have:  # a full answer (200), or a range we did not ask for: start over
        have = 0
    length = response.headers.get("Content-Length")
    expected = have + int(length) if length and length.isdigit() else None
    progress = TransferProgress(desc, expected, have, log, bar)
    got = have
    try:
        with open(part, "ab" if have else "wb") as f:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                f.write(block)
                got += len(block)
                progress.update(len(block))
    except (http.client.HTTPException, OSError, socket.timeout):
        return False, part.stat().st_size if part.exists() else 0
    finally:
        progress.close()
    return expected is None or got >= expected, got


def fetch(url: str, dest: Path, checksum: str, *, log=print, bar: bool = False, attempts: int = ATTEMPTS,
          timeout: float = TIMEOUT_S) -> Path:
    """``dest``, downloaded from ``url`` (resuming ``dest.part``) and verified against ``checksum``."""
    dest = Path(dest)
    algo, digest = parse_checksum(checksum)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    got = part.stat().st_size if part.is_file() else 0
    whole = False
    for _ in range(attempts):
        have = part.stat().st_size if part.is_file() else 0
        if have:
            log(f"resuming {dest.name} at {have / 1e6:.1f} MB")
        try:
            response = _open(url, have, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing after what we have: the .part may be whole
                whole = True
                break
            raise SnnexitError(f"cannot download {url}: the server answered HTTP {exc.code} {exc.reason}; "
                               + _by_hand(url, checksum, dest)) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise SnnexitError(f"cannot download {url} ({reason}): " + _by_hand(url, checksum, dest)) from None
        with response:
            whole, got = _transfer(response, part, have, f"downloading {dest.name}", log, bar)
        if whole:
            break
        log(f"{dest.name}: the connection dropped at {got / 1e6:.1f} MB")
    if not whole:
        raise SnnexitError(f"download of {url} was interrupted {attempts} times (last at {got} bytes); run again to "
                           f"resume from {part}, or " + _by_hand(url, checksum, dest))
    return _accept(part, dest, url, algo, digest)


def _accept(part: Path, dest: Path, url: str, algo: str, digest: str) -> Path:
    actual = file_checksum(part, algo)
    if actual != digest:
        size = part.stat().st_size
        part.unlink(missing_ok=True)
        raise SnnexitError(f"{url}: {algo} of the {size} bytes received is {actual}, expected {digest} "
                           f"(a truncated or different file); removed it, nothing was extracted")
    os.replace(part, dest)
    return dest


def verify_local(path: Path, checksum: str, url: str) -> None:
    """Refuse (and remove) a local archive whose checksum differs from the published one."""
    algo, digest = parse_checksum(checksum)
    actual = file_checksum(path, algo)
    if actual != digest:
        path.unlink(missing_ok=True)
        raise SnnexitError(f"{path}: {algo} {actual} differs from the published {digest} of {url}; removed it, "
                           f"run again to download it")
