"""Is a fit at a stationary point of the likelihood? Gradient and Hessian of the mean
log-likelihood of the mixture of experts, in numpy.

The parameters are theta = (experts A (k, d), the k - 1 free gating rows W[:-1] - W[-1],
log sigma when sigma is learned), in that order, flattened. The gradient is analytic:
with the posterior responsibilities r_ni and gating probabilities p_ni,

* d/d a_i      = mean_n r_ni (y_n - g(a_i . x_n)) g'(a_i . x_n) x_n / sigma^2
* d/d W_i      = mean_n (r_ni - p_ni) x_n                      (i < k, last row fixed 0)
* d/d log sigma = mean_n sum_i r_ni ((y_n - g(a_i . x_n))^2 / sigma^2 - 1)

**Scale.** :func:`stationarity` reports the gradient and the Hessian in *scaled*
coordinates u, the parameters in natural units: experts a_i s_x / sigma, gating rows
W_i s_x, and log sigma, where s_x = rms(X) and sigma is the fitted noise level (held
fixed in the change of variables). In these units the Fisher information per sample is
of order 1 whatever the scale of X and, for linear experts, of y, so a gradient norm
G promises a log-likelihood gain of about G^2 / 2 per sample from one Newton step. A fit
is *stationary* when this scaled gradient norm is at most :data:`STATIONARY_TOL`
(1e-2: a remaining gain of order 5e-5 per sample, below the 1e-3 stuck tolerance). This is
the sweep's quick, *uncertified* rule: on a flat region (small curvature) a gradient that
small can still lead far, and a stationary point may be a saddle. The certified classes
(:mod:`moebench.sweep.classify`) polish the run first and use a gradient tolerance of 1e-5
and the Hessian's sign.

The smallest eigenvalue of the Hessian of the loss (the negative mean log-likelihood;
analytic, :func:`log_likelihood_hessian`, checked against finite differences of the
analytic gradient in the tests) tells a local maximum (> 0) from a saddle (< 0). Up to
:data:`HESSIAN_MAX_PARAMS` parameters it is exact (the Hessian is formed); above, it is a
Lanczos estimate (:func:`lanczos_min_eigenvalue`: ARPACK on exact Hessian-vector products,
:class:`HessianProduct`, tolerance :data:`LANCZOS_TOL`; the tests check it against the dense
eigenvalue to 1e-7), so every size is certified (d = 100, k = 10: P = 1901, a few seconds at
n = 1e4).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.special import log_softmax, logsumexp

from moebench.activations import Activation, get_activation
from moebench.model import LOG_2PI, log_joint

#: scaled gradient norm at or below which a fit counts as stationary
STATIONARY_TOL = 1e-2
#: largest number of parameters for which the Hessian is formed (its smallest eigenvalue
#: exact); above, a Lanczos estimate from Hessian-vector products (no size cap)
HESSIAN_MAX_PARAMS = 500
#: ARPACK tolerance of the Lanczos estimate (relative to the spectrum's scale)
LANCZOS_TOL = 1e-8
#: most ARPACK restarts of the Lanczos estimate
LANCZOS_MAX_ITER = 3000


def n_parameters(k: int, d: int, learn_sigma: bool = True) -> int:
    """Number of free parameters: k d experts, (k - 1) d gating, 1 for log sigma if learned."""
    return k * d + (k - 1) * d + int(learn_sigma)


def pack(experts: np.ndarray, gating: np.ndarray, sigma: float, learn_sigma: bool = True
         ) -> np.ndarray:
    """theta = (experts, free gating rows W[:-1] - W[-1], [log sigma]) as one flat vector."""
    experts = np.asarray(experts, dtype=float)
    gating = np.asarray(gating, dtype=float)
    parts = [experts.ravel(), (gating[:-1] - gating[-1]).ravel()]
    if learn_sigma:
        parts.append(np.array([math.log(float(sigma))]))
    return np.concatenate(parts)


def unpack(theta: np.ndarray, k: int, d: int, sigma: float | None = None
           ) -> tuple[np.ndarray, np.ndarray, float]:
    """Inverse of :func:`pack`; ``sigma`` is used when theta has no log sigma entry."""
    experts = theta[:k * d].reshape(k, d)
    gating = np.vstack([theta[k * d:(2 * k - 1) * d].reshape(k - 1, d), np.zeros((1, d))])
    s = math.exp(float(theta[-1])) if theta.size == n_parameters(k, d, True) else float(sigma)
    return experts, gating, s


def mean_log_likelihood(X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
                        sigma: float, activation: Activation | str) -> float:
    """Mean conditional log-likelihood mean_n log p(y_n | x_n)."""
    lj = log_joint(X, y, np.asarray(experts, float), np.asarray(gating, float), float(sigma),
                   get_activation(activation))
    return float(np.mean(logsumexp(lj, axis=1)))


def _posterior(X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
               sigma: float | np.ndarray, act: Activation
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What both gradients read: t = X A^T, the residuals, log gates (relative to the last
    row), squared standardised residuals and responsibilities; ``sigma`` one noise level
    (a float) or one per expert (a (k,) array)."""
    experts = np.asarray(experts, dtype=float)
    gating = np.asarray(gating, dtype=float)
    gating = gating - gating[-1]
    t = X @ experts.T
    resid = y[:, None] - act.func(t)
    log_gate = log_softmax(X @ gating.T, axis=1)
    z2 = (resid / sigma) ** 2
    log_sigma = np.log(sigma) if np.ndim(sigma) else math.log(sigma)
    lj = log_gate - 0.5 * z2 - log_sigma - 0.5 * LOG_2PI
    resp = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
    return t, resid, log_gate, z2, resp


