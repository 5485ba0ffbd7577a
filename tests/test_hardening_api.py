"""Every bad input a clear error: event files that are not what they claim, data folders whose
splits end up empty, a data folder for a built-in data set, engine inputs of the wrong shape,
dtype or with NaN, policy thresholds outside the score's range, fits on a single input, hand-edited
policy records, converters that would build no spiking layer, quantizer settings, model sizes.

Valid files are written byte for byte with struct (independently of the readers)."""

from __future__ import annotations

import copy
import math
import re
import struct

import numpy as np
import pytest
import torch
from torch import nn

from conftest import random_trace
from snnexit.data import DATASETS, is_built_in, load_dataset
from snnexit.data.events import parse_aedat31, parse_cifar10_dvs, parse_ncaltech101
from snnexit.errors import SnnexitError
from snnexit.convert import CONVERTERS, convert
from snnexit.exit import POLICIES, DynamicConfidence, FixedT, ThresholdPolicy, create_policy, policy_from_dict
from snnexit.exit.certify import certify_exit
from snnexit.models import MODELS, create_model, parameter_count
from snnexit.neurons import IFNeuron
from snnexit.quant import LSQ, QCFS, QUANTIZERS
from snnexit.runtime import ChunkedEngine, EarlyExitEngine
from snnexit.simulate import SpikingNetwork, record_trace, simulate_batch
from snnexit.simulate.trace import Trace
from snnexit.simulate.inputs import all_finite

AEDAT2_HEADER = b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n# Timestamps tick is 1 us\r\n"
AEDAT31_HEADER = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"


# ---------------------------------------------------------------- event files
def aedat2(events) -> bytes:
    """CIFAR10-DVS AEDAT 2.0: big-endian (address, timestamp); x = 127 - bits 8-14, y = 127 - bits 1-7."""
    return AEDAT2_HEADER + b"".join(struct.pack(">II", ((127 - x) << 8) | ((127 - y) << 1) | (1 - p), t)
                                    for x, y, t, p in events)


def aedat31(events, size=8, ts_offset=4, header=AEDAT31_HEADER) -> bytes:
    """One polarity packet (type 1) of AEDAT 3.1: word = x << 17 | y << 2 | p << 1 | valid, then int32 t."""
    body = b"".join(struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | 1, t) for x, y, t, p in events)
    n = len(events)
    return header + struct.pack("<HHIIIIII", 1, 1, size, ts_offset, 0, n, n, n) + body


def ncaltech(events) -> bytes:
    """N-Caltech101 .bin: 40-bit records x, y, p << 7 | t >> 16, t >> 8, t (big-endian 23-bit t)."""
    return b"".join(bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF]) for x, y, t, p in events)


def ordered_events(n, W=128, H=128, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 2 ** 22, n))
    return [(int(rng.integers(0, W)), int(rng.integers(0, H)), int(t[i]), int(rng.integers(0, 2))) for i in range(n)]


READERS = {"aedat2": (parse_cifar10_dvs, aedat2, (128, 128)), "aedat31": (parse_aedat31, aedat31, (128, 128)),
           "bin": (parse_ncaltech101, ncaltech, (180, 240))}


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_valid_files_read_back(fmt, tmp_path):
    parse, encode, (H, W) = READERS[fmt]
    events = ordered_events(50, W, H)
    path = tmp_path / "rec"
    path.write_bytes(encode(events))
    got = parse(path)
    assert [tuple(e) for e in got.tolist()] == events


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_a_few_out_of_order_timestamps_are_a_recording(fmt):
    """Sensors deliver a rare event out of order: 2 of 99 steps back in time are accepted."""
    parse, encode, (H, W) = READERS[fmt]
    events = ordered_events(100, W, H, seed=1)
    for i in (30, 70):
        events[i], events[i + 1] = events[i + 1], events[i]
    got = parse(encode(events))
    assert got["t"].tolist() == [e[2] for e in events]


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_empty_file_is_refused_naming_it(fmt, tmp_path):
    parse = READERS[fmt][0]
    path = tmp_path / f"empty_{fmt}.dat"
    path.write_bytes(b"")
    with pytest.raises(SnnexitError, match=f"empty_{fmt}.dat: empty file"):
        parse(path)


