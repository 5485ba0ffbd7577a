"""``snnexit compare``: every exit policy on the same validation/test traces."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from snnexit.cli.common import path_arg
from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES
from snnexit.exit.compare import compare_policies
from snnexit.exit.target import TARGET_KINDS, FitTarget
from snnexit.io import check_output_folder, write_json, write_text
from snnexit.report.compare import comparison_markdown, plot_comparison
from snnexit.runs.ownership import check_replaceable, mark_folder
from snnexit.runs.paths import check_files_in
from snnexit.runs.settings import MAX_T, TARGET_READS, check_range
from snnexit.simulate.trace import Trace, check_same_network

OUT_FILES = ("compare.md", "compare.json", "compare.png")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value}")
    return value


def register(sub) -> None:
    p = sub.add_parser("compare", help="fit every exit policy on a validation trace, compare them on a test trace",
                       description="Fit every exit policy on the validation trace and evaluate it on the test trace; "
                                   "write compare.md (table), compare.json and compare.png (all accuracy-vs-steps "
                                   "curves with the oracle points).")
    p.add_argument("--run", type=path_arg, help="a folder written by `snnexit run` (reads trace_val/trace_test.safetensors)")
    p.add_argument("--val", type=path_arg, help="validation trace (.safetensors)")
    p.add_argument("--test", type=path_arg, help="test trace (.safetensors)")
    p.add_argument("--out", type=path_arg, help="output folder (default: RUN/compare)")
    p.add_argument("--policies", help="comma-separated policy names (default: all registered)")
    p.add_argument("--target", default="no_loss", help="fitting target: no_loss, max_drop, max_steps, risk (default no_loss)")
    p.add_argument("--eps", type=float, default=None, help="accuracy drop allowed (max_drop, risk), e.g. 0.01")
    p.add_argument("--max-steps", type=float, default=None, help="mean-steps budget (max_steps)")
    p.add_argument("--delta", type=float, default=None, help="failure probability (risk)")
    p.add_argument("--risk", nargs=2, type=_fraction, metavar=("EPS", "DELTA"), default=None,
                   help="also fit each thresholded policy with the risk-controlled target at EPS, DELTA")
    p.add_argument("--overwrite", action="store_true",
                   help="replace compare.md/json/png in an --out that snnexit did not write (default: refuse)")
    p.set_defaults(func=main)


def check_settings(args) -> None:
    """The fitting target and its numbers, and the policy names, before any trace is read."""
    if args.target not in TARGET_KINDS:
        raise SnnexitError(f"Unknown target {args.target!r}. Known: {', '.join(TARGET_KINDS)}")
    if args.eps is not None:
        check_range("--eps", args.eps, 0.0, 1.0, " (an accuracy drop or a risk)")
        if args.target in ("risk", "coverage") and not 0 < args.eps < 1:
            raise SnnexitError(f"--eps must lie in (0, 1) for target {args.target}, got {args.eps}")
    if args.max_steps is not None:
        check_range("--max-steps", args.max_steps, 1.0, float(MAX_T), " (mean steps per input)")
    if args.delta is not None and not (math.isfinite(args.delta) and 0 < args.delta < 1):
        raise SnnexitError(f"--delta must lie in (0, 1) (a failure probability), got {args.delta}")
    FitTarget(args.target, eps=args.eps, max_steps=args.max_steps, delta=args.delta)  # what the target needs
    for key, flag in (("eps", "--eps"), ("max_steps", "--max-steps"), ("delta", "--delta")):
        if getattr(args, key) is not None and args.target not in TARGET_READS[key]:
            raise SnnexitError(f"{flag} does nothing with --target {args.target}: only the targets "
                               f"{', '.join(TARGET_READS[key])} read it; drop it, or choose one of them")
    for name in policy_names(args) or []:
        POLICIES.get(name)  # an unknown name lists the known ones


def policy_names(args) -> list[str] | None:
    if args.policies is None:
        return None
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    if not names:
        raise SnnexitError("--policies is empty; give comma-separated policy names, or leave it out for all")
    return names


def check_splits(val: Trace, test: Trace, val_path: Path, test_path: Path) -> None:
    """Refuse traces that cannot be validation and test: one file twice, or splits swapped (a trace
    records the split it was made from): fitting on the test split reports a test accuracy that
    was chosen on it."""
    if val_path.resolve() == test_path.resolve():
        raise SnnexitError(f"--val and --test are the same file ({val_path}): the policies would be judged on the "
                           f"inputs they were fitted on; give the test trace to --test")
    for trace, path, flag, want in ((val, val_path, "--val", "val"), (test, test_path, "--test", "test")):
        split = trace.meta.get("split")
        if split is not None and split != want:
            swapped = " (--val and --test are swapped?)" if {val.meta.get("split"), test.meta.get("split")} == \
                {"val", "test"} else ""
            raise SnnexitError(f"{flag} {path} holds the {split} trace, not the {want} one{swapped}: policies are "
                               f"fitted on validation and judged on test")


def main(args) -> int:
    check_settings(args)
    if args.run:
        if args.val or args.test:
            raise SnnexitError("give either --run or --val and --test, not both")
        val_path, test_path = Path(args.run) / "trace_val.safetensors", Path(args.run) / "trace_test.safetensors"
        out = Path(args.out) if args.out else Path(args.run) / "compare"
    else:
        if not (args.val and args.test):
            raise SnnexitError("give --run DIR, or both --val TRACE and --test TRACE")
        if not args.out:
            raise SnnexitError("--out is required with --val/--test")
        val_path, test_path, out = Path(args.val), Path(args.test), Path(args.out)
    names = policy_names(args)
    val, test = Trace.load(val_path), Trace.load(test_path)
    check_same_network(val, test, f"{val_path} and {test_path}")
    check_splits(val, test, val_path, test_path)
    out = check_files_in(check_output_folder(out, "output folder (--out)"), OUT_FILES)
    check_replaceable(out, OUT_FILES, "compare", args.overwrite)
    mark_folder(out, "compare", OUT_FILES)
    result = compare_policies(val, test, names, target=args.target, eps=args.eps, max_steps=args.max_steps,
                              delta=args.delta, risk=tuple(args.risk) if args.risk else None)
    result["val_trace"], result["test_trace"] = str(val_path), str(test_path)
    plot_comparison(result, out / "compare.png")
    text = comparison_markdown(result) + "\n![accuracy vs mean steps](compare.png)\n"
    write_text(out / "compare.md", text)
    write_json(out / "compare.json", result)
    print(comparison_markdown(result))
    print(f"Wrote {out}/compare.md, compare.json and compare.png.", file=sys.stderr)
    return 0
