"""The less-arithmetic study (benchmarks/less_arithmetic.py) end to end on a tiny network, and its
lower-precision networks. No timing is asserted: only that every number it reports is there and
that what it says about exactness and decisions is true of the network it ran."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from conformance_kinds import converted_network, inputs
from snnexit.data.splits import DataSplits, Split
from snnexit.experiments.precision import CastLayer, decision_changes, precision_network
from snnexit.simulate import record_trace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tiny_network():
    """The conformance matrix's exact QCFS network (conv-BN-IF-pool, conv-IF, linear-IF, linear), float32."""
    return converted_network("qcfs", "qcfs", torch.float32, 0)[1]


def tiny_data(n: int = 40) -> DataSplits:
    x = inputs(3 * n, 5, dtype=torch.float32)
    y = torch.randint(0, 5, (3 * n,), generator=torch.Generator().manual_seed(0))
    split = lambda i: Split(x[i * n:(i + 1) * n], y[i * n:(i + 1) * n])  # noqa: E731
    return DataSplits("tiny", split(0), split(1), split(2), num_classes=5)


def test_bfloat16_layers_compute_in_bfloat16_and_hand_on_float32():
    snn = tiny_network()
    net = precision_network(snn, "bfloat16_layers")
    casts = [m for m in net.modules() if isinstance(m, CastLayer)]
    assert len(casts) == 4 and all(c.layer.weight.dtype == torch.bfloat16 for c in casts)
    x = inputs(3, 1, dtype=torch.float32)
    conv = casts[0]
    expected = torch.nn.functional.conv2d(x.bfloat16(), conv.layer.weight, conv.layer.bias, padding=1).float()
    assert torch.equal(conv(x), expected)
    assert net.step(x).dtype == torch.float32
    assert next(snn.parameters()).dtype == torch.float32  # the original is untouched


def test_decision_changes_counts_against_float32():
    snn = tiny_network()
    x = inputs(64, 2, dtype=torch.float32)
    ref = record_trace(snn, [(x, None)], T=6)
    from snnexit.exit import FixedT

    same = decision_changes(ref, record_trace(snn, [(x, None)], T=6), FixedT())
    assert same["exit_step_changed"] == same["answer_at_some_step_changed"] == 0
    assert same["max_abs_output_difference"] == 0.0
    other = record_trace(precision_network(snn, "bfloat16"), [(x, None)], T=6)
    changed = decision_changes(ref, other, FixedT())
    by_hand = int((ref.predictions() != other.predictions()).any(0).sum())
    assert changed["answer_at_some_step_changed"] == by_hand
    assert changed["answer_at_T_changed"] == int((ref.predictions()[-1] != other.predictions()[-1]).sum())


@pytest.mark.slow
def test_the_study_runs_end_to_end_on_a_tiny_network(tmp_path, monkeypatch):
    import benchmarks.less_arithmetic as study

    snn = tiny_network()
    monkeypatch.setattr(study, "load_dataset", lambda name, seed: tiny_data())
    monkeypatch.setattr(study, "trained_snn", lambda config, data, log=None: (snn, {"test_acc": 1.0}))
    out = tmp_path / "study.json"
    monkeypatch.setattr(sys, "argv", ["less_arithmetic.py", "--T", "6", "--inputs", "20", "--decision-inputs", "40",
                                      "--batch-sizes", "1", "3", "--threads", "1", "--repeats", "1", "--out", str(out)])
    study.main()
    result = json.loads(out.read_text())
    layers = result["recorded"]["layers"]
    assert [r["receives_spikes"] for r in layers] == [False, True, True, True]  # the first conv reads the image
    assert all(0 < r["density"] < 1 for r in layers[1:])
    assert len(result["cells"]) == 2
    for cell in result["cells"]:
        assert [r["layer"] for r in cell["layers"]] == [r["layer"] for r in layers[1:]]
        for row in cell["layers"]:
            assert row["ratio_to_dense"]["dense"] == 1.0
            assert {"sparse_bag", "bfloat16", "int8_dynamic"} <= set(row["ratio_to_dense"])
            # the spike-driven sums are the dense ones in another order: float32 rounding only
            assert all(row["accuracy"][name]["float32_rounding_only"] for name in row["accuracy"]
                       if name.startswith("sparse") or name == "dense")
            assert row["best_exact"][0] == "dense" or row["best_exact"][0].startswith("sparse")
        assert set(cell["whole_network"]["step_ratio_to_float32"]) >= {"float32", "bfloat16", "bfloat16_layers"}
    decided = result["decisions"]
    assert decided["inputs"] == 40 and set(decided["by_precision"]) >= {"bfloat16", "bfloat16_layers"}
    for row in decided["by_precision"].values():  # the engine's decisions are the trace's
        assert row["step_engine"]["exit_step_changed"] == row["exit_step_changed"]
    assert {r["precision"] for r in result["matrix_decisions"]} >= {"bfloat16", "bfloat16_layers"}
