"""The settings a command runs with: the defaults, the run folder's own, a config file, the flags.

``snnexit run`` takes defaults < ``--config FILE`` < flags. A stage (``snnexit fit --out R``)
takes the settings of the run already in its folder in place of the defaults: the newest
``config.<command>.json`` there, which every command that wrote the folder saved (its own
settings, and the folder's for the settings it does not use). So ``report --out R`` after
``run --T 8 --out R`` reports T = 8, and ``evaluate`` evaluates the policy ``fit`` fitted, with
the options it was fitted with.

A value given for a setting that a file the stage reads was made with (:data:`READS`) must
equal the folder's: ``fit --dataset mnist5k`` on a digits run is refused in one line (its
traces are digits'), never recorded as if it held. A stage's own settings (``trace``'s T, ``fit``'s
policy, ``evaluate``'s certificate) may change: the stage makes its file anew with them. A
value in the config file for a setting the stage does not use leaves the folder's as it is (one
file fits all stages; flags the stage does not use are refused by the command line).

Settings a choice makes idle are checked too: ``--bits`` with the ``qcfs`` quantizer, ``--L``
with ``lsq``, given in a file or a flag, are refused rather than ignored.
"""

from __future__ import annotations

from pathlib import Path

from snnexit.environment import expand_user, user_path
from snnexit.errors import SnnexitError
from snnexit.quant import QUANTIZERS
from snnexit.runs.config_file import (flatten, newest_saved_config, read_config_file, settings_from_dict,
                                      settings_from_values)
from snnexit.runs.paths import STAGE_FILES
from snnexit.runs.settings import ANN_SETTINGS, SECTIONS, RunConfig, Settings

STAGE_NAMES = ("train", "convert", "trace", "fit", "evaluate", "report")
# settings that determine the trained ANN (RunConfig.train_key): the stages that check a file
# against them (ann.safetensors, snn.safetensors) use them as much as train does
TRAINING = ANN_SETTINGS
# how snn.safetensors was made from the ANN (a conversion fix is fitted over the horizon T)
CONVERSION = ("converter", "conversion_fix", "conversion_fix_inputs")
FIT = ("fit.policy", "fit.target", "fit.threshold", "fit.temperature", "fit.eps", "fit.max_steps", "fit.delta",
       "fit.options")
CERTIFY = ("certify.eps", "certify.delta", "certify.policies", "certify.calibration_inputs")
# an imported network (--nir FILE): where the network comes from, as the data set is, every stage takes
NETWORK = ("nir", "semantics", "dt")
# where and how a stage runs, not what it computes: every stage takes them
EVERY_STAGE = ("out", "device", "progress", "cache_dir", "config", "quiet", "overwrite")
# stage -> the settings (argparse dests: RunConfig fields, "section.key") it uses
USES = {  # download: the stages that load the data
    "train": TRAINING + ("download",) + NETWORK,
    "convert": TRAINING + CONVERSION + ("T", "download") + NETWORK,
    "trace": TRAINING + CONVERSION + ("T", "trace.batch_size", "certify.calibration_inputs", "download") + NETWORK,
    # T and the converter: the traces must be this run's; the data set: T defaults to an event data set's frames
    "fit": ("dataset", "T") + CONVERSION + FIT + NETWORK,
    # the training settings: snn.safetensors's; the fit settings: policy.json's, and they must make a
    # valid policy together (--policy conformal needs --target coverage)
    "evaluate": TRAINING + CONVERSION + ("T",) + FIT + CERTIFY + NETWORK,
    "report": ("dataset", "T") + CONVERSION + NETWORK,
}
# stage -> the settings the files it reads from the run folder were made with: a value given for
# one must equal the folder's
READS = {
    "train": (),
    "convert": TRAINING,  # ann.safetensors (an imported network: the NIR file itself, no folder file)
    "trace": TRAINING + CONVERSION + NETWORK,  # snn.safetensors or network.json
    "fit": ("dataset", "T") + CONVERSION + NETWORK,  # the traces
    "evaluate": TRAINING + CONVERSION + ("T",) + FIT + ("certify.calibration_inputs",) + NETWORK,  # ... and policy.json
    "report": ("dataset", "T") + CONVERSION + NETWORK,  # results.json and the traces
}
# where and how a command runs: never taken from the folder (another machine, another cache)
NOT_INHERITED = ("out", "device", "progress", "cache_dir", "download")
# a new fitting target or a fixed threshold replaces the folder's way of choosing the threshold
TARGET_GROUP = ("fit.target", "fit.threshold", "fit.eps", "fit.max_steps", "fit.delta")
# another policy does not take the folder's policy's options and temperature
POLICY_GROUP = ("fit.options", "fit.temperature")
# the settings of the ANN's activation, and the flags that give them
ACTIVATION = {"levels": "--L", "bits": "--bits", "init_threshold": "--init-threshold"}


def unflatten(flat: dict) -> dict:
    values: dict = {}
    for key, value in flat.items():
        section, dot, name = key.partition(".")
        if dot and section in SECTIONS:
            values.setdefault(section, {})[name] = value
        else:
            values[key] = value
    return values


