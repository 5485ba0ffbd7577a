"""From a trained ANN to traces: calibrate the temperature, convert, fix the conversion, simulate.

"ANN -> calibrate -> convert -> conversion fix -> trace" is assembled here and nowhere else:
:func:`calibrated_snn` returns the converted SNN carrying the ANN's temperature in
``snn.meta["temperature"]`` (set by :func:`attach_temperature`, the one place that writes it;
every trace of the SNN copies its meta, so Dynamic Confidence reads it from there), corrected by
the run's conversion fix (:func:`fix_conversion`, fitted on training inputs only) if it has one.
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import torch
from torch import nn

from snnexit.calibrate import expected_calibration_error, fit_temperature
from snnexit.convert import CONVERTERS, convert
from snnexit.convert.fixes import NO_FIX, apply_conversion_fix
from snnexit.data import DataSplits
from snnexit.errors import SnnexitError
from snnexit.exit.base import learn_certify_indices
from snnexit.quant import QUANTIZERS
from snnexit.runs.ann import ann_view, build_ann, trained_ann
from snnexit.runs.settings import RunConfig, memory_bytes
from snnexit.simulate import SpikingNetwork, Trace, record_trace
from snnexit.simulate.structure import fan_out
from snnexit.train import evaluate_logits


def calibrate(model: nn.Module, data: DataSplits, device: str) -> dict:
    """Temperature scaling on the learning half of the validation split; ECE before and after
    (validation and test).

    Only the learning half (:func:`snnexit.exit.base.learn_certify_indices`): the other half
    certifies the exit, and a certificate holds only on inputs that shaped no part of the
    score, Dynamic Confidence's temperature included."""
    data = ann_view(data)
    val_logits = evaluate_logits(model, data.val, device)
    test_logits = evaluate_logits(model, data.test, device)
    learn, _ = learn_certify_indices(val_logits.shape[0])
    temperature = fit_temperature(val_logits[learn], data.val.y[learn])
    ece = lambda logits, y, t: expected_calibration_error(torch.softmax(logits.double() / t, -1), y)  # noqa: E731
    return {
        "temperature": temperature,
        "temperature_fit_size": int(learn.numel()),
        "val_acc": (val_logits.argmax(1) == data.val.y).double().mean().item(),
        "test_acc": (test_logits.argmax(1) == data.test.y).double().mean().item(),
        "ece_val_before": ece(val_logits, data.val.y, 1.0),
        "ece_val_after": ece(val_logits, data.val.y, temperature),
        "ece_test_before": ece(test_logits, data.test.y, 1.0),
        "ece_test_after": ece(test_logits, data.test.y, temperature),
    }


def attach_temperature(snn: SpikingNetwork, temperature: float | None) -> SpikingNetwork:
    """Give ``snn`` the temperature of the ANN it was converted from (None: none known)."""
    if temperature is None:
        snn.meta.pop("temperature", None)
    else:
        snn.meta["temperature"] = float(temperature)
    return snn


def needs_calibration_data(converter: str) -> bool:
    """Converters that set thresholds from data (max, robust normalisation) need inputs to run."""
    return bool(getattr(CONVERTERS.get(converter), "needs_calibration", False))


def converter_inputs(converter: str, data: DataSplits | None) -> dict:
    """Extra arguments of ``converter``: the training inputs for those that calibrate on data."""
    if not needs_calibration_data(converter):
        return {}
    if data is None:
        raise SnnexitError(f"converter {converter!r} calibrates on data: pass the data set to convert")
    return {"calibration_data": ann_view(data).train.x}


def network_fingerprint(snn: nn.Module) -> str:
    """SHA-256 of a network's parameters and buffers (names, dtypes, shapes, bytes): what its
    traces carry as ``meta["network"]``, so that traces of two networks are never mixed."""
    h = hashlib.sha256()
    for name, tensor in sorted(snn.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def converted(model: nn.Module, converter: str, data: DataSplits | None, temperature: float | None = None):
    """The SNN of ``model`` under ``converter``, carrying ``temperature`` and its fingerprint."""
    snn = attach_temperature(convert(model, converter, **converter_inputs(converter, data)), temperature)
    snn.meta["network"] = network_fingerprint(snn)
    return snn


def fix_inputs(config: RunConfig, data: DataSplits) -> torch.Tensor:
    """The training inputs a conversion fix is fitted on: a draw of ``config.conversion_fix_inputs``
    (seeded by the run's seed) from the training split, as the SNN sees them (event data: frames).
    Never validation or test inputs: those fit and certify the exit."""
    n = min(config.conversion_fix_inputs, len(data.train))
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(config.seed))
    return data.train.x[order[:n].sort().values]