def test_random_bytes_are_not_events(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path = tmp_path / "noise.aedat"
    path.write_bytes(noise)
    with pytest.raises(SnnexitError, match=r"noise.aedat: not an AEDAT 2.0 file: it must start with the line"):
        parse_cifar10_dvs(path)
    with pytest.raises(SnnexitError, match="not an AEDAT 3.1 file"):
        parse_aedat31(path)
    # behind a valid header, 375 "events" of noise go back in time about every other event
    with pytest.raises(SnnexitError, match=r"timestamps go back in time at \d+ of 374 consecutive events"):
        parse_cifar10_dvs(AEDAT2_HEADER + noise)
    with pytest.raises(SnnexitError, match="outside the 240x180"):  # x or y beyond the sensor
        parse_ncaltech101(noise)


def test_headers_versions_and_record_sizes():
    events = ordered_events(5)
    with pytest.raises(SnnexitError, match="AEDAT version '3.1', expected 2.0"):
        parse_cifar10_dvs(AEDAT31_HEADER + aedat2(events)[len(AEDAT2_HEADER):])
    with pytest.raises(SnnexitError, match="AEDAT version '2.0', expected 3.1"):
        parse_aedat31(aedat31(events, header=AEDAT2_HEADER))
    with pytest.raises(SnnexitError, match="no '#!END-HEADER' line"):
        parse_aedat31(aedat31(events, header=b"#!AER-DAT3.1\r\n#Format: RAW\r\n"))
    with pytest.raises(SnnexitError, match="eventSize 12 and eventTSOffset 4"):
        parse_aedat31(aedat31(events, size=12) + b"\0" * 4 * len(events))
    with pytest.raises(SnnexitError, match="eventCapacity 3 but eventSize 0"):
        parse_aedat31(AEDAT31_HEADER + struct.pack("<HHIIIIII", 2, 1, 0, 4, 0, 3, 0, 0) + aedat31(events)[len(AEDAT31_HEADER):])
    with pytest.raises(SnnexitError, match="not a multiple of 8"):
        parse_cifar10_dvs(aedat2(events)[:-3])
    with pytest.raises(SnnexitError, match="not a multiple of 5"):
        parse_ncaltech101(ncaltech(events)[:-1])
    with pytest.raises(SnnexitError, match="no events"):  # header only
        parse_cifar10_dvs(AEDAT2_HEADER)
    with pytest.raises(SnnexitError, match="no events"):  # overflow markers only (y = 240)
        parse_ncaltech101(bytes([0, 240, 0, 0, 0]) * 3)


def test_coordinates_outside_the_sensor():
    with pytest.raises(SnnexitError, match=r"1 of 3 events lie outside the 128x128 .*x = 200, y = 5"):
        parse_aedat31(aedat31([(1, 1, 10, 1), (200, 5, 20, 0), (3, 3, 30, 1)]))
    with pytest.raises(SnnexitError, match=r"outside the 240x180 .*x = 7, y = 181"):
        parse_ncaltech101(ncaltech([(1, 1, 10, 1), (7, 181, 20, 0)]))
    # the same files read with the sensor check off (another sensor's recording)
    assert len(parse_aedat31(aedat31([(1, 1, 10, 1), (200, 5, 20, 0)]), sensor_size=None)) == 2


def test_timestamps_running_backwards():
    backwards = [(1, 1, 1000 - 10 * i, 0) for i in range(20)]
    for parse, encode, _ in READERS.values():
        with pytest.raises(SnnexitError, match="timestamps go back in time at 19 of 19"):
            parse(encode(backwards))


# ---------------------------------------------------------------- event folders
def test_garbage_and_empty_files_in_data_folders_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNEXIT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    root = tmp_path / "dvs"
    for cls in ("airplane", "cat"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.aedat").write_bytes(aedat2(ordered_events(20, seed=i)))
    (root / "cat" / "junk.aedat").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(SnnexitError, match="junk.aedat: not an AEDAT 2.0 file"):
        load_dataset("cifar10_dvs", 0, str(root))
    cal = tmp_path / "Caltech101"
    for cls in ("anchor", "ant"):
        (cal / cls).mkdir(parents=True)
        for i in range(3):
            (cal / cls / f"image_{i}.bin").write_bytes(ncaltech(ordered_events(20, 240, 180, seed=i)))
    (cal / "ant" / "image_9.bin").write_bytes(b"")
    with pytest.raises(SnnexitError, match="image_9.bin: empty file"):
        load_dataset("ncaltech101", 0, str(cal))


def test_a_folder_whose_splits_end_up_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNEXIT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "dvs"
    counts = {"airplane": 3, "cat": 2}
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            (root / cls / f"{i}.aedat").write_bytes(aedat2(ordered_events(20, seed=i)))
    d = load_dataset("cifar10_dvs", 0, str(root))  # 3 + 2 samples: airplane reaches every split
    assert (len(d.train), len(d.val), len(d.test)) == (3, 1, 1)
    (root / "airplane" / "0.aedat").unlink()
    with pytest.raises(SnnexitError, match=r"cifar10_dvs: the validation split is empty \(4 samples split in 2 "
                                           r"classes\).*at least 3 samples.*fewer in: airplane \(2\), cat \(2\)"):
        load_dataset("cifar10_dvs", 0, str(root))


# ---------------------------------------------------------------- built-in data sets
@pytest.mark.parametrize("name", ["mnist5k", "digits", "event_mnist"])
def test_built_in_data_sets_refuse_a_data_folder(name, tmp_path):
    with pytest.raises(SnnexitError, match=f"^data set '{name}' is built in: --data-dir does not apply$"):
        load_dataset(name, 0, root=str(tmp_path))
    assert is_built_in(name)
    with pytest.raises(SnnexitError, match="is built in"):  # the factory itself, too
        DATASETS.get(name)(seed=0, root=str(tmp_path))
    assert not is_built_in("cifar10_dvs") and not is_built_in("imagefolder")


# ---------------------------------------------------------------- policies
PROBABILITY_SCORES = ["conformal", "topk_per_step"]  # shares of calibration inputs, in [0, 1]
LOG_ODDS_SCORES = ["dynamic_confidence", "max_softmax", "mean_output_confidence", "step_calibrated_confidence"]
THRESHOLDED = [n for n in POLICIES.names() if issubclass(POLICIES.get(n), ThresholdPolicy)]


def test_every_thresholded_policy_states_its_score_range():
    assert sorted(n for n in THRESHOLDED if POLICIES.get(n).score_range == (0.0, 1.0)) == PROBABILITY_SCORES
    assert sorted(n for n in THRESHOLDED if POLICIES.get(n).score_range is None) == LOG_ODDS_SCORES
    assert POLICIES.get("topk").score_range == POLICIES.get("entropy").score_range == (0.0, math.inf)
    assert set(THRESHOLDED) == set(PROBABILITY_SCORES) | set(LOG_ODDS_SCORES) | {"topk", "entropy"}


@pytest.mark.parametrize("name", PROBABILITY_SCORES)
def test_a_fixed_threshold_outside_a_probability_is_refused(name):
    for bad in (1.5, -0.1, 1.0000001):
        with pytest.raises(SnnexitError, match=rf"^threshold must lie in \[0, 1\], the range of {name}'s score "
                                               rf"\(.+\); got {bad}$"):
            create_policy(name, threshold=bad).check_settings()
    for good in (0, 0.0, 0.5, 1.0):
        create_policy(name, threshold=good).check_settings()
    with pytest.raises(SnnexitError, match="threshold must lie in"):  # fit checks first
        create_policy(name, threshold=2.0).fit(random_trace(T=4, N=20))


@pytest.mark.parametrize("name", LOG_ODDS_SCORES)
def test_a_log_odds_threshold_is_any_finite_number(name):
    for good in (-3.0, 0, 4.595, 40.0):
        create_policy(name, threshold=good).check_settings()
    for bad in (math.inf, math.nan, "0.9", True):
        with pytest.raises(SnnexitError, match="threshold must be a finite number"):
            create_policy(name, threshold=bad).check_settings()


def test_topk_gap_threshold_must_not_be_negative():
    with pytest.raises(SnnexitError, match=r"^threshold must be >= 0, the range of topk's score \(a gap between "
                                           r"outputs\); got -0.5$"):
        create_policy("topk", threshold=-0.5).check_settings()
    create_policy("topk", threshold=7.5).check_settings()  # a gap has no upper bound
    with pytest.raises(SnnexitError, match=r"^threshold must be >= 0, the range of entropy's score"):
        create_policy("entropy", threshold=-0.5).check_settings()


@pytest.mark.parametrize("name", THRESHOLDED)
def test_fitting_needs_two_inputs(name):
    one, two = random_trace(T=4, N=1, seed=1), random_trace(T=4, N=2, seed=1)
    with pytest.raises(SnnexitError, match=rf"{type(create_policy(name)).__name__}.fit needs at least 2 inputs, got a "
                                           rf"trace of 1"):
        create_policy(name).fit(one)
    pol = create_policy(name).fit(two)
    assert pol.T_ == 4 and pol.curve_.n == 2
    with pytest.raises(SnnexitError, match="at least 2 calibration inputs"):
        create_policy(name, target="risk", eps=0.5, delta=0.5).fit(two, calibration=Trace(one.outputs, None))
    risky = create_policy(name, target="risk", eps=0.5, delta=0.5)
    if risky.learns_score:  # learns on one part, certifies on the other: 2 + 2 inputs
        with pytest.raises(SnnexitError, match="it needs 4 inputs, got 3"):
            risky.fit(random_trace(T=4, N=3, seed=1))
    assert risky.fit(random_trace(T=4, N=4, seed=1)).curve_.n in (2, 4)


def test_certify_exit_needs_enough_inputs():
    learn, cal = random_trace(T=4, N=3, seed=1), random_trace(T=4, N=30, seed=2)
    with pytest.raises(SnnexitError, match="at least 2 learning inputs per half \\(4 in all\\) to pick among 2 "
                                           "candidates, got 3"):
        certify_exit(learn, cal, eps=0.5, candidates=["dynamic_confidence", "topk"])
    with pytest.raises(SnnexitError, match="at least 2 calibration inputs, got 1"):
        certify_exit(random_trace(T=4, N=30, seed=1), random_trace(T=4, N=1, seed=2), eps=0.9)
    single = certify_exit(learn, cal, eps=0.5, delta=0.5, candidates=["dynamic_confidence"])
    assert single.learn_size == 3 and single.calibration_size == 30


def _record(name="dynamic_confidence", **kwargs):
    return create_policy(name, **kwargs).fit(random_trace(T=5, N=40)).to_dict()


@pytest.mark.parametrize("threshold, message", [(-5, "threshold must lie in \\[0, 1\\]"),
                                                (2.0, "threshold must lie in \\[0, 1\\]"),
                                                (True, "threshold must be a finite number, got True")])
def test_hand_edited_record_with_a_bad_fixed_threshold(threshold, message):
    record = _record("topk_per_step", threshold=0.5)  # a score in [0, 1]
    record["params"]["threshold"] = threshold
    record["fitted"]["threshold_"] = threshold
    with pytest.raises(SnnexitError, match=f"^topk_per_step record: {message}"):
        policy_from_dict(record)


def test_hand_edited_record_with_bad_fitted_values():
    good = _record("topk_per_step")  # a score in [0, 1]
    assert policy_from_dict(copy.deepcopy(good)).threshold_ == good["fitted"]["threshold_"]
    for change, message in [(lambda f: f.update(threshold_=1.5), "threshold_ must lie in \\[0, 1\\]"),
                            (lambda f: f.update(threshold_=-0.5), "threshold_ must lie in \\[0, 1\\]"),
                            (lambda f: f.update(threshold_="inf", point_=0), "threshold_ must be a finite number"),
                            (lambda f: f.update(T_="8"), "T_ must be an integer, got '8'"),
                            (lambda f: f.update(T_=6), "curve_ has T = 5, T_ = 6"),
                            (lambda f: f["curve_"].update(T=6), "curve_ has T = 6, T_ = 5"),
                            (lambda f: (f.update(T_=4), f["curve_"].update(T=4)),
                             "curve_.mean_steps must lie in \\[1, T_ = 4\\]")]:
        record = copy.deepcopy(good)
        change(record["fitted"])
        with pytest.raises(SnnexitError, match=f"^topk_per_step record: {message}"):
            policy_from_dict(record)
    topk = _record("topk")
    topk["fitted"]["threshold_"] = -1.0
    with pytest.raises(SnnexitError, match="threshold_ must be >= 0"):
        policy_from_dict(topk)


@pytest.mark.parametrize("name", THRESHOLDED)
def test_a_fitted_policy_applies_to_traces_of_its_own_T(name):
    fitted = policy_from_dict(_record(name))  # saved and loaded: T_ = 5
    same, other = random_trace(T=5, N=10, seed=3), random_trace(T=4, N=10, seed=3)
    assert fitted.exit_steps(same).shape == (10,)
    for call in (fitted.exit_steps, fitted.predict, fitted.evaluate):
        with pytest.raises(SnnexitError, match=f"^{type(fitted).__name__} was fitted on traces of T_ = 5 steps; this "
                                               f"trace has T = 4: fit it on a trace of 4 steps$"):
            call(other)


# ---------------------------------------------------------------- engine and simulation inputs
STEPS = 6


def small_network(seed=0) -> SpikingNetwork:
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), IFNeuron(threshold=0.5), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3))
    return SpikingNetwork(body, meta={"converter": "test", "alpha": "T", "temperature": 1.0}).eval()


