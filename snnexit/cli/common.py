"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse

from snnexit.progress import ProgressLog


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ... (default cpu)")


def progress_log(args: argparse.Namespace):
    """The command's log: one line per epoch and stage with the elapsed time on stderr, or
    nothing with ``--quiet``."""
    return ProgressLog(quiet=bool(getattr(args, "quiet", False)))
