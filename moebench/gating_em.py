"""The gating EM of the moment methods (tensor_em, spectral_experts): experts fixed.

:func:`gating_em` fits the gating (and sigma) with the experts fixed, ridge-penalised so
that its gating stays bounded (:func:`gating_norm_bound`), by the plain EM loop of
:func:`moebench.em.run_em` or the quasi-Newton path of
:func:`moebench.acceleration.gating_em_quasi_newton`. Their ``refine`` is joint EM from that
start: the same :func:`~moebench.em.run_em` loop as ``joint_em`` (``joint_em(init="tensor")``).
:data:`GATING_EM_CONSTRAINTS` declares the options a moment estimator takes for it.

Imports: :mod:`moebench.acceleration` imports :mod:`moebench.em`; this module imports both
(no import circle).
"""

from __future__ import annotations

import numpy as np

from moebench.acceleration import GATING_ACCELERATIONS, QN_MIN_ITER, gating_em_quasi_newton
from moebench.activations import Activation
from moebench.backend import to_backend
from moebench.constraints import Interval, Options
from moebench.em import GATING_METHODS, EMResult, run_em
from moebench.history import History
from moebench.stopping import StoppingCriterion
from moebench.validation import check_choice

#: default ridge lambda of the gating EM with the experts fixed (units of standardised X,
#: unit rms). It bounds the fitted gating by ||W||_F <= sqrt(2 log k / lambda) (372 at
#: k = 2, 527 at k = 4, 679 at k = 10; see :func:`gating_em`): finite, and far above the
#: gating norms of the shipped configs (rows of norm <= 8, ||W||_F <= 14 at k = 4). Chosen
#: for a negligible bias: with the true experts (n = 1e4, d = 10, k = 4, gating rows of
#: norm 8, 3 seeds) it moves the maximum-likelihood gating by 0.8-1.0% of its norm, where
#: 1e-4 moves it by 7-9% and 1e-3 by 33-36% (a saturated softmax makes the likelihood flat
#: in the gating's scale); on wrong experts whose unpenalised EM runs away (norms 1e5) it
#: ends at 24-28 (1e-6: 70)
GATING_EM_RIDGE = 1e-5


def gating_norm_bound(k: int, ridge: float) -> float:
    """sqrt(2 log k / ridge): the bound on ||W||_F of the ridge-penalised gating EM.

    Returns inf for ``ridge = 0`` (no bound: the maximum may not exist). See
    :func:`gating_em` for the argument.
    """
    return float(np.sqrt(2.0 * np.log(k) / ridge)) if ridge > 0 else float("inf")


#: constructor parameters of the gating EM that follows a moment method (experts fixed),
#: and the aliases of the joint EM from its start (``refine``), with their valid values; a
#: moment estimator declares them by merging this dict into its ``_parameter_constraints``
GATING_EM_CONSTRAINTS = {
    "gating_em_iter": [Interval(int, 0, None)],
    "gating_tol": [Interval(float, 0, None, closed="neither")],
    "gating_newton_steps": [Interval(int, 1, None)],
    "gating_method": [Options(GATING_METHODS)],
    "gating_acceleration": [Options(GATING_ACCELERATIONS)],
    "ridge": [Interval(float, 0, None)],
    "refine": ["boolean"],
    "refine_max_iter": [Interval(int, 1, None)],
    "refine_tol": [Interval(float, 0, None)],
    "max_iter": [Interval(int, 1, None), None],
    "max_time": [Interval(float, 0, None, closed="neither"), None],
}