def log_likelihood_gradient(X: np.ndarray, y: np.ndarray, experts: np.ndarray,
                            gating: np.ndarray, sigma: float, activation: Activation | str,
                            learn_sigma: bool = True) -> np.ndarray:
    """Analytic gradient of the mean log-likelihood with respect to :func:`pack`'s theta.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    experts, gating : ndarray of shape (k, d)
        The gating's rows are taken relative to its last row.
    sigma : float
        Noise standard deviation (> 0).
    activation : Activation or str
        Expert activation g; its ``derivative`` gives g'.
    learn_sigma : bool
        Whether theta has a log sigma entry (False when sigma is known).

    Returns
    -------
    ndarray of shape (:func:`n_parameters`,)
    """
    act = get_activation(activation)
    t, resid, log_gate, z2, resp = _posterior(X, y, experts, gating, sigma, act)
    n = X.shape[0]
    g_experts = ((resp * resid * act.derivative(t)).T @ X) / (n * sigma * sigma)
    g_gating = ((resp - np.exp(log_gate))[:, :-1].T @ X) / n
    parts = [g_experts.ravel(), g_gating.ravel()]
    if learn_sigma:
        parts.append(np.array([float(np.sum(resp * (z2 - 1.0))) / n]))
    return np.concatenate(parts)


def scaling(X: np.ndarray, k: int, sigma: float, learn_sigma: bool = True) -> np.ndarray:
    """The diagonal D of theta = D u: u is theta in natural units (see the module notes)."""
    d = X.shape[1]
    s_x = float(np.sqrt(np.mean(np.square(X)))) or 1.0
    parts = [np.full(k * d, float(sigma) / s_x), np.full((k - 1) * d, 1.0 / s_x)]
    if learn_sigma:
        parts.append(np.ones(1))
    return np.concatenate(parts)


#: activations whose second derivative is 0 away from their kinks
PIECEWISE_LINEAR = ("linear", "relu", "leaky_relu")
#: step of the central difference of g' that gives g'' for other activations
SECOND_DERIVATIVE_STEP = 1e-5
#: rows per chunk of the analytic Hessian (bounds its memory)
HESSIAN_CHUNK = 8192


def second_derivative(activation: Activation, t: np.ndarray) -> np.ndarray:
    """g''(t): 0 for piecewise-linear g, else a central difference of g'."""
    if activation.name in PIECEWISE_LINEAR:
        return np.zeros_like(t)
    h = SECOND_DERIVATIVE_STEP
    return (activation.derivative(t + h) - activation.derivative(t - h)) / (2.0 * h)


