"""Converters beyond QCFS: BN folding, QFFS exactness, data-based normalisation, errors,
import of the QCFS authors' checkpoints."""

import json

import pytest
import torch
from torch import nn

from snnexit.runs import settings as pipeline
from snnexit.cli import main
from snnexit.convert import CONVERTERS, convert
from snnexit.convert.bn_fold import fold_batchnorm_pairs
from snnexit.convert.checkpoints import load_qcfs_checkpoint
from snnexit.convert.normalise import activation_scales
from snnexit.data import load_dataset
from snnexit.errors import SnnexitError
from snnexit.models import create_model
from snnexit.neurons import IFNeuron, QFFSNeuron
from snnexit.runs.settings import RunConfig
from snnexit.quant import LSQ, QCFS
from snnexit.simulate import Trace, record_trace, simulate_batch
from snnexit.train import TrainConfig, evaluate_logits, train

# An SNN at large T must reach the ANN's test accuracy within this many points on digits
# (360 test inputs: one input is 0.28 points). QFFS is exact once settled: tolerance 0.
TOLERANCE = {"qcfs": 1.5, "max": 2.5, "robust": 2.5, "qffs": 0.0}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # on a loaded 2-core machine two intra-op threads make these small models ~50x slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g) * 0.5 + 1)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model


@pytest.mark.parametrize("name", ["vgg_small", "resnet20", "vgg16"])
def test_bn_folding_computes_the_same_function(name):
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, num_classes=10, in_channels=1, input_size=8, width=4)).double().eval()
    folded = fold_batchnorm_pairs(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-10, rtol=1e-10)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched


