"""Progress lines for long jobs: one line per epoch and per stage, with the elapsed time.

Progress bars (tqdm) only draw on a terminal; piped or in CI a job would otherwise print
nothing for minutes. Every long-running function here takes a ``log(message)`` callable;
the command line passes a :class:`ProgressLog`, which stamps each message with the seconds
since the job started and flushes it at once (a pipe is block-buffered), or drops it with
``--quiet``. Light on purpose: ``snnexit --help`` imports this module.
"""

from __future__ import annotations

import os
import sys
import time

from snnexit import interrupt


class ProgressLog:
    """``log("message")`` -> ``[   12.3 s] message`` on stderr (nothing when ``quiet``)."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        interrupt.check()  # a Ctrl-C that a library swallowed stops the job here
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.started
        stream = self.stream or sys.stderr
        try:
            print(f"[{elapsed:7.1f} s] {message}", file=stream, flush=True)
        except BrokenPipeError:
            # the reader of the pipe went away (``2>&1 | head``): the job goes on without its log
            self.quiet = True
            drop_stream(stream)


def drop_stream(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so that no later write (Python's final
    flush included) fails again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no file descriptor: nothing will flush it
        pass


def silent(message: str) -> None:
    """A log that drops every message."""
