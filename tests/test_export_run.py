"""``snnexit export`` of a run folder exports the run's own network (snn.safetensors, its
temperature), never one rebuilt from the ANN cache; the threshold-scale search picks what a
brute-force loop over the scales picks."""

from __future__ import annotations

import shutil

import pytest
import torch

from snnexit.cli import main
from snnexit.data import load_dataset
from snnexit.io import load_tensors, save_tensors
from snnexit.nir import import_nir, to_nir
from snnexit.nir.variants import DEFAULT_SCALES, calibrate_threshold_scale
from snnexit.runs.ann import ANN_FORMAT, ANN_VERSION
from snnexit.runs.artifacts import RunFolder, run_config_from
from snnexit.runs.exportable import exportable_snn
from snnexit.simulate import record_trace

T = 8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small digits run (its ANN cached in its own cache folder)."""
    tmp = tmp_path_factory.mktemp("export_run")
    out, cache = tmp / "run", tmp / "cache"
    assert main(["run", "--dataset", "digits", "--epochs", "3", "--T", str(T), "--width", "4", "--out", str(out),
                 "--cache-dir", str(cache), "--quiet", "--no-progress"]) == 0
    return out, cache


def run_network(folder):
    """The run's network as the stages load it from snn.safetensors."""
    _, meta = load_tensors(folder / "snn.safetensors", fmt="snn", version=1)
    config = run_config_from(meta["config"])
    data = load_dataset(config.dataset, config.seed)
    return RunFolder(folder).load_snn(config, data), data


def test_export_takes_the_folders_network_not_the_cache(run, tmp_path, capsys):
    folder, cache = run
    copy, copied_cache = tmp_path / "run", tmp_path / "cache"
    shutil.copytree(folder, copy)
    shutil.copytree(cache, copied_cache)
    snn, data = run_network(copy)
    x = data.test.x[:40]
    expected = record_trace(snn, [(x, data.test.y[:40])], T=T).outputs
    # another ANN under the run's cache key: an export that rebuilt from the cache would differ
    (cached,) = copied_cache.glob("ann-*.safetensors")
    tensors, _ = load_tensors(cached, fmt=ANN_FORMAT, version=ANN_VERSION)
    save_tensors(cached, {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in tensors.items()},
                 fmt=ANN_FORMAT, version=ANN_VERSION)
    assert main(["export", "--in", str(copy), "--out", str(tmp_path / "a.nir"), "--cache-dir", str(copied_cache)]) == 0
    shutil.rmtree(copied_cache)  # and no cache at all
    assert main(["export", "--in", str(copy), "--out", str(tmp_path / "b.nir"), "--cache-dir", str(copied_cache)]) == 0
    for name in ("a.nir", "b.nir"):
        back = import_nir(tmp_path / name)
        assert torch.equal(record_trace(back, [(x, data.test.y[:40])], T=T).outputs, expected)
        assert back.meta["temperature"] == snn.meta["temperature"]  # the run's calibration
        assert back.meta["T"] == T
    # the other variants calibrate on the run's validation split, still without a cache
    assert main(["export", "--in", str(copy), "--out", str(tmp_path / "c.nir"), "--variant", "hard-reset",
                 "--cache-dir", str(copied_cache)]) == 0
    assert "chosen on the validation split" in capsys.readouterr().out


def test_a_folder_without_its_network_is_refused_in_one_line(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run[0], copy)
    (copy / "snn.safetensors").unlink()
    assert main(["export", "--in", str(copy), "--out", str(tmp_path / "x.nir")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no snn.safetensors" in err[0] and "snnexit convert" in err[0]


def test_the_search_chooses_what_brute_force_chooses(run):
    snn, data = exportable_snn(run[0])
    batches = list(data().val.batches(100))
    threads = torch.get_num_threads()
    k, scores = calibrate_threshold_scale(snn, batches, T)
    assert torch.get_num_threads() == threads  # the thread setting is as it was
    brute = {}
    torch.set_num_threads(1)  # the plain serial loop, each operation on one thread
    try:
        for scale in DEFAULT_SCALES:
            trace = record_trace(import_nir(to_nir(snn, None, "hard_reset", scale)), batches, T=T)
            brute[scale] = float(trace.accuracy_per_step().mean())
    finally:
        torch.set_num_threads(threads)
    assert scores == brute
    best = max(brute.values())
    assert k == max(s for s in DEFAULT_SCALES if brute[s] == best)  # ties: the larger scale
    assert len(set(brute.values())) > 1  # the scales differ: the choice means something
