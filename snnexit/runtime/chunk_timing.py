"""Measured chunk times: what a chunk of ``k`` steps on ``m`` inputs costs on this machine.

The plans of :mod:`snnexit.runtime.planning` weigh schedules by ``chunk_time(k, m)``;
:class:`ChunkPlanner` measures it on the engine's own network, with its running sums and
decisions, at the thread count the run will use.
"""

from __future__ import annotations

import time

import torch


def clock_for(threads: int | None):
    """The clock that times a chunk: our own CPU time with one thread (time other processes take
    from the core does not count, so a busy machine does not distort the plan), else wall time."""
    return time.thread_time if threads == 1 else time.perf_counter


class ChunkPlanner:
    """Times chunks of each length on the network and plans schedules from exit distributions.

    ``times[(threads, m)][k]`` is the time of a chunk of ``k`` steps on ``m`` inputs (the least of
    ``timing_repeats`` runs after a warm-up, the lengths taking turns: on a shared machine the
    least is the one nothing else slowed), for ``k`` in powers of two up to the longest chunk
    memory allows (or a fixed schedule's lengths) and ``m`` in ``{1, n}``; other ``(k, m)`` are
    interpolated linearly (and extrapolated from the nearest two points in ``k``).
    """

    def __init__(self, engine):
        self.engine = engine
        self.times: dict[tuple[int, int], dict[int, float]] = {}  # (threads, m) -> {k: seconds}

    def lengths(self, n: int, max_k: int) -> list[int]:
        ks, k = [], 1
        while k <= max_k:
            ks.append(k)
            k *= 2
        if ks[-1] != max_k:
            ks.append(max_k)
        return ks

    def measure(self, x: torch.Tensor, threads: int, max_k: int, temporal: bool, lengths=None) -> None:
        """Time a chunk of every candidate length on the first ``m`` rows of ``x``, m in {1, n}
        (``lengths``: those lengths instead, e.g. a fixed schedule's).

        The lengths take turns (a warm-up round, then ``timing_repeats`` rounds over every length):
        a moment when something else held the core slows one run of each length, not every run of one."""
        n = x.shape[0]
        clock = clock_for(threads)
        for m in sorted({1, n}):
            key = (threads, m)
            if key in self.times:
                continue
            rows = x[:m]
            ks = sorted(set(lengths)) if lengths is not None else self.lengths(m, max_k)
            frames = {k: self.engine._frames(rows, 0, k, temporal) for k in ks}
            runs: dict[int, list[float]] = {k: [] for k in frames}
            for _ in range(self.engine.timing_repeats + 1):  # the first round warms up
                for k, chunk in frames.items():
                    self.engine.snn.reset()
                    self.engine._sync()
                    started = clock()
                    self._chunk(chunk, m)
                    self.engine._sync()
                    runs[k].append(clock() - started)
            self.engine.snn.reset()
            self.times[key] = {k: min(r[1:]) for k, r in runs.items()}

    def _chunk(self, frames: torch.Tensor, m: int) -> None:
        """A chunk as a run computes it: the network's steps, the running sums and, where the
        policy decides without labels, its decisions (at batch 1 a sizeable part of a short chunk)."""
        engine = self.engine
        if getattr(engine.policy, "uses_labels_at_test", False):
            engine.snn.step_chunk(frames)
            return
        engine._chunk(frames, None, None, 0, None, torch.arange(m, device=frames.device),
                      engine.meta_after_first_step())

    def chunk_time(self, threads: int, n: int):
        lo, hi = self.times[(threads, 1)], self.times[(threads, n)]

        def in_k(table: dict[int, float], k: int) -> float:
            ks = sorted(table)
            if k in table:
                return table[k]
            if k > ks[-1]:  # extrapolate along the last segment (longer chunks are refused anyway)
                a, b = ks[-2:] if len(ks) > 1 else (ks[-1], ks[-1])
            elif k < ks[0]:  # a schedule's lengths only: along the first segment
                a, b = ks[:2] if len(ks) > 1 else (ks[0], ks[0])
            else:
                b = next(v for v in ks if v > k)
                a = max(v for v in ks if v < k)
            if a == b:
                return table[a] * k / a
            return max(0.0, table[a] + (table[b] - table[a]) * (k - a) / (b - a))

        T = self.engine.T
        lo_k = [0.0] + [in_k(lo, k) for k in range(1, T + 1)]  # tabulated: the plans call this O(T^2) times
        hi_k = [0.0] + [in_k(hi, k) for k in range(1, T + 1)]

        def fn(k: int, m: float) -> float:
            if n == 1:
                return lo_k[k]
            return lo_k[k] + (hi_k[k] - lo_k[k]) * (m - 1) / (n - 1)

        return fn
