"""``snnexit certify --val OUT.npz --test OUT.npz --outputs per-step``: a certified exit from outputs
recorded anywhere (a chip, another simulator), and the rule to deploy (snnexit.runs.outputs)."""

from __future__ import annotations

import sys
from pathlib import Path

from snnexit.cli.common import is_exit_rule, path_arg
from snnexit.errors import SnnexitError
from snnexit.io import check_output_file

KINDS = {"per-step": False, "accumulated": True}


def register(sub) -> None:
    p = sub.add_parser("certify", help="certify an exit from outputs recorded anywhere (a chip, a simulator): "
                                       "--val/--test OUT.npz",
                       description="Certify an exit from a network's outputs recorded at every step elsewhere (a chip, "
                                   "another simulator): .npz files with 'outputs' (T, N, C) and 'labels' (N,) where "
                                   "known. Half of the validation outputs (labelled) fits the temperature, learns the "
                                   "scores and picks a policy; the other half, plus --calibration outputs (no labels "
                                   "needed), certifies its threshold; the test outputs show what it does. Prints the "
                                   "rule to deploy.")
    p.add_argument("--val", required=True, type=path_arg, metavar="NPZ", help="validation outputs with labels")
    p.add_argument("--test", required=True, type=path_arg, metavar="NPZ", help="test outputs (labels optional)")
    p.add_argument("--calibration", default=None, type=path_arg, metavar="NPZ",
                   help="more outputs of inputs drawn like the deployment inputs (no labels needed): they certify")
    p.add_argument("--outputs", required=True, choices=tuple(KINDS),
                   help="what the arrays hold at step t: that step's output (per-step) or the sum over steps "
                        "1..t (accumulated)")
    p.add_argument("--eps", type=float, default=None,
                   help="disagreement rate with fixed T to certify (default: the smallest the calibration pool can)")
    p.add_argument("--delta", type=float, default=0.05, help="failure probability of the certificate (default 0.05)")
    p.add_argument("--policies", default="all", help="candidate policies, comma-separated, or 'all'")
    p.add_argument("--out", default=None, type=path_arg, metavar="JSON",
                   help="write the certified exit here (snnexit.exit.load_certified reads it; the runtimes, "
                        "snnexit bench and export take it)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --out that exists and holds no exit rule (default: refuse)")
    p.set_defaults(func=main)


def check_files(args) -> None:
    """The inputs are three files, none of them --out; --out replaces only an exit rule, unless
    --overwrite; validation and test are not one file."""
    inputs = {"--val": args.val, "--test": args.test, "--calibration": args.calibration}
    if Path(args.val).resolve() == Path(args.test).resolve():
        raise SnnexitError(f"--val and --test are the same file ({args.val}): the certificate would be judged on "
                           f"the inputs it was learned on; give the test outputs to --test")
    if args.out is None:
        return
    for flag, path in inputs.items():
        if path is not None and Path(path).resolve() == Path(args.out).resolve():
            raise SnnexitError(f"--out {args.out} is the {flag} file: the certified exit would replace it; choose "
                               f"another --out")
    if Path(args.out).is_file() and not args.overwrite and not is_exit_rule(Path(args.out)):
        raise SnnexitError(f"--out {args.out} exists and holds no exit rule: it would be replaced; choose another "
                           f"--out (or pass --overwrite)")


def main(args) -> int:
    # torch, scipy: imported only by the command that runs
    from snnexit.exit import save_certified
    from snnexit.runs.outputs import certify_outputs, load_outputs  # (as above)
    from snnexit.runs.settings import CertifySettings  # (as above)

    settings = CertifySettings(eps=args.eps, delta=args.delta, policies=args.policies)
    settings.validate()
    check_files(args)
    out = None if args.out is None else check_output_file(args.out, "output file (--out)")
    accumulated = KINDS[args.outputs]
    val = load_outputs(args.val, accumulated, "validation outputs (--val)")
    test = load_outputs(args.test, accumulated, "test outputs (--test)")
    extra = None if args.calibration is None else load_outputs(args.calibration, accumulated,
                                                                  "calibration outputs (--calibration)")
    cert, row = certify_outputs(val, test, extra, eps=settings.eps, delta=settings.delta,
                                candidates=settings.candidates())
    acc = "" if row.get("test_acc") is None else f", test accuracy {100 * row['test_acc']:.2f}% " \
        f"({100 * row.get('acc_change', 0.0):+.2f} points against fixed T)"
    print(f"Certified exit ({cert.name}): with probability >= {1 - cert.delta:.3g} over its {cert.calibration_size} "
          f"calibration inputs, it answers differently from fixed T = {val.T} on at most {100 * cert.eps:.3g}% of new "
          f"inputs; on {row['n']} test inputs {100 * row['test_disagreement']:.2f}% differ, {row['mean_steps']:.2f} "
          f"mean steps ({100 * row['saving']:.1f}% saved){acc}.", file=sys.stdout)
    print(f"Rule to deploy: {cert.describe(val.meta)}", file=sys.stdout)
    if out is not None:
        save_certified(out, cert, extra={"T": val.T, "test_disagreement": row["test_disagreement"]})
        print(f"Wrote {out}", file=sys.stdout)
    return 0
