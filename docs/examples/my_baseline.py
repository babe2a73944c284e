"""Classification EM ("hard EM") for the mixture of experts: a worked example baseline.

Copy this file to ``baselines/hard_em.py``: the registry imports every module in
``baselines/``, so the ``@register`` line is all it takes for ``moebench list``,
``moebench.get_algorithm("hard_em", ...)``, the contract tests and the sweeps to
see it.

Each iteration assigns every sample to its most probable expert (the argmax of
the E-step posterior) and refits experts, gating and noise on those hard labels
with the shared M-step pieces of :mod:`moebench.em`.
"""

from __future__ import annotations

import numpy as np

from moebench import Activation, MoEEstimator, MoEModel, register
from moebench.constraints import Interval
from moebench.em import e_step, expert_m_step, gating_m_step, sigma_m_step
from moebench.history import History
from moebench.starts import random_unit_experts


@register("hard_em")
class HardEM(MoEEstimator):
    """Classification EM: hard E-step, full M-step on the hard labels.

    Parameters
    ----------
    n_experts, activation, sigma, random_state
        See :class:`moebench.MoEEstimator`.
    max_iter : int
        Iterations; the loop also stops when no label changes.
    ridge : float
        L2 penalty of the gating fit (hard labels can be separable).
    """

    description = "classification (hard) EM: the docs' worked example of a baseline"
    local_search = False  # it maximises the classification likelihood, not the likelihood
    _parameter_constraints = {"max_iter": [Interval(int, 1)], "ridge": [Interval(float, 0)]}
    budget_parameters = {"max_iter": "max_iter"}  # the sweep's iteration budget goes here
    iteration_unit = "hard-EM iteration"  # what one unit of that budget is

    def __init__(self, n_experts: int = 2, activation: str | Activation = "linear",
                 sigma: float | None = None, random_state: int | None = None,
                 max_iter: int = 50, ridge: float = 1e-3) -> None:
        super().__init__(n_experts, activation, sigma, random_state)
        self.max_iter = max_iter
        self.ridge = ridge

    def _fit(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
             sigma: float | None, history: History) -> None:
        n, d = X.shape
        experts, gating = random_unit_experts(self._rng(), k, d), np.zeros((k, d))
        s = float(np.std(y)) if sigma is None else sigma
        labels = np.full(n, -1)
        stop = self.stopping(history)  # the framework's budgets (max_iter here), one rule
        it = 0
        while True:
            resp, ll = e_step(MoEModel(experts, gating, s, activation), X, y)
            history.record("hard_em", it, ll, experts=experts, gating=gating, sigma=s)
            new_labels = np.argmax(resp, axis=1)
            if np.array_equal(new_labels, labels):  # this method's own criterion
                reason = "converged"
                break
            reason = stop.budget_reason()  # "max_iter" once the budget is spent, else None
            if reason is not None:
                break
            stop.tick()  # one iteration of the budget
            it += 1
            labels = new_labels
            hard = np.eye(k)[labels]
            experts = expert_m_step(X, y, hard, experts, activation)
            gating = gating_m_step(X, hard, gating, ridge=self.ridge)
            if sigma is None:
                s = sigma_m_step(X, y, hard, experts, activation)
        self._set_fit(experts, gating, s, it, ll, reason)
