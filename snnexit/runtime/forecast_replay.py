"""Do exit forecasts pay at this batch size? The run's two plans replayed on the validation trace.

A forecast saves time where it ends a chunk at an input's exit instead of in the short chunks a
static plan needs wherever inputs stop; it also costs time of its own (the policy asked about
every later step, a plan searched, its error recorded at the exit). The measured chunk times hold
the network, the running sums and the decisions, not that cost, so the plan cannot weigh it.
On a small network at batch 1 a forecast can cost more than it saves (`snnexit bench`:
``early_exit`` against ``early_exit_static``).

:func:`replay_times` runs batches of the trace's inputs through both plans of a run
(:class:`~snnexit.runtime.planning.RunPlan` with the forecaster and without), calling them as
:meth:`ChunkedEngine._run <snnexit.runtime.chunked.ChunkedEngine._run>` does, on the trace's
accumulated outputs and exit steps: each chunk is priced by the chunk times, each call of a plan
by the clock. The engine forecasts at a batch size only where the replay with forecasts is the
faster one. The errors the forecasts plan with were learned from this same trace, so the replay
judges them on inputs they have seen; what they bring on new inputs is for the bench to measure.
"""

from __future__ import annotations

import math

import torch

from snnexit.runtime.planning import RunPlan, report_exits


def replay_batches(N: int, n: int, max_inputs: int = 256, seed: int = 0) -> list[torch.Tensor]:
    """Rows of the trace for replayed batches of ``n``: about ``max_inputs`` inputs in all (at least
    one batch), every input once before any twice (at batch 1 with ``N <= max_inputs``: each input
    exactly once, so the replay is the trace's own expectation)."""
    runs = max(1, min(N, max_inputs) // n)
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(N, generator=g) for _ in range(math.ceil(runs * n / N))])
    return [order[i * n:(i + 1) * n] for i in range(runs)]


def replayed_run(plan, rows: torch.Tensor, outputs: torch.Tensor, exit_steps: torch.Tensor, chunk_time,
                 clock) -> float:
    """The time of one run of the trace inputs ``rows`` under ``plan``: its chunks by
    ``chunk_time(k, inputs running)``, its own calls (``next``, ``exited``) by ``clock``.
    ``outputs`` ``(T, N, C)`` accumulated (on the engine's device, as a run's sums), ``exit_steps``
    ``(N,)`` on the CPU: the trace's."""
    T = outputs.shape[0]
    steps = exit_steps.index_select(0, rows)  # (n,) by position in the batch, as a run's `active`
    active = torch.arange(rows.numel())
    acc, t0, total = None, 0, 0.0
    while t0 < T:
        started = clock()
        k = min(plan.next(t0, acc, active), T - t0)
        total += clock() - started + chunk_time(k, active.numel())
        t0 += k
        done = steps.index_select(0, active) <= t0
        if bool(done.any()):
            idx = active[done]
            started = clock()
            report_exits(plan, idx, steps.index_select(0, idx))
            total += clock() - started
            active = active[~done]
        if active.numel() == 0:
            break
        acc = outputs[t0 - 1].index_select(0, rows.index_select(0, active).to(outputs.device))
    return total


def replay_times(forecaster, choices: list[int], chunk_time, outputs: torch.Tensor, exit_steps: torch.Tensor,
                 meta: dict, n: int, clock, max_inputs: int = 256) -> tuple[float, float]:
    """``(without, with)``: the mean time of a run of ``n`` inputs of the trace under the static plan
    ``choices`` and under the same plan with ``forecaster`` (a :meth:`fork
    <snnexit.runtime.forecasts.ExitForecaster.fork>` learns the replay's errors, not the
    forecaster itself). The same batches for both; ``(0, 0)`` where the plan would not forecast
    at this batch size (no chunk of several steps is faster than as many single steps)."""
    batches = replay_batches(exit_steps.numel(), n, max_inputs)
    twin = forecaster.fork()
    if RunPlan(choices, chunk_time, n, twin, meta).forecaster is None:  # no chunk pays at n: a plan never forecasts
        return 0.0, 0.0
    without = sum(replayed_run(RunPlan(choices, chunk_time, n, None, meta), rows, outputs, exit_steps, chunk_time,
                               clock) for rows in batches)
    with_ = sum(replayed_run(RunPlan(choices, chunk_time, n, twin, meta), rows, outputs, exit_steps, chunk_time,
                             clock) for rows in batches)
    return without / len(batches), with_ / len(batches)
