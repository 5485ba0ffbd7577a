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
import errno
import importlib
import os
import sys

from snnexit import __version__, interrupt
from snnexit.environment import shorten
from snnexit.errors import SnnexitError
from snnexit.progress import drop_stream

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


# errors of the environment, not of snnexit: the disk or the quota is full, a file grows past the
# process's file-size limit, a name is too long, the device fails or is read-only. Wherever they
# arise (a cache, a checkpoint, a figure), they are one line naming the file, not a traceback.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG, errno.EROFS, errno.EIO}


def environment_error(exc: OSError) -> str:
    """One line for an :data:`ENVIRONMENT_ERRNOS` error: what failed, on which file, what to do."""
    name = f" ({shorten(str(exc.filename), 80)})" if exc.filename else ""
    hint = {errno.ENOSPC: "free some space or choose another --out / --cache-dir",
            errno.EDQUOT: "the disk quota is full: free some space or choose another --out / --cache-dir",
            errno.EFBIG: "a file grew past the file-size limit (ulimit -f) or the file system's",
            errno.ENAMETOOLONG: "choose a shorter name"}.get(exc.errno, "choose another --out / --cache-dir")
    return f"{exc.strerror or exc}{name}: {hint}"


def _say(text: str) -> None:
    """``text`` on stderr, unless stderr is gone (a closed pipe)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # ValueError: stderr already closed
        drop_stream(sys.stderr)


def _reader_gone(stream) -> bool:
    """Is ``stream`` a pipe whose reader closed it (``poll`` says POLLERR)?"""
    import select  # light; only after a broken pipe

    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor: a test's StringIO
        return False


def _run(argv: list[str]) -> int:
    flag = _empty_value(argv)
    if flag is not None:
        where = f"snnexit {_command(argv)}" if _command(argv) else "snnexit"
        _say(one_line(f"{where}: error: argument {flag}: expected a value, got '--'"))
        return 2
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    try:
        interrupt.raise_from_now_on()  # the command's modules are imported: a noted Ctrl-C stops it here
        code = int(args.func(args) or 0)
        interrupt.check()
        return code
    except SnnexitError as exc:
        _say(f"snnexit {args.command}: error: {one_line(str(exc))}")
        return 2
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS or isinstance(exc, BrokenPipeError):
            raise
        _say(f"snnexit {args.command}: error: {one_line(environment_error(exc))}")
        return 2


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code. Bad input: one line on stderr, 2. Ctrl-C at any moment (the
    imports of the first second included): ``interrupted``, 130. The reader of a pipe went away
    (``snnexit run | head -5``): nothing more is written, 0."""
    interrupt.install()
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except BrokenPipeError:
        gone = [stream for stream in (sys.stdout, sys.stderr) if _reader_gone(stream)]
        if not gone:
            raise  # a pipe of our own broke (a worker process): a bug, with its traceback
        for stream in gone:
            drop_stream(stream)
        return 0
    except BaseException:
        if interrupt.was_interrupted():  # Ctrl-C inside an import surfaced as another error
            _say("interrupted")
            return 130
        raise


if __name__ == "__main__":
    sys.exit(main())


def main_exit() -> None:
    """Console-script entry point."""
    code = main()
    if code == 130 and interrupt.was_interrupted():
        # CPython kills itself with SIGINT at exit when a Ctrl-C landed inside an extension's
        # PyRun_String (torch's import does some), however it was caught: leave with the code we said
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)
    sys.exit(code)
