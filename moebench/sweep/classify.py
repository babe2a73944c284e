"""Certified classes of the runs that end short of the best likelihood: polish, then compare.

A stored run that climbs the likelihood (its estimator's ``local_search`` is True, or it
is a moment method with ``refine``) and ends *short* of the best, is continued by one
common **polisher** (:func:`polish`: joint EM from its stored end point, the same settings
for every run) and classified by where the polisher ends. The definitions, as
:func:`assign_classes` computes them (and :data:`CLASS_DEFINITIONS` states them for the
report headers):

* a run is **short** when its final mean training log-likelihood is more than ``tol`` per
  sample below the *best* on its data set (``data_id``) and, where a truth is known, more
  than ``tol`` below the truth's log-likelihood; the *best* is the largest of every ok
  run's log-likelihood and every polished point's on that data set (so classes are
  computed in passes: polish the short runs, recompute the best, polish the runs that
  became short, until none does);
* **fine**: an ok climbing run that is not short;
* **slow**: short, and the polished point is no longer short (the polisher reaches the
  best within ``tol``);
* **local maximum**: the polished point is still short, stationary (scaled gradient norm
  <= :data:`CERTIFY_GRAD_TOL`) and the Hessian of the loss there is positive definite
  beyond :data:`HESSIAN_EPS` (smallest eigenvalue > ``HESSIAN_EPS``, scaled coordinates of
  :mod:`moebench.stationarity`);
* **saddle**: still short, stationary, smallest eigenvalue < ``-HESSIAN_EPS`` (an ascent
  direction remains);
* **singular**: still short, stationary, smallest eigenvalue within ``HESSIAN_EPS`` of 0
  (second order cannot tell; or it could not be computed);
* **unfinished**: still short and not stationary when the polisher ends (still climbing:
  its budget, or its tolerance on a flat slope, ended it);
* **failed**: the run's status is not ok, or the polisher raised;
* **not classified**: a method that does not climb the likelihood (tensor_em and
  spectral_experts without refine, alt_min, linear_regression) or an oracle that does not
  hold its experts fixed; **not classified (no
  parameters)**: a climbing run whose record holds no fitted parameters (results made
  before they were stored), which cannot be polished.

**Fixed experts (the oracle's own problem).** An estimator whose experts are held fixed
(``fixed_experts``: :class:`moebench.oracle.OracleGatingEM`, experts and sigma at the truth,
the theorem sweep of :mod:`moebench.sweep.theorem`) climbs the *gating* likelihood alone. Its
short runs are continued by the gating polisher (:func:`polish_gating`: the same settings,
the experts and sigma fixed) and classified by the same rules and thresholds, in that
problem: the gradient and Hessian are those of the gating alone
(:func:`moebench.oracle.gating_stationarity`), the *best* is the best over that data set's
gating-polished runs (the oracle's runs and their polished points; ``best_group``), and the
truth condition is dropped (the truth's gating is a point of the problem, and the
truth-started oracle run is in the best's set).

Without a truth (real data) the classes are relative to the best found. The verb
``moebench classify RESULTS`` writes ``polish.parquet`` (one row per polished run, the
resumable cache, keyed by the stored end point and the polisher's settings) and
``classes.parquet`` (one row per run) into the results folder, each atomically; the reports
(:func:`moebench.sweep.gridlock.mark_stuck`) use the classes where that file covers the
folder's runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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

FINE, SLOW, LOCAL_MAX, SADDLE, SINGULAR = "fine", "slow", "local maximum", "saddle", "singular"
UNFINISHED, FAILED, NOT_CLASSIFIED = "unfinished", "failed", "not classified"
NO_PARAMETERS = "not classified (no parameters)"
#: a short climbing run without a polish at this tolerance (``classify`` polishes them all;
#: a report at a smaller tolerance than ``classify`` ran with shows it)
NOT_POLISHED = "not classified (not polished)"
#: every class, in the order reports list them
CLASSES = (FINE, SLOW, LOCAL_MAX, SADDLE, SINGULAR, UNFINISHED, FAILED, NOT_CLASSIFIED,
           NO_PARAMETERS, NOT_POLISHED)

#: the one statement of each class (report headers quote it)
CLASS_DEFINITIONS = {
    "short": "final training log-likelihood more than {tol:g} per sample below the best on the "
             "same data (best over every variant and every polished point){truth}; for "
             "estimators with the experts fixed (the oracle gating EM), in the gating "
             "likelihood: below the best of that data set's oracle runs and their polished "
             "points, no truth condition",
    FINE: "a likelihood-climbing run that is not short",
    SLOW: "short, but the point the polisher (joint EM from the run's end point, tol "
          f"{POLISH_TOL:g}, at most {POLISH_MAX_ITER} iterations, then at most {NEWTON_STEPS} "
          "Newton steps where the loss Hessian is positive definite; with the experts fixed, "
          "the same on the gating alone: gating EM and gating Newton steps, gradient and "
          "Hessian of the gating likelihood) reaches is not short",
    LOCAL_MAX: "the polished point is still short, stationary (scaled gradient norm <= "
               f"{CERTIFY_GRAD_TOL:g}) and the loss Hessian's smallest eigenvalue is > "
               f"{HESSIAN_EPS:g} (certified local maximum; a local optimum)",
    SADDLE: f"still short, stationary, smallest loss-Hessian eigenvalue < -{HESSIAN_EPS:g}",
    SINGULAR: f"still short, stationary, smallest loss-Hessian eigenvalue within "
              f"±{HESSIAN_EPS:g} (or not computable)",
    UNFINISHED: "still short and not stationary when the polisher ends (still climbing)",
    FAILED: "status not ok, or the polisher failed",
    NOT_CLASSIFIED: "a method that does not climb the likelihood (moment or hard-assignment "
                    "methods without refine, references, oracles without fixed experts)",
    NO_PARAMETERS: "a climbing run whose record holds no fitted parameters (cannot be "
                   "polished)",
    NOT_POLISHED: "short at this tolerance but not polished (classify ran with a larger one)",
}

CLASSES_FILE = "classes.parquet"
POLISH_FILE = "polish.parquet"
#: polisher outputs stored per polished run
POLISH_COLUMNS = ("polished_log_likelihood", "polished_grad_norm", "polished_hessian_min_eig",
                  "polish_iterations", "polish_newton_steps", "polish_converged",
                  "polish_stop_reason", "polish_time", "polish_error")


def class_definitions(tol: float, truth: bool = True) -> str:
    """The class definitions as one Markdown paragraph (for report headers)."""
    short = CLASS_DEFINITIONS["short"].format(
        tol=tol, truth=f" and more than {tol:g} below the truth's" if truth else "")
    parts = [f"*Short*: {short}."]
    parts += [f"*{name}*: {CLASS_DEFINITIONS[name]}." for name in
              CLASSES]
    return " ".join(parts)


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


# --------------------------------------------------------------------------- the classes
def is_short(ll: pd.Series, best: pd.Series, truth: pd.Series | None, tol: float) -> pd.Series:
    """Whether log-likelihoods ``ll`` are short of ``best`` (and of ``truth`` where known)."""
    out = np.isfinite(ll) & (ll < best - tol)
    if truth is not None:
        t = truth.astype(float)
        out &= ~np.isfinite(t) | (ll < t - tol)
    return out


def best_log_likelihood(frame: pd.DataFrame) -> pd.Series:
    """Per row, the best on its data set over ok runs and polished points (see the notes)."""
    ok = frame["status"].eq("ok")
    ll = frame["train_log_likelihood"].astype(float).where(ok)
    if "polished_log_likelihood" in frame.columns:
        ll = np.fmax(ll, frame["polished_log_likelihood"].astype(float).where(ok))
    group = best_groups(frame)
    best = ll.groupby(group).max()
    return group.map(best).astype(float)


def best_groups(frame: pd.DataFrame) -> pd.Series:
    """The set of runs each run's *best* is taken over: its data set (``data_id``), and for
    runs of the gating polisher (estimators whose experts are fixed, e.g. the oracle) that
    data set's gating-polished runs alone (``data_id + "|gating"``): the gating likelihood
    with the experts fixed is another problem than the joint one."""
    group = frame["data_id"].astype(str)
    if "polisher" in frame.columns:
        group = group.where(frame["polisher"].ne("gating"), group + "|gating")
    return group


def assign_classes(frame: pd.DataFrame, tol: float) -> pd.Series:
    """The class of every run (see the module notes).

    Parameters
    ----------
    frame : DataFrame
        One row per run with ``data_id``, ``status``, ``train_log_likelihood``, ``climbs``
        (bool), ``has_parameters`` (bool), optionally ``true_train_log_likelihood``,
        ``polisher`` (:data:`POLISHERS`; "gating" rows take their best over their data set's
        gating rows and ignore the truth's log-likelihood) and, for polished runs, the
        :data:`POLISH_COLUMNS` (NaN / empty elsewhere).
    tol : float
        The per-sample log-likelihood tolerance.

    Returns
    -------
    Series of str
        A value of :data:`CLASSES` per row. A short climbing run that was not polished (a
        smaller ``tol`` than the polish was run for) is :data:`NOT_POLISHED`.
    """
    frame = frame.copy()
    for col in POLISH_COLUMNS:
        if col not in frame.columns:
            frame[col] = np.nan
    ll = frame["train_log_likelihood"].astype(float)
    best = best_log_likelihood(frame)
    truth = (frame["true_train_log_likelihood"] if "true_train_log_likelihood" in frame.columns
             else None)
    if truth is not None and "polisher" in frame.columns:  # the gating problem: no truth rule
        truth = truth.astype(float).where(frame["polisher"].ne("gating"))
    ok = frame["status"].eq("ok") & np.isfinite(ll)
    short = ok & is_short(ll, best, truth, tol)
    pll = frame["polished_log_likelihood"].astype(float)
    polished = np.isfinite(pll)
    error = frame["polish_error"].map(lambda e: isinstance(e, str) and e != "").astype(bool)
    still_short = is_short(pll, best, truth, tol)
    grad = frame["polished_grad_norm"].astype(float)
    eig = frame["polished_hessian_min_eig"].astype(float)
    stationary = grad <= CERTIFY_GRAD_TOL
    climbs = frame["climbs"].astype(bool)
    params = frame["has_parameters"].astype(bool)
    conditions = [
        ~ok | (climbs & short & error),
        ~climbs,
        ~short,
        ~params,
        ~polished,
        ~still_short,
        ~stationary,
        eig > HESSIAN_EPS,
        eig < -HESSIAN_EPS,
    ]
    choices = [FAILED, NOT_CLASSIFIED, FINE, NO_PARAMETERS, NOT_POLISHED,
               SLOW, UNFINISHED, LOCAL_MAX, SADDLE]
    return pd.Series(np.select(conditions, choices, default=SINGULAR), index=frame.index)


# --------------------------------------------------------------------------- one folder
def polish_key(parameters: str, learn_sigma: bool, polisher: str = "joint") -> str:
    """Identifies a polish: the stored end point, the polisher and every polisher setting."""
    fields: list[Any] = [parameters, learn_sigma, POLISH_TOL, POLISH_MAX_ITER,
                         POLISH_GATING_STEPS, POLISH_EXPERT_STEPS, NEWTON_STEPS,
                         NEWTON_MAX_PARAMS, NEWTON_CG_ITER]
    if polisher != "joint":  # (keys of joint polishes stay those of earlier caches)
        fields.append(polisher)
    text = json.dumps(fields)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def climbs_likelihood(est: Any) -> bool:
    """Whether a (fitted or unfitted) estimator climbs the likelihood: ``local_search``,
    or a moment method whose ``refine`` ends it in joint EM."""
    return bool(getattr(est, "local_search", False)) or bool(getattr(est, "refine", False))


def climbing_variants(summary: pd.DataFrame, cells: dict[str, Any]) -> dict[str, bool]:
    """Per variant label: whether it climbs the likelihood (:func:`variant_polishers` names
    a polisher for it)."""
    return {label: bool(p) for label, p in variant_polishers(summary, cells).items()}


def variant_polishers(summary: pd.DataFrame, cells: dict[str, Any]) -> dict[str, str]:
    """Per variant label: the polisher of its short runs, "" when it is not classified.

    An unfitted estimator of the variant says whether it climbs (``local_search``; a moment
    method with ``refine`` ends in joint EM and climbs too): "joint" (:func:`polish`); an
    estimator whose experts are held fixed (``fixed_experts``, the oracle gating EM, whose
    experts and sigma are the truth's) climbs the gating likelihood alone: "gating"
    (:func:`polish_gating`); other oracles (``needs_truth``) and non-climbing methods: "".
    """
    from moebench.registry import algorithm_class
    from moebench.sweep.worker import build_estimator

    out: dict[str, str] = {}
    by_label = {}
    for run_id in summary["run_id"]:
        cell = cells.get(run_id)
        if cell is not None:
            by_label.setdefault(cell.variant.label, cell)
    for label in summary["label"].unique():
        cell = by_label.get(label)
        if cell is None:
            out[label] = ""
            continue
        try:
            cls = algorithm_class(cell.variant.algorithm)
            if cls.needs_truth:
                fixed = bool(getattr(cls, "fixed_experts", False))
                out[label] = "gating" if fixed and climbs_likelihood(cls) else ""
                continue
            est = build_estimator(cell)
        except (ValueError, ImportError):
            out[label] = ""
            continue
        out[label] = "joint" if climbs_likelihood(est) else ""
    return out


def _polish_data_set(tasks: list[dict[str, Any]], threads: int = 1) -> list[dict[str, Any]]:
    """Polish every task of one data set (loaded once); one result row per task."""
    from moebench.sweep.data_sources import load_cell_data
    from moebench.sweep.rerun import fitted_model
    from moebench.sweep.worker import limit_threads

    limit_threads(threads)
    data = load_cell_data(tasks[0]["cell"])
    rows = []
    for task in tasks:
        row: dict[str, Any] = {"run_id": task["run_id"], "polish_key": task["key"]}
        try:
            model = fitted_model(task["summary"])
            if task.get("polisher", "joint") == "gating":
                res = polish_gating(data.X, data.y, model.experts, model.gating,
                                    float(model.sigma), task["summary"]["activation"])
            else:
                res = polish(data.X, data.y, model.experts, model.gating, float(model.sigma),
                             task["summary"]["activation"], task["learn_sigma"])
        except (FloatingPointError, ValueError, TypeError, np.linalg.LinAlgError) as exc:
            row.update({c: math.nan for c in POLISH_COLUMNS})
            row.update({"polish_converged": False, "polish_stop_reason": "",
                        "polish_error": f"{type(exc).__name__}: {exc}"})
        else:
            row.update({"polished_log_likelihood": res.log_likelihood,
                        "polished_grad_norm": res.grad_norm,
                        "polished_hessian_min_eig": res.hessian_min_eig,
                        "polish_iterations": res.n_iter,
                        "polish_newton_steps": res.newton_steps,
                        "polish_converged": res.converged,
                        "polish_stop_reason": res.stop_reason, "polish_time": res.time,
                        "polish_error": ""})
        rows.append(row)
    return rows


@dataclass
class ClassifyOutcome:
    """What :func:`classify_results` did."""

    classes: pd.DataFrame
    polished: int
    reused: int
    wall_time: float


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    import io

    from moebench.io import atomic_write_bytes

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def _read_cache(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=["run_id", "polish_key", *POLISH_COLUMNS])
    return pd.read_parquet(path)


def classify_results(results: str | os.PathLike, jobs: int = 1, tol: float | None = None,
                     progress: Callable[[str], None] | None = None) -> ClassifyOutcome:
    """Polish the short climbing runs of a results folder and write their classes.

    Parameters
    ----------
    results : path
        A ``moebench run`` results folder (with its ``config.toml``).
    jobs : int
        Parallel processes (one data set per task).
    tol : float, optional
        Per-sample log-likelihood tolerance (default
        :data:`moebench.sweep.gridlock.DEFAULT_TOL`); reports at a larger tolerance reuse
        the polish, a smaller one needs ``classify`` with it.
    progress : callable, optional
        Receives one line per finished data set.

    Returns
    -------
    ClassifyOutcome
        ``classes`` is also written to ``RESULTS/classes.parquet``; ``polished`` counts the
        polishes run now, ``reused`` those taken from ``RESULTS/polish.parquet``.
    """
    from moebench.sweep.gridlock import DEFAULT_TOL
    from moebench.sweep.rerun import PARAMETERS_KEY, stored_cells, with_parameters
    from moebench.sweep.store import load_results

    tol = DEFAULT_TOL if tol is None else float(tol)
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be finite and >= 0; got {tol!r}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1; got {jobs}")
    t0 = time.perf_counter()
    folder = Path(results)
    if folder.is_file():
        folder = folder.parent
    summary, _ = load_results(folder)
    summary = with_parameters(summary, folder)
    cells = stored_cells(folder)
    polishers = variant_polishers(summary, cells)
    frame = summary[[c for c in ("run_id", "data_id", "label", "algorithm", "status",
                                 "train_log_likelihood", "true_train_log_likelihood",
                                 "activation") if c in summary.columns]].copy()
    frame["polisher"] = frame["label"].map(polishers).fillna("").astype(str)
    frame["climbs"] = frame["polisher"].ne("")
    frame["best_group"] = best_groups(frame)
    params = (summary[PARAMETERS_KEY] if PARAMETERS_KEY in summary.columns
              else pd.Series(None, index=summary.index, dtype=object))
    # polishable: stored parameters, and the run's cell in the stored config (for its data)
    frame["has_parameters"] = (params.map(lambda p: isinstance(p, str) and bool(p))
                               & frame["run_id"].isin(list(cells)))
    # sigma is given (and stays fixed) when the variant asks for the truth's and there is one
    learn = {rid: not (c.variant.known_sigma and "source" not in c.data)
             for rid, c in cells.items()}
    frame["learn_sigma"] = frame["run_id"].map(learn).fillna(True).astype(bool)
    frame["polish_key"] = [polish_key(p, ls, pol or "joint") if isinstance(p, str) else ""
                           for p, ls, pol in zip(params, frame["learn_sigma"],
                                                 frame["polisher"])]
    cache_path = folder / POLISH_FILE
    cache = _read_cache(cache_path)
    cache = cache[cache["run_id"].isin(frame["run_id"])].drop_duplicates("run_id", keep="last")
    records = {r["run_id"]: r for r in cache.to_dict("records")}
    keys = dict(zip(frame["run_id"], frame["polish_key"]))
    polisher_of = dict(zip(frame["run_id"], frame["polisher"]))
    summaries = summary.set_index("run_id", drop=False)
    polished = 0
    while True:  # polish the short runs; the best may rise; until no run becomes short
        frame = _with_polish(frame, records)
        todo = frame.loc[assign_classes(frame, tol).eq(NOT_POLISHED), "run_id"].tolist()
        if not todo:
            break
        by_data: dict[str, list[dict[str, Any]]] = {}
        for rid in todo:
            s = summaries.loc[rid].to_dict()
            by_data.setdefault(str(s["data_id"]), []).append(
                {"run_id": rid, "cell": cells[rid], "summary": s, "key": keys[rid],
                 "learn_sigma": bool(learn.get(rid, True)), "polisher": polisher_of[rid]})
        for rows in _run_tasks(list(by_data.values()), jobs, progress):
            for row in rows:
                records[row["run_id"]] = row
                polished += 1
            _write_parquet(pd.DataFrame(list(records.values())), cache_path)
    frame = _with_polish(frame, records)
    frame["class"] = assign_classes(frame, tol)
    frame["best_log_likelihood"] = best_log_likelihood(frame)
    frame["classify_tol"] = tol
    reused = int(np.isfinite(frame["polished_log_likelihood"].astype(float)).sum()
                 + frame["polish_error"].map(lambda e: isinstance(e, str) and e != "").sum()
                 ) - polished
    out = frame[["run_id", "data_id", "label", "class", "climbs", "polisher", "best_group",
                 "has_parameters", "train_log_likelihood",
                 "best_log_likelihood", *POLISH_COLUMNS, "classify_tol"]]
    _write_parquet(out, folder / CLASSES_FILE)
    return ClassifyOutcome(out, polished, reused, time.perf_counter() - t0)


def _with_polish(frame: pd.DataFrame, records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """``frame`` with the cached polish outputs of its runs (matching keys only)."""
    frame = frame.drop(columns=[c for c in POLISH_COLUMNS if c in frame.columns])
    rows = [r for r in records.values() if r.get("polish_key")]
    if not rows:
        return frame.assign(**{c: np.nan for c in POLISH_COLUMNS})
    cache = pd.DataFrame(rows)[["run_id", "polish_key", *POLISH_COLUMNS]]
    merged = frame.merge(cache, on=["run_id", "polish_key"], how="left")
    merged.index = frame.index
    return merged


def _run_tasks(groups: list[list[dict[str, Any]]], jobs: int,
               progress: Callable[[str], None] | None):
    """Yield the result rows of each group (a data set's polishes) as they finish."""
    total = len(groups)
    if jobs == 1 or total == 1:
        for i, group in enumerate(groups, 1):
            rows = _polish_data_set(group)
            if progress:
                progress(f"polished {i}/{total} data sets ({len(rows)} run(s))")
            yield rows
        return
    import multiprocessing

    with ProcessPoolExecutor(max_workers=jobs,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_polish_data_set, group) for group in groups]
        for i, fut in enumerate(as_completed(futures), 1):
            rows = fut.result()
            if progress:
                progress(f"polished {i}/{total} data sets ({len(rows)} run(s))")
            yield rows


def load_classes(results: str | os.PathLike, summary: pd.DataFrame) -> pd.DataFrame | None:
    """The stored classes of a folder when they cover ``summary``'s runs, else None.

    None (with a line on stderr) when ``classes.parquet`` is missing a run of the summary or
    a run's log-likelihood differs from the one classified (the folder changed since).
    """
    path = Path(results)
    path = (path.parent if path.is_file() else path) / CLASSES_FILE
    if not path.is_file():
        return None
    classes = pd.read_parquet(path)
    merged = summary[["run_id", "train_log_likelihood"]].merge(
        classes[["run_id", "train_log_likelihood"]], on="run_id", how="left",
        suffixes=("", "_classified"))
    a = merged["train_log_likelihood"].astype(float).to_numpy()
    b = merged["train_log_likelihood_classified"].astype(float).to_numpy()
    missing = ~merged["run_id"].isin(classes["run_id"]).to_numpy()
    changed = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    if missing.any() or changed.any():
        print(f"{path}: stale ({int(missing.sum())} run(s) not classified, "
              f"{int((changed & ~missing).sum())} changed since); the reports use the "
              f"uncertified gap rule (run `moebench classify {path.parent}`)", file=sys.stderr)
        return None
    return classes


def attach_classes(summary: pd.DataFrame, results: str | os.PathLike) -> pd.DataFrame:
    """``summary`` with the columns of ``classes.parquet`` (``class``, ``climbs``,
    ``has_parameters``, ``classify_tol`` and the polish outputs) when it covers the folder,
    else unchanged."""
    classes = load_classes(results, summary)
    if classes is None:
        return summary
    keep = ["run_id", "class", "climbs", "polisher", "best_group", "has_parameters",
            "classify_tol", *POLISH_COLUMNS]
    keep = [c for c in keep if c in classes.columns]
    base = summary.drop(columns=[c for c in keep[1:] if c in summary.columns])
    return base.merge(classes[keep], on="run_id", how="left")