def fix_conversion(snn: SpikingNetwork, model: nn.Module, data: DataSplits, config: RunConfig, log=None):
    """Apply the run's conversion fix (``config.fix_name()``) to ``snn`` (in place; fitted over
    ``config.T`` steps on :func:`fix_inputs`) and give it its new fingerprint. Returns ``snn``."""
    if config.fix_name() == NO_FIX:
        return snn
    event_steps(config, data)  # the horizon cannot exceed the recordings' frames
    x = fix_inputs(config, data).to(config.device)
    report = apply_conversion_fix(snn.to(config.device), model.to(config.device), config.fix_name(), x, config.T,
                                  temporal=data.temporal)
    snn.meta["conversion_fix"]["inputs_asked"] = config.conversion_fix_inputs  # what the run settings said
    snn.meta["network"] = network_fingerprint(snn)
    if log is not None:
        log(f"conversion fix {report.name}: fitted on {report.inputs} training inputs over {report.horizon} steps "
            f"in {report.seconds:.1f} s")
    return snn


def calibrated_snn(model: nn.Module, data: DataSplits, config: RunConfig, log=None) -> tuple[SpikingNetwork, dict]:
    """Calibrate ``model`` (:func:`calibrate`), convert it with ``config.converter`` and apply the
    run's conversion fix; the SNN carries the fitted temperature. Returns ``(snn, calibration)``."""
    calibration = calibrate(model, data, config.device)
    snn = converted(model, config.converter, data, calibration["temperature"])
    return fix_conversion(snn, model, data, config, log), calibration


def trained_snn(config: RunConfig, data: DataSplits, log=print) -> tuple[SpikingNetwork, dict]:
    """``(snn, calibration)`` of the ANN ``config`` trains (or reuses from the cache): the whole
    way from settings to a network that is ready to trace."""
    return calibrated_snn(trained_ann(config, data, log), data, config)


def trace_bytes(config: RunConfig, data: DataSplits) -> int:
    """Memory the validation and test traces of ``config``'s network take while recorded: outputs
    ``(T, N, C)`` and spike counts ``(T, N, L)`` in float32, twice (the batches and their join).
    L, the spiking layers, is counted on the ANN built on the meta device (no memory taken)."""
    make = QUANTIZERS.get(config.quantizer)(levels=config.levels, bits=config.bits,
                                            init_threshold=config.init_threshold)
    kind = type(make())
    with torch.device("meta"):
        ann = build_ann(config, data)
    layers = sum(isinstance(m, kind) for m in ann.modules())
    inputs = len(data.val) + len(data.test)
    return 2 * 4 * config.T * inputs * (data.num_classes + layers)


def check_trace_memory(config: RunConfig, data: DataSplits) -> None:
    """Refuse a T whose traces cannot fit in this machine's memory, before anything is trained."""
    memory = memory_bytes()
    need = trace_bytes(config, data)
    if memory is not None and need > 0.8 * memory:
        raise SnnexitError(f"T = {config.T} needs about {need / 2 ** 30:.3g} GiB for the traces of "
                           f"{len(data.val) + len(data.test)} inputs; this machine has {memory / 2 ** 30:.3g} GiB: "
                           f"choose a smaller T")


def event_steps(config: RunConfig, data: DataSplits) -> None:
    """Refuse event data that the run cannot simulate, before anything is trained: a converter
    whose network takes no sequence of frames (QFFS), or a T longer than the recordings (the SNN
    sees one frame per step)."""
    if data.temporal and not getattr(CONVERTERS.get(config.converter), "temporal", True):
        raise SnnexitError(f"converter {config.converter!r} delivers a static input for a fixed window of steps: it "
                           f"cannot run the frames of {data.name}; choose another --converter")
    if data.temporal and config.T > data.train.x.shape[1]:
        frames = data.train.x.shape[1]
        raise SnnexitError(f"T = {config.T} exceeds the {frames} frames of {data.name}: the converted SNN sees one "
                           f"frame per step; pass --T {frames} or fewer")


