"""The common polisher of ``moebench classify``: continue a stored fit from its end point by
one fixed procedure, then measure where it ends.

:func:`polish` is joint EM (full M-steps, no ridge: the likelihood itself) followed by a
Newton finish (:func:`newton_finish`) where the loss Hessian is positive definite;
:func:`polish_gating` is the same for an estimator whose experts are fixed (the oracle
gating EM), on the gating alone. Both return a :class:`Polished` with the point's
log-likelihood, scaled gradient norm and smallest loss-Hessian eigenvalue, which
:func:`moebench.sweep.classify.assign_classes` turns into classes. The settings are the
constants below, the same for every run (they are part of each polish's cache key).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from moebench.activations import Activation, get_activation

#: the polisher: joint EM (full M-steps, no ridge: the likelihood itself) with this
#: relative log-likelihood tolerance ...
POLISH_TOL = 1e-10
#: ... and at most this many EM iterations
POLISH_MAX_ITER = 1000
#: Newton steps of each gating M-step and inner steps of each expert M-step of the polisher
POLISH_GATING_STEPS = 5
POLISH_EXPERT_STEPS = 5
#: the polisher's Newton finish: at most this many Newton steps on the log-likelihood after
#: the EM, taken only while the loss Hessian is positive definite there (a local maximum
#: nearby): it converges quadratically (gradient norm about 1e-15 in three steps at the
#: maxima we measured), so the Hessian is then measured *at* the stationary point
NEWTON_STEPS = 8
#: the Newton finish forms the Hessian (and solves) up to this many parameters; above it
#: solves by conjugate gradients on Hessian-vector products (at most NEWTON_CG_ITER each)
NEWTON_MAX_PARAMS = 2000
NEWTON_CG_ITER = 500
#: scaled gradient norm at or below which a polished point is stationary. The EM part of the
#: polisher ends at 3e-7 to 2e-6 on the maxima of linear and sigmoid data (k = 3 to 8, d = 5
#: to 10, n = 3e3 to 1e4), the Newton finish near 1e-15; saddles keep the EM's gradient.
#: A thousand times below the sweep's :data:`moebench.stationarity.STATIONARY_TOL`.
CERTIFY_GRAD_TOL = 1e-5
#: the Hessian of the loss is definite "beyond" this: smallest eigenvalue (scaled
#: coordinates, Fisher information per sample of order 1) > HESSIAN_EPS for a local maximum,
#: < -HESSIAN_EPS for a saddle, else singular. Maxima with saturated gates are flat: at
#: gating norm 8, the global maximum's smallest eigenvalue measured 5e-5 and a spurious
#: local maximum 1e-5 (both confirmed by Newton to a gradient of 1e-15), so eps sits well
#: below them and well above the eigenvalue's error (dense: rounding; Lanczos: about
#: LANCZOS_TOL = 1e-8 times the spectrum's scale, below 1e-7 here).
HESSIAN_EPS = 1e-6


# --------------------------------------------------------------------------- the polisher
@dataclass
class Polished:
    """Where the polisher ended (see :func:`polish`)."""

    experts: np.ndarray
    gating: np.ndarray
    sigma: float
    log_likelihood: float
    n_iter: int
    converged: bool
    stop_reason: str
    newton_steps: int
    grad_norm: float
    hessian_min_eig: float
    time: float



def _check_point(X: np.ndarray, experts: Any, gating: Any, sigma: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A polisher's start as float arrays; ValueError for mismatched shapes or a sigma that
    is not finite and > 0."""
    experts = np.asarray(experts, dtype=float)
    gating = np.asarray(gating, dtype=float)
    if experts.ndim != 2 or experts.shape != gating.shape or experts.shape[1] != X.shape[1]:
        raise ValueError(f"experts and gating must both have shape (k, {X.shape[1]}); got "
                         f"{experts.shape} and {gating.shape}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be finite and > 0; got {sigma!r}")
    return experts, gating

