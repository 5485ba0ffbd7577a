import json
from dataclasses import asdict

import nir
import numpy as np
import pytest
import torch
from torch import nn

from snnexit.cli import main as cli_main
from snnexit.convert import convert
from snnexit.data import load_dataset
from snnexit.errors import SnnexitError
from snnexit.nir import export_nir, fold_all_batchnorm, import_nir, read_nir, to_nir
from snnexit.io import save_tensors
from snnexit.models import create_model
from snnexit.runs.ann import ANN_FORMAT, ANN_VERSION, build_ann, data_dims
from snnexit.runs.artifacts import save_converted
from snnexit.runs.network import converted
from snnexit.runs.settings import RunConfig
from snnexit.quant import QCFS
from snnexit.simulate import SpikingNetwork, record_trace


def qcfs_net(name="vgg_small", shape=(1, 8, 8), seed=0, **kw):
    torch.manual_seed(seed)
    ann = create_model(name, num_classes=5, in_channels=shape[0], input_size=shape[1],
                       activation=lambda: QCFS(4, 1.0), **kw)
    for m in ann.modules():  # non-trivial BatchNorm statistics, so folding does something
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    for m in ann.modules():
        if isinstance(m, QCFS):
            m.threshold.data.uniform_(0.5, 1.5)
    return convert(ann.eval(), "qcfs")


def traced(snn, x, T=8):
    return record_trace(snn, [(x, torch.zeros(len(x), dtype=torch.long))], T=T)