def resolve_settings(command: str, config: str | Path | None = None, overrides: dict | None = None,
                     flags: dict[str, str] | None = None) -> Settings:
    """The validated :class:`Settings` of ``command`` (``run`` or a stage): defaults, the run
    folder's settings (stages only), the config file ``config``, then ``overrides`` (the flags,
    in the file layout; None values are not given). ``flags``: key -> the option that gave it, for
    messages (``{"dataset": "--dataset"}``)."""
    file_values = read_config_file(config) if config is not None else {}
    source = f"config file {config}" if config is not None else "config"
    settings_from_dict(file_values, source)  # its keys, their types, the version of a saved config: named, first
    given = _given(file_values, overrides or {}, config, flags or {})
    stored = None
    if command in STAGE_NAMES:
        out = given["out"][0] if "out" in given else RunConfig.out
        if isinstance(out, str) and out.strip():
            stored = newest_saved_config(user_path(out, "run folder (out)"))
    if stored is None:
        merged = unflatten({key: value for key, (value, _) in given.items()})
    else:
        merged = unflatten(_inherit(command, flatten(stored[0]), given))
        _check_no_contradiction(command, given, flatten(stored[0]), stored[1])
        source = f"{stored[1]}" if config is None else f"{source} with {stored[1]}"  # where a bad value may be
    settings = settings_from_values(merged, source)
    _check_activation_given(settings.run, given)
    return settings


def _given(file_values: dict, overrides: dict, config, flags: dict) -> dict:
    """key -> (value, who gave it) for every setting given in the file or on the command line."""
    given = {key: (value, f"config key {key!r} = {value!r} of {config}") for key, value in flatten(file_values).items()}
    for key, value in flatten(overrides).items():
        if value is None:
            continue
        if key == "fit.options" and isinstance(given.get(key, (None,))[0], dict):
            value = {**given[key][0], **value}  # options of the file and of the command line together
        shown = " ".join(f"{k}={v!r}" for k, v in value.items()) if isinstance(value, dict) else repr(value)
        given[key] = (value, f"{flags.get(key, '--' + key.split('.')[-1].replace('_', '-'))} {shown}")
    return given


def _inherit(command: str, stored: dict, given: dict) -> dict:
    """The folder's settings with the given ones on top (flat): see the module docstring."""
    known = set(flatten(Settings().to_dict()))  # a key another version wrote is no setting here
    merged = {k: v for k, v in stored.items() if k not in NOT_INHERITED and k in known}
    if any(k in given for k in ("fit.target", "fit.threshold")):
        for key in TARGET_GROUP:
            merged.pop(key, None)
    if "fit.policy" in given and given["fit.policy"][0] != stored.get("fit.policy"):
        for key in POLICY_GROUP:
            merged.pop(key, None)
    uses = set(USES[command]) | set(EVERY_STAGE)
    for key, (value, _) in given.items():
        if key in stored and key not in uses:
            continue  # the config file's value of a setting this stage does not use: the folder's stays
        if key == "fit.options" and isinstance(merged.get(key), dict) and isinstance(value, dict):
            value = {**merged[key], **value}
        merged[key] = value
    return merged


def _same(key: str, given, stored) -> bool:
    """Do a given value and the folder's mean the same setting? Options: those both name agree
    (an option the folder does not name is checked against policy.json itself); paths: the same
    place; a switch is no number."""
    if key == "fit.options" and isinstance(given, dict) and isinstance(stored, dict):
        return all(stored[name] == value for name, value in given.items() if name in stored)
    if key in ("data_dir", "nir", "certify.calibration_inputs") and isinstance(given, str) and isinstance(stored, str):
        return Path(expand_user(given)).resolve() == Path(expand_user(stored)).resolve()
    if isinstance(given, bool) != isinstance(stored, bool):
        return False
    return given == stored


def _check_no_contradiction(command: str, given: dict, stored: dict, source: Path) -> None:
    """Refuse a given value of a setting the stage's input files were made with, other than the folder's."""
    for key in READS[command]:
        if key in given and key in stored and not _same(key, given[key][0], stored[key]):
            raise SnnexitError(f"{given[key][1]} contradicts the run in {source.parent}: it was made with {key} = "
                               f"{stored[key]!r} (recorded in {source.name}), and {command} reads its files as they "
                               f"are; drop it (a stage takes its run folder's settings), or choose another --out")


def settings_of_files(folder: str | Path) -> tuple[str, ...]:
    """The settings that the files already in the run folder ``folder`` were made with: those each
    stage whose file is there uses (:data:`USES`), where and how it ran aside."""
    folder = Path(folder)
    keys = [key for stage, names in STAGE_FILES.items() if any((folder / name).is_file() for name in names)
            for key in USES[stage] if key not in EVERY_STAGE and key not in NOT_INHERITED]
    return tuple(dict.fromkeys(keys))


def _check_activation_given(config: RunConfig, given: dict) -> None:
    """Refuse an activation setting given (file or flag) that the chosen quantizer does not use."""
    uses = getattr(QUANTIZERS.get(config.quantizer), "uses", tuple(ACTIVATION))
    for key, flag in ACTIVATION.items():
        if key in given and key not in uses:
            takes = ", ".join(ACTIVATION[k] for k in uses) or "none of them"
            raise SnnexitError(f"{given[key][1]} does nothing with quantizer {config.quantizer!r} (it takes "
                               f"{takes}); drop it, or choose the quantizer that uses {flag}")