@pytest.fixture(scope="module")
def engine_setup():
    snn = small_network()
    x = torch.rand(12, 1, 8, 8)
    trace = record_trace(snn, [(x, torch.zeros(12, dtype=torch.long))], T=STEPS)
    return snn, DynamicConfidence(threshold=0.5).fit(trace), x


def _counting(snn):
    calls = []
    return calls, snn.body[0].register_forward_hook(lambda *a: calls.append(1))


BAD_INPUTS = [
    (lambda x: x[0], r"x has shape \(1, 8, 8\): each input must have shape \(1, H, W\), the network's input, in a "
                     r"batch \(N, \.\.\.\) \(missing batch dimension\?\)"),
    (lambda x: x.repeat(1, 3, 1, 1), r"x has shape \(4, 3, 8, 8\): each input must have shape \(1, H, W\)"),
    (lambda x: torch.rand(4, 1, 10, 10), r"x has shape \(4, 1, 10, 10\), which the network cannot take: "
                                      r"mat1 and mat2 shapes cannot be multiplied"),
    (lambda x: x.flatten(), r"x has shape \(256,\): expected a batch \(N, \.\.\.\)"),
    (lambda x: (x * 255).long(), "x must hold floating-point values \\(e.g. float32\\), got torch.int64"),
    (lambda x: x > 0.5, "x must hold floating-point values \\(e.g. float32\\), got torch.bool"),
    (lambda x: x.to(torch.complex64), "x must hold floating-point values \\(e.g. float32\\), got torch.complex64"),
    (lambda x: (x * 255).numpy().astype(np.uint8), "x must hold floating-point values \\(e.g. float32\\), got a "
                                                   "numpy uint8 array"),
    (lambda x: x.tolist(), "x must be a torch tensor or a numpy array of floats, got list"),
    (lambda x: x[:0], r"x holds no inputs \(shape \(0, 1, 8, 8\)\)"),
    (lambda x: torch.where(torch.arange(4).view(4, 1, 1, 1) == 2, math.nan, x),
     r"x contains NaN or infinite values \(1 of 4 inputs, the first at index 2\)"),
    (lambda x: torch.where(torch.arange(4).view(4, 1, 1, 1) >= 1, -math.inf, x),
     r"x contains NaN or infinite values \(3 of 4 inputs, the first at index 1\)"),
]


