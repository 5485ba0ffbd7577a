"""Ctrl-C remembered: a SIGINT that lands inside an import (numpy's, torch's) can surface as
another error (an ImportError, a RecursionError of a half-initialised module) instead of
``KeyboardInterrupt``; the command line asks :func:`was_interrupted` before calling it a bug."""

from __future__ import annotations

import signal
import threading

_interrupted = False


def _on_sigint(signum, frame):
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def install() -> None:
    """Note every Ctrl-C from now on (only where Python's own handler is in place, in the main thread)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def was_interrupted() -> bool:
    return _interrupted
