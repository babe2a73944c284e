"""Alternating minimisation for mixed linear regression (Yi, Caramanis and Sanghavi 2014).

A gating-blind reference: the experts are learned as if each sample came from
whichever line fits it best.

1. Spectral initialisation: the top-k eigenvectors of mean(y^2 (x x^T - I)) span
   the experts (x ~ N(0, I)); inside that span, k experts are chosen by a greedy
   k-medoids search over random unit directions on the min-residual score
   (in place of the paper's grid search, which is written for k = 2).
2. Alternating least squares: assign each sample to the expert with the smallest
   residual, refit each expert by least squares on its samples; stop when the
   assignment no longer changes.
3. Afterwards, so that ``gating_`` is meaningful, the gating is fitted by the shared
   multinomial-logistic M-step (:func:`moebench.em.gating_m_step`) on the hard
   assignments, and sigma is the root mean squared residual of the assigned expert.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.special import logsumexp

from moebench.activations import Activation
from moebench.constraints import Interval
from moebench.em import gating_m_step
from moebench.history import History, StartFit
from moebench.model import MoEModel, log_joint
from moebench.registry import register
from moebench.restarts import RestartedEstimator
from moebench.starts import search_in_subspace
from moebench.stopping import StoppingCriterion

from ._spectral import spectral_subspace


@register("alt_min")
class AltMin(RestartedEstimator):
    """Spectral initialisation + alternating least squares (mixed linear regression).

    Parameters
    ----------
    n_experts, activation, sigma, random_state
        See :class:`moebench.MoEEstimator`. Only ``activation="linear"``; a given
        ``sigma`` is kept as ``sigma_``.
    max_iter : int
        Alternating-minimisation steps in all (a total over the restarts).
    n_candidates : int
        Random directions of the spectral span scored by the initial search.
    n_init : int
        Restarts of the search and the alternation; the smallest final mean
        squared residual is kept.
    ridge : float
        L2 penalty of the final gating fit (the hard labels can be separable).
    gating_newton_steps : int
        Newton steps of the final gating fit.
    max_time : float or None
        Wall-clock budget in seconds of the whole fit.
    """

    description = "alternating minimisation for mixed linear regression (gating-blind, linear g)"
    assumes = ("linear g", "constant mixing", "k <= d", "Gaussian inputs (spectral start)")
    requires_k_le_d = True
    local_search = False  # hard assignments: its likelihood gap is bias, not a local optimum
    supported_activations = ("linear",)
    budget_parameters: ClassVar[dict[str, str]] = {"max_iter": "max_iter",
                                                   "max_time": "max_time"}
    iteration_unit: ClassVar[str | None] = "alternating step"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "max_iter": [Interval(int, 1, None)],
        "n_candidates": [Interval(int, 1, None)],
        "ridge": [Interval(float, 0, None)],
        "gating_newton_steps": [Interval(int, 1, None)],
    }

    def __init__(
        self,
        n_experts: int = 2,
        activation: str | Activation = "linear",
        sigma: float | None = None,
        random_state: int | None = None,
        max_iter: int = 50,
        n_candidates: int = 256,
        n_init: int = 1,
        ridge: float = 1e-4,
        gating_newton_steps: int = 20,
        max_time: float | None = None,
    ) -> None:
        super().__init__(n_experts, activation, sigma, random_state)
        self.max_iter = max_iter
        self.n_candidates = n_candidates
        self.n_init = n_init
        self.ridge = ridge
        self.gating_newton_steps = gating_newton_steps
        self.max_time = max_time

    def _restart_context(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                         sigma: float | None, rng: np.random.Generator) -> np.ndarray:
        return spectral_subspace(X, y, k, activation)  # the span searched by every start

    def _fit_single(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                    sigma: float | None, history: History, rng: np.random.Generator,
                    stop: StoppingCriterion, context: np.ndarray) -> StartFit:
        n, d = X.shape
        zero_gating = np.zeros((k, d))
        experts = search_in_subspace(X, y, context, k, activation, rng,
                                     n_candidates=self.n_candidates)
        labels = np.full(n, -1)
        it = -1
        while True:
            it += 1
            resid2 = (y[:, None] - X @ experts.T) ** 2
            new_labels = np.argmin(resid2, axis=1)
            mse = float(np.mean(resid2[np.arange(n), new_labels]))
            # log-likelihood of the MoE with uniform gating and sigma = rms residual
            s = float(np.sqrt(max(mse, 1e-24)))
            ll = float(np.mean(logsumexp(log_joint(X, y, experts, zero_gating, s, activation),
                                         axis=1)))
            history.record("alt_min", it, ll, experts=experts, gating=zero_gating, mse=mse)
            if np.array_equal(new_labels, labels):  # the criterion: no label changes
                reason = stop.reason = "converged"
                break
            # the fit's budgets (totals over the restarts): steps, then time
            reason = stop.budget_reason()
            if reason is not None:
                break
            stop.tick()
            labels = new_labels
            for i in range(k):
                mask = labels == i
                if np.count_nonzero(mask) >= d:
                    experts[i] = np.linalg.lstsq(X[mask], y[mask], rcond=None)[0]
        return StartFit(experts.copy(), zero_gating, s, it, ll, reason == "converged", reason,
                        extra={"mse": mse, "labels": new_labels})

    def _restart_score(self, result: StartFit) -> float:
        return -result.extra["mse"]  # the smallest mean squared residual is kept

    def _finish_restarts(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                         sigma: float | None, history: History, best: StartFit,
                         n_iter: int) -> StartFit:
        """Fit the gating on the kept start's hard labels; sigma = its rms residual."""
        n, d = X.shape
        onehot = np.zeros((n, k))
        onehot[np.arange(n), best.extra["labels"]] = 1.0
        gating = gating_m_step(X, onehot, np.zeros((k, d)), ridge=self.ridge,
                               max_iter=self.gating_newton_steps)
        mse = best.extra["mse"]
        s = float(np.sqrt(max(mse, 1e-24))) if sigma is None else sigma
        ll = MoEModel(best.experts, gating, s, activation).mean_log_likelihood(X, y)
        history.record("gating", n_iter + 1, ll, experts=best.experts, gating=gating,
                       restart=-1)
        return StartFit(best.experts, gating, s, n_iter, ll, best.converged, best.stop_reason)