@pytest.mark.parametrize("engine_cls", [EarlyExitEngine, ChunkedEngine])
@pytest.mark.parametrize("bad, message", BAD_INPUTS)
def test_engines_refuse_bad_inputs_before_any_step(engine_setup, engine_cls, bad, message):
    snn, policy, x = engine_setup
    engine = engine_cls(snn, policy, STEPS, **({"chunks": 2} if engine_cls is ChunkedEngine else {}))
    calls, handle = _counting(snn)
    try:
        with pytest.raises(SnnexitError, match=f"^{message}"):
            engine.run(bad(x[:4]))
    finally:
        handle.remove()
    assert not calls  # refused before the network ran a step
    assert engine.run(x[:4]).N == 4  # the engine still works


@pytest.mark.parametrize("engine_cls", [EarlyExitEngine, ChunkedEngine])
def test_engines_take_float_numpy_arrays(engine_setup, engine_cls):
    snn, policy, x = engine_setup
    kw = {"chunks": 2} if engine_cls is ChunkedEngine else {}
    want = engine_cls(snn, policy, STEPS, **kw).run(x)
    for array in (x.numpy(), x.double().numpy()):  # float64 is cast to the network's float32
        got = engine_cls(snn, policy, STEPS, **kw).run(array)
        assert torch.equal(got.exit_steps, want.exit_steps) and torch.equal(got.predictions, want.predictions)
    assert torch.equal(want.exit_steps, policy.exit_steps(record_trace(snn, [(x, None)], T=STEPS)))


