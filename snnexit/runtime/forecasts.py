"""Exit forecasts: where each running input will exit, and how far such forecasts miss.

After ``s`` steps the policy is asked about an input's accumulated output extrapolated to each
later step ``t``, ``Y_s * t / s`` (a rate-coded output grows about linearly in t); the first ``t``
it would stop at is the forecast. How far forecasts miss (exit step minus forecast) is learned
per ``s`` from a trace of inputs like these and from every exit the engine sees; the time-chunked
runtime then plans the next chunk under that error model (:func:`snnexit.runtime.planning.next_chunk`).
Forecasts choose chunk lengths only, never a decision.
"""

from __future__ import annotations

import copy

import torch

from snnexit.runtime.planning import next_chunk

MIN_ERRORS = 16  # forecast errors at one s needed before they are trusted over the pooled ones


class ForecastErrors:
    """How far exit forecasts miss: counts of ``d = exit step - forecast`` per step ``s`` of the forecast.

    ``survival(s, forecasts)`` turns forecasts made after ``s`` steps into survival curves: the
    errors seen at ``s`` (or, with fewer than ``MIN_ERRORS`` of them, at every ``s``; with none, a
    forecast is taken at its word), shifted to each forecast and cut to the steps ``s + 1 .. T``.
    """

    def __init__(self, T: int):
        self.T = T
        self.counts = torch.zeros(T + 1, 2 * T + 1, dtype=torch.float64)  # [s, d + T]

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def add(self, s: torch.Tensor, d: torch.Tensor) -> None:
        """Record errors ``d`` of forecasts made after ``s`` steps (tensors of one shape)."""
        s, d = s.long().flatten().cpu(), d.long().flatten().cpu()
        self.counts.index_put_((s, d + self.T), torch.ones(s.numel(), dtype=torch.float64), accumulate=True)

    def error_weights(self, s: int) -> torch.Tensor:
        row = self.counts[s]
        if row.sum() < MIN_ERRORS:
            row = self.counts.sum(0)
        if row.sum() == 0:
            row = torch.zeros(2 * self.T + 1, dtype=torch.float64)
            row[self.T] = 1.0  # nothing learned yet: the forecast is the exit
        return row / row.sum()

    def survival(self, s: int, forecasts: torch.Tensor) -> torch.Tensor:
        """``(m, T + 1)`` ``P(exit > u)`` for each forecast made after ``s`` steps."""
        T = self.T
        w = self.error_weights(s)  # (2T + 1,) over d = -T..T
        d = torch.arange(-T, T + 1)
        exits = (forecasts.long().cpu().view(-1, 1) + d).clamp(s + 1, T)  # (m, 2T + 1)
        pmf = torch.zeros(exits.shape[0], T + 1, dtype=torch.float64)
        pmf.scatter_add_(1, exits, w.expand_as(exits).contiguous())
        return (1.0 - pmf.cumsum(1)).clamp_min(0.0)


class ExitForecaster:
    """Forecasts where each running input will exit, and the chunk that costs least given them.

    ``forecast(acc, s, meta)``: for the accumulated outputs ``acc`` ``(m, C)`` after ``s`` steps, the first
    step ``t`` in ``s + 1 .. T`` at which the policy would stop on ``acc * t / s`` (T if none): one
    policy call for every later step where the score does not depend on the step, else a binary
    search for one input (the score of an extrapolated output rises with t for the thresholded
    policies) and a scan over t for several.
    """

    def __init__(self, policy, T: int):
        self.policy, self.T = policy, T
        self.errors = ForecastErrors(T)
        self._choices: dict[tuple, int] = {}  # (s, forecasts) -> next chunk, while the error model stands
        self._basis = 0  # errors recorded when the cached choices were made

    def fork(self) -> "ExitForecaster":
        """A twin that learns apart from this one: the same policy, a copy of the errors and the
        cached choices (a replay records its forecasts' errors without teaching the engine's)."""
        twin = copy.copy(self)
        twin.errors = copy.deepcopy(self.errors)
        twin._choices = dict(self._choices)
        return twin

    def _stops(self, acc: torch.Tensor, s: int, t: int, meta: dict) -> torch.Tensor:
        if t >= self.T:
            return torch.ones(acc.shape[0], dtype=torch.bool)
        guess = acc * (t / s)
        stop = self.policy.decide(guess if guess.dtype == torch.float32 else guess.float(), t, meta)
        return torch.as_tensor(stop, dtype=torch.bool).flatten().cpu()

    def _one_call(self, meta: dict) -> bool:
        """Can the policy score every later step's extrapolation in one call (its score does not
        depend on the step)?"""
        depends = getattr(self.policy, "score_depends_on_step", None)
        return callable(depends) and not depends(meta)

    @torch.no_grad()
    def forecast(self, acc: torch.Tensor, s: int, meta: dict) -> torch.Tensor:
        """``(m,)`` forecast exit steps; ``meta``: the run's (the trace's, or the engine's after a step)."""
        m, T = acc.shape[0], self.T
        if s + 1 < T and self._one_call(meta):  # every t in s + 1 .. T - 1 at once
            rows = acc if acc.dtype == torch.float32 else acc.float()
            factors = torch.tensor([t / s for t in range(s + 1, T)], dtype=rows.dtype, device=rows.device)
            stop = self.policy.decide_steps(rows.unsqueeze(0) * factors.view(-1, 1, 1), s + 1, meta).cpu()
            first = stop.int().argmax(0) + s + 1
            return torch.where(stop.any(0), first, torch.full_like(first, T)).long()
        if m == 1:
            lo, hi = s + 1, T
            while lo < hi:
                mid = (lo + hi) // 2
                if bool(self._stops(acc, s, mid, meta)[0]):
                    hi = mid
                else:
                    lo = mid + 1
            return torch.tensor([lo])
        out = torch.full((m,), T, dtype=torch.long)
        open_ = torch.ones(m, dtype=torch.bool)
        for t in range(s + 1, T):
            stop = self._stops(acc, s, t, meta) & open_
            out[stop] = t
            open_ &= ~stop
            if not bool(open_.any()):
                break
        return out

    def learn(self, exit_steps: torch.Tensor, outputs: torch.Tensor, meta: dict) -> None:
        """Forecast errors of the inputs of a trace: ``outputs`` ``(T, N, C)`` accumulated, ``exit_steps``
        ``(N,)``, ``meta`` the trace's."""
        for s in range(1, self.T):
            alive = (exit_steps > s).nonzero().flatten()
            if alive.numel() == 0:
                break
            p = self.forecast(outputs[s - 1].index_select(0, alive), s, meta)
            self.errors.add(torch.full_like(p, s), exit_steps.index_select(0, alive) - p)

    def next_chunk(self, s: int, forecasts: torch.Tensor, chunk_time, allowed: tuple[int, ...] | None = None) -> int:
        """The chunk after ``s`` steps for running inputs forecast to exit at ``forecasts``, one of
        ``allowed`` (chunk lengths) where given."""
        if self.errors.total >= 2 * max(1, self._basis):  # the error model has doubled: plan afresh
            self._choices.clear()
            self._basis = self.errors.total
        key = (s, tuple(sorted(forecasts.tolist())), allowed) if forecasts.numel() <= 8 else None
        if key is not None and key in self._choices:
            return self._choices[key]
        first_allowed = None if allowed is None else set(allowed).__contains__
        k = next_chunk(self.errors.survival(s, forecasts), s, chunk_time, first_allowed)
        if key is not None:
            self._choices[key] = k
        return k
