"""Progress lines for long jobs: one line per epoch and per stage, with the elapsed time.

Progress bars (tqdm) only draw on a terminal; piped or in CI a job would otherwise print
nothing for minutes. Every long-running function here takes a ``log(message)`` callable;
the command line passes a :class:`ProgressLog`, which stamps each message with the seconds
since the job started and flushes it at once (a pipe is block-buffered), or drops it with
``--quiet``. Light on purpose: ``snnexit --help`` imports this module.
"""

from __future__ import annotations

import sys
import time


class ProgressLog:
    """``log("message")`` -> ``[   12.3 s] message`` on stderr (nothing when ``quiet``)."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.started
        print(f"[{elapsed:7.1f} s] {message}", file=self.stream or sys.stderr, flush=True)


def silent(message: str) -> None:
    """A log that drops every message."""