def polish(X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
           sigma: float, activation: Activation | str, learn_sigma: bool = True, *,
           max_iter: int = POLISH_MAX_ITER, tol: float = POLISH_TOL) -> Polished:
    """Continue a fit by joint EM from its end point, then measure stationarity there.

    The same settings for every run: :func:`moebench.em.run_em` with
    ``update_experts=True``, full M-steps, no ridge (the likelihood itself),
    :data:`POLISH_GATING_STEPS` gating Newton steps and :data:`POLISH_EXPERT_STEPS` expert
    steps per M-step, sigma re-estimated when ``learn_sigma``; then :func:`newton_finish`
    (at most :data:`NEWTON_STEPS` Newton steps, only where the loss Hessian is positive
    definite), so that a local maximum's gradient ends near rounding and its Hessian is
    measured at the stationary point itself.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    experts, gating : ndarray of shape (k, d)
        The stored end point.
    sigma : float
    activation : Activation or str
    learn_sigma : bool
        Whether sigma was learnt (False: it was given, and stays fixed).
    max_iter : int
        The budget in EM iterations.
    tol : float
        Relative log-likelihood change that stops the EM.

    Returns
    -------
    Polished
        The end point, its mean log-likelihood, the EM's iterations, whether its tolerance
        ended it, the Newton steps taken, and the scaled gradient norm and smallest
        loss-Hessian eigenvalue there (:func:`moebench.stationarity.stationarity`).

    Raises
    ------
    FloatingPointError
        When the EM produces a non-finite log-likelihood.
    """
    from moebench.em import run_em
    from moebench.stationarity import stationarity

    act = get_activation(activation)
    experts, gating = _check_point(X, experts, gating, sigma)
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        res = run_em(X, y, experts, gating, float(sigma), act, update_experts=True,
                     update_sigma=learn_sigma, mstep="full", max_iter=max_iter, tol=tol,
                     ridge=0.0, gating_newton_steps=POLISH_GATING_STEPS,
                     expert_max_iter=POLISH_EXPERT_STEPS)
        experts, gating, sigma_, ll, steps = newton_finish(
            X, y, res.experts, res.gating, res.sigma, act, learn_sigma)
        grad_norm, eig = stationarity(X, y, experts, gating, sigma_, act,
                                      learn_sigma=learn_sigma)
    if steps == 0:
        ll = float(res.log_likelihood)
    return Polished(experts, gating, float(sigma_), float(ll), int(res.n_iter),
                    bool(res.converged), str(res.stop_reason), steps, float(grad_norm),
                    float(eig), time.perf_counter() - t0)