def _hessian_weights(Xc: np.ndarray, yc: np.ndarray, experts: np.ndarray, gating: np.ndarray,
                     sigma: float, act: Activation, learn_sigma: bool) -> np.ndarray:
    """Per-row weights w (m, nb, nb) of the Hessian of log p(y_n | x_n), gating taken
    relative to its last row: the Hessian is mean_n sum_bc w_n[b, c] f_b f_c^T with
    f = x_n for the k expert and k - 1 gating blocks and f = 1 for log sigma (block nb - 1
    when ``learn_sigma``). See :func:`log_likelihood_hessian`."""
    k = experts.shape[0]
    m = Xc.shape[0]
    nx = 2 * k - 1  # blocks with feature x: k experts, k - 1 free gating rows
    nb = nx + int(learn_sigma)
    s2 = float(sigma) ** 2
    eye_k = np.eye(k)
    t = Xc @ experts.T
    res = yc[:, None] - act.func(t)
    g1 = act.derivative(t)
    z2 = res * res / s2
    log_gate = log_softmax(Xc @ gating.T, axis=1)
    lj = log_gate - 0.5 * z2 - math.log(sigma) - 0.5 * LOG_2PI
    r = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
    p = np.exp(log_gate)
    e = res * g1 / s2
    # phi[n, i, b]: coefficient of f_b in grad_b l_ni
    phi = np.zeros((m, k, nb))
    phi[:, :, :k] = e[:, :, None] * eye_k[None]
    phi[:, :, k:nx] = eye_k[None, :, :k - 1] - p[:, None, :k - 1]
    if learn_sigma:
        phi[:, :, nx] = z2 - 1.0
    psi = phi - np.einsum("ni,nib->nb", r, phi)[:, None, :]
    w = np.matmul((psi * r[:, :, None]).transpose(0, 2, 1), psi)  # (m, nb, nb)
    # sum_i r_ni hess l_ni
    idx = np.arange(k)
    w[:, idx, idx] += r * (res * second_derivative(act, t) - g1 * g1) / s2
    pw = p[:, :k - 1]
    w[:, k:nx, k:nx] -= pw[:, :, None] * (np.eye(k - 1)[None] - pw[:, None, :])
    if learn_sigma:
        w[:, idx, nx] += -2.0 * r * e
        w[:, nx, idx] += -2.0 * r * e
        w[:, nx, nx] += -2.0 * np.sum(r * z2, axis=1)
    return w


def log_likelihood_hessian(X: np.ndarray, y: np.ndarray, experts: np.ndarray,
                           gating: np.ndarray, sigma: float, activation: Activation | str,
                           learn_sigma: bool = True) -> np.ndarray:
    """Analytic Hessian of the mean log-likelihood with respect to :func:`pack`'s theta.

    With l_ni = log p_ni + log N(y_n; g(a_i . x_n), sigma^2) and r_ni the posterior,
    the Hessian of log sum_i exp(l_ni) is sum_i r_ni (hess l_ni) + Cov_r(grad l_ni).
    Every block is mean_n w_n f f^T with f = x_n (expert and gating blocks) or 1 (log
    sigma), so it costs O(n k^2 d^2), in chunks of :data:`HESSIAN_CHUNK` rows. g''
    comes from :func:`second_derivative`.

    Returns
    -------
    ndarray of shape (P, P), P = :func:`n_parameters`
    """
    act = get_activation(activation)
    experts = np.asarray(experts, dtype=float)
    gating = np.asarray(gating, dtype=float)
    gating = gating - gating[-1]
    n, d = X.shape
    k = experts.shape[0]
    nx = 2 * k - 1
    H = np.zeros((n_parameters(k, d, learn_sigma),) * 2)
    for lo in range(0, n, HESSIAN_CHUNK):
        Xc, yc = X[lo:lo + HESSIAN_CHUNK], y[lo:lo + HESSIAN_CHUNK]
        m = Xc.shape[0]
        w = _hessian_weights(Xc, yc, experts, gating, sigma, act, learn_sigma)
        xx = (Xc[:, :, None] * Xc[:, None, :]).reshape(m, d * d)
        blocks = (w[:, :nx, :nx].reshape(m, nx * nx).T @ xx).reshape(nx, nx, d, d)
        H[:nx * d, :nx * d] += blocks.transpose(0, 2, 1, 3).reshape(nx * d, nx * d)
        if learn_sigma:
            cross = Xc.T @ w[:, :nx, nx]  # (d, nx)
            H[:nx * d, -1] += cross.T.ravel()
            H[-1, :nx * d] += cross.T.ravel()
            H[-1, -1] += float(np.sum(w[:, nx, nx]))
    return H / n


