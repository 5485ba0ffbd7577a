"""The conformance matrix's checks on the chunked engine with exit forecasts (issue 23).

tests/test_conformance.py runs the chunked engine with a cost model and no forecasts (its plan is
then the same on every run); here the same cells run it with forecasts on, learned from the
validation trace and from every exit: chunk lengths then depend on each input's outputs, and
every exit step, answer, output and spike count must still be the offline trace's. The bounded
variant adds a slowdown budget (``max_slowdown``), whose chunks give way where the forecasts would
break it: the decisions must not move either.
"""

from __future__ import annotations

import pytest
import torch

import test_conformance as conformance
from snnexit.runtime.chunked import ChunkedEngine
from test_conformance import BATCH_SIZES, CHUNK_TIME, FAST, KINDS, SLOW, _one_thread, case, check_cell  # noqa: F401

ENGINES = {"chunked-forecast": None, "chunked-forecast-bounded": 0.5}  # name -> max_slowdown


def forecasting_engine(engine_name: str, c, policy):
    labels = policy.uses_labels_at_test  # an oracle has nothing to forecast from: the static plan
    engine = ChunkedEngine(c.snn, policy, c.T, trace=None if labels else c.val, forecast=True, threads=None,
                           chunk_time=CHUNK_TIME, max_slowdown=ENGINES[engine_name])
    assert (engine.forecaster is None) == labels
    return engine


def cells(sizes: dict, dtypes, every_kind: bool) -> list:
    return [pytest.param(kind, dtype, temporal, engine, batch, id=f"{kind}-{str(dtype)[6:]}-"
                         f"{'temporal' if temporal else 'static'}-{engine}-b{batch}")
            for kind in KINDS if every_kind or KINDS[kind].default for dtype in dtypes
            for temporal in ((False, True) if KINDS[kind].temporal else (False,))
            for engine in ENGINES for batch in BATCH_SIZES]


@pytest.mark.parametrize("kind, dtype, temporal, engine, batch", cells(FAST, (torch.float32,), every_kind=False))
def test_forecast_plans_take_the_offline_decisions(kind, dtype, temporal, engine, batch, monkeypatch):
    monkeypatch.setattr(conformance, "make_engine", forecasting_engine)
    check_cell(case(kind, dtype, temporal, FAST), engine, batch)


@pytest.mark.slow
@pytest.mark.parametrize("kind, dtype, temporal, engine, batch", cells(SLOW, (torch.float64,), every_kind=True))
def test_forecast_plans_take_the_offline_decisions_longer(kind, dtype, temporal, engine, batch, monkeypatch):
    monkeypatch.setattr(conformance, "make_engine", forecasting_engine)
    check_cell(case(kind, dtype, temporal, SLOW), engine, batch)
