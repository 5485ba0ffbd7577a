"""The names that the command line's name-valued flags take, in one table that imports nothing.

``--help`` lists them (``--dataset NAME: cifar10, cifar100, ...``) without importing torch, the
models or the data sets: the parsers stay light and the help fast. Two kinds of entries:

* :data:`REGISTERED`: a torch-free copy of the names of each registry (keyed by the registry's
  ``kind``). The registry stays the source: a name exists because its definition is decorated
  with ``@...register`` next to its code, and a plugin may add one at run time (a policy and its
  target kind, tests/plugin_policy.py). ``tests/test_cli_names.py`` is the guard: it imports every
  registry and fails, naming the difference, when this copy and the registries disagree.
* The plain name lists below it (resets, variants, poolings, ...): no definition stands behind
  them, so this table is their single source; the code that checks a value imports it from here.
"""

from __future__ import annotations

# registry kind -> its built-in names (snnexit.registry.Registry.kind; "target": snnexit.exit.target.TARGET_KINDS)
REGISTERED: dict[str, tuple[str, ...]] = {
    "dataset": ("cifar10", "cifar100", "cifar10_dvs", "digits", "dvs_gesture", "event_mnist", "imagefolder", "mnist5k",
                "mnist5k_rgb32", "ncaltech101", "nmnist"),
    "model": ("resnet18", "resnet20", "vgg16", "vgg_small"),
    "converter": ("max", "qcfs", "qffs", "robust"),
    "quantizer": ("clip", "lsq", "qcfs", "relu"),
    "conversion fix": ("mean_bias", "step_bias"),
    "policy": ("conformal", "dynamic_confidence", "entropy", "fixed", "max_softmax", "mean_output_confidence", "oracle",
               "oracle_stable", "step_calibrated_confidence", "topk", "topk_per_step"),
    # the policies a certified exit may choose among (snnexit.exit.certify.certifiable_policies: derived from the
    # policies' declarations)
    "certifiable policy": ("conformal", "dynamic_confidence", "entropy", "max_softmax", "mean_output_confidence",
                           "step_calibrated_confidence", "topk", "topk_per_step"),
    "target": ("no_loss", "max_drop", "max_steps", "risk", "precision", "coverage"),
    "NIR semantics": ("nir", "norse", "sinabs", "snnexit", "snntorch", "spikingjelly"),
    "neuron": ("if", "lif"),
    "surrogate": ("atan", "sigmoid", "triangle"),
    "loss": ("mean", "tet"),
    "workload": ("default", "event_cnn", "resnet20", "vgg16"),  # snnexit bench / speed race (snnexit.experiments)
}

# the single source of these (no registry behind them)
NO_FIX = "none"  # the --conversion-fix that applies no fix
RESETS = ("soft", "hard")  # a trained IF/LIF neuron's reset (snnexit.neurons.functional)
ANN_EVENT_INPUTS = ("prefix_means", "mean_frame")  # event data: what the ANN trains on (snnexit.runs.ann)
NIR_VARIANTS = ("exact", "hard_reset", "subtract")  # the NIR graphs snnexit.nir.export writes
NIR_POOLINGS = ("avg", "sum")
EXPORT_FORMATS = ("nir",)


def names(kind: str) -> tuple[str, ...]:
    """The built-in names of the registry ``kind``."""
    return REGISTERED[kind]


def listed(kind: str, *extra: str) -> str:
    """``"a, b, c"``: the names of ``kind`` (after ``extra``, names a flag takes besides them), for a help text."""
    return ", ".join((*extra, *names(kind)))


def cli_spelling(name: str) -> str:
    """A name as a flag takes it where the command line spells words with hyphens (``hard-reset``)."""
    return name.replace("_", "-")
