"""The framework's stopping rule: one object enforces every fit's budgets and tolerance.

In the spirit of benchopt's ``StoppingCriterion``: an estimator does not read clocks or
count iterations against the sweep's budgets itself. It makes one
:class:`StoppingCriterion` per fit (:meth:`moebench.base.MoEEstimator.stopping`, from the
options its class declares in ``budget_parameters``), hands it to every loop of the fit
(every restart, every phase), and asks it after each iteration whether to stop.

- **Budgets are totals.** ``max_iter`` counts the iterations of the whole fit, in the
  unit the class declares (``iteration_unit``: "EM iteration", "alternating step", ...),
  summed over restarts and phases; ``max_time`` is the wall-clock budget of the whole fit
  (the clock of the fit's :class:`~moebench.history.History`, which excludes metric time):
  the work before the first iteration (a moment method's tensor step, a start's search)
  is charged to it too. ``joint_em(n_init=3, max_iter=100)`` runs at most 100 EM
  iterations in all.
- **The tolerance** is the relative change of the mean log-likelihood between two
  iterations, ``|ll - ll_prev| <= tol * max(1, |ll|)``; ``tol=None`` disables it.
- **A fixed precedence** names what ended a fit when several end the same iteration: the
  criterion ("converged"), then the iteration budget (the loop's own limit, e.g.
  "max_epochs" or "gating_em_iter", then the fit's total "max_iter"), then the time
  budget ("max_time").

Each check after an iteration is O(1): a counter, a comparison, and (only when a time
budget is set) one clock read.
"""

from __future__ import annotations

from typing import Protocol

#: stop reasons the criterion itself gives, in order of precedence (a loop's own limit,
#: e.g. "max_epochs", ranks between "converged" and "max_iter")
STOP_REASONS = ("converged", "max_iter", "max_time")


class Clock(Protocol):
    """Anything with ``elapsed()`` in seconds (a :class:`moebench.history.History`)."""

    def elapsed(self) -> float:
        """Seconds since the fit started, less metric time."""
        ...


class StoppingCriterion:
    """Budgets (totals over the fit) and the tolerance of one fit; sets the stop reason.

    Parameters
    ----------
    max_iter : int or None
        Iteration budget of the whole fit (every restart and phase that counts), in
        ``unit``; None: no budget.
    max_time : float or None
        Wall-clock budget in seconds of the whole fit, read from ``clock``; None: none.
    tol : float or None
        Relative log-likelihood tolerance; None disables the criterion.
    clock : object with ``elapsed()``, optional
        The fit's clock (its :class:`~moebench.history.History`); needed when ``max_time``
        is set.
    unit : str or None
        What one iteration is ("EM iteration", "epoch", ...), for messages and docs.

    Attributes
    ----------
    n_iter : int
        Iterations counted so far (all loops that share this criterion).
    reason : str or None
        The reason of the last stop it gave.

    Examples
    --------
    >>> stop = StoppingCriterion(max_iter=3, tol=1e-6)
    >>> [stop.check(ll, prev) for prev, ll in [(-2.0, -1.0), (-1.0, -0.5), (-0.5, -0.4)]]
    [None, None, 'max_iter']
    """

    __slots__ = ("max_iter", "max_time", "tol", "clock", "unit", "n_iter", "reason")

    def __init__(self, max_iter: int | None = None, max_time: float | None = None,
                 tol: float | None = None, clock: Clock | None = None,
                 unit: str | None = None) -> None:
        if max_iter is not None and int(max_iter) < 0:
            raise ValueError(f"max_iter must be >= 0 or None; got {max_iter!r}")
        if max_time is not None and not float(max_time) > 0:
            raise ValueError(f"max_time must be > 0 or None; got {max_time!r}")
        if tol is not None and not float(tol) >= 0:
            raise ValueError(f"tol must be >= 0 or None; got {tol!r}")
        if max_time is not None and clock is None:
            raise ValueError("a time budget (max_time) needs a clock (the fit's History)")
        self.max_iter = None if max_iter is None else int(max_iter)
        self.max_time = None if max_time is None else float(max_time)
        self.tol = None if tol is None else float(tol)
        self.clock = clock
        self.unit = unit
        self.n_iter = 0
        self.reason: str | None = None

    def __repr__(self) -> str:
        return (f"StoppingCriterion(max_iter={self.max_iter!r}, max_time={self.max_time!r}, "
                f"tol={self.tol!r}, unit={self.unit!r}, n_iter={self.n_iter})")

    # -- budgets ------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds on the fit's clock (0.0 without a clock)."""
        return self.clock.elapsed() if self.clock is not None else 0.0

    def out_of_time(self) -> bool:
        """Whether the time budget is spent."""
        return self.max_time is not None and self.clock.elapsed() > self.max_time  # type: ignore[union-attr]

    def iterations_left(self) -> int | None:
        """Iterations the budget still allows (None: no iteration budget)."""
        return None if self.max_iter is None else max(self.max_iter - self.n_iter, 0)

    def spent(self) -> str | None:
        """Before a loop (a restart, a phase): "max_iter" when the iteration budget is used
        up, else "max_time" when the time budget is, else None (iterations first)."""
        if self.max_iter is not None and self.n_iter >= self.max_iter:
            self.reason = "max_iter"
        elif self.out_of_time():
            self.reason = "max_time"
        else:
            return None
        return self.reason

    def budget_reason(self, limit: str | None = None) -> str | None:
        """After an iteration (already counted with :meth:`tick`), the budget that ends the
        loop, by precedence: the loop's own ``limit`` when reached (its name), the total
        "max_iter", then "max_time"; None when none does."""
        if limit is not None:
            self.reason = limit
        elif self.max_iter is not None and self.n_iter >= self.max_iter:
            self.reason = "max_iter"
        elif self.max_time is not None and self.clock.elapsed() > self.max_time:  # type: ignore[union-attr]
            self.reason = "max_time"
        else:
            return None
        return self.reason

    def tick(self) -> None:
        """Count one iteration."""
        self.n_iter += 1

    # -- the per-iteration check ----------------------------------------------------------
    def converged(self, log_likelihood: float, previous: float) -> bool:
        """|ll - previous| <= tol * max(1, |ll|) (False when the tolerance is disabled)."""
        return self.tol is not None and (
            abs(log_likelihood - previous) <= self.tol * max(1.0, abs(log_likelihood)))

    def check(self, log_likelihood: float, previous: float, limit: str | None = None
              ) -> str | None:
        """Count one iteration and say whether the loop stops, and why.

        Parameters
        ----------
        log_likelihood, previous : float
            The mean log-likelihood after this iteration and before it.
        limit : str or None
            The name of the loop's own limit (e.g. "max_epochs") when this iteration
            reached it, else None.

        Returns
        -------
        str or None
            "converged", ``limit``, "max_iter" or "max_time" (in that precedence), or
            None to go on. Also kept as :attr:`reason`.
        """
        self.n_iter += 1
        if self.tol is not None and (abs(log_likelihood - previous)
                                     <= self.tol * max(1.0, abs(log_likelihood))):
            self.reason = "converged"
            return self.reason
        return self.budget_reason(limit)

    def uncounted(self, tol: float | None = None, unit: str | None = None
                  ) -> StoppingCriterion:
        """A criterion for work that the iteration budget does not count (a start's own
        loop, e.g. the gating EM of ``joint_em(init="tensor")``): the same clock and time
        budget, no iteration budget, its own tolerance."""
        return StoppingCriterion(None, self.max_time, tol, self.clock, unit)
