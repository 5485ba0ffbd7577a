"""Run a NIR graph in another library's own importer and record its trace.

:func:`library_trace` records a :class:`~snnexit.simulate.Trace` of a NIR graph (or file) as
snnTorch, Sinabs, Norse or SpikingJelly runs it (their ``import_nir`` / ``from_nir`` /
``import_from_nir``, each stepped with its own state), so that their accuracy per step can be
put beside ours (``benchmarks/nir_readers.py``) and our reading checked against theirs (tests).
The libraries are optional: each is imported only when asked for.

Where an importer cannot run a graph as the library means it, the fix is named and kept small:
snnTorch 1.0.0 builds ``Flatten`` over the batch dimension (``Flatten(start_dim, end_dim)`` of
NIR's batch-free dims), so its ``Flatten`` modules are shifted by one dimension, which computes
what running each input alone would; its ``IF`` modules are built with ``init_hidden=False``, so
they return ``(spikes, membrane)``, which the next layer cannot take: they return their spikes as
its other modules do; their leak (beta 0.9; 1 on snnTorch's main branch) is kept unless
``snntorch_if_beta`` says otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path
from typing import Iterable

import torch

from snnexit.errors import SnnexitError
from snnexit.nir.export import read_nir
from snnexit.simulate import Trace

LIBRARIES = ("snntorch", "sinabs", "norse", "spikingjelly")


@contextlib.contextmanager
def _quiet():
    """The libraries print and warn while importing a graph (snnTorch prints, NIRTorch warns)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(level)


def _steps(x: torch.Tensor, T: int, temporal: bool):
    return [x[:, t] if temporal else x for t in range(T)]


def _state_passing(net):
    """A runner for a network called as ``out, state = net(x_t, state)`` (Norse's and
    SpikingJelly's imported graphs): one call per step, the state carried along."""

    def run(x, T, temporal):
        state, outs = None, []
        for xt in _steps(x, T, temporal):
            out, state = net(xt, state)
            outs.append(out)
        return outs

    return run


def _snntorch(graph, dt, options):
    # optional dependency, imported only here: snntorch
    import snntorch
    from snntorch.import_nir import import_from_nir  # (the same optional dependency)

    with _quiet():
        net = import_from_nir(copy.deepcopy(graph))  # 1.0.0 rewrites the graph it is given
    for m in net.modules():
        if isinstance(m, torch.nn.Flatten) and m.start_dim >= 0:
            m.start_dim += 1
            m.end_dim = m.end_dim + 1 if m.end_dim >= 0 else m.end_dim
        if isinstance(m, snntorch.Leaky) and m.reset_mechanism == "subtract":  # the modules built from IF nodes
            m.init_hidden = True
            beta = options.get("snntorch_if_beta")
            if beta is not None:
                m.beta = torch.as_tensor(float(beta))

    def run(x, T, temporal):
        for m in net.modules():
            if hasattr(m, "reset_mem"):
                m.reset_mem()
        return [net(xt)[0] for xt in _steps(x, T, temporal)]

    return run


def _sinabs(graph, dt, options):
    # optional dependency, imported only here: sinabs
    from sinabs import from_nir

    def run(x, T, temporal):
        with _quiet():
            net = from_nir(graph, batch_size=x.shape[0])
        seq = x[:, :T] if temporal else x.unsqueeze(1).expand(x.shape[0], T, *x.shape[1:])
        out = net(seq.reshape(x.shape[0] * T, *seq.shape[2:]))
        out = out[0] if isinstance(out, tuple) else out
        return list(out.reshape(x.shape[0], T, -1).transpose(0, 1))

    return run


def _norse(graph, dt, options):
    # optional dependency, imported only here: norse
    from norse.torch import from_nir

    with _quiet():
        net = from_nir(graph, dt=1e-3 if dt is None else dt, **options.get("norse", {}))
    return _state_passing(net)


def _spikingjelly(graph, dt, options):
    # optional dependency, imported only here: `pip install --no-deps spikingjelly loguru`
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    try:
        with _quiet():
            net = import_from_nir(graph, dt=1e-4 if dt is None else dt)
    except (ValueError, NotImplementedError) as exc:
        raise SnnexitError(f"SpikingJelly cannot import this NIR graph: {exc}") from None
    return _state_passing(net)


_RUNNERS = {"snntorch": _snntorch, "sinabs": _sinabs, "norse": _norse, "spikingjelly": _spikingjelly}


@torch.no_grad()
def library_trace(path_or_graph, library: str, batches: Iterable, T: int, temporal: bool = False,
                  dt: float | None = None, meta: dict | None = None, **options) -> Trace:
    """The trace of a NIR graph (or file) as ``library`` runs it (its default ``dt`` unless given;
    ``options``: ``snntorch_if_beta``, ``norse={"reset_method": ...}``). No spike counts: the
    libraries do not report them alike."""
    if library not in _RUNNERS:
        raise SnnexitError(f"Unknown NIR library {library!r}. Known: {', '.join(LIBRARIES)}")
    graph = read_nir(path_or_graph) if isinstance(path_or_graph, (str, Path)) else path_or_graph
    try:
        run = _RUNNERS[library](graph, dt, options)
    except ImportError as exc:
        raise SnnexitError(f"{library} is not installed ({exc})") from None
    outs, labels = [], []
    for x, y in batches:
        per_step = torch.stack([o.reshape(x.shape[0], -1).float() for o in run(x, T, temporal)])  # (T, N, C)
        outs.append(per_step.cumsum(0))
        labels.append(None if y is None else torch.as_tensor(y).long())
    if not outs:
        raise SnnexitError("no inputs to trace")
    y = None if any(part is None for part in labels) else torch.cat(labels)
    return Trace(torch.cat(outs, 1), y, None, {**(meta or {}), "T": T, "reader": library})
