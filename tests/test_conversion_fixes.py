"""Conversion fixes (snnexit.convert.fixes): the corrected neuron, each fix's promise checked against
an independent recomputation, the restriction to training inputs, saving and rebuilding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conformance_kinds import converted_network, inputs
from snnexit.convert import convert
from snnexit.convert.fixes import CONVERSION_FIXES, apply_conversion_fix, check_fix, restore_conversion_fix
from snnexit.convert.fixes.base import ann_activations, make_correctable
from snnexit.convert.fixes.step_bias import current_for_count
from snnexit.errors import SnnexitError
from snnexit.neurons.corrected import CorrectedIF
from snnexit.neurons.modules import IFNeuron
from snnexit.quant import QCFS
from snnexit.simulate import record_trace


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_qcfs_ann(seed: int = 0) -> nn.Sequential:
    """A QCFS CNN with real-valued (not dyadic) weights: no ties among potentials."""
    torch.manual_seed(seed)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), QCFS(4, 1.0), nn.AvgPool2d(2),
                        nn.Conv2d(4, 6, 3, padding=1), QCFS(4, 1.0), nn.Flatten(), nn.Linear(6 * 16, 12), QCFS(4, 1.0),
                        nn.Linear(12, 5))
    with torch.no_grad():
        for m in ann.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(2.0)
    return ann.eval()


def spikes_per_channel(snn, x: torch.Tensor, T: int, temporal: bool = False) -> dict[str, torch.Tensor]:
    """Per spiking layer: (T, C) spikes per channel at each step, summed over inputs and positions."""
    out = {}
    hooks = []
    for path, m in snn.spiking_layers():
        out[path] = []
        hooks.append(m.register_forward_hook(lambda mod, _a, y, p=path: out[p].append(
            (y / mod.threshold).transpose(0, 1).reshape(y.shape[1], -1).sum(1).double())))
    snn.reset()
    with torch.no_grad():
        for t in range(T):
            snn.step(x[:, t] if temporal else x)
    for h in hooks:
        h.remove()
    snn.reset()
    return {p: torch.stack(v) for p, v in out.items()}


def test_an_uncorrected_neuron_is_the_converted_if_neuron_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    theta = torch.tensor(0.75)
    plain, corrected = IFNeuron(theta, v_init=0.5), CorrectedIF.like(IFNeuron(theta, v_init=0.5))
    for _ in range(12):
        x = torch.randn(5, 3, 4, 4, generator=g)
        assert torch.equal(plain(x), corrected(x))
        assert torch.equal(plain.state.v, corrected.state.v)


def test_a_step_current_is_added_per_step_and_the_last_stays_on():
    """Closed form: one neuron, theta = 1, v(0) = 0, no input; currents 0.25, 0.5 then 0.75 for ever:
    v after each step (before firing) 0.25, 0.75, 1.5 -> spike, 0.5 + 0.75 = 1.25 -> spike, 1.0 -> spike, ..."""
    m = CorrectedIF(1.0, v_start=0.0, current=torch.tensor([[0.25], [0.5], [0.75]]))
    spikes = [int(m(torch.zeros(1, 1)).item()) for _ in range(6)]
    assert spikes == [0, 0, 1, 1, 1, 0]  # v: .25, .75, 1.5->.5, 1.25->.25, 1.0->0, .75
    assert m.steps_done == 6
    m.reset()
    assert m.steps_done == 0 and m.state is None


def test_compaction_keeps_the_step_and_the_chunk_gives_each_step_its_current():
    g = torch.Generator().manual_seed(1)
    current = torch.randn(4, 3, generator=g)
    a, b = CorrectedIF(1.0, 0.5, current), CorrectedIF(1.0, 0.5, current)
    xs = torch.randn(6, 8, 3, 2, 2, generator=g)  # (steps, N, C, H, W)
    step_out = [a(x) for x in xs[:3]]
    a.select(torch.tensor([0, 2, 5]))
    assert a.steps_done == 3
    step_out += [a(x[[0, 2, 5]]) for x in xs[3:]]
    b.chunk = 3
    chunk1 = b(xs[:3].reshape(24, 3, 2, 2)).reshape(3, 8, 3, 2, 2)
    b.select(torch.tensor([0, 2, 5]))
    chunk2 = b(xs[3:, [0, 2, 5]].reshape(9, 3, 2, 2)).reshape(3, 3, 3, 2, 2)
    assert all(torch.equal(s, c) for s, c in zip(step_out, [*chunk1, *chunk2]))


@pytest.mark.parametrize("seed", range(30))
def test_current_for_count_fires_the_nearest_reachable_count_with_the_least_current(seed):
    """Brute force over every boundary: the count fired, and that no smaller |b| fires it."""
    g = torch.Generator().manual_seed(seed)
    d = (torch.randint(-6, 7, (3, 9), generator=g).double() / 4)  # many ties
    k = torch.randint(0, 10, (3,), generator=g)
    b = current_for_count(d, k, theta=1.0)
    for row, want, cur in zip(d, k.tolist(), b.tolist()):
        reachable = sorted({0, *[(row <= v).sum().item() for v in row.tolist()]})
        best = min(reachable, key=lambda c: (abs(c - want), -c))
        best_alt = min(reachable, key=lambda c: (abs(c - want), c))
        fired = (row <= cur).sum().item()
        assert fired in (best, best_alt) and abs(fired - want) == abs(best - want)
        # the interval of currents that fire this count; the chosen current is its point nearest zero (within the margin)
        lo = row[row <= cur].max().item() if fired else -float("inf")
        hi = row[row > cur].min().item() if fired < len(row) else float("inf")
        nearest = min(max(0.0, lo), hi)
        assert abs(cur - nearest) <= 1 / 64 + 1e-12


def fitted(fix: str, temporal: bool = False, T: int = 6, n: int = 48, seed: int = 0):
    ann = small_qcfs_ann(seed)
    snn = convert(ann, "qcfs")
    g = torch.Generator().manual_seed(seed + 10)
    x = torch.rand((n, T, 1, 8, 8) if temporal else (n, 1, 8, 8), generator=g)
    report = apply_conversion_fix(snn, ann, fix, x, T, temporal=temporal)
    return ann, snn, x, report


def ftbc_condition_met(ann, snn, x: torch.Tensor, T: int, temporal: bool) -> float:
    """The share of (layer, channel, step) where FTBC's condition holds on ``snn`` to within half a
    spike (see the test below), recomputed from the ANN's activations and the network's spikes."""
    spikes = spikes_per_channel(snn, x, T, temporal)
    met = total = 0
    for path, m in snn.spiking_layers():
        for t in range(T):
            seen = x[:, :t + 1].mean(1) if temporal else x
            a = ann_activations(ann, [path], seen)[path].clamp(0, float(m.threshold))
            want = a.transpose(0, 1).reshape(a.shape[1], -1).sum(1).double() / float(m.threshold)
            gap = spikes[path][:t + 1].sum(0) - (t + 1) * want
            met, total = met + int((gap.abs() <= 0.5 + 1e-6).sum()), total + gap.numel()
    return met / total


@pytest.mark.parametrize("temporal", [False, True], ids=["static", "frames"])
def test_step_bias_meets_ftbc_condition_after_every_step(temporal):
    """After step t each channel has emitted t times the spikes per step that the ANN activation asks
    for (the ANN on the input, or on the mean of the frames seen so far), to within half a spike,
    recomputed here from the ANN's own activations and the fixed network's spikes. (Not everywhere
    with frames: the mean so far can ask for fewer spikes than were already emitted.)"""
    T = 6
    ann, snn, x, report = fitted("step_bias", temporal, T)
    assert ftbc_condition_met(ann, snn, x, T, temporal) >= (0.8 if temporal else 1.0)
    assert report.inputs == x.shape[0] and report.horizon == T and report.seconds >= 0
    assert snn.meta["conversion_fix"]["name"] == "step_bias"
    assert ftbc_condition_met(ann, convert(ann, "qcfs"), x, T, temporal) < 0.5  # without the fix


def test_fixes_declare_what_they_correct_and_refuse_the_rest():
    for name in CONVERSION_FIXES.names():
        fix = CONVERSION_FIXES.get(name)
        assert set(fix.converters) <= {"qcfs", "max", "robust"} and fix.reference
    check_fix("none", "qffs")
    with pytest.raises(SnnexitError, match="corrects networks of the qcfs, max, robust converters, not 'qffs'"):
        check_fix("step_bias", "qffs")
    with pytest.raises(SnnexitError, match="Unknown conversion fix 'ftbc'. Known: none, mean_bias, step_bias"):
        check_fix("ftbc", "qcfs")
    snn = convert(small_qcfs_ann(), "qffs")
    with pytest.raises(SnnexitError, match="not 'qffs'"):
        apply_conversion_fix(snn, small_qcfs_ann(), "step_bias", torch.rand(4, 1, 8, 8), 4)


def test_a_fixed_network_rebuilds_from_its_state_exactly():
    _, snn, x, _ = fitted("step_bias")
    state = snn.state_dict()
    again = restore_conversion_fix(convert(small_qcfs_ann(), "qcfs"), state)
    again.load_state_dict(state)
    a, b = record_trace(snn, [(x, None)], T=9), record_trace(again, [(x, None)], T=9)
    assert torch.equal(a.outputs, b.outputs) and torch.equal(a.spikes, b.spikes)
    plain = convert(small_qcfs_ann(), "qcfs")
    assert restore_conversion_fix(plain, plain.state_dict()) is plain  # no fix: nothing to restore
    assert not any(isinstance(m, CorrectedIF) for _, m in plain.spiking_layers())


def test_a_fix_corrects_only_soft_reset_if_layers():
    ann, snn = converted_network("qffs", "lsq", torch.float32, 0)
    with pytest.raises(SnnexitError, match="soft-reset IF neurons only"):
        make_correctable(snn)


# ---- in a run -------------------------------------------------------------------------------------------------
RUN_CONFIG = """
dataset = "digits"
epochs = 2
T = 6
width = 8
progress = false
conversion_fix = "step_bias"
conversion_fix_inputs = 64
"""


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory):
    from snnexit.cli import main

    tmp = tmp_path_factory.mktemp("fixed")
    config = tmp / "config.toml"
    config.write_text(f'cache_dir = "{tmp / "cache"}"\n' + RUN_CONFIG)
    out = tmp / "run"
    assert main(["run", "--config", str(config), "--out", str(out)]) == 0
    return {"out": out, "config": config, "tmp": tmp}


def test_a_run_reports_its_fix_and_rebuilds_the_fixed_network(fixed_run):
    import json

    from snnexit.runs.artifacts import SNN_FILE, load_converted
    from snnexit.simulate import Trace

    results = json.loads((fixed_run["out"] / "results.json").read_text())
    fix = results["snn"]["conversion_fix"]
    assert fix["name"] == "step_bias" and fix["inputs"] == 64 and fix["horizon"] == 6 and fix["seconds"] > 0
    snn, meta = load_converted(fixed_run["out"] / SNN_FILE)
    assert all(isinstance(m, CorrectedIF) and m.current.shape[0] == 6 for _, m in snn.spiking_layers())
    test = Trace.load(fixed_run["out"] / "trace_test.safetensors")
    from snnexit.data import load_dataset

    data = load_dataset("digits", 0)
    again = record_trace(snn, data.test.batches(250), T=6)
    assert torch.equal(again.outputs, test.outputs) and snn.meta["network"] == test.meta["network"]


def test_stages_refuse_files_of_another_fix(fixed_run, capsys):
    """A flag naming another fix contradicts the folder (refused before any work); a file made with
    another fix than the settings say is refused by the folder itself (a copied or stale file)."""
    import dataclasses
    import json

    from snnexit.cli import main
    from snnexit.runs.artifacts import RunFolder, run_config_from

    for stage in ("trace", "fit"):
        capsys.readouterr()
        code = main([stage, "--config", str(fixed_run["config"]), "--out", str(fixed_run["out"]), "--conversion-fix",
                     "none"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "conversion_fix = 'step_bias'" in err[0], err
    stored = run_config_from(json.loads((fixed_run["out"] / "config.run.json").read_text()))
    unfixed = dataclasses.replace(stored, conversion_fix="none")
    folder = RunFolder(fixed_run["out"])
    with pytest.raises(SnnexitError, match=r"trace_val.safetensors was traced with conversion fix step_bias "
                                           r"\(inputs 64, horizon 6\), this config says none"):
        folder.load_trace("trace_val.safetensors", unfixed)
    with pytest.raises(SnnexitError, match=r"snn.safetensors has conversion fix step_bias \(inputs 64, horizon 6\), "
                                           r"this config says none"):
        folder.snn_meta(unfixed)


def test_a_fixed_run_is_not_exported_to_nir(fixed_run):
    from snnexit.runs.exportable import exportable_snn

    with pytest.raises(SnnexitError, match="conversion fix 'step_bias'.*NIR cannot express"):
        exportable_snn(fixed_run["out"], cache_dir=str(fixed_run["tmp"] / "cache"))


def test_a_fix_that_does_not_apply_is_refused_before_training(tmp_path, capsys):
    from snnexit.cli import main

    code = main(["run", "--dataset", "digits", "--converter", "qffs", "--quantizer", "lsq", "--conversion-fix",
                 "step_bias", "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not 'qffs'" in err[0]
    assert not (tmp_path / "c").exists()  # nothing was trained


def test_a_fix_fits_on_training_inputs_only():
    from snnexit.data import load_dataset
    from snnexit.runs.network import fix_inputs
    from snnexit.runs.settings import RunConfig

    data = load_dataset("digits", 3)
    x = fix_inputs(RunConfig(dataset="digits", seed=3, conversion_fix_inputs=100), data)
    assert x.shape[0] == 100
    rows = {tuple(r.flatten().tolist()) for r in data.train.x}
    assert all(tuple(r.flatten().tolist()) in rows for r in x)
    others = {tuple(r.flatten().tolist()) for split in (data.val, data.test) for r in split.x} - rows
    assert not any(tuple(r.flatten().tolist()) in others for r in x)
    assert torch.equal(x, fix_inputs(RunConfig(dataset="digits", seed=3, conversion_fix_inputs=100), data))  # seeded


# ---- event data: what the ANN trains on ------------------------------------------------------------------------
def test_prefix_means_are_the_means_of_the_first_k_frames():
    from snnexit.data.transforms import PrefixMeans

    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 7, 2, 3, 3, generator=g)
    out = PrefixMeans()(x, torch.Generator().manual_seed(5))
    k = torch.randint(1, 8, (50,), generator=torch.Generator().manual_seed(5))  # the same draw
    for i in range(50):
        assert torch.allclose(out[i], x[i, :k[i]].mean(0), atol=1e-6)
    assert set(k.tolist()) == set(range(1, 8))  # every prefix length occurs
    with pytest.raises(SnnexitError, match="expected float event frames"):
        PrefixMeans()(torch.zeros(2, 3, dtype=torch.long), g)


def test_the_event_ann_trains_on_prefix_means_under_its_own_cache_key():
    from snnexit.data.splits import DataSplits, Split
    from snnexit.data.transforms import PrefixMeans
    from snnexit.runs.ann import ann_training_split
    from snnexit.runs.settings import RunConfig

    frames = torch.rand(12, 4, 2, 5, 5)
    data = DataSplits("event_mnist", Split(frames, torch.arange(12) % 3), Split(frames[:3], torch.arange(3)),
                      Split(frames[:3], torch.arange(3)), 3)
    data.temporal = True
    split, augment = ann_training_split(data, RunConfig(dataset="event_mnist"))
    assert split.x.shape == frames.shape and isinstance(augment, PrefixMeans)
    split, augment = ann_training_split(data, RunConfig(dataset="event_mnist", ann_event_input="mean_frame"))
    assert torch.equal(split.x, frames.mean(1)) and augment is None
    key = lambda **kw: RunConfig(**kw).train_key()  # noqa: E731
    assert key(dataset="event_mnist") != key(dataset="event_mnist", ann_event_input="mean_frame")
    assert key(dataset="digits") == key(dataset="digits", ann_event_input="mean_frame")  # static data: no change
    with pytest.raises(SnnexitError, match="Unknown ann_event_input 'sum'. Known: prefix_means, mean_frame"):
        RunConfig(ann_event_input="sum").validate()


def test_nir_export_refuses_a_fixed_network():
    from snnexit.nir.export import to_nir

    _, snn, _, _ = fitted("step_bias")
    with pytest.raises(SnnexitError, match="conversion fix gave it an input current per step"):
        to_nir(snn, (1, 8, 8))


def test_measured_rate_errors_are_the_rms_of_the_rate_code_against_the_ann():
    """``measure=True`` reports each layer's error before and after, at steps 1, 2, 4, ..., T;
    recomputed here by brute force from every step's outputs."""
    T = 6
    ann = small_qcfs_ann(1)
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    plain, snn = convert(ann, "qcfs"), convert(ann, "qcfs")
    report = apply_conversion_fix(snn, ann, "step_bias", x, T, measure=True)
    errors = report.facts["errors"]
    assert errors["steps"] == [1, 2, 4, 6]

    def brute(net):
        out = {}
        for path, m in net.spiking_layers():
            outs = []
            h = m.register_forward_hook(lambda _m, _a, y: outs.append(y.double()))
            net.reset()
            with torch.no_grad():
                for _ in range(T):
                    net.step(x)
            h.remove()
            a = ann_activations(ann, [path], x)[path].clamp(0, float(m.threshold)).double()
            cum = torch.cumsum(torch.stack(outs), 0)
            out[path] = [float(((cum[t - 1] / t - a) / float(m.threshold)).pow(2).mean().sqrt()) for t in (1, 2, 4, 6)]
        return out

    want_before, want_after = brute(plain), brute(snn)
    for row in errors["layers"]:
        assert row["rms_error_before"] == pytest.approx(want_before[row["layer"]], abs=1e-5)
        assert row["rms_error_after"] == pytest.approx(want_after[row["layer"]], abs=1e-5)