def test_qcfs_conversion_with_folded_batchnorm_simulates_the_same_network():
    torch.manual_seed(0)
    model = randomize_bn(create_model("vgg_small", num_classes=10, in_channels=1, input_size=8, width=4,
                                      activation=lambda: QCFS(levels=4))).double().eval()
    plain, folded = convert(model, "qcfs"), convert(model, "qcfs", fold_bn=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    (y_plain, s_plain), (y_folded, s_folded) = simulate_batch(plain, x, 8), simulate_batch(folded, x, 8)
    assert s_plain.sum() > 0
    assert torch.equal(s_plain, s_folded)  # float64: no potential lies within rounding of its threshold here
    assert torch.allclose(y_plain, y_folded, atol=1e-9)


def test_bn_folding_linear_and_batchnorm1d():
    torch.manual_seed(0)
    model = randomize_bn(nn.Sequential(nn.Linear(5, 7, bias=False), nn.BatchNorm1d(7), nn.ReLU())).double().eval()
    x = torch.randn(9, 5, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(fold_batchnorm_pairs(model)(x), model(x), atol=1e-12)


@pytest.mark.parametrize("name", ["vgg_small", "resnet20"])
@pytest.mark.parametrize("bits", [2, 3])
def test_qffs_settles_on_the_ann_logits_exactly(name, bits):
    """Any weights: once settled, Y[t] / alpha equals the LSQ ANN's logits (float64)."""
    torch.manual_seed(1)
    model = randomize_bn(create_model(name, num_classes=10, in_channels=1, input_size=8, width=4,
                                      activation=lambda: LSQ(bits)))
    x = torch.rand(12, 1, 8, 8)
    model.train()
    model(x)  # LSQ's data initialisation of the step sizes
    model = model.double().eval()
    snn = convert(model, "qffs").double()
    alpha = 2 ** bits - 1
    assert snn.meta["alpha"] == alpha
    trace = record_trace(snn, [(x.double(), torch.zeros(12, dtype=torch.long))], T=40)
    with torch.no_grad():
        logits = model(x.double())
    assert torch.allclose(trace.outputs[-1].double() / alpha, logits, atol=1e-5)
    assert torch.allclose(trace.outputs[-1], trace.outputs[-5])  # nothing changes any more
    neurons = [m for m in snn.body.modules() if isinstance(m, QFFSNeuron)]
    assert neurons and all(m.cap == alpha for m in neurons)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", 0)


def trained(data, activation, epochs=12):
    torch.manual_seed(0)
    model = create_model("vgg_small", num_classes=10, in_channels=1, input_size=8, width=8, activation=activation)
    return train(model, data.train, TrainConfig(epochs=epochs, batch_size=32, lr=5e-3), progress=False)


@pytest.fixture(scope="module")
def lsq_ann(digits):
    return trained(digits, lambda: LSQ(2, init_step=1 / 3))


@pytest.fixture(scope="module")
def relu_ann(digits):
    return trained(digits, nn.ReLU)


def accuracy(logits, y):
    return 100 * (logits.argmax(1) == y).double().mean().item()


@pytest.mark.parametrize("name,T", [("qffs", 12), ("qcfs", 64), ("max", 96), ("robust", 96)])
def test_each_converter_reaches_the_ann_accuracy_at_large_T(name, T, digits, lsq_ann, relu_ann):
    ann = lsq_ann if name in ("qffs", "qcfs") else relu_ann
    kwargs = {"calibration_data": digits.train.x} if getattr(CONVERTERS.get(name), "needs_calibration", False) else {}
    snn = convert(ann, name, **kwargs)
    ann_acc = accuracy(evaluate_logits(ann, digits.test), digits.test.y)
    assert ann_acc > 85
    trace = record_trace(snn, digits.test.batches(400), T=T)
    snn_acc = 100 * trace.accuracy_per_step()[-1].item()
    assert snn_acc >= ann_acc - TOLERANCE[name], (name, snn_acc, ann_acc)
    assert trace.meta["converter"] == name


def test_qffs_reaches_its_accuracy_within_a_few_steps(digits, lsq_ann):
    trace = record_trace(convert(lsq_ann, "qffs"), digits.test.batches(400), T=10)
    acc = trace.accuracy_per_step()
    assert acc[3 + 2 - 1] >= acc[-1] - 0.01  # 2**b - 1 + 2 steps


def test_data_based_scales_are_max_and_percentile(digits, relu_ann):
    folded = fold_batchnorm_pairs(relu_ann)
    x = digits.train.x[:100]  # few enough that every positive activation is kept (no subsampling)
    outs = {}
    hooks = [m.register_forward_hook(lambda m, i, o, p=p: outs.setdefault(p, o.detach()))
             for p, m in folded.named_modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        folded(x)
    for h in hooks:
        h.remove()
    maxima = activation_scales(folded, x)
    robust = activation_scales(folded, x, percentile=99.9)
    for path, out in outs.items():
        assert maxima[path] == pytest.approx(out.max().item())
        pos = out[out > 0]
        assert robust[path] == pytest.approx(torch.quantile(pos, 0.999).item(), rel=1e-5)
        assert robust[path] <= maxima[path]
    snn = convert(relu_ann, "robust", calibration_data=x)
    thresholds = [m.threshold.item() for m in snn.body.modules() if isinstance(m, IFNeuron)]
    assert thresholds == pytest.approx([robust[p] for p in outs])
    assert snn.meta["alpha"] == "T"


def test_calibration_data_forms(relu_ann, digits):
    x = digits.train.x[:200]
    a = activation_scales(fold_batchnorm_pairs(relu_ann), x)
    b = activation_scales(fold_batchnorm_pairs(relu_ann), [(x[:50], None), (x[50:], None)])
    assert a == pytest.approx(b)
    with pytest.raises(SnnexitError, match="calibration data"):
        convert(relu_ann, "max")


def test_unsupported_layers_are_named_with_their_path():
    m = create_model("vgg_small", num_classes=10, in_channels=1, input_size=8, width=4, activation=nn.ReLU)
    m.layer2[6] = nn.MaxPool2d(2)
    with pytest.raises(SnnexitError, match=r"MaxPool2d at 'layer2\.6'"):
        convert(m, "max", calibration_data=torch.rand(4, 1, 8, 8))
    m = create_model("vgg_small", num_classes=10, in_channels=1, input_size=8, width=4, activation=nn.Sigmoid)
    with pytest.raises(SnnexitError, match=r"Sigmoid at 'layer1\.2'"):
        convert(m, "robust", calibration_data=torch.rand(4, 1, 8, 8))
    m = create_model("vgg_small", num_classes=10, in_channels=1, input_size=8, width=4, activation=lambda: LSQ(2, 0.3))
    m.classifier[2] = nn.ReLU()
    with pytest.raises(SnnexitError, match=r"ReLU at 'classifier\.2'"):
        convert(m, "qffs")
    relu = nn.ReLU()
    shared = nn.Sequential(nn.Linear(4, 4), relu, nn.Linear(4, 4), relu, nn.Linear(4, 2))
    with pytest.raises(SnnexitError, match="used 2 times"):
        convert(shared, "max", calibration_data=torch.rand(8, 4))


# ---- the QCFS authors' checkpoints ----------------------------------------------------------

def their_vgg16_state(width, num_classes, thresh_key="thresh", seed=0):
    """A state_dict in the key layout of their VGG-16: every conv block is Conv, BN, IF,
    Dropout (indices 4k..4k+3) then AvgPool; classifier = Flatten, Linear, IF, Dropout, Linear,
    IF, Dropout, Linear."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    w = width
    stages = [[w, w], [2 * w, 2 * w], [4 * w] * 3, [8 * w] * 3, [8 * w] * 3]
    state, expected = {}, {}
    cin = 3
    for i, widths in enumerate(stages, start=1):
        for k, c in enumerate(widths):
            conv, bn, act = f"layer{i}.{4 * k}", f"layer{i}.{4 * k + 1}", f"layer{i}.{4 * k + 2}"
            state[f"{conv}.weight"], state[f"{conv}.bias"] = r(c, cin, 3, 3), r(c)
            state[f"{bn}.weight"], state[f"{bn}.bias"] = r(c), r(c)
            state[f"{bn}.running_mean"], state[f"{bn}.running_var"] = r(c), torch.rand(c, generator=g) + 0.5
            state[f"{bn}.num_batches_tracked"] = torch.tensor(7)
            state[f"{act}.{thresh_key}"] = torch.rand(1, generator=g) + 1
            cin = c
    hidden = 64 * w
    for idx, (fin, fout) in zip((1, 4, 7), ((8 * w, hidden), (hidden, hidden), (hidden, num_classes))):
        state[f"classifier.{idx}.weight"], state[f"classifier.{idx}.bias"] = r(fout, fin), r(fout)
        if idx < 7:
            state[f"classifier.{idx + 1}.{thresh_key}"] = torch.tensor([3.0 if idx == 1 else 5.0])
    return state


def test_import_new_repo_vgg16_checkpoint(tmp_path):
    state = their_vgg16_state(width=2, num_classes=10)
    path = tmp_path / "vgg16_cifar10.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # saved from DataParallel
    model = create_model("vgg16", num_classes=10, in_channels=3, input_size=32, width=2,
                         activation=lambda: QCFS(levels=8))
    load_qcfs_checkpoint(model, path)
    # our layout has no Dropout(0): layer1 = conv 0, bn 1, act 2, conv 3, bn 4, act 5, pool 6
    assert torch.equal(model.layer1[3].weight, state["layer1.4.weight"])
    assert torch.equal(model.layer3[7].running_var, state["layer3.9.running_var"])
    assert model.layer5[8].threshold.item() == state["layer5.10.thresh"].item()
    assert model.classifier[2].threshold.item() == 3.0 and model.classifier[4].threshold.item() == 5.0
    assert torch.equal(model.classifier[5].bias, state["classifier.7.bias"])


def their_resnet20_state(width, num_classes, seed=0):
    """Their older ResNet layout: thresholds in ``.up`` keys, the block activation named ``relu``."""
    ours = create_model("resnet20", num_classes=num_classes, in_channels=3, input_size=32, width=width,
                        activation=lambda: QCFS(levels=8))
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in ours.state_dict().items():
        key = key.replace(".act.", ".relu.").replace("threshold", "up")
        state[key] = torch.randn(value.shape, generator=g) if value.is_floating_point() else value
    return state


def test_import_old_repo_resnet20_checkpoint(tmp_path):
    state = their_resnet20_state(width=4, num_classes=10)
    assert "conv2_x.0.relu.up" in state
    model = create_model("resnet20", num_classes=10, in_channels=3, input_size=32, width=4,
                         activation=lambda: QCFS(levels=8))
    load_qcfs_checkpoint(model, state)
    assert model.conv2_x[0].act.threshold.item() == state["conv2_x.0.relu.up"].item()
    assert torch.equal(model.conv3_x[0].shortcut[0].weight, state["conv3_x.0.shortcut.0.weight"])
    assert torch.equal(model.fc.weight, state["fc.weight"])


def test_import_refuses_mismatches_and_code(tmp_path):
    state = their_vgg16_state(width=2, num_classes=10)
    model = create_model("vgg16", num_classes=100, in_channels=3, input_size=32, width=2,
                         activation=lambda: QCFS(levels=8))
    with pytest.raises(SnnexitError, match=r"classifier\.7\.weight.*shape"):
        load_qcfs_checkpoint(model, state)
    small = create_model("resnet20", num_classes=10, in_channels=3, input_size=32, width=4,
                         activation=lambda: QCFS(levels=8))
    with pytest.raises(SnnexitError, match=r"'layer1\.0\.weight' has shape \(2, 3, 3, 3\) but 'conv1\.0\.weight'"):
        load_qcfs_checkpoint(small, state)
    no_first_conv = {k: v for k, v in state.items() if not k.startswith("layer1.0.")}
    with pytest.raises(SnnexitError, match=r"module 'layer1\.1' is a batchnorm but model module 'layer1\.0' is a conv"):
        load_qcfs_checkpoint(create_model("vgg16", num_classes=10, in_channels=3, input_size=32, width=2,
                                          activation=lambda: QCFS(levels=8)), no_first_conv)

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, bad)
    with pytest.raises(SnnexitError, match="cannot load checkpoint"):
        load_qcfs_checkpoint(small, bad)


# ---- pipeline and CLI --------------------------------------------------------------------

@pytest.mark.parametrize("quantizer,converter,alpha", [("lsq", "qffs", 3), ("relu", "max", "T"), ("lsq", "qcfs", "T")])
def test_run_with_quantizer_and_converter(tmp_path, quantizer, converter, alpha):
    out = tmp_path / "out"
    bits = ["--bits", "2"] if quantizer == "lsq" else []  # --bits with another activation is refused as idle
    args = ["run", "--dataset", "digits", "--epochs", "2", "--T", "8", "--width", "4", "--no-progress",
            "--quantizer", quantizer, *bits, "--converter", converter, "--out", str(out),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["snn"]["converter"] == converter and r["config"]["quantizer"] == quantizer
    assert Trace.load(out / "trace_test.safetensors").meta["alpha"] == alpha


def test_run_config_rejects_unknown_quantizer_and_keys_the_cache():
    with pytest.raises(SnnexitError, match="Unknown quantizer 'lsqq'. Known: clip, lsq, qcfs, relu"):
        RunConfig(dataset="digits", quantizer="lsqq").validate()
    with pytest.raises(SnnexitError, match="bits"):
        RunConfig(dataset="digits", quantizer="lsq", bits=0).validate()
    keys = {RunConfig(quantizer=q, bits=b).train_key() for q, b in [("qcfs", 2), ("qcfs", 3), ("lsq", 2), ("lsq", 3)]}
    assert len(keys) == 3  # bits matter for LSQ only


def test_cache_key_changes_with_the_training_code_version(monkeypatch):
    before = pipeline.RunConfig().train_key()
    monkeypatch.setattr(pipeline, "TRAINING_CODE_VERSION", pipeline.TRAINING_CODE_VERSION + 1)
    assert pipeline.RunConfig().train_key() != before


def test_table_command_writes_markdown_and_json(tmp_path, capsys):
    out = tmp_path / "table"
    assert main(["table", "--datasets", "digits", "--models", "vgg_small", "--epochs", "2", "--width", "4",
                 "--T-qcfs", "8", "--T-qffs", "6", "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    md = (out / "table.md").read_text()
    assert "| digits | vgg_small | qffs | 2 | 6 | Dynamic Confidence |" in md
    assert "| digits | vgg_small | qcfs | 2 | 8 | oracle (upper bound) |" in md
    data = json.loads((out / "table.json").read_text())
    assert [c["converter"] for c in data["cells"]] == ["qcfs", "qffs"]
    assert len(data["verdicts"]) == 2 and all("digits / vgg_small" in v for v in data["verdicts"])
    assert main(["table", "--converters", "max", "--out", str(out)]) == 2  # a clear error, exit code 2