#: largest number of stored Hessian weights (n (2k - 1 + 1)^2 floats) that
#: :class:`HessianProduct` keeps between products; above it they are recomputed per product
HVP_MAX_STORED = 25_000_000


class HessianProduct:
    """Exact (analytic) products v -> H v with the Hessian of the mean log-likelihood.

    Uses the per-row weights of :func:`log_likelihood_hessian` without forming H:
    for the x-feature blocks (H v)_b = mean_n x_n sum_c w_n[b, c] (x_n . v_c), plus the
    log sigma row and column. A product costs O(n d k) after the weights, which are
    computed once (O(n k^3)) and kept when there are at most :data:`HVP_MAX_STORED` of
    them, else recomputed per chunk in every product (memory bounded, k times slower).

    Parameters
    ----------
    X, y, experts, gating, sigma, activation, learn_sigma
        As :func:`log_likelihood_hessian`.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
                 sigma: float, activation: Activation | str, learn_sigma: bool = True) -> None:
        self.act = get_activation(activation)
        self.X, self.y = X, y
        self.experts = np.asarray(experts, dtype=float)
        gating = np.asarray(gating, dtype=float)
        self.gating = gating - gating[-1]
        self.sigma = float(sigma)
        self.learn_sigma = learn_sigma
        n, self.d = X.shape
        self.k = self.experts.shape[0]
        self.nx = 2 * self.k - 1
        self.size = n_parameters(self.k, self.d, learn_sigma)
        nb = self.nx + int(learn_sigma)
        self._weights: list[np.ndarray] | None = None
        if n * nb * nb <= HVP_MAX_STORED:
            self._weights = [self._chunk_weights(lo) for lo in range(0, n, HESSIAN_CHUNK)]

    def _chunk_weights(self, lo: int) -> np.ndarray:
        return _hessian_weights(self.X[lo:lo + HESSIAN_CHUNK], self.y[lo:lo + HESSIAN_CHUNK],
                                self.experts, self.gating, self.sigma, self.act,
                                self.learn_sigma)

    def __call__(self, v: np.ndarray) -> np.ndarray:
        """H v for a vector of :func:`n_parameters` entries."""
        v = np.asarray(v, dtype=float).ravel()
        nx, d = self.nx, self.d
        V = v[:nx * d].reshape(nx, d)
        out = np.zeros(nx * d + int(self.learn_sigma))
        acc = np.zeros((nx, d))
        n = self.X.shape[0]
        for i, lo in enumerate(range(0, n, HESSIAN_CHUNK)):
            Xc = self.X[lo:lo + HESSIAN_CHUNK]
            w = self._weights[i] if self._weights is not None else self._chunk_weights(lo)
            u = Xc @ V.T  # (m, nx): x_n . v_c
            coef = np.einsum("nbc,nc->nb", w[:, :nx, :nx], u)
            if self.learn_sigma:
                coef += w[:, :nx, nx] * v[-1]
                out[-1] += float(np.sum(w[:, nx, :nx] * u)) + float(np.sum(w[:, nx, nx])) * v[-1]
            acc += coef.T @ Xc
        out[:nx * d] = acc.ravel()
        return out / n


def lanczos_min_eigenvalue(X: np.ndarray, y: np.ndarray, experts: np.ndarray,
                           gating: np.ndarray, sigma: float, activation: Activation | str,
                           learn_sigma: bool = True, tol: float = LANCZOS_TOL,
                           seed: int = 0) -> float:
    """Smallest eigenvalue of the scaled Hessian of the loss, by Lanczos, without forming it.

    The operator is M = -D H D (:func:`scaling`'s D; :class:`HessianProduct`'s exact
    products). :func:`scipy.sparse.linalg.eigsh` finds the largest eigenvalue c of M
    first (loosely), then the largest of the shifted operator c' I - M with
    c' = |c| (1 + 1e-3) + 1e-12, whose eigenvalues are all >= 0: ARPACK's relative tolerance
    ``tol`` then bounds the error of lambda_min(M) = c' - lambda_max(c' I - M) by about
    ``tol`` times the spectrum's scale, also when lambda_min is near 0 (a relative test on
    lambda_min itself would never be met there). The start vector is seeded: the result is
    deterministic.

    Returns
    -------
    float
        NaN when the products are not finite or ARPACK does not converge.
    """
    k, d = np.shape(experts)
    D = scaling(X, k, sigma, learn_sigma)
    hvp = HessianProduct(X, y, experts, gating, sigma, activation, learn_sigma)

    def loss(v: np.ndarray) -> np.ndarray:
        return -D * hvp(D * np.asarray(v, dtype=float).ravel())

    return operator_min_eigenvalue(loss, D.size, tol=tol, seed=seed)


def operator_min_eigenvalue(matvec: Callable[[np.ndarray], np.ndarray], size: int,
                            tol: float = LANCZOS_TOL, seed: int = 0) -> float:
    """Smallest eigenvalue of a symmetric operator given by its products, by Lanczos.

    The shifted two-pass scheme of :func:`lanczos_min_eigenvalue` (which calls it with the
    scaled loss Hessian of the full parameter vector; the oracle's gating-only Hessian,
    :func:`moebench.oracle.gating_stationarity`, uses it too): ARPACK finds the largest
    eigenvalue c loosely, then the largest of c' I - M, c' = |c| (1 + 1e-3) + 1e-12.

    Parameters
    ----------
    matvec : callable
        v -> M v for vectors of ``size`` entries.
    size : int
    tol : float
        ARPACK's relative tolerance of the second pass.
    seed : int
        Seed of the start vector (the result is deterministic).

    Returns
    -------
    float
        NaN when the products are not finite or ARPACK does not converge.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    P = int(size)
    start = np.random.default_rng(seed).standard_normal(P)
    if P == 1:
        out = float(matvec(np.ones(1))[0])
        return out if math.isfinite(out) else math.nan
    try:
        op = LinearOperator((P, P), matvec=lambda v: matvec(np.ravel(v)), dtype=float)
        top = float(eigsh(op, k=1, which="LA", tol=1e-3, v0=start,
                          return_eigenvectors=False)[0])
        shift = abs(top) * (1.0 + 1e-3) + 1e-12
        shifted = LinearOperator((P, P), matvec=lambda v: shift * np.ravel(v) - matvec(
            np.ravel(v)), dtype=float)
        big = float(eigsh(shifted, k=1, which="LA", tol=tol, v0=start,
                          maxiter=LANCZOS_MAX_ITER, return_eigenvectors=False)[0])
    except (ArpackNoConvergence, ValueError, FloatingPointError):
        return math.nan
    out = shift - big
    return out if math.isfinite(out) else math.nan