def newton_finish(X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
                  sigma: float, activation: Activation, learn_sigma: bool = True,
                  max_steps: int = NEWTON_STEPS
                  ) -> tuple[np.ndarray, np.ndarray, float, float, int]:
    """Newton steps on the mean log-likelihood while its loss Hessian is positive definite.

    A step theta <- theta + H_loss^{-1} grad is taken only where the smallest eigenvalue of
    the loss Hessian is > 0 (checked at every step: dense up to
    :data:`NEWTON_MAX_PARAMS` parameters, else Lanczos and a conjugate-gradient solve of at
    most :data:`NEWTON_CG_ITER` iterations), kept only when it does not lower the
    log-likelihood (beyond 1e-13 relative rounding) and lowers the scaled gradient norm;
    it stops at the first step that fails or once the gradient is below 1e-13.

    Returns
    -------
    experts, gating, sigma, log_likelihood, steps
        The last kept point, its mean log-likelihood and the number of steps kept.
    """
    from scipy.sparse.linalg import LinearOperator, cg

    from moebench.stationarity import (
        HessianProduct,
        lanczos_min_eigenvalue,
        log_likelihood_gradient,
        log_likelihood_hessian,
        mean_log_likelihood,
        pack,
        scaling,
        unpack,
    )

    k, d = np.shape(experts)
    sig = float(sigma)
    theta = pack(experts, gating, sig, learn_sigma)
    ll = mean_log_likelihood(X, y, experts, gating, sig, activation)
    D = scaling(X, k, sig, learn_sigma)  # fixed along the steps (sigma moves little)
    point = unpack(theta, k, d, sig)
    steps = 0
    for _ in range(max_steps):
        A, W, s = point
        g = D * log_likelihood_gradient(X, y, A, W, s, activation, learn_sigma)
        gnorm = float(np.linalg.norm(g))
        if not np.isfinite(gnorm) or gnorm < 1e-13:
            break
        if D.size <= NEWTON_MAX_PARAMS:
            M = -(D[:, None] * log_likelihood_hessian(X, y, A, W, s, activation, learn_sigma)
                  * D[None, :])
            M = 0.5 * (M + M.T)
            if not np.all(np.isfinite(M)) or np.linalg.eigvalsh(M)[0] <= 0:
                break
            u = np.linalg.solve(M, g)
        else:
            if not lanczos_min_eigenvalue(X, y, A, W, s, activation, learn_sigma) > 0:
                break
            hvp = HessianProduct(X, y, A, W, s, activation, learn_sigma)
            op = LinearOperator((D.size,) * 2, matvec=lambda v, h=hvp: -D * h(D * np.ravel(v)),
                                dtype=float)
            u = cg(op, g, rtol=1e-12, atol=0.0, maxiter=NEWTON_CG_ITER)[0]
        candidate = pack(A, W, s, learn_sigma) + D * u
        new = unpack(candidate, k, d, sig)
        new_ll = mean_log_likelihood(X, y, *new, activation)
        new_g = np.linalg.norm(D * log_likelihood_gradient(X, y, *new, activation, learn_sigma))
        if not (np.isfinite(new_ll) and new_ll >= ll - 1e-13 * max(1.0, abs(ll))
                and new_g < gnorm):
            break
        point, ll, steps = new, new_ll, steps + 1
    A, W, s = point
    return np.asarray(A), np.asarray(W), float(s), float(ll), steps


# --------------------------------------------------------------------------- gating polisher
#: the polisher of each problem: "joint" (:func:`polish`: experts, gating and sigma) for
#: likelihood-climbing fits, "gating" (:func:`polish_gating`: the gating alone, experts and
#: sigma fixed at the run's own, the truth's for the oracle) for estimators whose experts are
#: fixed (``fixed_experts``, e.g. :class:`moebench.oracle.OracleGatingEM`)
POLISHERS = ("joint", "gating")


def polish_gating(X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
                  sigma: float, activation: Activation | str, *,
                  max_iter: int = POLISH_MAX_ITER, tol: float = POLISH_TOL) -> Polished:
    """Continue a gating-only fit (experts and sigma fixed) from its end point; measure there.

    The oracle's own problem: the mean log-likelihood as a function of the gating alone,
    the experts and sigma held fixed. The same settings as :func:`polish`, restricted to
    the gating: :func:`moebench.em.run_em` with ``update_experts=False``,
    ``update_sigma=False``, no ridge, :data:`POLISH_GATING_STEPS` Newton steps per M-step,
    tolerance ``tol``, at most ``max_iter`` iterations; then :func:`gating_newton_finish`
    (at most :data:`NEWTON_STEPS` Newton steps on the gating, only where its loss Hessian is
    positive definite); then the scaled gating gradient norm and the smallest eigenvalue of
    the gating loss Hessian (:func:`moebench.oracle.gating_stationarity`: dense up to
    :data:`moebench.stationarity.HESSIAN_MAX_PARAMS` gating parameters, Lanczos above, no
    cap). The thresholds :data:`CERTIFY_GRAD_TOL` and :data:`HESSIAN_EPS` apply unchanged
    (the same scaled coordinates).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    experts, gating : ndarray of shape (k, d)
        The fixed experts and the stored gating.
    sigma : float
        The fixed noise level.
    activation : Activation or str
    max_iter : int
        The budget in EM iterations.
    tol : float
        Relative log-likelihood change that stops the EM.

    Returns
    -------
    Polished
        As :func:`polish` (``experts`` and ``sigma`` unchanged).

    Raises
    ------
    ValueError
        For mismatched shapes or a sigma that is not finite and > 0.
    """
    from moebench.em import run_em
    from moebench.oracle import gating_stationarity

    act = get_activation(activation)
    experts, gating = _check_point(X, experts, gating, sigma)
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        res = run_em(X, y, experts, gating, float(sigma), act, update_experts=False,
                     update_sigma=False, mstep="full", max_iter=max_iter, tol=tol, ridge=0.0,
                     gating_newton_steps=POLISH_GATING_STEPS)
        gating_, ll, steps = gating_newton_finish(X, y, experts, res.gating, float(sigma), act)
        grad_norm, eig = gating_stationarity(X, y, experts, gating_, float(sigma), act)
    if steps == 0:
        ll = float(res.log_likelihood)
    return Polished(experts, gating_, float(sigma), float(ll), int(res.n_iter),
                    bool(res.converged), str(res.stop_reason), steps, float(grad_norm),
                    float(eig), time.perf_counter() - t0)