def test_temporal_inputs_and_streams(engine_setup):
    snn, policy, x = engine_setup
    seq = x[:4].unsqueeze(1).repeat(1, STEPS, 1, 1, 1)  # (N, T, 1, 8, 8)
    engine = EarlyExitEngine(snn, policy, STEPS)
    assert engine.run(seq, temporal=True).N == 4
    with pytest.raises(SnnexitError, match=r"temporal input needs shape \(N, T' >= 6, \.\.\.\), got \(4, 5, 1, 8, 8\)"):
        engine.run(seq[:, :5], temporal=True)
    with pytest.raises(SnnexitError, match=r"each frame must have shape \(1, H, W\)"):
        engine.run(x[:4], temporal=True)
    nan_seq = seq.clone()
    nan_seq[3, 4, 0, 1, 1] = math.nan
    with pytest.raises(SnnexitError, match=r"contains NaN or infinite values \(1 of 4 inputs, the first at index 3\)"):
        engine.run(nan_seq, temporal=True)
    session = engine.session(4)
    with pytest.raises(SnnexitError, match="a step's input contains NaN"):
        session.feed(nan_seq[:, 4])
    with pytest.raises(SnnexitError, match="a step's input must hold floating-point values"):
        list(engine.stream([seq[:, 0].long()]))


