"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse

from snnexit.environment import user_path
from snnexit.errors import SnnexitError
from snnexit.io import read_json_file
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


def path_arg(text: str) -> str:
    """A path flag's value: ``~`` expanded (also in ``--out=~/x``, which no shell expands), and a
    name the system can take (no name over NAME_MAX bytes)."""
    try:
        return user_path(text, "path")
    except SnnexitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def is_exit_rule(path) -> bool:
    """Does the file ``path`` hold an exit rule as snnexit writes them (policy.json, certified.json:
    a JSON object naming its snnexit format)? An output may replace such a file, never another."""
    try:
        record = read_json_file(path)
    except SnnexitError:
        return False
    return isinstance(record, dict) and isinstance(record.get("format"), str) and record["format"].startswith("snnexit")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ... (default cpu)")


def progress_log(args: argparse.Namespace):
    """The command's log: one line per epoch and stage with the elapsed time on stderr, or
    nothing with ``--quiet``."""
    return ProgressLog(quiet=bool(getattr(args, "quiet", False)))
