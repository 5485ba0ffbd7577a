"""The stages of a run, and :func:`run`: their chain.

    train -> convert -> trace -> fit -> evaluate -> report

Each stage is a function of a :class:`Run` (its settings, its folder, the data, and what the
stages before it made). In one process (:func:`run`) the products pass from stage to stage in
memory; a stage run on its own (``snnexit fit``) finds them in the run folder
(:mod:`snnexit.runs.artifacts`), checked against the current settings. Either way every stage's
file is written (in one process ``results.json`` once, by the report, with the figures' names),
so a run folder can be continued one stage at a time.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from snnexit.data import load_dataset
from snnexit.errors import SnnexitError
from snnexit.exit.target import threshold_text
from snnexit.io import load_tensors, write_json
from snnexit.runs.ann import ANN_FORMAT, ANN_VERSION, data_dims, load_ann, save_ann, trained_ann
from snnexit.runs.artifacts import (ANN_FILE, CALIBRATION_TRACE_FILE, CERTIFIED_FILE, POLICY_FILE, RESULTS_FILE,
                                    SNN_FILE, STAGES, TRACE_FILES, RunFolder, check_fitted_as_said)
from snnexit.runs.evaluation import (assemble_results, certified_exit, curve_prefix, evaluate_policies,
                                     fitted_policy_name)
from snnexit.runs.imported import NETWORK_FILE, calibrate_traces, imported_network, network_record
from snnexit.runs.layout import check_results
from snnexit.runs.lock import folder_lock
from snnexit.runs.network import (calibrated_snn, check_trace_memory, event_steps, load_calibration_inputs, trace_snn,
                                  trace_unlabelled)
from snnexit.runs.ownership import mark_folder
from snnexit.runs.paths import check_run_paths, run_files
from snnexit.runs.resolve import settings_of_files
from snnexit.runs.settings import Settings
from snnexit.train import train as train_ann


class Run:
    """A run in progress: settings, folder, data, and the products of the stages so far.

    ``trainer`` and ``recorder`` replace how the ANN is trained and how a split is traced (the
    distributed versions, :mod:`snnexit.distributed`); ``writes`` is False in all processes but
    one when several run together (they compute, one writes); ``processes``: how many, recorded
    in ``results.json`` when more than one.
    """

    def __init__(self, settings: Settings, log=print, *, trainer=train_ann, recorder=None, writes: bool = True,
                 processes: int = 1):
        self.settings, self.config, self.log = settings, settings.run, log
        self.folder = RunFolder(self.config.out)
        self.trainer, self.recorder, self.writes, self.processes = trainer, recorder, writes, processes
        self._data = None
        self.ann = self.snn = self.calibration = self.data_sizes = None
        self.val = self.test = self.calibration_trace = None
        self.policy = self.results = self.certified = None

    @property
    def data(self):
        if self._data is None:
            c = self.config
            self._data = load_dataset(c.dataset, c.seed, root=c.data_dir, cache_dir=c.cache_dir,
                                      download=c.download, log=self.log, progress=c.progress)
            event_steps(c, self._data)
            if not c.imported:  # counts the spiking layers of the ANN the run would train
                check_trace_memory(c, self._data)
            self.log(f"loaded {c.dataset}: {len(self._data.train)} train, {len(self._data.val)} val, "
                     f"{len(self._data.test)} test inputs")
        return self._data

    def calibration_inputs(self):
        """The unlabelled calibration inputs of ``[certify]``, checked (None when there are none)."""
        path = self.settings.certify.calibration_inputs
        return None if path is None else load_calibration_inputs(path, self.data)

    # the products: in memory after the stage that makes them, else from the run folder
    def trained(self):
        if self.ann is None:
            path = self.folder.need(ANN_FILE, "train")
            tensors, meta = load_tensors(path, fmt=ANN_FORMAT, version=ANN_VERSION)
            self.folder.check_train_key(ANN_FILE, meta, self.config, "train")
            self.ann = load_ann(path, self.config, self.data, tensors).to(self.config.device)
        return self.ann

    def network(self):
        if self.snn is None:
            if self.config.imported:
                self.data_sizes = self.folder.network_record(self.config)["data"]
                self.snn = imported_network(self.config, self.data, self.log)
            else:
                self.calibration_record()
                self.snn = self.folder.load_snn(self.config, self.data)
        return self.snn

    def calibration_record(self) -> dict:
        """The ANN's calibration (temperature, ECE, accuracies); also sets the data sizes. For an
        imported network: the temperature fitted on its own outputs, kept in the validation trace."""
        if self.calibration is None and self.config.imported:
            self.data_sizes = self.folder.network_record(self.config)["data"]
            val, _ = self.traces()
            self.calibration = val.meta.get("calibration")
            if not isinstance(self.calibration, dict):
                raise SnnexitError(f"{self.folder / TRACE_FILES[0]} lacks the temperature of the imported network; "
                                   "run `snnexit trace` again")
        if self.calibration is None:
            meta = self.folder.snn_meta(self.config)
            self.calibration, self.data_sizes = meta["calibration"], meta["data"]
        return self.calibration

    def traces(self):
        if self.val is None:
            loaded = {name: self.folder.load_trace(name, self.config) for name in TRACE_FILES}
            path = self.folder / CALIBRATION_TRACE_FILE
            if self.settings.certify.calibration_inputs is not None and path.is_file():
                loaded[CALIBRATION_TRACE_FILE] = self.folder.load_trace(CALIBRATION_TRACE_FILE, self.config)
            self.folder.check_traces(loaded, self.folder.network_of_snn_file())
            self.val, self.test = loaded[TRACE_FILES[0]], loaded[TRACE_FILES[1]]
            self.calibration_trace = loaded.get(CALIBRATION_TRACE_FILE)
        return self.val, self.test

    def fitted_policy(self):
        if self.policy is None:
            self.policy = self.folder.load_policy()
        return self.policy


def _timed(stage):
    """Record the stage's seconds in ``timings.json`` (by the writing process)."""
    def timed(r: Run):
        started = time.perf_counter()
        product = stage(r)
        if r.writes:
            r.folder.record_time(stage.__name__, time.perf_counter() - started)
        return product

    timed.__name__, timed.__doc__ = stage.__name__, stage.__doc__
    return timed


