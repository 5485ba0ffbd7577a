"""``snnexit run``: the main job, from built-in data to a Dynamic Confidence report."""

from __future__ import annotations

from snnexit.cli.common import add_device, non_negative_int, positive_int, progress_log
from snnexit.cli.config_args import add_config_arguments, settings_from_args
from snnexit.report import TABLE1_HEADER, policy_label, table1_rows
from snnexit.distributed import run_distributed, under_torchrun
from snnexit.runs import RunConfig, run


def register(sub) -> None:
    p = sub.add_parser("run",
                       help="train (or reuse), convert, trace, fit Dynamic Confidence and a certified exit, report (images or event frames)",
                       description="Train a QCFS ANN (or reuse a cached one), convert it to an SNN, trace validation "
                                   "and test sets (after the conversion fix, --conversion-fix), fit Dynamic Confidence on validation (as the paper does) and a certified exit (half the "
                                   "validation split learns, the other half plus any --calibration-inputs certifies), "
                                   "report on test. Event data "
                                   "(event_mnist, nmnist, cifar10_dvs, dvs_gesture, ncaltech101: (T, 2, H, W) frames): the ANN "
                                   "learns the means of the first k frames (--ann-event-input), the converted SNN sees one "
                                   "frame per step, T defaults to "
                                   "(and may not exceed) the number of frames; to train an SNN directly on the "
                                   "frames use `snnexit cutoff-train`. With --nir FILE --semantics NAME the network "
                                   "comes from a NIR graph written by another library (snntorch, sinabs, norse, "
                                   "spikingjelly) or by snnexit: nothing is trained or converted. Piped, one progress "
                                   "line per epoch and stage goes to stderr (--quiet: none).")
    d = RunConfig()
    p.add_argument("--dataset", default=d.dataset, help=f"data set (default {d.dataset})")
    p.add_argument("--model", default=d.model, help=f"model (default {d.model})")
    p.add_argument("--T", type=positive_int, default=d.T,
                   help=f"simulation time steps (default {d.T}; event data: its number of frames)")
    p.add_argument("--epochs", type=non_negative_int, default=d.epochs, help=f"training epochs (default {d.epochs})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for split, init and training")
    p.add_argument("--out", default=d.out, help=f"output folder (default {d.out})")
    p.add_argument("--L", dest="levels", type=positive_int, default=d.levels, help="QCFS quantization levels")
    p.add_argument("--converter", default=d.converter, help="ANN-to-SNN converter (default qcfs)")
    p.add_argument("--width", type=positive_int, default=None, help="model width (default: the model's own)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--cache-dir", default=None,
                   help="where trained ANNs and event frames are cached (default ~/.cache/snnexit or $SNNEXIT_CACHE)")
    p.add_argument("--data-dir", default=None, help="local folder of a real data set (cifar10, cifar100, imagefolder, cifar10_dvs, "
                   "dvs_gesture, ncaltech101, nmnist)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run made with other settings in --out (default: refuse it)")
    add_device(p)
    add_config_arguments(p, stages=("trace", "fit", "certify"))  # --config FILE; flags given override it
    p.set_defaults(func=main)


def main(args) -> int:
    settings = settings_from_args(args)  # defaults < --config FILE < flags on the command line
    config = settings.run
    log = progress_log(args)
    config.progress = config.progress and not log.quiet
    if under_torchrun():
        results = run_distributed(settings, log, overwrite=args.overwrite)
    else:
        results = run(settings, log=log, overwrite=args.overwrite)
    if results is None:
        return 0  # another process than torchrun's first: process 0 reports
    print(TABLE1_HEADER)
    print("\n".join(table1_rows(config.dataset, *config.labels(), results)))
    capture = results["oracle_capture"]
    label = policy_label(settings.fit.policy)
    print(f"\n{label} captures {100 * capture:.1f}% of the oracle's saving." if capture is not None else "")
    cert = results["policies"]["certified"]
    print(f"Certified exit ({cert['policy']}): with probability >= {1 - cert['delta']:.3g} over its "
          f"{cert['calibration_size']} calibration inputs, it answers differently from fixed T on at most "
          f"{100 * cert['eps']:.3g}% of new inputs; on test {100 * cert['test_disagreement']:.2f}% differ, "
          f"{cert['mean_steps']:.2f} mean steps ({100 * cert['saving']:.1f}% saved).")
    if capture is not None and capture < 0.5:
        print(f"Its threshold leaves most of the oracle's saving unused; `snnexit compare --run {config.out}` "
              f"evaluates every exit policy on these traces (step-calibrated confidence, Top-K, risk control).")
    print(f"Wrote {config.out}/results.json, report.md and figures.")
    return 0
