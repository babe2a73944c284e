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
(1e-2: a remaining gain of order 5e-5 per sample, below the 1e-3 stuck tolerance).

The smallest eigenvalue of the Hessian of the loss (the negative mean log-likelihood;
analytic, :func:`log_likelihood_hessian`, checked against finite differences of the
analytic gradient in the tests) tells a local maximum (> 0) from a saddle (< 0); it is
computed when P <= :data:`HESSIAN_MAX_PARAMS`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_softmax, logsumexp

from moebench.activations import Activation, get_activation
from moebench.model import LOG_2PI, log_joint

#: scaled gradient norm at or below which a fit counts as stationary
STATIONARY_TOL = 1e-2
#: largest number of parameters for which the Hessian's smallest eigenvalue is computed
HESSIAN_MAX_PARAMS = 500


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
    experts = np.asarray(experts, dtype=float)
    gating = np.asarray(gating, dtype=float)
    gating = gating - gating[-1]
    n = X.shape[0]
    t = X @ experts.T
    resid = y[:, None] - act.func(t)
    log_gate = log_softmax(X @ gating.T, axis=1)
    z2 = (resid / sigma) ** 2
    lj = log_gate - 0.5 * z2 - math.log(sigma) - 0.5 * LOG_2PI
    resp = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
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
    nx = 2 * k - 1  # blocks with feature x: k experts, k - 1 free gating rows
    nb = nx + int(learn_sigma)
    s2 = float(sigma) ** 2
    eye_k = np.eye(k)
    H = np.zeros((n_parameters(k, d, learn_sigma),) * 2)
    for lo in range(0, n, HESSIAN_CHUNK):
        Xc, yc = X[lo:lo + HESSIAN_CHUNK], y[lo:lo + HESSIAN_CHUNK]
        m = Xc.shape[0]
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
        xx = (Xc[:, :, None] * Xc[:, None, :]).reshape(m, d * d)
        blocks = (w[:, :nx, :nx].reshape(m, nx * nx).T @ xx).reshape(nx, nx, d, d)
        H[:nx * d, :nx * d] += blocks.transpose(0, 2, 1, 3).reshape(nx * d, nx * d)
        if learn_sigma:
            cross = Xc.T @ w[:, :nx, nx]  # (d, nx)
            H[:nx * d, -1] += cross.T.ravel()
            H[-1, :nx * d] += cross.T.ravel()
            H[-1, -1] += float(np.sum(w[:, nx, nx]))
    return H / n


def stationarity(X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
                 sigma: float, activation: Activation | str, learn_sigma: bool = True,
                 hessian_max_params: int = HESSIAN_MAX_PARAMS) -> tuple[float, float]:
    """Scaled gradient norm and smallest Hessian eigenvalue of the mean log-likelihood.

    Parameters
    ----------
    X, y, experts, gating, sigma, activation, learn_sigma
        As :func:`log_likelihood_gradient`.
    hessian_max_params : int
        Skip the Hessian (NaN) above this many parameters.

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
        when skipped.
    """
    act = get_activation(activation)
    k, d = np.shape(experts)
    D = scaling(X, k, sigma, learn_sigma)
    g = log_likelihood_gradient(X, y, experts, gating, sigma, act, learn_sigma)
    grad_norm = float(np.linalg.norm(D * g))
    if D.size > hessian_max_params:
        return grad_norm, math.nan
    H = log_likelihood_hessian(X, y, experts, gating, sigma, act, learn_sigma)
    H = D[:, None] * H * D[None, :]
    H = 0.5 * (H + H.T)
    if not np.all(np.isfinite(H)):
        return grad_norm, math.nan
    return grad_norm, float(np.linalg.eigvalsh(-H)[0])
