"""Runs of a network imported from NIR (``--nir FILE --semantics NAME``): nothing to train or convert.

The stages of such a run::

    train     nothing: the network comes from the NIR file
    convert   import the graph as the reader means it (``snnexit.nir.import_nir``), check that it
              takes the data set's inputs -> network.json (the file's checksum, the reader, the
              network's fingerprint, the data sizes)
    trace     as for a converted network; then Dynamic Confidence's temperature is fitted on the
              network's own fixed-T output ``Y[T] / alpha`` on the learning half of validation
              (:func:`output_calibration`: there is no ANN to fit it on), and the traces carry it
    fit, evaluate, report   as for any run (no ANN accuracy: the report says so)

A data set whose inputs hold as many values as the graph's input, in another shape (an MLP
exported with flat inputs, run on images), is reshaped to it (:class:`InputReshape`).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn

from snnexit.calibrate import expected_calibration_error, fit_temperature
from snnexit.data import DataSplits
from snnexit.errors import SnnexitError
from snnexit.exit.base import learn_certify_indices
from snnexit.exit.scores import alpha_at
from snnexit.io import write_json
from snnexit.runs.network import attach_temperature, network_fingerprint
from snnexit.simulate import SpikingNetwork, Trace

NETWORK_FILE = "network.json"
NETWORK_FORMAT, NETWORK_VERSION = "snnexit-imported-network", 1


class InputReshape(nn.Module):
    """Reshapes each input to the imported graph's input shape (the same number of values)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def data_input_shape(data: DataSplits) -> tuple[int, ...]:
    """One input of the data set (one frame of event data)."""
    x = data.train.x
    return tuple(x.shape[2:] if data.temporal else x.shape[1:])


def imported_network(config, data: DataSplits, log=print) -> SpikingNetwork:
    """The network of ``config.nir`` as ``config.semantics`` reads it, taking the data set's inputs
    (reshaped to the graph's input where they hold as many values), with its fingerprint."""
    # snnexit.nir reads HDF5 (h5py) and registers the readers: only runs of an imported network need it
    from snnexit.nir import import_nir

    snn = import_nir(config.nir, config.semantics, dt=config.dt)
    want, have = snn.meta.get("input_shape"), data_input_shape(data)
    if want is not None and tuple(want) != have:
        if math.prod(want) != math.prod(have):
            raise SnnexitError(f"{config.nir} takes inputs of shape {tuple(want)}; {data.name} has inputs of shape "
                               f"{have}")
        log(f"{data.name} inputs {have} are reshaped to the graph's input {tuple(want)}")
        snn = SpikingNetwork(nn.Sequential(InputReshape(tuple(want)), snn.body), snn.meta)
    snn.meta.update(input_shape=list(have), converter="nir", nir_file=str(config.nir))
    snn.meta.pop("temperature", None)  # fitted on this network's own outputs (output_calibration)
    snn.meta["network"] = network_fingerprint(snn)
    return snn.to(config.device).eval()


def network_record(config, snn: SpikingNetwork, data_sizes: dict) -> dict:
    return {"format": NETWORK_FORMAT, "version": NETWORK_VERSION, "nir": str(Path(config.nir).resolve()),
            "sha256": file_sha256(config.nir), "semantics": config.semantics, "dt": snn.meta.get("nir_dt"),
            "network": snn.meta["network"], "input_shape": snn.meta["input_shape"], "data": dict(data_sizes)}


def write_network_file(path, record: dict) -> None:
    write_json(path, record)


def check_network_record(record: dict, config, path) -> dict:
    """Refuse a ``network.json`` of another file, reader or step than ``config``'s."""
    if not isinstance(record, dict) or record.get("format") != NETWORK_FORMAT:
        raise SnnexitError(f"{path}: not a record of an imported network; run `snnexit convert` again")
    if config.nir is None:
        raise SnnexitError(f"{path} belongs to a run of an imported network; pass --nir")
    if record.get("sha256") != file_sha256(config.nir) or record.get("semantics") != config.semantics:
        raise SnnexitError(f"{path} was made from another NIR file or semantics than {config.nir} read as "
                           f"{config.semantics!r}; run `snnexit convert` again")
    if config.dt is not None and record.get("dt") != float(config.dt):
        raise SnnexitError(f"{path} was made with dt = {record.get('dt')}, this config says {config.dt}; run "
                           f"`snnexit convert` again")
    if not isinstance(record.get("data"), dict):
        raise SnnexitError(f"{path} lacks the data sizes; run `snnexit convert` again")
    return record


def output_calibration(val: Trace, test: Trace | None = None) -> dict:
    """Temperature scaling of a network's own fixed-T output ``Y[T] / alpha`` (the logits Dynamic
    Confidence divides by ``T_cal``), fitted on the learning half of ``val`` (the other half
    certifies: it must shape nothing), with the expected calibration error before and after on
    ``val`` and ``test``. ``val`` needs labels."""
    if not val.labelled:
        raise SnnexitError("fitting the temperature needs labelled validation outputs")

    def logits(trace: Trace) -> torch.Tensor:
        return trace.outputs[-1].double() / alpha_at(trace.T, trace.meta)

    learn, _ = learn_certify_indices(val.N)
    temperature = fit_temperature(logits(val)[learn], val.labels[learn])
    record = {"temperature": temperature, "temperature_fit_size": int(learn.numel()), "fitted_on": "snn_outputs",
              "val_acc": None, "test_acc": None}  # no ANN
    for name, trace in (("val", val), ("test", test)):
        if trace is None or not trace.labelled:
            continue
        z = logits(trace)
        record[f"ece_{name}_before"] = expected_calibration_error(torch.softmax(z, -1), trace.labels)
        record[f"ece_{name}_after"] = expected_calibration_error(torch.softmax(z / temperature, -1), trace.labels)
    return record


def calibrate_traces(snn: SpikingNetwork, val: Trace, test: Trace, extra: Trace | None = None) -> dict:
    """Fit the temperature (:func:`output_calibration`) and give it to the network and its traces;
    the validation trace also keeps the whole record (later stages read it from there)."""
    record = output_calibration(val, test)
    attach_temperature(snn, record["temperature"])
    for trace in (val, test, extra):
        if trace is not None:
            trace.meta["temperature"] = record["temperature"]
    val.meta["calibration"] = record
    return record