@_timed
def train(r: Run):
    """Train the ANN (or reuse the cached one) -> ``ann.safetensors``; nothing for an imported network."""
    if r.config.imported:
        r.log(f"the network comes from {r.config.nir}: nothing to train")
        return None
    r.ann = trained_ann(r.config, r.data, r.log, trainer=r.trainer, write_cache=r.writes)
    if r.writes:
        save_ann(r.folder / ANN_FILE, r.ann, r.config, {"train_key": r.config.train_key(),
                                                        "config": asdict(r.config), "dims": data_dims(r.data)})
    return r.folder / ANN_FILE


@_timed
def convert(r: Run):
    """Calibrate the trained ANN (temperature), convert it and apply the conversion fix ->
    ``snn.safetensors``; an imported
    network is imported and checked against the data instead -> ``network.json``."""
    if r.config.imported:
        data = r.data
        r.data_sizes = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
        r.snn = imported_network(r.config, data, r.log)
        r.log(f"imported {r.config.nir} as {r.config.semantics} reads it: {len(r.snn.spiking_layers())} spiking layers")
        if r.writes:
            r.folder.save_network_record(network_record(r.config, r.snn, r.data_sizes))
        return r.folder / NETWORK_FILE
    ann, data = r.trained(), r.data
    r.snn, r.calibration = calibrated_snn(ann, data, r.config, r.log)
    c = r.calibration
    r.log(f"ANN test accuracy {c['test_acc']:.4f}; temperature {c['temperature']:.3f}, "
          f"test ECE {c['ece_test_before']:.4f} -> {c['ece_test_after']:.4f}")
    r.data_sizes = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    if r.writes:
        r.folder.save_snn(ann, r.snn, r.config, data_dims(data), {"calibration": r.calibration, "data": r.data_sizes})
    return r.folder / SNN_FILE


@_timed
def trace(r: Run):
    """Simulate the SNN on validation and test (and the calibration inputs) -> the traces."""
    extra = r.calibration_inputs()  # checked against the data set before any simulation
    snn, data, batch = r.network(), r.data, r.settings.trace.batch_size
    r.log(f"tracing validation and test ({len(data.val)} + {len(data.test)} inputs, T = {r.config.T})")
    r.val, r.test = trace_snn(snn, data, r.config, batch_size=batch, recorder=r.recorder)
    r.log(f"traced: SNN test accuracy {float(r.test.accuracy_per_step()[-1]):.4f} at T = {r.config.T}")
    if extra is not None:
        r.calibration_trace = trace_unlabelled(snn, extra, r.config, batch_size=batch, temporal=data.temporal)
    if r.config.imported:
        r.calibration = calibrate_traces(snn, r.val, r.test, r.calibration_trace)
        r.log(f"temperature {r.calibration['temperature']:.4g}, fitted on the network's own outputs")
    written = tuple(r.folder / name for name in TRACE_FILES)
    if r.writes:
        r.val.save(written[0])
        r.test.save(written[1])
        if r.calibration_trace is not None:
            r.calibration_trace.save(r.folder / CALIBRATION_TRACE_FILE)
    return written


@_timed
def fit(r: Run):
    """Fit the exit policy of ``[fit]`` on the validation trace -> ``policy.json``."""
    val, _ = r.traces()
    r.policy = r.settings.fit.create_policy().fit(val)
    if r.writes:
        r.folder.save_policy(r.policy)
    point = getattr(r.policy, "point_", None)
    if point is not None:
        r.log(f"{r.settings.fit.policy} threshold {threshold_text(r.policy.threshold_)}: validation accuracy "
              f"{r.policy.curve_.accuracy[point]:.4f} at {r.policy.curve_.mean_steps[point]:.2f} mean steps")
    return r.folder / POLICY_FILE


