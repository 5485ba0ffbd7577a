"""How many CPU threads a run should use, from the cores other processes leave free.

Per-step kernels are short, and an OpenMP team waits at a barrier after every one: when another
process holds one of the cores, the thread scheduled out stalls the whole team, and a batch-1 run
on two threads of a two-core machine becomes many times slower than on one. :class:`LoadMeter`
measures the load of everyone else as the CPU time all processes used (``/proc/stat``) minus the
time this process used (``os.times``), over the interval since its last reading, so our own
threads never count as load. Where ``/proc/stat`` does not exist every core counts as free.
"""

from __future__ import annotations

import contextlib
import os
import time

import torch


def _busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (every core), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


class LoadMeter:
    """Cores kept busy by other processes, measured over the time between readings.

    ``other_busy()`` returns the mean number of cores the rest of the machine used since the
    previous call (the first call samples ``probe_s`` seconds); readings closer together than
    ``min_interval_s`` return the previous value, so calling it before every run is cheap.
    """

    def __init__(self, probe_s: float = 0.05, min_interval_s: float = 0.2):
        self.probe_s = probe_s
        self.min_interval_s = min_interval_s
        self._last: tuple[float, float, float] | None = None
        self._value = 0.0

    def _sample(self):
        busy = _busy_seconds()
        return None if busy is None else (time.perf_counter(), busy, _own_seconds())

    def other_busy(self) -> float:
        if self._last is not None and time.perf_counter() - self._last[0] < self.min_interval_s:
            return self._value  # too soon for a reading worth its noise (and its cost: a file read, a syscall)
        now = self._sample()
        if now is None:
            return 0.0
        if self._last is None:
            self._last = now
            time.sleep(self.probe_s)
            now = self._sample()
        wall = now[0] - self._last[0]
        others = (now[1] - self._last[1]) - (now[2] - self._last[2])
        self._value = max(0.0, others / wall) if wall > 0 else 0.0
        self._last = now
        return self._value

    def free_cores(self, cores: int | None = None) -> float:
        cores = cores or os.cpu_count() or 1
        return max(0.0, cores - self.other_busy())


@contextlib.contextmanager
def num_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (None: leave them), restoring the count after."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