def test_a_recorded_input_shape_is_the_one_checked(engine_setup):
    _, policy, x = engine_setup
    snn = small_network()
    snn.meta["input_shape"] = [1, 8, 8]
    with pytest.raises(SnnexitError, match=r"each input must have shape \(1, 8, 8\), the network's input"):
        EarlyExitEngine(snn, policy, STEPS).run(torch.rand(4, 1, 9, 9))


def test_networks_of_snnexit_models_name_their_input_layer():
    for name in ("vgg_small", "resnet20"):
        ann = create_model(name, num_classes=3, in_channels=2, input_size=8, activation=lambda: QCFS(2, 1.0), width=4)
        snn = convert(ann.eval(), "qcfs")
        with pytest.raises(SnnexitError, match=r"each input must have shape \(2, H, W\)"):
            simulate_batch(snn, torch.rand(3, 1, 8, 8), 2)
        assert simulate_batch(snn, torch.rand(3, 2, 8, 8), 2)[0].shape == (2, 3, 3)
        qffs = convert(ann.eval(), "qffs")
        with pytest.raises(SnnexitError, match=r"\(missing batch dimension\?\)"):
            simulate_batch(qffs, torch.rand(2, 8, 8), 2)


def test_a_network_of_unknown_layout_still_gets_the_basic_checks():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 3)  # registered before the layers that run first
            self.act = IFNeuron(threshold=1.0)
            self.inp = nn.Linear(4, 5)

        def forward(self, x):
            return self.fc(self.act(self.inp(x)))

    snn = SpikingNetwork(Custom())
    assert simulate_batch(snn, torch.rand(3, 4), 2)[0].shape == (2, 3, 3)  # no rule read off fc
    with pytest.raises(SnnexitError, match=r"x has shape \(3, 5\), which the network cannot take"):
        simulate_batch(snn, torch.rand(3, 5), 2)
    with pytest.raises(SnnexitError, match="x contains NaN"):
        simulate_batch(snn, torch.full((3, 4), math.nan), 2)


