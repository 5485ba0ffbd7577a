"""The ``snnexit`` command line.

Each module in this package that defines ``register(subparsers)`` adds its subcommands; a
subcommand's parser sets ``func`` to a callable taking the parsed arguments and returning
an exit code. Bad input raises :class:`SnnexitError`, which becomes one line on stderr and
exit code 2 (argparse uses 2 for its own errors too).

Startup cost: the subcommand modules import torch, scipy and matplotlib, which take seconds.
:data:`COMMANDS` names every command with its module and one-line help, so ``snnexit
--version`` and ``snnexit --help`` import none of them, and ``snnexit run ...`` imports only
``snnexit.cli.run`` (a test checks the table against the modules' own registration).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from snnexit import __version__
from snnexit.errors import SnnexitError

# command -> (module in snnexit.cli that registers it, its one-line help)
COMMANDS = {
    "run": ("run", "train (or reuse), convert, trace, fit Dynamic Confidence and a certified exit, report (images or event frames)"),
    "train": ("stages", "train the QCFS ANN (or reuse the cached one) -> ann.safetensors; nothing with --nir"),
    "convert": ("stages", "calibrate and convert the trained ANN to an SNN -> snn.safetensors; with --nir FILE: import it -> "
                          "network.json"),
    "trace": ("stages", "simulate the SNN on validation and test -> trace_val/trace_test.safetensors"),
    "fit": ("stages", "fit an exit policy (--policy NAME, default Dynamic Confidence) on the validation trace -> policy.json"),
    "evaluate": ("stages", "evaluate fixed T, the fitted policy, a certified exit and the oracle on the test trace -> results.json"),
    "report": ("stages", "write report.md and the figures from results.json and the traces"),
    "compare": ("compare", "fit every exit policy on a validation trace, compare them on a test trace"),
    "table": ("table", "the paper's Table 1 grid: data sets x models x {qcfs, qffs}"),
    "bench": ("bench", "wall-clock time of fixed T vs early exit (latency at batch 1, throughput)"),
    "cutoff-train": ("cutoff", "direct SNN training / converted fine-tuning with the cutoff regulariser"),
    "export": ("export", "export a converted SNN (NIR)"),
    "certify": ("certify", "certify an exit from outputs recorded anywhere (a chip, a simulator): --val/--test OUT.npz"),
}
QUIET_HELP = "no progress lines on stderr (results and errors still print)"


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The parser with ``command`` fully registered (``"*"``: every command); the others are
    listed by name and help only, without importing their modules."""
    parser = argparse.ArgumentParser(prog="snnexit", description="Make spiking neural networks answer sooner.")
    parser.add_argument("--version", action="version", version=f"snnexit {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = {m for m, _ in COMMANDS.values()} if command == "*" else {COMMANDS.get(command, (None,))[0]}
    for name, (module, text) in COMMANDS.items():
        if name in sub.choices:
            continue  # registered with a sibling from the same module
        if module in wanted:
            importlib.import_module(f"{__name__}.{module}").register(sub)
        else:
            sub.add_parser(name, help=text)  # listed only; never parsed (main registers the command it runs)
    for p in sub.choices.values():
        # `snnexit run --quiet` as well as `snnexit --quiet run`; SUPPRESS keeps the top-level value
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)
    return parser


def _command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the top-level options take no values)."""
    return next((a for a in argv if not a.startswith("-")), None)


def one_line(text: str) -> str:
    """``text`` with every character that is not printable escaped (a newline, a control character
    in a file name): an error is one line on the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _empty_value(argv: list[str]) -> str | None:
    """The option of a ``--flag=--`` in ``argv``: argparse (3.11) drops the ``--`` and sets the
    flag to ``[]`` past its type check."""
    return next((word.split("=", 1)[0] for word in argv if word.startswith("-") and word.endswith("=--")), None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    flag = _empty_value(argv)
    if flag is not None:
        where = f"snnexit {_command(argv)}" if _command(argv) else "snnexit"
        print(one_line(f"{where}: error: argument {flag}: expected a value, got '--'"), file=sys.stderr)
        return 2
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SnnexitError as exc:
        print(f"snnexit {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())