@_timed
def evaluate(r: Run):
    """Certify the exit (-> ``certified.json``) and evaluate fixed T, the fitted policy, the certified
    exit and the oracle on test -> ``results.json``."""
    val, test = r.traces()
    if r.settings.certify.calibration_inputs is not None and r.calibration_trace is None:
        r.folder.need(CALIBRATION_TRACE_FILE, "trace")  # the inputs were given, their trace is missing
    policy = r.fitted_policy()
    check_fitted_as_said(policy, r.settings.fit, r.folder / POLICY_FILE)
    name = r.settings.fit.policy
    r.calibration_record()
    r.certified = certified_exit(val, r.calibration_trace, **r.settings.certify.options())
    if r.writes:
        used = {TRACE_FILES[0]: val, **({CALIBRATION_TRACE_FILE: r.calibration_trace} if r.calibration_trace else {})}
        r.folder.save_certified(r.certified, used)
    policies, extras = evaluate_policies(val, test, policy, certified=r.certified)
    cert = policies["certified"]
    r.log(f"fitted {name} on validation: {policies[name]['mean_steps']:.2f} mean test steps; "
          f"certified exit ({cert['policy']}): {cert['mean_steps']:.2f}")
    r.results = assemble_results(r.config, r.data_sizes, r.calibration, val, test, policies, extras, fitted=name)
    if r.processes > 1:
        r.results["processes"] = r.processes
    return r.folder / RESULTS_FILE


def report(r: Run):
    """Write ``report.md`` and the figures (``results.json`` gets the figure names)."""
    from snnexit.report import write_report  # matplotlib: only the stage that draws imports it

    if r.results is None:
        r.results = _stored_results(r)
    val, test = r.traces()
    if r.writes:
        r.results["seconds"] = _total_seconds(r)
        write_report(r.folder.path, r.results, val, test)
    return r.folder / "report.md"


def _total_seconds(r: Run) -> float:
    """The stages' seconds in ``timings.json``, summed: the run's time."""
    timings = r.folder.timings()
    return float(sum(v for k, v in timings.items() if k in STAGES and isinstance(v, (int, float))))


def _stored_results(r: Run) -> dict:
    results = r.folder.read_json(RESULTS_FILE, "evaluate")
    fitted = fitted_policy_name(results)
    try:
        check_results(results, fitted, curve_prefix(fitted))
    except SnnexitError as exc:
        raise SnnexitError(f"{r.folder / RESULTS_FILE}: {exc}; run `snnexit evaluate` again") from None
    _, test = r.traces()
    snn = results["snn"]
    if not isinstance(snn, dict) or snn.get("test_acc_per_step") != test.accuracy_per_step().tolist():
        raise SnnexitError(f"{r.folder / RESULTS_FILE} does not belong to {r.folder / TRACE_FILES[1]}; "
                           "run `snnexit evaluate` again")
    return results


STAGE_FUNCTIONS = {"train": train, "convert": convert, "trace": trace, "fit": fit, "evaluate": evaluate,
                   "report": report}


def run_stage(name: str, settings: Settings, log=print, *, overwrite: bool = False):
    """One stage on its own (``snnexit <stage>``): its inputs come from the run folder. Its
    resolved settings are saved (``config.<stage>.json``) once its files are written: the folder's
    newest config then says what its files were made with. ``overwrite``: replace files in a
    folder snnexit did not write."""
    settings.validate()
    check_run_paths(settings, name, overwrite)  # the run folder, the files this stage writes, the cache: before any work
    r = Run(settings, log)
    with folder_lock(r.folder.path, name):
        mark_folder(r.folder.path, name, run_files(name))
        written = STAGE_FUNCTIONS[name](r)
        if name == "evaluate":
            r.results["seconds"] = _total_seconds(r)
            write_json(r.folder / RESULTS_FILE, r.results)
        r.folder.save_config(settings, name)
    return written, r


def run(settings: Settings, log=print, *, overwrite: bool = False, **options) -> dict:
    """The main job: every stage in turn, in one process. Writes ``results.json``, ``report.md``,
    the figures and every stage's file to ``settings.run.out``; returns the results.

    A folder that holds a run with other settings, or files snnexit did not write, is refused
    unless ``overwrite``. ``options``:
    :class:`Run`'s ``trainer``, ``recorder``, ``writes`` and ``processes``."""
    settings.validate()
    r = Run(settings, log, **options)
    if not r.writes:
        return _chain(r)
    check_run_paths(settings, "run", overwrite)  # the run folder, every file it gets and the cache: before any work
    with folder_lock(r.folder.path, "run"):
        if not overwrite:
            r.folder.check_same_settings(settings, settings_of_files(r.folder.path))
        mark_folder(r.folder.path, "run", run_files("run"))
        if (r.folder / RESULTS_FILE).is_file():
            log(f"replacing the results in {r.folder.path} (a run with these settings, or --overwrite)")
        r.folder.save_config(settings, "run")
        return _chain(r)


def _chain(r: Run) -> dict:
    r.calibration_inputs()  # a bad calibration file fails before training
    for stage in (train, convert, trace, fit, evaluate):
        stage(r)
    if r.writes:
        report(r)
        r.log(f"wrote the report to {r.folder.path}")
    return r.results
