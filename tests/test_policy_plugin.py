"""A new exit policy is one file: tests/plugin_policy.py, imported here, goes through everything.

fit and evaluate, its own target kind, the risk target (its learned baselines make it certify on
other inputs, from its declaration alone), certify_exit, save and load, both engines, and the
command line (``snnexit fit`` / ``evaluate`` / ``run --policy relative_margin``), without an edit to
any other file. The registries are restored afterwards, so no other test sees the plugin.
"""

from __future__ import annotations

import importlib
import json
import sys

import pytest
import torch

import snnexit.exit.target as target_module
from conformance_kinds import C, inputs, network_kinds
from snnexit.cli import main
from snnexit.exit import POLICIES, certify_exit, create_policy, load_certified, load_policy, save_policy
from snnexit.exit.certify import certifiable_policies, save_certified
from snnexit.runtime import ChunkedEngine, EarlyExitEngine
from snnexit.simulate import record_trace

T = 8


@pytest.fixture(scope="module")
def plugin():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(POLICIES, "_entries", dict(POLICIES._entries))
        mp.setattr(target_module, "TARGET_KINDS", dict(target_module.TARGET_KINDS))
        sys.modules.pop("plugin_policy", None)
        module = importlib.import_module("plugin_policy")
        yield module
        sys.modules.pop("plugin_policy", None)


@pytest.fixture(scope="module")
def world(plugin):
    snn = next(k for k in network_kinds() if k.name == "qcfs-qcfs").build(torch.float32, 0)
    g = torch.Generator().manual_seed(1)
    traces = []
    for seed, n in ((1, 300), (2, 200), (3, 256)):
        x = inputs(n, seed, dtype=torch.float32)
        answers = record_trace(snn, [(x, None)], T=T).predictions()[-1]
        y = torch.where(torch.rand(n, generator=g) < 0.15, torch.randint(0, C, (n,), generator=g), answers)
        traces.append((x, record_trace(snn, [(x, y)], T=T)))
    return snn, traces


def test_the_declaration_is_all_snnexit_needs(plugin):
    cls = POLICIES.get("relative_margin")
    assert cls.learns_score and "baselines_" in cls.fitted_attributes  # derived, never set by hand
    assert "relative_margin" in certifiable_policies()
    assert "quantile" in target_module.TARGET_KINDS


def test_fit_evaluate_targets_save_load_and_engines(world, tmp_path):
    snn, ((_, learn), (_, calibration), (x, test)) = world
    for target in ({"target": "no_loss"}, {"target": "quantile", "eps": 0.3}):
        policy = create_policy("relative_margin", **target).fit(learn)
        row = policy.evaluate(test)
        assert 1 <= row["mean_steps"] <= T and row["score"] == policy.score_meaning
        save_policy(tmp_path / "p.json", policy)
        loaded = load_policy(tmp_path / "p.json")
        assert torch.equal(loaded.exit_steps(test), policy.exit_steps(test))
        for engine in (EarlyExitEngine(snn, loaded, T), ChunkedEngine(snn, loaded, T, chunks=3, threads=None)):
            assert torch.equal(engine.run(x).exit_steps, policy.exit_steps(test))
    risky = create_policy("relative_margin", target="risk", eps=0.1, delta=0.1).fit(learn)
    assert risky.learn_size_ + risky.certification_size_ == learn.N  # learned baselines: split, as declared
    certified = certify_exit(learn, calibration, eps=0.1, delta=0.1, candidates=["relative_margin"])
    save_certified(tmp_path / "c.json", certified)
    again = load_certified(tmp_path / "c.json")
    assert torch.equal(EarlyExitEngine(snn, again, T).run(x).exit_steps, certified.exit_steps(test))
    assert "relative_margin" in certify_exit(learn, calibration, eps=0.1, delta=0.1).candidates


def test_the_command_line_runs_it(plugin, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'dataset = "digits"\nepochs = 1\nT = 4\nwidth = 4\nprogress = false\n'
                      f'cache_dir = "{tmp_path / "cache"}"\n')
    common = ["--config", str(config)]
    assert main(["run", *common, "--policy", "relative_margin", "--out", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["fitted_policy"] == "relative_margin" and "relative_margin" in results["policies"]
    assert "relative_margin" in results["policies"]["certified"]["candidates"]
    chain = tmp_path / "chain"
    for stage in ("train", "convert", "trace"):
        assert main([stage, *common, "--out", str(chain)]) == 0
    assert main(["fit", *common, "--out", str(chain), "--policy", "relative_margin", "--target", "quantile",
                 "--eps", "0.2"]) == 0
    assert load_policy(chain / "policy.json").target == "quantile"
    assert main(["evaluate", *common, "--out", str(chain), "--policy", "relative_margin", "--target", "quantile",
                 "--eps", "0.2"]) == 0
    assert "relative_margin" in json.loads((chain / "results.json").read_text())["policies"]
