"""Trainable IF/LIF neurons (golden trajectories, SpikingJelly), direct BPTT training, fine-tuning a
converted network, and traces of trained SNNs under every exit policy (online == offline)."""

import json

import pytest
import torch

from snnexit.cli import main
from snnexit.convert import convert
from snnexit.data import load_dataset
from snnexit.errors import SnnexitError
from snnexit.exit import POLICIES, create_policy
from snnexit.models import create_model
from snnexit.neurons import IFNeuron, IFState, NeuronParams, TrainableIF, TrainableLIF, if_step, lif_step
from snnexit.neurons.surrogate import Sigmoid
from snnexit.quant import QCFS
from snnexit.simulate import Trace, record_trace
from snnexit.runtime.engine import EarlyExitEngine
from snnexit.train import direct as direct_mod
from snnexit.train import load_checkpoint
from snnexit.train.direct import (DirectConfig, build_direct_snn, run_steps, snn_loss, train_snn,
                                  trainable_from_converted)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These networks are tiny: on a loaded 2-core machine, intra-op threads only add contention
    (measured: the training fixture took 86 s with 2 threads, 4 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(step, xs, p, v0=0.0):
    state = IFState(torch.full_like(xs[0], v0))
    spikes, vs = [], []
    for x in xs:
        s, state = step(x, state, p)
        spikes.append(s)
        vs.append(state.v)
    return torch.stack(spikes), torch.stack(vs)


# ---- golden trajectories ---------------------------------------------------------------------
def test_if_golden_trajectory_fires_at_4_8_12():
    s, v = run(if_step, torch.full((12, 1), 0.25, dtype=torch.float64), NeuronParams(threshold=1.0))
    assert torch.nonzero(s[:, 0]).flatten().add(1).tolist() == [4, 8, 12]
    assert v[-1].item() == 0.0


def test_if_hard_reset_drops_the_excess():
    p = NeuronParams(threshold=1.0, reset="hard", v_reset=-0.5)
    s, v = run(if_step, torch.tensor([[1.75], [0.5]], dtype=torch.float64), p)
    assert s[:, 0].tolist() == [1.0, 0.0] and v[:, 0].tolist() == [-0.5, 0.0]


def test_lif_golden_trajectory_hard_and_soft():
    # tau = 2, decay_input: h = v + (x - v) / 2 with x = 1.5: h1 = 0.75, h2 = 1.125 (fire) ...
    x = torch.full((6, 1), 1.5, dtype=torch.float64)
    s, v = run(lif_step, x, NeuronParams(threshold=1.0, reset="hard", tau=2.0))
    assert s[:, 0].tolist() == [0, 1, 0, 1, 0, 1]
    assert v[:, 0].tolist() == [0.75, 0.0, 0.75, 0.0, 0.75, 0.0]
    s, v = run(lif_step, x, NeuronParams(threshold=1.0, reset="soft", tau=2.0))
    # soft: v2 = 0.125, h3 = 0.8125, h4 = 1.15625 -> 0.15625, h5 = 0.828125, h6 = 1.1640625 -> 0.1640625
    assert s[:, 0].tolist() == [0, 1, 0, 1, 0, 1]
    assert v[:, 0].tolist() == [0.75, 0.125, 0.8125, 0.15625, 0.828125, 0.1640625]
    # decay_input=False: h = v - v / 2 + x: 1.5 fires at once
    s, v = run(lif_step, x[:2], NeuronParams(threshold=1.0, reset="hard", tau=2.0, decay_input=False))
    assert s[:, 0].tolist() == [1, 1] and v[:, 0].tolist() == [0.0, 0.0]


# ---- SpikingJelly as an independent reference --------------------------------------------------
CASES = [
    ("if", dict(reset="soft"), dict(v_reset=None)),
    ("if", dict(reset="hard"), dict(v_reset=0.0)),
    ("lif", dict(reset="soft", tau=2.0), dict(v_reset=None, tau=2.0)),
    ("lif", dict(reset="hard", tau=3.0), dict(v_reset=0.0, tau=3.0)),
    ("lif", dict(reset="hard", tau=2.0, decay_input=False), dict(v_reset=0.0, tau=2.0, decay_input=False)),
]


@pytest.mark.parametrize("kind,ours_kw,sj_kw", CASES)
def test_forward_and_gradients_match_spikingjelly(kind, ours_kw, sj_kw):
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    torch.manual_seed(3)
    x = (torch.randn(20, 4, 16, dtype=torch.float64) * 1.2 + 0.4).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    ours = (TrainableIF if kind == "if" else TrainableLIF)(surrogate=Sigmoid(4.0), **ours_kw)
    Ref = sj_neuron.IFNode if kind == "if" else sj_neuron.LIFNode
    ref = Ref(v_threshold=1.0, surrogate_function=sj_surrogate.Sigmoid(alpha=4.0), step_mode="s", **sj_kw)
    got = torch.stack([ours(xt) for xt in x])
    expected = torch.stack([ref(xt) for xt in x_ref])
    assert torch.equal(got.detach(), expected.detach())
    torch.testing.assert_close(ours.state.v.detach(), ref.v.detach())
    weights = torch.rand_like(got)
    (got * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_module_records_history_and_selects_inputs():
    n = TrainableLIF(threshold=2.0)
    n.record_history = True
    for _ in range(3):
        out = n(torch.ones(5, 4) * 3)
    s, v = n.stacked_history()
    assert s.shape == v.shape == (3, 5, 4)
    assert torch.equal(out, s[-1] * 2.0)  # spikes carry amplitude theta
    n.select(torch.tensor([0, 3]))
    assert n.state.v.shape == (2, 4)
    n.reset()
    assert n.history == [] and n.state is None


def test_bad_neuron_settings_are_refused():
    with pytest.raises(SnnexitError, match="Unknown reset 'zero'. Known: hard, soft"):
        TrainableIF(reset="zero")
    with pytest.raises(SnnexitError, match="tau must be >= 1"):
        TrainableLIF(tau=0.5)
    with pytest.raises(SnnexitError, match="threshold"):
        TrainableIF(threshold=0.0)
    with pytest.raises(SnnexitError, match="Unknown neuron 'izh'"):
        build_direct_snn("vgg_small", num_classes=10, in_channels=1, input_size=8, neuron="izh")
    with pytest.raises(SnnexitError, match="Unknown loss 'mse'"):
        DirectConfig(loss="mse").validate()


# ---- direct training end to end ----------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def tiny_snn(neuron="lif", reset="soft", width=4):
    return build_direct_snn("vgg_small", num_classes=10, in_channels=1, input_size=8, width=width,
                            neuron=neuron, reset=reset, seed=0)


@pytest.fixture(scope="module")
def trained(digits):
    # IF neurons learn faster than LIF at T = 4 on 8x8 digits (measured: 92% vs 61% after 8 epochs)
    snn = train_snn(tiny_snn("if", width=8), digits.train, DirectConfig(T=4, epochs=6, reg_weight=0.1),
                    progress=False)
    val = record_trace(snn, digits.val.batches(200), T=4)
    test = record_trace(snn, digits.test.batches(200), T=4)
    return snn, val, test


def test_direct_training_learns_and_gives_a_valid_trace(trained, digits):
    snn, val, test = trained
    assert test.outputs.shape == (4, len(digits.test), 10) and test.spikes.shape[2] == 5
    assert test.meta["converter"] == "direct" and test.meta["alpha"] == "T"
    assert test.accuracy_per_step()[-1] > 0.6  # chance is 0.1
    assert test.spikes.sum() > 0
    test.validate()


@pytest.mark.parametrize("name", POLICIES.names())
def test_every_policy_works_on_a_direct_trace_online_as_offline(trained, digits, name):
    snn, val, test = trained
    policy = create_policy(name)
    if policy.needs_fit:
        policy.fit(val)
    result = policy.evaluate(test)
    steps = policy.exit_steps(test)
    assert steps.min() >= 1 and steps.max() <= 4 and 0 <= result["test_acc"] <= 1
    if not getattr(policy, "online", True):
        return  # offline-only bound (oracle_stable looks at future steps)
    online = EarlyExitEngine(snn, policy, T=4).run(digits.test.x, labels=digits.test.y)
    assert torch.equal(online.exit_steps, steps)
    assert torch.equal(online.predictions, policy.predict(test))


@pytest.mark.parametrize("temporal", [False, True])
def test_multi_step_equals_step_by_step_in_eval_mode(digits, temporal):
    snn = tiny_snn("lif", "hard").eval()
    with torch.no_grad():  # give BatchNorm non-trivial statistics
        for m in snn.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 0.5)
    x = digits.test.x[:32]
    if temporal:
        x = torch.stack([x, x.flip(-1), x * 0.5, x.flip(-2)], 1)  # (N, 4, C, H, W): frames differ
    with torch.no_grad():
        many = run_steps(snn, x, 4, temporal)
        one = run_steps(snn, x, 4, temporal, multi_step=False)
        trace = record_trace(snn, [(x, digits.test.y[:32])], T=4, temporal=temporal)
    assert many.abs().sum() > 0
    torch.testing.assert_close(many, one, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(many.cumsum(0), trace.outputs, rtol=1e-5, atol=1e-5)


def test_temporal_inputs_and_hard_reset_if(digits):
    x = digits.train.x[:64].unsqueeze(1).repeat(1, 3, 1, 1, 1)  # (N, T, C, H, W)
    snn = tiny_snn("if", "hard")
    loss, task, reg, out = snn_loss(snn, x, digits.train.y[:64], DirectConfig(T=3, reg_weight=0.5), temporal=True)
    loss.backward()
    assert out.shape == (3, 64, 10) and reg.item() >= 1.0
    assert all(p.grad is not None for p in snn.parameters() if p.requires_grad)
    with pytest.raises(SnnexitError, match="pass temporal=True"):
        snn_loss(snn, x, digits.train.y[:64], DirectConfig(T=3))


def test_resume_after_interruption_equals_uninterrupted(digits, tmp_path, monkeypatch):
    config = DirectConfig(T=2, epochs=2, batch_size=256, reg_weight=0.1, seed=3)
    reference = train_snn(tiny_snn(), digits.train, config, checkpoint=tmp_path / "a.pt", progress=False)
    real_save = direct_mod.save_checkpoint

    def crash_after_first_epoch(path, state):
        real_save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(direct_mod, "save_checkpoint", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_snn(tiny_snn(), digits.train, config, checkpoint=tmp_path / "b.pt", progress=False)
    monkeypatch.setattr(direct_mod, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 1
    resumed = train_snn(tiny_snn(), digits.train, config, checkpoint=tmp_path / "b.pt", progress=False)
    for (k, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(SnnexitError, match="other settings"):
        train_snn(tiny_snn(), digits.train, DirectConfig(T=2, epochs=2, seed=4), checkpoint=tmp_path / "b.pt",
                  progress=False)


# ---- fine-tuning a converted QCFS network --------------------------------------------------------
def test_converted_network_keeps_thresholds_and_outputs_then_finetunes(digits):
    torch.manual_seed(0)
    ann = create_model("vgg_small", num_classes=10, in_channels=1, input_size=8, width=4,
                       activation=lambda: QCFS(4, 1.0))
    with torch.no_grad():
        for i, m in enumerate(m for m in ann.modules() if isinstance(m, QCFS)):
            m.threshold.fill_(0.5 + 0.25 * i)  # distinct thresholds, so dropping one would show
    ann.eval()
    snn = convert(ann, "qcfs")
    trainable = trainable_from_converted(snn)
    before = [float(m.threshold) for _, m in snn.spiking_layers()]
    assert [float(m.threshold) for _, m in trainable.spiking_layers()] == before
    assert all(isinstance(m, TrainableIF) and m.v_init == 0.5 for _, m in trainable.spiking_layers())
    ref = record_trace(snn, digits.test.batches(200), T=6)
    got = record_trace(trainable, digits.test.batches(200), T=6)
    assert torch.equal(ref.outputs, got.outputs) and torch.equal(ref.spikes, got.spikes)

    params = [p.detach().clone() for p in trainable.parameters()]
    bn = next(m for m in trainable.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean.clone()
    train_snn(trainable, digits.train, DirectConfig(T=4, epochs=1, loss="mean", reg_weight=0.1, freeze_bn=True,
                                                    lr=1e-3, batch_size=256), progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(params, trainable.parameters()))
    assert torch.equal(bn, next(m for m in trainable.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean)
    assert [float(m.threshold) for _, m in trainable.spiking_layers()] == before
    assert isinstance(next(m for _, m in snn.spiking_layers()), IFNeuron)  # the original is untouched
    with pytest.raises(SnnexitError, match="no IFNeuron"):
        trainable_from_converted(trainable)


# ---- command line ------------------------------------------------------------------------------
def test_cli_cutoff_train_single_run_and_table(tmp_path, capsys):
    common = ["--dataset", "digits", "--neuron", "if", "--T", "3", "--no-progress"]
    assert main(["cutoff-train", *common, "--epochs", "1", "--reg-weight", "0.1", "--out", str(tmp_path / "a")]) == 0
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert sorted(results["policies"]) == POLICIES.names() and results["settings"]["reg_weight"] == 0.1
    trace = Trace.load(tmp_path / "a" / "trace_test.safetensors")
    assert trace.T == 3 and trace.meta["converter"] == "direct" and trace.meta["temperature"] > 0

    assert main(["cutoff-train", *common, "--table", "--epochs", "1", "--finetune-epochs", "1",
                 "--reg-weight", "0.5", "--out", str(tmp_path / "b")]) == 0
    table = json.loads((tmp_path / "b" / "table.json").read_text())
    assert [r["reg_weight"] for r in table["rows"]] == [0.0, 0.5]
    assert all(1 <= r["topk_mean_steps"] <= 3 and 1 <= r["oracle_mean_steps"] <= 3 for r in table["rows"])
    assert "| rcs a=0.5 | 0.5 |" in (tmp_path / "b" / "table.md").read_text()
    capsys.readouterr()

    assert main(["cutoff-train", *common, "--neuron", "izh", "--out", str(tmp_path / "c")]) == 2
    assert "Unknown neuron 'izh'" in capsys.readouterr().err
    assert main(["cutoff-train", *common, "--reg-weight", "0.1,0.2", "--out", str(tmp_path / "c")]) == 2
    assert "one number without --table" in capsys.readouterr().err
    assert main(["cutoff-train", "--dataset", "digits", "--init", "converted", "--dataset", "event_mnist",
                 "--out", str(tmp_path / "c")]) == 2
    assert "static data set" in capsys.readouterr().err


def test_cli_finetunes_a_converted_network(tmp_path):
    assert main(["cutoff-train", "--dataset", "digits", "--init", "converted", "--ann-epochs", "2",
                 "--finetune-epochs", "1", "--T", "4", "--reg-weight", "0.1", "--loss", "mean", "--no-progress",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["settings"]["init"] == "converted"
    trace = Trace.load(tmp_path / "run" / "trace_val.safetensors")
    assert trace.meta["converter"] == "qcfs" and trace.meta["finetuned"] is True
