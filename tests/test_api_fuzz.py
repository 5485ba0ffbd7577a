"""The Python API under hostile arguments: every public call ends in a result or a one-line SnnexitError.

Hypothesis draws arguments for the constructors and the ``fit`` / ``run`` / ``load`` calls a user
makes (policies, engines, traces, the certified exit, saved files, data sets): well-formed values,
values just out of range, wrong types, NaN and infinities, empty and huge collections. A call may
succeed or raise :class:`SnnexitError` with one line; any other exception (TypeError, ValueError,
AttributeError, RecursionError, ...) is a failure. ``SNNEXIT_FUZZ_EXAMPLES`` sets the examples per
test (default 40; the long run uses thousands).
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conformance_kinds import C, inputs, network_kinds
from snnexit.errors import SnnexitError
from snnexit.exit import (POLICIES, certify_exit, create_policy, load_certified, load_exit_rule, load_policy,
                          policy_from_dict, save_policy)
from snnexit.runtime import ChunkedEngine, EarlyExitEngine
from snnexit.simulate import Trace, record_trace

EXAMPLES = int(os.environ.get("SNNEXIT_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
T = 6

junk = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10 ** 9), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.lists(st.integers(-3, 40), max_size=4), st.sampled_from([[], {}, (), object()]),
    st.dictionaries(st.text(max_size=4), st.integers(-2, 5), max_size=3),
    st.sampled_from([torch.zeros(0), torch.full((3,), math.nan), torch.arange(7), torch.zeros(2, 2, 2)]),
)
small_int = st.one_of(st.integers(-3, 40), junk)


def _one_line(exc: SnnexitError) -> None:
    text = str(exc)
    assert text and "\n" not in text, repr(text)


def survives(call, *args, **kwargs):
    """Run ``call``: its result, or None when it raised SnnexitError (one line); anything else fails."""
    try:
        return call(*args, **kwargs)
    except SnnexitError as exc:
        _one_line(exc)
        return None


_WORLD: dict = {}


def world_() -> dict:
    """A small exact network, two traces of it and a fitted policy (built once)."""
    if _WORLD:
        return _WORLD
    snn = next(k for k in network_kinds() if k.name == "qcfs-qcfs").build(torch.float32, 0)
    x = inputs(40, 1, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, C, (40,), generator=g)
    trace = record_trace(snn, [(x, y)], T=T)
    other = record_trace(snn, [(inputs(40, 2, dtype=torch.float32), y)], T=T)
    _WORLD.update(snn=snn, x=x, trace=trace, other=other, policy=create_policy("dynamic_confidence").fit(trace))
    return _WORLD


@FUZZ
@given(name=st.one_of(st.sampled_from(POLICIES.names()), junk),
       kwargs=st.dictionaries(st.sampled_from(["target", "threshold", "eps", "max_steps", "delta", "k", "temperature",
                                               "use_alpha", "bogus"]), junk, max_size=3))
def test_policies_fit_and_decide_or_refuse(name, kwargs):
    world = world_()
    policy = survives(create_policy, name, **kwargs) if isinstance(name, str) else survives(create_policy, name)
    if policy is None or isinstance(policy, type(None)):
        return
    fitted = survives(policy.fit, world["trace"])
    if fitted is not None and getattr(fitted, "online", True):
        survives(fitted.exit_steps, world["other"])
        survives(fitted.decide, world["other"].outputs[2], 3, world["other"].meta)
        survives(fitted.evaluate, world["other"])


@FUZZ
@given(T_=small_int, device=st.one_of(st.sampled_from(["cpu", "tpu", "cuda:7", "", "cpu:3"]), junk),
       compact=junk, chunks=st.one_of(st.sampled_from(["auto", 2, [1, 5], [2, 2, 2]]), junk),
       hint=st.one_of(st.none(), junk), threads=st.one_of(st.sampled_from(["auto", None, 1]), junk))
def test_engines_run_or_refuse(T_, device, compact, chunks, hint, threads):
    world = world_()
    snn, policy, x = world["snn"], world["policy"], world["x"][:3]
    engine = survives(EarlyExitEngine, snn, policy, T_, device=device, compact=compact)
    if engine is not None:
        survives(engine.run, x)
    chunked = survives(ChunkedEngine, snn, policy, T_, device=device, chunks=chunks, exit_steps=hint,
                       threads=threads, timing_repeats=1)
    if chunked is not None:
        survives(chunked.run, x)


@FUZZ
@given(x=st.one_of(junk, st.sampled_from([torch.zeros(2, 1, 8, 8), torch.zeros(1, 8, 8), torch.zeros(2, 1, 9, 9),
                                          torch.full((2, 1, 8, 8), math.inf), torch.zeros(2, 1, 8, 8).int()])),
       labels=st.one_of(st.none(), junk), T_=small_int, chunks=st.one_of(st.none(), junk),
       temporal=st.one_of(st.booleans(), junk))
@example(x=torch.zeros(2, 1, 8, 8), labels=None, T_=3, chunks=None, temporal=torch.tensor([]))  # found by the fuzzer
def test_record_trace_records_or_refuses(x, labels, T_, chunks, temporal):
    world = world_()
    survives(record_trace, world["snn"], [(x, labels)], T=T_, chunks=chunks, temporal=temporal)
    survives(record_trace, world["snn"], [(world["x"][:2], labels), (world["x"][2:4], None)], T=3)
    survives(record_trace, world["snn"], x, T=3)  # not a list of (x, y) pairs


@FUZZ
@given(outputs=st.one_of(junk, st.sampled_from([torch.zeros(3, 4, 5), torch.zeros(3, 4), torch.zeros(0, 4, 5),
                                                torch.full((2, 3, 4), math.nan)])),
       labels=st.one_of(st.none(), junk), meta=st.one_of(junk, st.fixed_dictionaries(
           {"alpha": junk, "temperature": junk})))
def test_traces_are_made_or_refused(outputs, labels, meta):
    survives(Trace, outputs, labels, None, meta)


@FUZZ
@given(eps=st.one_of(st.none(), junk), delta=junk, candidates=st.one_of(st.sampled_from(
    [["topk"], ["dynamic_confidence", "entropy"], ["oracle"], []]), junk), policy_kwargs=st.one_of(st.none(), junk,
    st.fixed_dictionaries({"topk": st.dictionaries(st.sampled_from(["k", "target", "nope"]), junk, max_size=2)})))
def test_certify_exit_certifies_or_refuses(eps, delta, candidates, policy_kwargs):
    world = world_()
    survives(certify_exit, world["trace"], world["other"], eps=eps, delta=delta, candidates=candidates,
             policy_kwargs=policy_kwargs)


@FUZZ
@given(content=st.one_of(st.text(max_size=30), st.just("[" * 100_000), st.just('{"format": "snnexit-policy"}'),
                         st.just(json.dumps({"format": "snnexit-certified-exit", "version": 2})),
                         st.builds(lambda v: json.dumps(v), junk.filter(lambda v: not isinstance(v, (object,))
                                                                        or isinstance(v, (int, float, str, list, dict,
                                                                                          type(None))))),
                         st.just(b"\xff\xfe".decode("latin-1"))),
       path=st.one_of(st.none(), junk))
def test_saved_rules_load_or_refuse(tmp_path_factory, content, path):
    folder = tmp_path_factory.mktemp("rules")
    file = folder / "rule.json"
    file.write_text(content)
    for loader in (load_policy, load_certified, load_exit_rule):
        survives(loader, file)
        survives(loader, path)
        survives(loader, folder)
    if isinstance(path, dict):
        survives(policy_from_dict, path)


@FUZZ
@given(policy=st.one_of(junk, st.sampled_from([create_policy("topk"), create_policy("fixed")])), extra=junk)
def test_saving_refuses_what_is_no_fitted_policy(tmp_path_factory, policy, extra):
    survives(save_policy, tmp_path_factory.mktemp("save") / "p.json", policy, extra=extra)


@FUZZ
@given(name=st.one_of(st.sampled_from(["digits", "nope"]), junk), seed=small_int, root=st.one_of(st.none(), junk))
def test_datasets_load_or_refuse(name, seed, root):
    from snnexit.data import load_dataset

    survives(load_dataset, name, seed, root=root)
