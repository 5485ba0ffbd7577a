"""Event data (N, T, 2, H, W) through the main job and the stages: the ANN learns the mean
frame, the converted SNN sees one frame per step."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from snnexit.cli import main
from snnexit.runs.artifacts import SNN_FILE, load_converted
from snnexit.data import DATASETS, load_dataset
from snnexit.data.events import event_mnist
from snnexit.io import load_tensors
from snnexit.simulate import Trace

FRAMES = 6
ARGS = ["--dataset", "event_mnist", "--epochs", "3", "--width", "8", "--batch-size", "8", "--no-progress"]


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """A small event_mnist (6 frames, 8 digits per class) in place of the built-in one; the
    stages one by one and ``snnexit run`` on it."""
    tmp = tmp_path_factory.mktemp("events")
    cache, other = tmp / "cache", tmp / "env-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(DATASETS._entries, "event_mnist", functools.partial(event_mnist, T=FRAMES, n_per_class=12))
        mp.setenv("SNNEXIT_CACHE", str(other))  # --cache-dir must win over it
        common = [*ARGS, "--cache-dir", str(cache)]
        for stage in ("train", "convert", "trace", "fit", "evaluate"):
            flags = common if stage != "fit" else ["--dataset", "event_mnist"]  # fit takes the flags it uses
            assert main([stage, *flags, "--out", str(tmp / "chain")]) == 0, stage
        assert main(["run", *common, "--out", str(tmp / "run")]) == 0
        data = load_dataset("event_mnist", 0, cache_dir=cache)
        yield {"tmp": tmp, "cache": cache, "other": other, "data": data}


def test_run_traces_one_frame_per_step(events):
    chain, run, data = events["tmp"] / "chain", events["tmp"] / "run", events["data"]
    results = json.loads((run / "results.json").read_text())
    assert results["snn"]["T"] == FRAMES  # T defaults to the recordings' frame count
    test = Trace.load(run / "trace_test.safetensors")
    assert test.T == FRAMES and torch.equal(test.labels, data.test.y)
    assert test.spikes[:, :, -1].sum() > 0  # spikes reach the last spiking layer: the checks below mean something
    # by hand: the converted SNN of the chain, fed frame t at step t, accumulating its output
    snn, _ = load_converted(chain / SNN_FILE)
    snn.reset()
    with torch.no_grad():
        outputs = torch.stack([snn.step(data.test.x[:, t]) for t in range(FRAMES)]).cumsum(0)
    assert torch.allclose(test.outputs, outputs, atol=1e-5)
    snn.reset()
    with torch.no_grad():  # the mean frame at every step is another network input: the trace is not that
        mean = torch.stack([snn.step(data.test.x.mean(1)) for _ in range(FRAMES)]).cumsum(0)
    assert not torch.allclose(test.outputs, mean, atol=1e-3)


def test_ann_learns_the_mean_frame(events):
    from snnexit.runs.ann import build_ann
    from snnexit.runs.settings import RunConfig

    tmp, data = events["tmp"], events["data"]
    tensors, _ = load_tensors(tmp / "chain" / "ann.safetensors", fmt="ann", version=1)
    ann = build_ann(RunConfig(dataset="event_mnist", width=8, init_threshold=4.0), data)
    ann.load_state_dict(tensors)
    with torch.no_grad():
        acc = (ann.eval()(data.test.x.mean(1)).argmax(1) == data.test.y).double().mean().item()
    assert json.loads((tmp / "run" / "results.json").read_text())["ann"]["test_acc"] == pytest.approx(acc)


def test_stages_give_what_run_gives(events):
    a = json.loads((events["tmp"] / "chain" / "results.json").read_text())
    b = json.loads((events["tmp"] / "run" / "results.json").read_text())
    assert a["policies"] == b["policies"] and a["snn"] == b["snn"]


def test_cache_dir_holds_frames_and_no_checkpoint_is_left(events):
    cache = events["cache"]
    assert list((cache / "event_mnist").glob("*.safetensors"))  # the frame cache honours --cache-dir
    assert not events["other"].exists()
    assert list(cache.glob("ann-event_mnist-*.safetensors")) and not list(cache.glob("train-*.pt"))


def test_T_beyond_the_frames_is_a_clear_error(events, monkeypatch, capsys):
    monkeypatch.setitem(DATASETS._entries, "event_mnist", functools.partial(event_mnist, T=FRAMES, n_per_class=12))
    code = main(["run", *ARGS, "--T", str(FRAMES + 1), "--cache-dir", str(events["cache"]),
                 "--out", str(events["tmp"] / "long")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"T = {FRAMES + 1} exceeds the {FRAMES} frames of event_mnist" in err and f"--T {FRAMES}" in err


def test_a_converter_without_frames_is_refused_before_training(events, monkeypatch, capsys):
    """QFFS delivers a static input for a window of steps: event frames would be cut off silently."""
    monkeypatch.setitem(DATASETS._entries, "event_mnist", functools.partial(event_mnist, T=FRAMES, n_per_class=12))
    code = main(["run", *ARGS, "--converter", "qffs", "--quantizer", "lsq", "--cache-dir", str(events["cache"]),
                 "--out", str(events["tmp"] / "qffs")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not any("epoch" in line for line in lines)  # refused before the first epoch
    assert "converter 'qffs'" in lines[-1] and "cannot run the frames of event_mnist" in lines[-1]
