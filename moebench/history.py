"""A fit's records and clock, and what one start of a fit ends with.

:class:`History` (per-iteration records and a clock that excludes metric time),
:class:`TaggedHistory` (one restart's view of it) and :class:`StartFit` (one start's
outcome). They sit below both the estimator contract (:mod:`moebench.base`) and the EM
numerics (:mod:`moebench.em`, :mod:`moebench.acceleration`), which all use them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moebench.chunked import passes
from moebench.metrics import parameter_errors
from moebench.model import MoEModel


class History:
    """Per-iteration records with a clock that excludes metric evaluation.

    Parameters
    ----------
    truth : MoEModel, optional
        When given, each record carries the matched parameter errors; the time
        spent computing them is not counted in ``time``.
    count_passes : bool
        Each record also carries ``passes``: the passes over an on-disk X
        (:func:`moebench.chunked.passes`) since the history was created. ``fit`` sets it
        when X is a memmap.
    """

    def __init__(self, truth: MoEModel | None = None, count_passes: bool = False) -> None:
        self.truth = truth
        self.records: list[dict[str, Any]] = []
        self._start = time.perf_counter()
        self._excluded = 0.0
        self._passes0 = passes() if count_passes else None

    def elapsed(self) -> float:
        """Seconds since creation, less the time spent on metrics."""
        return time.perf_counter() - self._start - self._excluded

    def record(
        self,
        phase: str,
        iteration: int,
        log_likelihood: float,
        experts: np.ndarray | None = None,
        gating: np.ndarray | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Append one record: phase, iteration, time, log_likelihood (+ errors, extras)."""
        now = self.elapsed()
        tick = time.perf_counter()
        rec: dict[str, Any] = {
            "phase": phase,
            "iteration": int(iteration),
            "time": now,
            "log_likelihood": float(log_likelihood),
        }
        if self._passes0 is not None:
            rec["passes"] = passes() - self._passes0
        # matched errors need the truth's number of experts and inputs (Voronoi losses,
        # for any k, are computed on the final fit only)
        if (self.truth is not None and experts is not None
                and np.shape(experts) == self.truth.experts.shape):
            g = gating if gating is not None else np.zeros_like(experts)
            if np.all(np.isfinite(experts)) and np.all(np.isfinite(g)):
                errs = parameter_errors(experts, g, self.truth)
                rec["expert_error"] = errs["expert_error"]
                rec["gating_error"] = errs["gating_error"] if gating is not None else np.nan
        rec.update(extra)
        self.records.append(rec)
        self._excluded += time.perf_counter() - tick
        return rec


class TaggedHistory:
    """A view of a :class:`History` that adds fixed extra fields to every record.

    Lets one restart write records tagged with its index (``restart=j``) while every
    restart shares one clock (and one metric-time exclusion).
    """

    def __init__(self, history: History, **tags: Any) -> None:
        self._history = history
        self._tags = tags

    @property
    def truth(self) -> MoEModel | None:
        """The wrapped history's truth (a start in rescaled units may set it)."""
        return self._history.truth

    @truth.setter
    def truth(self, value: MoEModel | None) -> None:
        self._history.truth = value

    def elapsed(self) -> float:
        """Seconds since the fit started, less metric time."""
        return self._history.elapsed()

    def record(self, phase: str, iteration: int, log_likelihood: float,
               experts: np.ndarray | None = None, gating: np.ndarray | None = None,
               **extra: Any) -> dict[str, Any]:
        """Record into the wrapped history with the tags added."""
        return self._history.record(phase, iteration, log_likelihood, experts=experts,
                                    gating=gating, **self._tags, **extra)


@dataclass
class StartFit:
    """What one start of a restarted fit ends with (returned by ``_fit_single``;
    :func:`moebench.em.run_em` returns one)."""

    experts: np.ndarray
    gating: np.ndarray
    sigma: float
    n_iter: int
    #: final mean training log-likelihood; -inf for a start that diverged
    log_likelihood: float
    converged: bool
    #: what ended the start: "converged", "max_iter", "max_time", or the method's own
    stop_reason: str
    #: anything the estimator needs from the kept start (its ``_restart_score`` or
    #: ``_finish_restarts``)
    extra: dict[str, Any] = field(default_factory=dict)
