"""Ctrl-C remembered, and raised only where Python code can take it.

While the command line imports its modules, a ``KeyboardInterrupt`` raised by Python's own handler
lands inside torch's C++ initialisation, which either swallows it (the import succeeds and the
job runs to the end) or aborts the process (``terminate called after throwing an instance of
'pybind11::error_already_set'``). So :func:`install` puts in a handler that only notes the Ctrl-C;
once the imports are done, :func:`raise_from_now_on` raises a noted one and lets later ones raise
at once. :func:`check` raises a noted one at a safe point (every line of the log). A Ctrl-C that
still surfaces as another error inside an import (an ImportError of a half-initialised module) is
told apart by :func:`was_interrupted`."""

from __future__ import annotations

import signal
import threading

_interrupted = False
_raising = False


def _on_sigint(signum, frame):
    global _interrupted
    _interrupted = True
    if _raising:
        raise KeyboardInterrupt


def install() -> None:
    """Note every Ctrl-C from now on (only where Python's own handler is in place, in the main
    thread); none is raised before :func:`raise_from_now_on`."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def raise_from_now_on() -> None:
    """The imports are done: raise a Ctrl-C noted so far, and every later one where it lands."""
    global _raising
    _raising = True
    check()


def was_interrupted() -> bool:
    return _interrupted


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C was noted: one that something swallowed still stops
    the command."""
    if _interrupted:
        raise KeyboardInterrupt