def test_record_trace_refuses_nan_naming_the_batch(engine_setup):
    snn, _, x = engine_setup
    bad = x[4:8].clone()
    bad[1, 0, 0, 0] = math.inf
    with pytest.raises(SnnexitError, match=r"^batch 1: x contains NaN or infinite values \(1 of 4 inputs, the first "
                                           r"at index 1\)$"):
        record_trace(snn, [(x[:4], None), (bad, None)], T=STEPS)
    with pytest.raises(SnnexitError, match="x contains NaN"):
        simulate_batch(snn, bad, STEPS)


def test_the_engine_runs_the_T_its_policy_was_fitted_for(engine_setup):
    snn, policy, _ = engine_setup
    with pytest.raises(SnnexitError, match=r"^DynamicConfidence was fitted on traces of T_ = 6 steps; this engine "
                                           r"runs T = 8: fit the policy on a trace of 8 steps$"):
        EarlyExitEngine(snn, policy, 8)
    with pytest.raises(SnnexitError, match="T_ = 6 steps; this engine runs T = 4"):
        ChunkedEngine(snn, policy, 4)
    EarlyExitEngine(snn, FixedT(), 8)  # a policy that needs no fit runs any T


# ---------------------------------------------------------------- converters, quantizers, model sizes
@pytest.mark.parametrize("converter, needs", [("qcfs", "QCFS or LSQ"), ("qffs", "QCFS or LSQ"), ("max", "ReLU"),
                                              ("robust", "ReLU")])
def test_converting_a_model_without_activations_is_refused(converter, needs):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    kwargs = {"calibration_data": torch.rand(8, 4)} if converter in ("max", "robust") else {}
    with pytest.raises(SnnexitError, match=f"^{converter} conversion needs an ANN with {needs} activations; this "
                                           f"model has none, so its SNN would have no spiking layer$"):
        convert(model, converter, **kwargs)


def test_a_registered_converter_that_builds_no_spiking_layer_is_refused(monkeypatch):
    monkeypatch.setitem(CONVERTERS._entries, "plain", lambda model: SpikingNetwork(model))
    with pytest.raises(SnnexitError, match="^converter 'plain' gave a network without spiking layers"):
        convert(nn.Sequential(nn.Linear(4, 3)), "plain")


@pytest.mark.parametrize("bits", [0, 17, 64, -1, 2.0, True, "2"])
def test_lsq_bits_outside_1_to_16_are_refused_at_construction(bits):
    with pytest.raises(SnnexitError, match=rf"^LSQ bits must be an integer in 1\.\.16, got {re.escape(repr(bits))}$"):
        LSQ(bits)
    with pytest.raises(SnnexitError, match="LSQ bits must be an integer in 1..16"):  # the factory, before any model
        QUANTIZERS.get("lsq")(levels=4, bits=bits, init_threshold=1.0)


def test_quantizer_settings_are_checked_before_a_model_is_built():
    assert LSQ(16).levels == 2 ** 16 - 1 and LSQ(1).levels == 1
    for levels in (0, -3, 2.5, None):
        with pytest.raises(SnnexitError, match=r"QCFS levels \(L\) must be an integer >= 1"):
            QCFS(levels)
        with pytest.raises(SnnexitError, match=r"QCFS levels \(L\) must be an integer >= 1"):
            QUANTIZERS.get("qcfs")(levels=levels, bits=2, init_threshold=1.0)
    for name in ("qcfs", "lsq", "clip"):
        with pytest.raises(SnnexitError, match="init_threshold must be a positive number, got 0.0"):
            QUANTIZERS.get(name)(levels=4, bits=2, init_threshold=0.0)
    with pytest.raises(ValueError):  # still a ValueError, as before
        LSQ(bits=0)
    assert QCFS(np.int64(3)).levels == 3