def stationarity(X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
                 sigma: float, activation: Activation | str, learn_sigma: bool = True,
                 hessian_max_params: int = HESSIAN_MAX_PARAMS) -> tuple[float, float]:
    """Scaled gradient norm and smallest Hessian eigenvalue of the mean log-likelihood.

    Parameters
    ----------
    X, y, experts, gating, sigma, activation, learn_sigma
        As :func:`log_likelihood_gradient`.
    hessian_max_params : int
        Up to this many parameters the Hessian is formed and its eigenvalues computed
        exactly (``numpy.linalg.eigvalsh``); above, the smallest one is the Lanczos
        estimate of :func:`lanczos_min_eigenvalue` (never skipped).

    Returns
    -------
    grad_norm : float
        Euclidean norm of the gradient in scaled coordinates (stationary: at most
        :data:`STATIONARY_TOL`).
    hessian_min_eig : float
        Smallest eigenvalue of the Hessian of the *negative* mean log-likelihood (the
        loss; minus the largest eigenvalue of :func:`log_likelihood_hessian`), in scaled
        coordinates, symmetrised: > 0 at a strict local maximum of the likelihood, < 0
        at a saddle (an ascent direction remains), about 0 along a flat direction; NaN
        when it cannot be computed (non-finite values, Lanczos not converged).
    """
    act = get_activation(activation)
    k, d = np.shape(experts)
    D = scaling(X, k, sigma, learn_sigma)
    g = log_likelihood_gradient(X, y, experts, gating, sigma, act, learn_sigma)
    grad_norm = float(np.linalg.norm(D * g))
    if not math.isfinite(grad_norm):
        return grad_norm, math.nan
    if D.size > hessian_max_params:
        return grad_norm, lanczos_min_eigenvalue(X, y, experts, gating, sigma, act,
                                                 learn_sigma)
    H = log_likelihood_hessian(X, y, experts, gating, sigma, act, learn_sigma)
    H = D[:, None] * H * D[None, :]
    H = 0.5 * (H + H.T)
    if not np.all(np.isfinite(H)):
        return grad_norm, math.nan
    return grad_norm, float(np.linalg.eigvalsh(-H)[0])


