"""The paper's theorem as an estimator: the gating EM with the TRUE experts fixed.

Makkuva et al. (arXiv:1802.07417) prove that, once the experts are known, the EM on
the gating alone converges to the true gating from a random initialisation (their
clean theorem is for k = 2, Gaussian inputs and a gating orthogonal to the experts;
larger k is left open). :class:`OracleGatingEM` (registered as ``oracle_gating_em``)
runs exactly that EM: the experts and sigma are the true ones, given to ``fit`` as
``truth``, and only the gating moves, from

- ``gating_init="random"``: a gating drawn at the scale of the data
  (:func:`moebench.starts.data_scale_start`: logits of about unit variance);
- ``gating_init="truth"``: the true gating, so that the EM finds the maximum-likelihood
  gating next to it, the per-data reference the random starts are compared with
  (:mod:`moebench.sweep.theorem`).

It is an **oracle** (``needs_truth = True``): ``fit`` without ``truth`` raises
ValueError, the sweep config checker refuses it on CSV data, it is left out of
:func:`moebench.registry.available_algorithms` unless asked for (``oracles=True``), and
the sweep report marks it. It is a local search of the *gating* log-likelihood, so its
``stationarity`` (inherited from :meth:`moebench.base.MoEEstimator.stationarity`)
reports the gradient and Hessian of that function of the gating alone, by
:func:`gating_stationarity` (the experts and sigma are not parameters of this fit).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from moebench.activations import Activation
from moebench.base import MoEEstimator
from moebench.constraints import Interval, Options
from moebench.em import GATING_METHODS, run_em
from moebench.fastmath import log_softmax_rows, normalize_log_rows
from moebench.history import History
from moebench.model import LOG_2PI
from moebench.registry import register
from moebench.starts import data_scale_start
from moebench.stationarity import HESSIAN_CHUNK, HESSIAN_MAX_PARAMS

#: registry name of the oracle gating EM
ORACLE = "oracle_gating_em"
#: valid values of ``gating_init``
GATING_INITS = ("random", "truth")


@register(ORACLE)
class OracleGatingEM(MoEEstimator):
    """Gating EM with the true experts and sigma fixed (an oracle: needs the truth).

    Parameters
    ----------
    n_experts : int
        Number of experts k >= 2 (the truth's).
    activation : str, Activation or callable
        Expert activation g (the truth's).
    sigma : float or None
        Noise level held fixed; None takes the truth's.
    random_state : int or None
        Seed of the random start (``gating_init="random"``).
    gating_init : {"random", "truth"}
        Start of the gating EM: a random gating at the data's scale, or the true gating.
    max_iter : int
        EM iterations (carries the sweep's ``max_iter`` budget).
    tol : float
        Stop when the mean log-likelihood changes by less than ``tol * max(1, |ll|)``.
    gating_newton_steps : int
        Newton (or L-BFGS) steps of each gating M-step.
    gating_method : {"auto", "newton", "lbfgs"}
        Solver of the gating M-step (see :func:`moebench.em.gating_m_step`).
    ridge : float
        L2 penalty of the gating M-step.
    max_time : float or None
        Wall-clock budget in seconds (carries the sweep's ``max_time`` budget).

    Attributes
    ----------
    experts_, sigma_
        The true experts and sigma (fixed).
    gating_ : ndarray of shape (k, d), last row 0
        The gating the EM ended at.
    gating_free_ : dict
        ``gating_[i, j]`` for the free rows i < k - 1, keyed ``"i_j"`` (the sweep stores
        them as ``fitted_gating_free_i_j`` columns, so that the theorem check can compare
        a random start's gating with the truth-started one on the same data).
    gating_start_distance_ : float
        Frobenius distance of the starting gating (free rows) from the true gating.
    n_iter_, converged_, stop_reason_, log_likelihood_, history_
        As every estimator (phase "gating_em").
    phase_gating_norms_ : dict
        ||gating||_F where the gating EM ended.
    """

    description = "oracle: gating EM with the TRUE experts and sigma fixed (needs the truth)"
    assumes = ("true experts and sigma given (oracle)", "synthetic data only")
    needs_truth: ClassVar[bool] = True
    #: the experts (and sigma) are held fixed: ``moebench classify`` polishes its runs with
    #: the gating polisher (:func:`moebench.sweep.polish.polish_gating`)
    fixed_experts: ClassVar[bool] = True
    local_search = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "gating_init": [Options(GATING_INITS)],
        "max_iter": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None, closed="neither")],
        "gating_newton_steps": [Interval(int, 1, None)],
        "gating_method": [Options(GATING_METHODS)],
        "ridge": [Interval(float, 0, None)],
        "max_time": [Interval(float, 0, None, closed="neither"), None],
    }
    budget_parameters: ClassVar[dict[str, str]] = {"max_iter": "max_iter",
                                                    "max_time": "max_time"}
    iteration_unit: ClassVar[str | None] = "EM iteration"

    def __init__(
        self,
        n_experts: int = 2,
        activation: str | Activation = "linear",
        sigma: float | None = None,
        random_state: int | None = None,
        gating_init: str = "random",
        max_iter: int = 1000,
        tol: float = 1e-9,
        gating_newton_steps: int = 5,
        gating_method: str = "auto",
        ridge: float = 0.0,
        max_time: float | None = None,
    ) -> None:
        super().__init__(n_experts, activation, sigma, random_state)
        self.gating_init = gating_init
        self.max_iter = max_iter
        self.tol = tol
        self.gating_newton_steps = gating_newton_steps
        self.gating_method = gating_method
        self.ridge = ridge
        self.max_time = max_time

    def fit(self, X: np.ndarray, y: np.ndarray, truth: Any = None) -> OracleGatingEM:
        """Fit the gating with the true experts and sigma fixed.

        Parameters
        ----------
        X : ndarray of shape (n, d)
        y : ndarray of shape (n,)
        truth : MoEModel or MoEData
            Required: the true parameters (its experts and sigma are used, and its gating
            when ``gating_init="truth"``).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Without ``truth`` (after the options and data are checked), or when the
            truth's activation differs from ``activation``.
        """
        super().fit(X, y, truth=truth)
        k, d = self.gating_.shape
        self.gating_free_ = {f"{i}_{j}": float(self.gating_[i, j])
                             for i in range(k - 1) for j in range(d)}
        return self

    def _fit(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
             sigma: float | None, history: History) -> None:
        truth = history.truth  # in the units of the X given here (MoEEstimator.fit)
        if truth is None:
            raise ValueError(
                f"{ORACLE} is an oracle: it needs the true parameters, fit(X, y, truth=...) "
                f"with truth a MoEModel or MoEData (synthetic data only); got truth=None")
        if truth.activation.name != activation.name:
            raise ValueError(f"truth has activation {truth.activation.name!r} but "
                             f"activation = {activation.name!r}; valid: the truth's")
        s = float(truth.sigma) if sigma is None else float(sigma)
        if self.gating_init == "truth":
            start = np.array(truth.gating, dtype=float)
        else:
            start = data_scale_start(self._rng(), X, y, k)[1]
        start = start - start[-1]
        true_free = truth.gating[:-1] - truth.gating[-1]
        self.gating_start_distance_ = float(np.linalg.norm(start[:-1] - true_free))
        res = run_em(X, y, truth.experts, start, s, activation, update_experts=False,
                     update_sigma=False, max_iter=int(self.max_iter),
                     ridge=float(self.ridge), gating_newton_steps=int(self.gating_newton_steps),
                     gating_method=self.gating_method, history=history, phase="gating_em",
                     stopping=self.stopping(history, tol=float(self.tol)))
        self._set_fit(np.array(truth.experts, dtype=float), res.gating, s, res.n_iter,
                      res.log_likelihood, res.stop_reason, converged=res.converged)
        self.phase_gating_norms_ = {"gating_em": float(np.linalg.norm(res.gating))}

    def _stationarity(self, X: np.ndarray, y: np.ndarray,
                      activation: Activation) -> tuple[float, float]:
        """Stationarity of the GATING log-likelihood (experts and sigma fixed) at ``gating_``.

        The gradient and Hessian are those of the mean log-likelihood as a function of
        the free gating rows alone, in the scaled coordinates of
        :mod:`moebench.stationarity` (gating rows times rms(X)); see
        :func:`gating_stationarity`.
        """
        return gating_stationarity(X, y, self.experts_, self.gating_, self.sigma_, activation)


def gating_gradient_hessian(X: np.ndarray, y: np.ndarray, experts: np.ndarray,
                            gating: np.ndarray, sigma: float, activation: Activation,
                            hessian: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Gradient and Hessian of the mean log-likelihood in the free gating rows alone.

    With the experts and sigma fixed, r_ni the posterior and p_ni the gate probabilities,
    the gradient in W_b (b < k - 1, last row fixed at 0) is mean_n (r_nb - p_nb) x_n and
    the Hessian block (b, c) is mean_n [r_nb (delta_bc - r_nc) - p_nb (delta_bc - p_nc)]
    x_n x_n^T (the gating block of :func:`moebench.stationarity.log_likelihood_hessian`).

    Returns
    -------
    grad : ndarray of shape ((k - 1) d,)
    hess : ndarray of shape ((k - 1) d, (k - 1) d) or None
        None when ``hessian`` is False.
    """
    experts = np.asarray(experts, dtype=float)
    gating = np.asarray(gating, dtype=float)
    gating = gating - gating[-1]
    n, d = X.shape
    k = experts.shape[0]
    m = k - 1
    grad = np.zeros((m, d))
    H = np.zeros((m * d, m * d)) if hessian else None
    for lo in range(0, n, HESSIAN_CHUNK):
        Xc, yc = X[lo:lo + HESSIAN_CHUNK], y[lo:lo + HESSIAN_CHUNK]
        logp = log_softmax_rows(Xc @ gating.T)
        lj = logp - 0.5 * ((yc[:, None] - activation.func(Xc @ experts.T)) / sigma) ** 2
        lj -= math.log(sigma) + 0.5 * LOG_2PI
        r, _ = normalize_log_rows(lj)
        p = np.exp(logp)
        grad += (r - p)[:, :m].T @ Xc
        if H is not None:
            rb, pb = r[:, :m], p[:, :m]
            w = (pb[:, :, None] * pb[:, None, :] - rb[:, :, None] * rb[:, None, :])
            idx = np.arange(m)
            w[:, idx, idx] += rb - pb
            xx = (Xc[:, :, None] * Xc[:, None, :]).reshape(Xc.shape[0], d * d)
            blocks = (w.reshape(-1, m * m).T @ xx).reshape(m, m, d, d)
            H += blocks.transpose(0, 2, 1, 3).reshape(m * d, m * d)
    return grad.ravel() / n, (None if H is None else H / n)


class GatingHessianProduct:
    """Exact products v -> H v with the Hessian of the mean log-likelihood in the free gating
    rows alone (experts and sigma fixed), without forming H.

    The per-row weights w_n[b, c] = p_nb p_nc - r_nb r_nc + delta_bc (r_nb - p_nb) of
    :func:`gating_gradient_hessian` are computed once per chunk of
    :data:`moebench.stationarity.HESSIAN_CHUNK` rows and kept when there are at most
    :data:`moebench.stationarity.HVP_MAX_STORED` of them (else recomputed per chunk in every
    product: memory bounded); a product is (H v)_b = mean_n x_n sum_c w_n[b, c] (x_n . v_c),
    O(n d k) (plus O(n k^2)).

    Parameters
    ----------
    X, y, experts, gating, sigma, activation
        As :func:`gating_gradient_hessian`.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
                 sigma: float, activation: Activation) -> None:
        experts = np.asarray(experts, dtype=float)
        gating = np.asarray(gating, dtype=float)
        gating = gating - gating[-1]
        from moebench.stationarity import HVP_MAX_STORED

        self.X, self.y = X, y
        self.experts, self.gating = experts, gating
        self.sigma, self.activation = float(sigma), activation
        n, self.d = X.shape
        self.m = experts.shape[0] - 1
        self.size = self.m * self.d
        self._weights: list[np.ndarray] | None = None
        if n * self.m * self.m <= HVP_MAX_STORED:
            self._weights = [self._chunk_weights(lo) for lo in range(0, n, HESSIAN_CHUNK)]

    def _chunk_weights(self, lo: int) -> np.ndarray:
        Xc, yc = self.X[lo:lo + HESSIAN_CHUNK], self.y[lo:lo + HESSIAN_CHUNK]
        r, p = _posterior_and_gates(Xc, yc, self.experts, self.gating, self.sigma,
                                    self.activation)
        rb, pb = r[:, :self.m], p[:, :self.m]
        w = pb[:, :, None] * pb[:, None, :] - rb[:, :, None] * rb[:, None, :]
        idx = np.arange(self.m)
        w[:, idx, idx] += rb - pb
        return w

    def __call__(self, v: np.ndarray) -> np.ndarray:
        """H v for a vector of (k - 1) d entries (rows b = 0..k-2 of the gating)."""
        V = np.asarray(v, dtype=float).reshape(self.m, self.d)
        acc = np.zeros((self.m, self.d))
        for i, lo in enumerate(range(0, self.X.shape[0], HESSIAN_CHUNK)):
            Xc = self.X[lo:lo + HESSIAN_CHUNK]
            w = self._weights[i] if self._weights is not None else self._chunk_weights(lo)
            coef = np.einsum("nbc,nc->nb", w, Xc @ V.T)
            acc += coef.T @ Xc
        return acc.ravel() / self.X.shape[0]


def _posterior_and_gates(Xc: np.ndarray, yc: np.ndarray, experts: np.ndarray,
                         gating: np.ndarray, sigma: float, activation: Activation
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Posterior r and gate probabilities p of a chunk of rows (gating relative to its last
    row)."""
    logp = log_softmax_rows(Xc @ gating.T)
    lj = logp - 0.5 * ((yc[:, None] - activation.func(Xc @ experts.T)) / sigma) ** 2
    lj -= math.log(sigma) + 0.5 * LOG_2PI
    r, _ = normalize_log_rows(lj)
    return r, np.exp(logp)


def gating_stationarity(X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
                        sigma: float, activation: Activation,
                        hessian_max_params: int = HESSIAN_MAX_PARAMS) -> tuple[float, float]:
    """Scaled gradient norm and smallest loss-Hessian eigenvalue of the gating likelihood.

    Coordinates u = W s_x (s_x = rms(X)), as the gating part of
    :func:`moebench.stationarity.stationarity`, so :data:`moebench.stationarity.STATIONARY_TOL`
    and the certified thresholds of :mod:`moebench.sweep.classify` apply unchanged.

    Parameters
    ----------
    X, y, experts, gating, sigma, activation
        As :func:`gating_gradient_hessian`.
    hessian_max_params : int
        Up to this many gating parameters ((k - 1) d) the Hessian is formed and its
        smallest eigenvalue is exact; above, it is a Lanczos estimate from exact
        Hessian-vector products (:class:`GatingHessianProduct`,
        :func:`moebench.stationarity.operator_min_eigenvalue`): never skipped.

    Returns
    -------
    grad_norm : float
    hessian_min_eig : float
        Smallest eigenvalue of the Hessian of the negative mean log-likelihood in the
        gating (> 0 at a strict local maximum, < 0 at a saddle); NaN only when it cannot
        be computed (non-finite values, Lanczos not converged).
    """
    from moebench.stationarity import operator_min_eigenvalue

    k, d = np.shape(experts)
    s_x = float(np.sqrt(np.mean(np.square(X)))) or 1.0
    want_h = (k - 1) * d <= hessian_max_params
    g, H = gating_gradient_hessian(X, y, experts, gating, sigma, activation, hessian=want_h)
    grad_norm = float(np.linalg.norm(g)) / s_x
    if not math.isfinite(grad_norm):
        return grad_norm, math.nan
    if H is None:
        hvp = GatingHessianProduct(X, y, experts, gating, sigma, activation)
        return grad_norm, operator_min_eigenvalue(
            lambda v: -hvp(np.asarray(v, dtype=float) / s_x) / s_x, hvp.size)
    H = 0.5 * (H + H.T) / s_x**2
    if not np.all(np.isfinite(H)):
        return grad_norm, math.nan
    return grad_norm, float(np.linalg.eigvalsh(-H)[0])