@pytest.mark.parametrize("name", sorted(MODELS.names()))
def test_parameter_count_equals_the_built_models(name):
    for kwargs in ({"num_classes": 10, "in_channels": 3, "input_size": 32, "width": 4},
                   {"num_classes": 7, "in_channels": 2, "input_size": 8, "width": 2, "activation": lambda: QCFS(4, 1.0)}):
        model = create_model(name, **kwargs)
        assert parameter_count(name, **kwargs) == sum(p.numel() for p in model.parameters())
    assert parameter_count(name, num_classes=10, in_channels=1, input_size=28) == \
        sum(p.numel() for p in create_model(name, num_classes=10, in_channels=1, input_size=28).parameters())


def test_parameter_count_of_a_huge_model_allocates_nothing():
    # vgg16 at width 100000: about 8.2e13 parameters (328 TB in float32), counted on the meta device
    n = parameter_count("vgg16", num_classes=10, in_channels=3, input_size=32, width=100000)
    w = 100000
    convs = [(3, w), (w, w), (w, 2 * w), (2 * w, 2 * w), (2 * w, 4 * w), (4 * w, 4 * w), (4 * w, 4 * w),
             (4 * w, 8 * w)] + [(8 * w, 8 * w)] * 5
    expected = sum(9 * i * o + o + 2 * o for i, o in convs)  # weights, bias, BatchNorm
    expected += (8 * w) * 64 * w + 64 * w + (64 * w) ** 2 + 64 * w + 64 * w * 10 + 10  # classifier at 1x1
    assert n == expected
    with pytest.raises(SnnexitError, match="^model 'vgg_small' cannot be built with .*depth"):
        parameter_count("vgg_small", num_classes=10, in_channels=1, input_size=28, depth=3)
    with pytest.raises(SnnexitError, match="Unknown model"):
        parameter_count("vgg99", num_classes=10, in_channels=1, input_size=28)


@pytest.mark.parametrize("name", THRESHOLDED)
def test_fitting_an_unlabelled_trace_needs_a_target_that_needs_no_labels(name):
    """Accuracy targets and learned scores need labels: a one-line error, not a TypeError inside the
    curve; target risk (and a given threshold, for a score learned from nothing) fit on unlabelled inputs."""
    labelled, other = random_trace(T=4, N=40, seed=3), random_trace(T=4, N=40, seed=4)
    unlabelled = Trace(labelled.outputs, None, None, labelled.meta)
    for target in ("no_loss", "max_steps"):
        kwargs = {"max_steps": 2.0} if target == "max_steps" else {}
        with pytest.raises(SnnexitError, match="needs labels|learns its score from labels"):
            create_policy(name, target=target, **kwargs).fit(unlabelled)
    risky = create_policy(name, target="risk", eps=0.5, delta=0.5)
    if risky.learns_score:
        with pytest.raises(SnnexitError, match="learns its score from labels"):
            risky.fit(unlabelled)
        risky.fit(labelled, calibration=Trace(other.outputs, None, None, other.meta))
    else:
        risky.fit(unlabelled)
    assert risky.certification_size_ == 40 or risky.learns_score


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_the_one_pass_finite_check_finds_a_bad_value_anywhere(dtype):
    """``all_finite`` reads only the least and greatest value; checked against the mask at every
    position of a tensor whose length leaves a remainder for any vector width."""
    x = torch.rand(3, 5, 37, dtype=dtype) * 2 - 1
    assert all_finite(x) and all_finite(x[:, :0])
    for bad in (math.nan, math.inf, -math.inf):
        for i in range(x.numel()):
            y = x.clone().view(-1)
            y[i] = bad
            assert not all_finite(y.view_as(x)) and not bool(torch.isfinite(y).all())


def test_the_vgg16_workload_is_as_large_as_the_readme_says():
    """README (early exit at the sizes users run): the VGG-16 workload's 33.6 million parameters,
    128 MiB in float32, are read once per chunk at batch 1."""
    from snnexit.experiments.workloads import workload

    w = workload("vgg16")
    n = parameter_count(w.model, num_classes=10, in_channels=3, input_size=32)
    assert round(n / 1e6, 1) == 33.6 and round(4 * n / 2 ** 20) == 128
