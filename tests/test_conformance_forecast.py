"""The conformance matrix's checks on the chunked engine with exit forecasts (issue 23).

tests/test_conformance.py runs the chunked engine with a cost model and no forecasts (its plan is
then the same on every run); here the same cells run it with forecasts on, learned from the
validation trace and from every exit: chunk lengths then depend on each input's outputs, and
every exit step, answer, output and spike count must still be the offline trace's.
"""

from __future__ import annotations

import pytest
import torch

import test_conformance as conformance
from snnexit.runtime.chunked import ChunkedEngine
from test_conformance import BATCH_SIZES, CHUNK_TIME, FAST, KINDS, SLOW, _one_thread, case, check_cell  # noqa: F401

ENGINE = "chunked-forecast"


def forecasting_engine(engine_name: str, c, policy):
    assert engine_name == ENGINE
    labels = policy.uses_labels_at_test  # an oracle has nothing to forecast from: the static plan
    engine = ChunkedEngine(c.snn, policy, c.T, trace=None if labels else c.val, forecast=True, threads=None,
                           chunk_time=CHUNK_TIME)
    assert (engine.forecaster is None) == labels
    return engine


def cells(sizes: dict, dtypes, every_kind: bool) -> list:
    return [pytest.param(kind, dtype, temporal, batch, id=f"{kind}-{str(dtype)[6:]}-"
                         f"{'temporal' if temporal else 'static'}-b{batch}")
            for kind in KINDS if every_kind or KINDS[kind].default for dtype in dtypes
            for temporal in ((False, True) if KINDS[kind].temporal else (False,)) for batch in BATCH_SIZES]


@pytest.mark.parametrize("kind, dtype, temporal, batch", cells(FAST, (torch.float32,), every_kind=False))
def test_forecast_plans_take_the_offline_decisions(kind, dtype, temporal, batch, monkeypatch):
    monkeypatch.setattr(conformance, "make_engine", forecasting_engine)
    check_cell(case(kind, dtype, temporal, FAST), ENGINE, batch)


@pytest.mark.slow
@pytest.mark.parametrize("kind, dtype, temporal, batch", cells(SLOW, (torch.float64,), every_kind=True))
def test_forecast_plans_take_the_offline_decisions_longer(kind, dtype, temporal, batch, monkeypatch):
    monkeypatch.setattr(conformance, "make_engine", forecasting_engine)
    check_cell(case(kind, dtype, temporal, SLOW), ENGINE, batch)