def trace_split(snn, split, config: RunConfig, batch_size: int, temporal: bool, desc: str,
                recorder=None) -> Trace:
    """The trace of one split. ``recorder(snn, split, T, batch_size, temporal, device)``: another
    way to record the same trace (several processes); default :func:`record_trace`."""
    if recorder is not None:
        return recorder(snn, split, T=config.T, batch_size=batch_size, temporal=temporal, device=config.device)
    return record_trace(snn, split.batches(batch_size), T=config.T, device=config.device, progress=config.progress,
                        desc=desc, temporal=temporal)


def trace_snn(snn, data: DataSplits, config: RunConfig, batch_size: int = 250, recorder=None) -> tuple[Trace, Trace]:
    """Record the validation and test traces of a converted SNN (``batch_size`` inputs at once)."""
    event_steps(config, data)
    # event data (N, T, 2, H, W): frame t at step t; static data: the same input at every step
    val = trace_split(snn, data.val, config, batch_size, data.temporal, "trace val", recorder)
    test = trace_split(snn, data.test, config, batch_size, data.temporal, "trace test", recorder)
    val.meta["split"], test.meta["split"] = "val", "test"
    try:  # synaptic fan-out per spiking layer, for SynOps in the cost table
        fan = fan_out(snn, data.test.x[:1, 0] if data.temporal else data.test.x[:1])
    except (SnnexitError, RuntimeError):
        fan = None  # a layer the probe cannot follow: spikes are still counted, SynOps are not
    if fan is not None:
        val.meta["fan_out_per_layer"] = test.meta["fan_out_per_layer"] = fan
    return val, test


def load_calibration_inputs(path, data: DataSplits) -> torch.Tensor:
    """Unlabelled inputs ``(N, ...)`` from a ``.npy`` file, checked against the data set's input shape."""
    check_calibration_file(path)
    x = np.load(path, allow_pickle=False)
    expected = tuple(data.val.x.shape[1:])
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected or x.shape[0] < 1:
        raise SnnexitError(f"calibration inputs {path}: shape {x.shape}, expected (N, {', '.join(map(str, expected))}) "
                           f"like the {data.name} inputs")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise SnnexitError(f"calibration inputs {path}: dtype {x.dtype} is not real-valued")
    x = torch.from_numpy(np.ascontiguousarray(x)).to(data.val.x.dtype)
    if not torch.isfinite(x).all():
        raise SnnexitError(f"calibration inputs {path}: contain NaN or infinite values")
    return x


def check_calibration_file(path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of the ``.npy`` array of calibration inputs ``path``, read from its
    header alone (no data is loaded), or a :class:`SnnexitError` saying what the file is instead:
    empty, an ``.npz`` archive, a pickle, no array of real numbers, no inputs."""
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except EOFError:
        raise SnnexitError(f"calibration inputs {path}: the file is empty (expected a .npy array (N, ...))") from None
    except (OSError, ValueError) as exc:
        raise SnnexitError(f"calibration inputs {path}: not a readable .npy array ({str(exc)[:200]})") from None
    if not isinstance(x, np.ndarray):  # an .npz archive: a mapping of arrays
        with contextlib.suppress(AttributeError):
            x.close()
        raise SnnexitError(f"calibration inputs {path}: an .npz archive, not one .npy array; save the inputs with "
                           f"numpy.save(path, x)")
    shape, dtype = tuple(x.shape), x.dtype
    del x  # the memory map
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise SnnexitError(f"calibration inputs {path}: dtype {dtype} is not real-valued")
    if len(shape) < 2 or shape[0] < 1:
        raise SnnexitError(f"calibration inputs {path}: shape {shape}, expected (N, ...) with N >= 1 inputs")
    return shape, dtype


def trace_unlabelled(snn, x: torch.Tensor, config: RunConfig, batch_size: int = 250, temporal: bool = False) -> Trace:
    """The trace of unlabelled inputs ``x`` (no labels: enough to certify an exit; ``temporal``:
    event frames ``(N, T, 2, H, W)``, frame t at step t)."""
    batches = [(x[i:i + batch_size], None) for i in range(0, x.shape[0], batch_size)]
    trace = record_trace(snn, batches, T=config.T, device=config.device, progress=config.progress,
                         desc="trace calibration", temporal=temporal)
    trace.meta["split"] = "calibration"
    return trace
