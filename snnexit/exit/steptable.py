"""Policies whose score passes through per-step lookup tables learned on the fitting trace.

A raw per-step statistic ``r_t(x)`` (a Top-K gap, a conformal nonconformity) is mapped by a
monotone, step-specific table: ``score = table_[t][#{calibration values at t < r_t(x)}]``.
Each input's score depends on its own accumulated output and the fitted tables only, so
``decide`` on a compacted batch gives the same numbers as ``exit_steps`` on the trace, and
one global threshold on the score is a per-step threshold on the raw statistic: the exact
curve (one sort) covers the whole family.
"""

from __future__ import annotations

import torch

from snnexit.errors import SnnexitError
from snnexit.exit.base import check_is_fitted, check_step_range
from snnexit.exit.codec import Fitted
from snnexit.exit.threshold import ThresholdPolicy
from snnexit.simulate.trace import Trace


class StepTablePolicy(ThresholdPolicy):
    """Subclasses implement ``raw_step`` and ``_tables(raw (T, N), trace) -> (sorted, table)``.

    Fitted attributes besides the shared ones: ``sorted_values_`` ``(T_, N)`` and
    ``score_table_`` ``(T_, N + 1)``, float64 (N: the inputs that learned the tables).
    """

    declare_fitted = {"sorted_values_": Fitted("tensor", "float64", 2, learned=True),
                      "score_table_": Fitted("tensor", "float64", 2, learned=True)}

    def _check_fitted_state(self, values):
        super()._check_fitted_state(values)
        T = values["T_"]
        shape, table = tuple(values["sorted_values_"].shape), tuple(values["score_table_"].shape)
        if shape[0] != T or shape[1] < 1 or table != (T, shape[1] + 1):
            raise SnnexitError(f"sorted_values_ {shape} and score_table_ {table} must be (T_, N) and (T_, N + 1) "
                               f"with T_ = {T}, N >= 1")

    def raw_step(self, accumulated: torch.Tensor, t: int, meta: dict) -> torch.Tensor:
        raise NotImplementedError

    def raw_formula(self, meta: dict) -> str:
        """The raw statistic in words (for :meth:`describe_rule`)."""
        raise NotImplementedError

    def raw_thresholds(self) -> torch.Tensor:
        """(T_,) float64: the fitted rule as one threshold per step on the raw statistic, "exit after
        step t iff raw > tau_t" (-inf: always; inf: never). The table maps the number of
        calibration values below ``raw`` monotonically, so the first count whose score passes the
        threshold decides."""
        check_is_fitted(self, ("T_", "threshold_", "sorted_values_", "score_table_"))
        passes = self.score_table_ > self.threshold_  # (T_, N + 1)
        first = torch.where(passes.any(1), passes.int().argmax(1), torch.full((self.T_,), passes.shape[1]))
        padded = torch.cat([torch.full((self.T_, 1), -torch.inf, dtype=torch.float64), self.sorted_values_,
                            torch.full((self.T_, 1), torch.inf, dtype=torch.float64)], 1)
        return padded.gather(1, first.view(-1, 1)).view(-1)  # count >= i <=> raw > sorted[i - 1]

    def describe_rule(self, meta: dict) -> str:
        taus = ", ".join(repr(float(v)) for v in self.raw_thresholds())
        return (f"after each step t < {self.T_}, stop when {self.raw_formula(meta)} > tau_t, tau = [{taus}] "
                f"(-inf: always, inf: never); else stop at t = {self.T_}")

    def _tables(self, raw: torch.Tensor, trace: Trace) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def raw_scores(self, trace: Trace) -> torch.Tensor:
        """(T, N) the raw statistic at every step."""
        return torch.stack([self.raw_step(trace.outputs[t], t + 1, trace.meta) for t in range(trace.T)])

    def _fit_scores(self, trace: Trace) -> None:
        raw = self.raw_scores(trace).double().cpu()  # (T, N)
        sorted_, table = self._tables(raw, trace)
        self.sorted_values_ = sorted_.contiguous()  # (T, N) ascending calibration values per step
        self.score_table_ = table.contiguous()  # (T, N + 1) score for 0..N calibration values below
        self._device_tables = {}

    def score_step(self, accumulated, t, meta):
        check_is_fitted(self, ("sorted_values_", "score_table_"))
        check_step_range(self, self.score_table_.shape[0], t)
        device = accumulated.device
        cache = self.__dict__.setdefault("_device_tables", {})  # a loaded policy starts without one
        if device not in cache:  # one copy per device, made once
            cache[device] = (self.sorted_values_.to(device), self.score_table_.to(device))
        sorted_values, table = cache[device]
        raw = self.raw_step(accumulated, t, meta).to(sorted_values.dtype).contiguous()  # float32 scores: exact
        below = torch.searchsorted(sorted_values[t - 1], raw, side="left")  # (N,) calibration values < raw
        return table[t - 1][below]