class NoBN(nn.Module):
    """conv - QCFS - avgpool - flatten - linear - QCFS - linear, with a residual add."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act1 = QCFS(4, 0.8)
        self.side = nn.Conv2d(1, 4, 1)
        self.pool = nn.AvgPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * 4 * 4, 16)
        self.act2 = QCFS(4, 1.2)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        h = self.act1(self.conv(x)) + self.side(x)
        return self.out(self.drop(self.act2(self.fc(self.flat(self.pool(h))))))


def test_reimport_with_metadata_reproduces_the_snn_exactly(tmp_path):
    torch.manual_seed(1)
    snn = convert(NoBN().eval(), "qcfs")
    export_nir(snn, tmp_path / "m.nir", (1, 8, 8))
    back = import_nir(tmp_path / "m.nir")
    x = torch.rand(64, 1, 8, 8) * 2
    ours, theirs = traced(snn, x), traced(back, x)
    assert torch.equal(ours.outputs, theirs.outputs)
    assert torch.equal(ours.spikes, theirs.spikes)
    assert ours.spikes.sum() > 0 and theirs.meta["alpha"] == "T" and theirs.meta["converter"] == "qcfs"
    assert back.neurons_per_layer() == snn.neurons_per_layer()


@pytest.mark.parametrize("name,shape", [("vgg_small", (1, 8, 8)), ("resnet20", (3, 8, 8))])
def test_models_with_batchnorm_match_the_folded_snn_exactly(tmp_path, name, shape):
    snn = qcfs_net(name, shape, width=4)
    export_nir(snn, tmp_path / "m.nir", shape)
    back = import_nir(tmp_path / "m.nir")
    folded = SpikingNetwork(fold_all_batchnorm(snn.body), snn.meta)
    x = torch.rand(40, *shape)
    assert torch.equal(traced(folded, x).outputs, traced(back, x).outputs)
    # folding changes float rounding only: the same network up to rare threshold ties
    assert torch.allclose(traced(snn, x).outputs, traced(back, x).outputs, atol=1e-3)


def test_fold_all_batchnorm_preserves_the_function():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4),
                        nn.BatchNorm1d(4)).eval()
    for bn in (net[1], net[5]):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 3)
        bn.weight.data.normal_()
        bn.bias.data.normal_()
    folded = fold_all_batchnorm(net)
    x = torch.randn(10, 2, 4, 4)
    assert torch.allclose(net(x), folded(x), atol=1e-5)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    with pytest.raises(SnnexitError, match="cannot export BatchNorm at '0'"):
        fold_all_batchnorm(nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1)))


def test_standard_nir_semantics_follow_the_spec_by_brute_force():
    """One affine layer into an IF: the importer's 'nir' semantics equal a hand-written loop
    of the NIR IF equations (v(0)=0, v += r*x, spike on v > thr, hard reset to v_reset)."""
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    thr, reset = np.full(6, 0.7, np.float32), np.full(6, -0.1, np.float32)
    graph = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([4])}),
                                "fc": nir.Affine(weight=w, bias=b),
                                "if": nir.IF(r=np.ones(6, np.float32), v_threshold=thr, v_reset=reset),
                                "out": nir.Output(output_type={"output": np.array([6])})},
                         edges=[("in", "fc"), ("fc", "if"), ("if", "out")], metadata={})
    net = import_nir(graph, "nir", dt=1.0)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    v = np.zeros((5, 6), np.float32)
    for _ in range(10):
        v = v + (x @ w.T + b)
        s = v > thr
        v = np.where(s, reset, v)
        out = net.step(torch.from_numpy(x)).numpy()
        assert np.array_equal(out, s.astype(np.float32))
    with pytest.raises(SnnexitError, match="lacks snnexit metadata"):
        import_nir(graph, "snnexit")


def test_standard_semantics_differ_from_ours_on_constant_input(tmp_path):
    """The documented gap, in closed form: IF with theta = 1 fed 0.25 per step. Ours starts at
    1/2 and keeps the surplus: spikes at steps 2, 6, 10. NIR's starts at 0, fires on > 1:
    the first step with v > 1 is step 5, then every 5 steps."""
    body = nn.Sequential(nn.Linear(1, 1, bias=False), QCFS(4, 1.0), nn.Linear(1, 1, bias=False))
    body[0].weight.data.fill_(0.25)
    body[2].weight.data.fill_(1.0)
    snn = convert(body.eval(), "qcfs")
    graph = to_nir(snn, (1,))
    x = torch.ones(1, 1)
    ours_net, nir_net = import_nir(graph, "snnexit"), import_nir(graph, "nir", dt=1.0)
    ours = [int(ours_net.step(x).item() > 0) for _ in range(12)]
    theirs = [int(nir_net.step(x).item() > 0) for _ in range(12)]
    assert [t + 1 for t, s in enumerate(ours) if s] == [2, 6, 10]
    assert [t + 1 for t, s in enumerate(theirs) if s] == [5, 10]


def test_file_keeps_the_metadata_and_bad_files_are_refused(tmp_path):
    snn = qcfs_net()
    snn.meta["temperature"] = 1.7
    export_nir(snn, tmp_path / "m.nir", (1, 8, 8))
    graph = read_nir(tmp_path / "m.nir")
    ifs = [n for n in graph.nodes.values() if isinstance(n, nir.IF)]
    assert len(ifs) == len(snn.spiking_layers())
    assert all(str(n.metadata["snnexit_reset"]) == "subtract" for n in ifs)
    thetas = sorted(float(m.threshold) for _, m in snn.spiking_layers())
    assert sorted(float(n.metadata["snnexit_threshold"]) for n in ifs) == thetas
    assert json.loads(graph.metadata["snnexit_meta"])["temperature"] == 1.7
    (tmp_path / "bad.nir").write_bytes(b"not hdf5 at all")
    with pytest.raises(SnnexitError, match="not a readable NIR file"):
        import_nir(tmp_path / "bad.nir")
    with pytest.raises(SnnexitError, match="no such NIR file"):
        import_nir(tmp_path / "missing.nir")
    with pytest.raises(SnnexitError, match="Unknown NIR semantics 'lava'"):
        import_nir(graph, "lava")


def test_unsupported_layers_are_named():
    body = nn.Sequential(nn.Conv2d(1, 2, 3), QCFS(4, 1.0), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(SnnexitError, match="cannot convert module MaxPool2d"):
        convert(body.eval(), "qcfs")
    snn = SpikingNetwork(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2)), {})
    with pytest.raises(SnnexitError, match="MaxPool2d at '1'"):
        to_nir(snn, (1, 6, 6))
    with pytest.raises(SnnexitError, match="input shape"):
        to_nir(snn)


def test_cli_export(tmp_path, monkeypatch, capsys):
    config = RunConfig(dataset="digits", model="vgg_small", width=4, levels=4)
    data = load_dataset("digits", 0)
    ann = build_ann(config, data).eval()
    save_tensors(tmp_path / "ann.safetensors", ann.state_dict(), fmt=ANN_FORMAT, version=ANN_VERSION)
    code = cli_main(["export", "--format", "nir", "--in", str(tmp_path / "ann.safetensors"), "--dataset", "digits",
                     "--model", "vgg_small", "--width", "4", "--out", str(tmp_path / "out" / "m.nir")])
    assert code == 0 and "5 IF layers" in capsys.readouterr().out
    back = import_nir(tmp_path / "out" / "m.nir")
    x = data.test.x[:20]
    snn = SpikingNetwork(fold_all_batchnorm(convert(ann, "qcfs").body), {})
    assert torch.equal(traced(snn, x).outputs, traced(back, x).outputs)
    # a run folder: its own snn.safetensors (the converted network with its temperature); no cache read
    run = tmp_path / "run"
    run.mkdir()
    converted_snn = converted(ann, "qcfs", data, 2.0)
    save_converted(run / "snn.safetensors", ann, converted_snn, config, data_dims(data), {"calibration": {"temperature": 2.0}})
    (run / "results.json").write_text(json.dumps({"config": asdict(config), "calibration": {"temperature": 2.0}}))
    assert cli_main(["export", "--in", str(run), "--out", str(tmp_path / "r.nir")]) == 0
    assert import_nir(tmp_path / "r.nir").meta["temperature"] == 2.0
    assert torch.equal(traced(converted_snn, x).outputs, traced(import_nir(tmp_path / "r.nir"), x).outputs)
    # errors: exit code 2 with a message
    assert cli_main(["export", "--in", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.nir")]) == 2
    assert cli_main(["export", "--in", str(tmp_path / "ann.safetensors"), "--out", str(tmp_path / "x.nir")]) == 2
    assert "needs --dataset and --model" in capsys.readouterr().err
    (run / "snn.safetensors").unlink()  # a folder whose network is not converted: said, never rebuilt
    assert cli_main(["export", "--in", str(run), "--out", str(tmp_path / "x.nir")]) == 2
    assert "no snn.safetensors" in capsys.readouterr().err