#: step (scaled coordinates) of the central differences that give the per-expert-noise Hessian
PER_EXPERT_HESSIAN_STEP = 1e-5


def per_expert_gradient(X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
                        sigma: np.ndarray, activation: Activation | str) -> np.ndarray:
    """Analytic gradient of the mean log-likelihood with one noise level per expert.

    theta = (experts A (k, d), free gating rows W[:-1] - W[-1], log sigma_1..k): as
    :func:`log_likelihood_gradient` with d/d log sigma_i = mean_n r_ni (z_ni^2 - 1) and
    the expert blocks divided by sigma_i^2. Biases: pass X with a column of ones.
    """
    act = get_activation(activation)
    sigma = np.asarray(sigma, dtype=float)
    t, resid, log_gate, z2, resp = _posterior(X, y, experts, gating, sigma, act)
    n = X.shape[0]
    g_experts = ((resp * resid * act.derivative(t)).T @ X) / n / (sigma**2)[:, None]
    g_gating = ((resp - np.exp(log_gate))[:, :-1].T @ X) / n
    g_sigma = np.sum(resp * (z2 - 1.0), axis=0) / n
    return np.concatenate([g_experts.ravel(), g_gating.ravel(), g_sigma])


def per_expert_stationarity(X: np.ndarray, y: np.ndarray, experts: np.ndarray,
                            gating: np.ndarray, sigma: np.ndarray,
                            activation: Activation | str,
                            hessian_max_params: int = HESSIAN_MAX_PARAMS) -> tuple[float, float]:
    """:func:`stationarity` for a fit with one learnt noise level per expert.

    Scaled coordinates as the module notes, expert i's block scaled by sigma_i / s_x. The
    gradient is analytic (:func:`per_expert_gradient`); the Hessian is central differences
    of it (step :data:`PER_EXPERT_HESSIAN_STEP` in scaled coordinates), symmetrised; NaN
    above ``hessian_max_params`` parameters (no Lanczos path for this model).
    """
    act = get_activation(activation)
    experts = np.asarray(experts, dtype=float)
    gating = np.asarray(gating, dtype=float)
    gating = gating - gating[-1]
    sigma = np.asarray(sigma, dtype=float)
    k, d = experts.shape
    s_x = float(np.sqrt(np.mean(np.square(X)))) or 1.0
    D = np.concatenate([np.repeat(sigma / s_x, d), np.full((k - 1) * d, 1.0 / s_x), np.ones(k)])
    theta = np.concatenate([experts.ravel(), gating[:-1].ravel(), np.log(sigma)])

    def grad(th: np.ndarray) -> np.ndarray:
        A = th[:k * d].reshape(k, d)
        W = np.vstack([th[k * d:(2 * k - 1) * d].reshape(k - 1, d), np.zeros((1, d))])
        return per_expert_gradient(X, y, A, W, np.exp(th[(2 * k - 1) * d:]), act)

    g = grad(theta)
    grad_norm = float(np.linalg.norm(D * g))
    if not math.isfinite(grad_norm) or D.size > hessian_max_params:
        return grad_norm, math.nan
    h = PER_EXPERT_HESSIAN_STEP
    H = np.empty((D.size, D.size))
    for j in range(D.size):
        step = np.zeros(D.size)
        step[j] = h * D[j]
        H[:, j] = (grad(theta + step) - grad(theta - step)) / (2.0 * h)  # d g / d u_j
    H = D[:, None] * H
    H = 0.5 * (H + H.T)
    if not np.all(np.isfinite(H)):
        return grad_norm, math.nan
    return grad_norm, float(np.linalg.eigvalsh(-H)[0])