def gating_newton_finish(X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
                         sigma: float, activation: Activation, max_steps: int = NEWTON_STEPS
                         ) -> tuple[np.ndarray, float, int]:
    """:func:`newton_finish` on the gating alone (experts and sigma fixed).

    A step W <- W + H_loss^{-1} grad on the free gating rows is taken only where the gating
    loss Hessian is positive definite (dense up to :data:`NEWTON_MAX_PARAMS` gating
    parameters, else Lanczos and a conjugate-gradient solve of at most
    :data:`NEWTON_CG_ITER` iterations on :class:`moebench.oracle.GatingHessianProduct`),
    kept only when it does not lower the log-likelihood (beyond 1e-13 relative rounding)
    and lowers the gradient norm; it stops at the first step that fails or once the
    gradient norm is below 1e-13.

    Returns
    -------
    gating, log_likelihood, steps
        The last kept gating (last row 0), its mean log-likelihood and the steps kept.
    """
    from scipy.sparse.linalg import LinearOperator, cg

    from moebench.oracle import GatingHessianProduct, gating_gradient_hessian
    from moebench.stationarity import mean_log_likelihood, operator_min_eigenvalue

    k, d = np.shape(experts)
    m = (k - 1) * d
    W = np.asarray(gating, dtype=float)
    W = W - W[-1]
    ll = mean_log_likelihood(X, y, experts, W, sigma, activation)
    steps = 0
    for _ in range(max_steps):
        dense = m <= NEWTON_MAX_PARAMS
        g, H = gating_gradient_hessian(X, y, experts, W, sigma, activation, hessian=dense)
        gnorm = float(np.linalg.norm(g))
        if not np.isfinite(gnorm) or gnorm < 1e-13:
            break
        if H is not None:
            M = -0.5 * (H + H.T)
            if not np.all(np.isfinite(M)) or np.linalg.eigvalsh(M)[0] <= 0:
                break
            u = np.linalg.solve(M, g)
        else:
            hvp = GatingHessianProduct(X, y, experts, W, sigma, activation)
            if not operator_min_eigenvalue(lambda v, h=hvp: -h(v), m) > 0:
                break
            op = LinearOperator((m, m), matvec=lambda v, h=hvp: -h(np.ravel(v)), dtype=float)
            u = cg(op, g, rtol=1e-12, atol=0.0, maxiter=NEWTON_CG_ITER)[0]
        new = W.copy()
        new[:-1] += u.reshape(k - 1, d)
        new_ll = mean_log_likelihood(X, y, experts, new, sigma, activation)
        new_g = float(np.linalg.norm(gating_gradient_hessian(X, y, experts, new, sigma,
                                                             activation, hessian=False)[0]))
        if not (np.isfinite(new_ll) and new_ll >= ll - 1e-13 * max(1.0, abs(ll))
                and new_g < gnorm):
            break
        W, ll, steps = new, new_ll, steps + 1
    return W, float(ll), steps
