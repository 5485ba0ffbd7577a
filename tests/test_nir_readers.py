"""NIR that another library runs: SpikingJelly's own reader (``import_from_nir``) on our hard-reset
export, snnTorch's and Sinabs's on our subtract export."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from snnexit.cli import main
from snnexit.convert import convert
from snnexit.data import load_dataset
from dataclasses import replace

from snnexit.errors import SnnexitError
from snnexit.nir import SEMANTICS, export_nir, import_nir, to_nir
from snnexit.nir.export import fold_scales
from snnexit.nir.readers import library_trace
from snnexit.nir.variants import calibrate_threshold_scale
from snnexit.neurons import IFNeuron
from snnexit.runs.ann import trained_ann
from snnexit.runs.settings import RunConfig
from snnexit.simulate import SpikingNetwork, record_trace

pytest.importorskip("spikingjelly.activation_based.nir_exchange")

T = 12


@pytest.fixture(scope="module")
def digits_snn(tmp_path_factory):
    """A QCFS vgg_small trained on digits, converted; and the digits splits."""
    cache = tmp_path_factory.mktemp("cache")
    config = RunConfig(dataset="digits", epochs=6, width=8, progress=False, cache_dir=str(cache))
    data = load_dataset("digits", 0)
    snn = convert(trained_ann(config, data, log=lambda m: None), "qcfs")
    snn.meta["input_shape"] = [1, 8, 8]
    return snn, data, cache


def test_spikingjelly_runs_the_hard_reset_export_as_we_do(digits_snn, tmp_path):
    snn, data, _ = digits_snn
    export_nir(snn, tmp_path / "hr.nir", variant="hard_reset", threshold_scale=0.7)
    graph = nir.read(tmp_path / "hr.nir")
    assert not any(isinstance(n, nir.Scale) for n in graph.nodes.values())  # amplitudes folded into weights
    theirs = library_trace(tmp_path / "hr.nir", "spikingjelly", data.test.batches(200), T, dt=1.0)
    ours = record_trace(import_nir(tmp_path / "hr.nir"), data.test.batches(200), T=T)
    assert torch.equal(theirs.labels, ours.labels)
    assert torch.allclose(theirs.outputs, ours.outputs, atol=1e-5)
    assert torch.equal(theirs.predictions(), ours.predictions())


def test_hard_reset_neuron_by_hand():
    """One IF node of the hard_reset export, stepped by hand: v(0) = 0, v += x, fire on v >= k*theta, v = 0."""
    lin = torch.nn.Linear(1, 1)
    lin.weight.data.fill_(1.0)
    lin.bias.data.fill_(0.0)
    snn = SpikingNetwork(torch.nn.Sequential(lin, IFNeuron(1.0), torch.nn.Linear(1, 2)))  # C >= 2 for a trace
    snn.body[2].weight.data = torch.tensor([[2.0], [0.0]])
    snn.body[2].bias.data.fill_(0.0)
    graph = to_nir(snn, (1,), "hard_reset", 0.5)
    x = torch.tensor([[0.3]])
    out = record_trace(import_nir(graph), [(x, torch.zeros(1, dtype=torch.long))], T=6).outputs[:, 0, 0]
    sj = library_trace(graph, "spikingjelly", [(x, torch.zeros(1, dtype=torch.long))], 6, dt=1.0).outputs[:, 0, 0]
    v, spikes = 0.0, []
    for _ in range(6):  # threshold 0.5: v = 0.3, 0.6 -> spike, 0.3, 0.6 -> spike, ...
        v += 0.3
        s = v >= 0.5
        spikes.append(float(s))
        v = 0.0 if s else v
    expected = torch.tensor(np.cumsum(spikes) * 2.0 * 1.0, dtype=out.dtype)  # amplitude theta = 1, weight 2
    assert torch.allclose(out, expected) and torch.allclose(sj, expected)


def test_exact_export_is_refused_by_spikingjelly_with_a_reason(digits_snn):
    snn, data, _ = digits_snn
    with pytest.raises(SnnexitError, match="Scale"):
        library_trace(to_nir(snn), "spikingjelly", data.test.batches(200), 2, dt=1.0)


def test_folding_scales_keeps_the_exact_network(digits_snn):
    snn, data, _ = digits_snn
    exact = to_nir(snn)
    folded = fold_scales(exact)
    assert sum(isinstance(n, nir.Scale) for n in folded.nodes.values()) == 0
    a = record_trace(import_nir(exact), data.test.batches(200), T=T)
    b = record_trace(import_nir(folded), data.test.batches(200), T=T)
    assert torch.allclose(a.outputs, b.outputs, atol=1e-3)
    assert (a.predictions() == b.predictions()).double().mean() > 0.99


def test_calibrated_threshold_scale_is_the_validation_argmax(digits_snn):
    snn, data, _ = digits_snn
    k, scores = calibrate_threshold_scale(snn, data.val.batches(200), T, scales=(1.0, 0.7, 0.5))
    assert set(scores) == {1.0, 0.7, 0.5} and scores[k] == max(scores.values())
    by_hand = record_trace(import_nir(to_nir(snn, None, "hard_reset", 0.7)), data.val.batches(200), T=T)
    assert scores[0.7] == pytest.approx(float(by_hand.accuracy_per_step().mean()))


def test_accuracy_per_step_of_both_readers_against_ours(digits_snn):
    """The measurement the benchmark makes, on digits: SpikingJelly's accuracy per step on the
    hard_reset export equals our reading of it; against the exact network it is measured, not assumed."""
    snn, data, _ = digits_snn
    k, _ = calibrate_threshold_scale(snn, data.val.batches(200), T)
    graph = to_nir(snn, None, "hard_reset", k)
    theirs = library_trace(graph, "spikingjelly", data.test.batches(200), T, dt=1.0)
    ours_hr = record_trace(import_nir(graph), data.test.batches(200), T=T)
    exact = record_trace(snn, data.test.batches(200), T=T)
    assert torch.allclose(theirs.accuracy_per_step(), ours_hr.accuracy_per_step())
    assert exact.accuracy_per_step()[-1] > 0.8  # a trained network, so the comparison means something
    assert theirs.accuracy_per_step()[-1] > 0.5


def test_cli_exports_the_hard_reset_variant(digits_snn, tmp_path, capsys):
    snn, data, cache = digits_snn
    (weights,) = cache.glob("ann-digits-*.safetensors")
    out = tmp_path / "hr.nir"
    assert main(["export", "--in", str(weights), "--dataset", "digits", "--model", "vgg_small", "--width", "8",
                 "--variant", "hard-reset", "--T", "6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "chosen on the validation split" in printed
    k = float(printed.split("thresholds ")[1].split(" ")[0])
    graph = nir.read(out)
    ifs = [n for n in graph.nodes.values() if isinstance(n, nir.IF)]
    thetas = [float(m.threshold) for _, m in snn.spiking_layers()]
    fired_at = sorted(float(np.unique(n.v_threshold)[0]) for n in ifs)  # the file keeps no layer order
    assert fired_at == pytest.approx(sorted(k * t for t in thetas), rel=1e-6)
    assert all(np.all(np.asarray(n.v_reset) == 0) for n in ifs)


def test_snntorch_and_sinabs_run_the_subtract_export_as_we_read_it(digits_snn):
    """The subtract export: snnTorch (1.0.0's leaky IF, and its main branch's leak-free one) and
    Sinabs (sum pooling, several spikes per step) run it as our importer reads it under their
    semantics; and it is a trained network for them (better than chance at T)."""
    pytest.importorskip("snntorch")
    pytest.importorskip("sinabs")
    snn, data, _ = digits_snn
    test = list(data.test.batches(200))
    graph, summed = to_nir(snn, None, "subtract", 0.8), to_nir(snn, None, "subtract", 0.8, pooling="sum")
    cases = [(graph, "snntorch", {}, replace(SEMANTICS.create("snntorch"), if_beta=0.9)),
             (graph, "snntorch", {"snntorch_if_beta": 1.0}, "snntorch"), (summed, "sinabs", {}, "sinabs")]
    for g, library, options, semantics in cases:
        theirs = library_trace(g, library, test, T, **options)
        ours = record_trace(import_nir(g, semantics), test, T=T)
        assert torch.allclose(theirs.outputs, ours.outputs, rtol=1e-5, atol=1e-4), library
        assert torch.equal(theirs.predictions(), ours.predictions()), library
        assert theirs.accuracy_per_step()[-1] > 0.5, library


def test_sum_pooling_is_the_same_network(digits_snn):
    """AvgPool2d as SumPool2d with 1/4 in the next layer's weights: binary spikes sum exactly and a
    power of two scales exactly, so the outputs are bit for bit those of the average pool."""
    snn, data, _ = digits_snn
    avg, summed = to_nir(snn, None, "subtract", 0.9), to_nir(snn, None, "subtract", 0.9, pooling="sum")
    assert any(isinstance(n, nir.SumPool2d) for n in summed.nodes.values())
    assert not any(isinstance(n, nir.AvgPool2d) for n in summed.nodes.values())
    a = record_trace(import_nir(avg), data.test.batches(200), T=T)
    b = record_trace(import_nir(summed), data.test.batches(200), T=T)
    assert torch.equal(a.outputs, b.outputs)


def test_cli_exports_the_subtract_variant(digits_snn, tmp_path, capsys):
    snn, data, cache = digits_snn
    (weights,) = cache.glob("ann-digits-*.safetensors")
    out = tmp_path / "sub.nir"
    assert main(["export", "--in", str(weights), "--dataset", "digits", "--model", "vgg_small", "--width", "8",
                 "--variant", "subtract", "--pooling", "sum", "--threshold-scale", "0.8", "--out", str(out)]) == 0
    assert "snnTorch's import_nir, Sinabs's from_nir" in capsys.readouterr().out
    graph = nir.read(out)
    ifs = [n for n in graph.nodes.values() if isinstance(n, nir.IF)]
    assert ifs and all(str(n.metadata["snnexit_reset"]) == "subtract" and np.all(np.asarray(n.r) == 1) for n in ifs)
    assert any(isinstance(n, nir.SumPool2d) for n in graph.nodes.values())
