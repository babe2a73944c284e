"""The restart loop of every estimator fitted from ``n_init`` random starts.

A method fitted from several starts subclasses :class:`RestartedEstimator` and implements
``_fit_single`` (one start); the loop, the shared budgets and the choice of the kept start
live here, one level above the estimator contract (:mod:`moebench.base`).
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np

from moebench.activations import Activation
from moebench.base import MoEEstimator
from moebench.constraints import Interval
from moebench.history import History, StartFit, TaggedHistory
from moebench.stopping import StoppingCriterion


class RestartedEstimator(MoEEstimator):
    """An estimator fitted from ``n_init`` starts, keeping the best (as scikit-learn's
    ``BaseMixture``).

    Subclasses implement :meth:`_fit_single` (one start: draw a starting point from
    ``rng``, iterate, record into ``history``, ask the fit's
    :class:`~moebench.stopping.StoppingCriterion` ``stop`` after each iteration) and take
    ``n_init`` and ``max_time`` as constructor parameters; their declarations live here.
    :meth:`_fit` owns the loop:

    - one generator ``self._rng()`` for the whole fit; each start draws from it in
      turn, after :meth:`_restart_context` (work shared by every start);
    - every record of start j carries ``restart=j``; one clock runs across starts;
    - one stopping criterion (:meth:`MoEEstimator.stopping`) for the whole fit: the
      budgets are totals across all starts (``max_iter`` counts the iterations of every
      start, in the class's ``iteration_unit``; ``max_time`` the wall time of the fit).
      A start after a budget is spent does not run; then, or when the budget cut a start,
      the fit's ``stop_reason_`` is that budget ("max_iter" or "max_time");
    - the start with the highest :meth:`_restart_score` (the final log-likelihood) is
      kept, a finite start replacing a diverged one (log-likelihood -inf);
      ``n_iter_`` is the sum over the starts that ran; ``converged_`` is the kept
      start's.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_init": [Interval(int, 1, None)],
        "max_time": [Interval(float, 0, None, closed="neither"), None],
    }
    n_init: int
    max_time: float | None

    def stopping(self, history: History, tol: float | None = None) -> StoppingCriterion:
        """:meth:`MoEEstimator.stopping`; ``max_time`` (a parameter of every restarted
        estimator) is the time budget even when ``budget_parameters`` does not name it."""
        stop = super().stopping(history, tol)
        if "max_time" not in self.budget_parameters and self.max_time is not None:
            stop = StoppingCriterion(stop.max_iter, self.max_time, tol, history, stop.unit)
        return stop

    def _n_starts(self) -> int:
        """Starts to run (default ``n_init``; a deterministic start runs once)."""
        return int(self.n_init)

    def _stop_tol(self) -> float | None:
        """The tolerance of the fit's stopping criterion (default: none; the subclass's
        ``_fit_single`` applies its own criterion or the criterion's)."""
        return None

    def _restart_context(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                         sigma: float | None, rng: np.random.Generator) -> Any:
        """Work shared by every start, done once before the first (default: None)."""
        return None

    def _fit_single(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                    sigma: float | None, history: History, rng: np.random.Generator,
                    stop: StoppingCriterion, context: Any) -> StartFit:
        """Fit from one start drawn from ``rng``; ask ``stop`` after each iteration.

        ``history`` tags every record with the restart index; ``stop`` is the fit's one
        stopping criterion (budgets are totals over all starts: ``stop.check(ll, prev)``
        counts the iteration and returns the reason to stop, or None); ``context`` is what
        :meth:`_restart_context` returned.
        """
        raise NotImplementedError

    def _restart_score(self, result: StartFit) -> float:
        """What picks the kept start (highest wins): its final log-likelihood."""
        return result.log_likelihood

    def _finish_restarts(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                         sigma: float | None, history: History, best: StartFit,
                         n_iter: int) -> StartFit:
        """Turn the kept start into the fit (default: as it is); ``n_iter`` is the sum."""
        return best

    def _fit(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
             sigma: float | None, history: History) -> None:
        rng = self._rng()
        stop = self.stopping(history, tol=self._stop_tol())
        context = self._restart_context(X, y, k, activation, sigma, rng)
        best: StartFit | None = None
        best_score = -np.inf
        total_iter = 0
        cut: str | None = None  # the budget that cut a start or left starts unrun
        for j in range(self._n_starts()):
            if j > 0:
                spent = stop.spent()
                if spent is not None:
                    cut = cut or spent
                    break
            tagged = cast(History, TaggedHistory(history, restart=j))
            result = self._fit_single(X, y, k, activation, sigma, tagged, rng, stop, context)
            total_iter += result.n_iter
            if result.stop_reason in ("max_iter", "max_time"):
                cut = cut or result.stop_reason
            score = self._restart_score(result)
            if best is None or score > best_score or (
                    best_score == -np.inf and _finite(result)):
                best, best_score = result, score
        assert best is not None
        best = self._finish_restarts(X, y, k, activation, sigma, history, best, total_iter)
        self._set_fit(best.experts, best.gating, best.sigma, total_iter, best.log_likelihood,
                      cut or best.stop_reason, converged=bool(best.converged))


def _finite(result: StartFit) -> bool:
    """Whether a start's experts, gating and sigma are all finite."""
    return all(np.all(np.isfinite(v)) for v in (result.experts, result.gating, result.sigma))
