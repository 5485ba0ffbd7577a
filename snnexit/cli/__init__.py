"""The ``snnexit`` command line.

Each module in this package that defines ``register(subparsers)`` adds one subcommand; the
subcommand's parser sets ``func`` to a callable taking the parsed arguments and returning
an exit code. Bad input raises :class:`SnnexitError`, which becomes one line on stderr and
exit code 2 (argparse uses 2 for its own errors too).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from snnexit import __version__
from snnexit.errors import SnnexitError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snnexit", description="Make spiking neural networks answer sooner.")
    parser.add_argument("--version", action="version", version=f"snnexit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SnnexitError as exc:
        print(f"snnexit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())