def gating_em(
    X: np.ndarray,
    y: np.ndarray,
    experts: np.ndarray,
    sigma0: float,
    activation: Activation,
    history: History,
    stop: StoppingCriterion,
    *,
    update_sigma: bool,
    gating_em_iter: int = 200,
    gating_newton_steps: int = 5,
    gating_method: str = "auto",
    gating_acceleration: str = "quasi_newton",
    ridge: float = GATING_EM_RIDGE,
    backend: str | None = None,
) -> EMResult:
    """The gating EM of a moment method: the experts fixed, the gating (and sigma) fitted.

    From a zero gating (equal gate probabilities) it maximises the ridge-penalised mean
    log-likelihood

        F(W) = L(W) - ridge / 2 ||W||_F^2,
        L(W) = mean_n log sum_i softmax(W x_n)_i N(y_n; g(a_i . x_n), sigma^2)

    over the gating W (and sigma unless given), phase "gating_em" of ``history``.

    **Why a ridge.** With the experts fixed the maximum of L may not exist: when the
    responsibilities are separable by a linear gate (e.g. wrong experts, each best on a
    half-space) L keeps increasing as ||W|| grows, and the unpenalised EM drives the gating
    norm without bound. The penalty bounds it: for any sigma,
    L(W) - L(0) = mean_n log [sum_i pi_i(x_n) f_in / (k^-1 sum_i f_in)] <= log k (the
    numerator is at most max_i f_in <= sum_i f_in), so a maximiser W* of F satisfies
    F(W*) >= F(0) = L(0), i.e. ridge / 2 ||W*||^2 <= L(W*) - L(0) <= log k:

        ||W*||_F <= sqrt(2 log k / ridge)        (:func:`gating_norm_bound`).

    Every iterate of this monotone ascent from W = 0 obeys the same bound when sigma is
    given (F never decreases); with sigma fitted an iterate obeys
    ||W_t||^2 <= 2 (log k + L(0, sigma_t) - L(0, sigma_0)) / ridge. In the units of
    standardised X (unit rms) the default ridge :data:`GATING_EM_RIDGE` = 1e-5 gives 372
    (k = 2) to 679 (k = 10), with a negligible bias at the true gating (see there).

    Parameters
    ----------
    X, y : validated arrays (n, d) and (n,)
    experts : ndarray (k, d)
        The moment method's experts (fixed).
    sigma0 : float
        Starting (or given) noise level.
    activation : Activation
    history : History
        Receives one record per iteration (iteration 0: the zero-gating start).
    stop : StoppingCriterion
        The fit's criterion (its tolerance is the gating EM's, ``gating_tol``): counts the
        iterations against the fit's total budgets; the stop reason is "converged",
        "gating_em_iter" (the own limit), "max_iter" or "max_time".
    update_sigma : bool
        Whether sigma is re-estimated (False when the user gave sigma).
    gating_em_iter : int
        This EM's own iteration limit.
    gating_newton_steps, gating_method
        The plain EM's M-step (see :func:`run_em`): they act with
        ``gating_acceleration="none"`` and in the quasi-Newton path's fallback.
    gating_acceleration : {"quasi_newton", "none"}
        ``"quasi_newton"``: L-BFGS on F (:func:`moebench.acceleration.gating_em_quasi_newton`:
        the same fixed point, about 5x fewer passes over X at d = 100, k = 10); ``"none"``:
        the plain gating EM (:func:`run_em`). A limit below
        :data:`~moebench.acceleration.QN_MIN_ITER` (own or the budget's) takes the plain EM.
    ridge : float
        lambda above.
    backend : {"numpy", "torch"} or None
        Array library; ``X`` and ``y`` move to the device once. None: ``X``'s library.

    Returns
    -------
    EMResult
    """
    X, y = to_backend(X, y, backend)
    k, d = np.shape(experts)
    check_choice(gating_acceleration, "gating_acceleration", GATING_ACCELERATIONS)
    left = stop.iterations_left()
    reach = int(gating_em_iter) if left is None else min(int(gating_em_iter), left)
    if gating_acceleration == "quasi_newton" and reach >= QN_MIN_ITER:
        return gating_em_quasi_newton(
            X, y, experts, np.zeros((k, d)), sigma0, activation, update_sigma=update_sigma,
            max_iter=int(gating_em_iter), ridge=float(ridge), history=history,
            phase="gating_em", stopping=stop, limit_name="gating_em_iter",
            fallback_options={"gating_newton_steps": int(gating_newton_steps),
                              "gating_method": gating_method})
    return run_em(X, y, experts, np.zeros((k, d)), sigma0, activation, update_experts=False,
                  update_sigma=update_sigma, max_iter=int(gating_em_iter), ridge=float(ridge),
                  gating_newton_steps=int(gating_newton_steps), gating_method=gating_method,
                  history=history, phase="gating_em", backend=backend, stopping=stop,
                  limit_name="gating_em_iter")