def first_layer_mean_gap(ann, snn, x: torch.Tensor, T: int, temporal: bool) -> float:
    """Sum over the first spiking layer's channels of |mean output over T steps - mean ANN activation|
    (the ANN on the mean frame for frames): what mean_bias corrects."""
    path, m = snn.spiking_layers()[0]
    a = ann_activations(ann, [path], x.mean(1) if temporal else x)[path].clamp(0, float(m.threshold))
    want = a.transpose(0, 1).reshape(a.shape[1], -1).mean(1).double()
    got = spikes_per_channel(snn, x, T, temporal)[path].sum(0) * float(m.threshold) / (a[0, 0].numel() * a.shape[0] * T)
    return float((got - want).abs().sum())


PROMISES = {  # fix -> (how far the network is from what the fix promises: smaller is better, the bound it meets)
    "step_bias": lambda ann, snn, x, T, temporal: 1 - ftbc_condition_met(ann, snn, x, T, temporal),
    "mean_bias": first_layer_mean_gap,
}


def test_every_registered_fix_has_its_promise_checked():
    assert set(PROMISES) == set(CONVERSION_FIXES.names())


@pytest.mark.parametrize("fix", CONVERSION_FIXES.names())
@pytest.mark.parametrize("converter", ["qcfs", "max", "robust"])
@pytest.mark.parametrize("temporal", [False, True], ids=["static", "frames"])
def test_every_fix_corrects_every_converter_it_declares_on_images_and_frames(fix, converter, temporal):
    """Each fix on each converter it declares, on static inputs and on frames: its layers carry one
    current per step (per_step) or one constant current per channel, and the network is nearer
    what the fix promises (PROMISES) than without it."""
    if converter not in CONVERSION_FIXES.get(fix).converters:
        pytest.skip(f"{fix} does not declare {converter}")
    torch.manual_seed(5)
    act = (lambda: QCFS(4, 1.0)) if converter == "qcfs" else nn.ReLU
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), act(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 8), act(),
                        nn.Linear(8, 5)).eval()
    T = 5
    x = torch.rand((64, T, 1, 8, 8) if temporal else (64, 1, 8, 8), generator=torch.Generator().manual_seed(6))
    kwargs = {} if converter == "qcfs" else {"calibration_data": x.mean(1) if temporal else x}
    snn, plain = convert(ann, converter, **kwargs), convert(ann, converter, **kwargs)
    apply_conversion_fix(snn, ann, fix, x, T, temporal=temporal)
    rows = T if CONVERSION_FIXES.get(fix).per_step else 1
    assert all(isinstance(m, CorrectedIF) and m.current.shape[0] == rows for _, m in snn.spiking_layers())
    make_correctable(plain)
    assert PROMISES[fix](ann, snn, x, T, temporal) < PROMISES[fix](ann, plain, x, T, temporal)
    assert torch.isfinite(record_trace(snn, [(x, None)], T=T, temporal=temporal).outputs).all()
