"""The EM pieces shared by tensor_em's gating EM and the joint EM baseline.

* :func:`e_step`: posterior responsibilities and the mean log-likelihood.
* :func:`gating_m_step`: weighted (soft-label) multinomial logistic regression
  by damped Newton, or L-BFGS when (k - 1) d is large.
* :func:`expert_m_step`: weighted least squares (linear g) or damped
  Gauss-Newton / Levenberg-Marquardt (any other g).
* :func:`sigma_m_step`: the closed-form noise update.
* :func:`run_em`: the EM loop (joint, or gating-only with the experts fixed),
  with a full M-step or a single gradient step ("gradient EM").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, logsumexp, softmax

from moebench.activations import Activation
from moebench.base import History, StartFit
from moebench.model import MoEModel, log_joint
from moebench.validation import check_choice

MSTEPS = ("full", "gradient")
GATING_METHODS = ("auto", "newton", "lbfgs")
#: (k - 1) * d above which "auto" uses L-BFGS: a Newton step costs O(n d^2 k^2)
NEWTON_MAX_PARAMS = 400


def e_step(model: MoEModel, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Posterior responsibilities P(z = i | x, y) and the mean log-likelihood.

    Returns
    -------
    resp : ndarray of shape (n, k)
    mean_log_likelihood : float
    """
    return _e_step(X, y, model.experts, model.gating, model.sigma, model.activation)


def _e_step(X, y, experts, gating, sigma, activation, means=None) -> tuple[np.ndarray, float]:
    lj = log_joint(X, y, experts, gating, sigma, activation, means)
    norm = logsumexp(lj, axis=1, keepdims=True)
    return np.exp(lj - norm), float(np.mean(norm))


def _gating_objective(theta: np.ndarray, X: np.ndarray, resp: np.ndarray, ridge: float):
    """Mean soft-label log-likelihood of the gating (last row 0), its gradient, probabilities."""
    k = resp.shape[1]
    W = np.vstack([theta.reshape(k - 1, -1), np.zeros((1, X.shape[1]))])
    logits = X @ W.T
    logp = log_softmax(logits, axis=1)
    value = float(np.sum(resp * logp)) / X.shape[0] - 0.5 * ridge * float(theta @ theta)
    P = np.exp(logp)
    grad = ((resp - P)[:, : k - 1].T @ X) / X.shape[0] - ridge * theta.reshape(k - 1, -1)
    return value, grad.ravel(), P


def gating_m_step(
    X: np.ndarray,
    resp: np.ndarray,
    gating: np.ndarray,
    ridge: float = 0.0,
    max_iter: int = 10,
    tol: float = 1e-8,
    method: str = "auto",
) -> np.ndarray:
    """Maximise mean_n sum_i r_ni log softmax(W x_n)_i - ridge/2 ||W||^2 over W (last row 0).

    Parameters
    ----------
    X : ndarray (n, d)
    resp : ndarray (n, k)
        Soft labels (posterior responsibilities).
    gating : ndarray (k, d)
        Starting point.
    ridge : float
        L2 penalty (keeps W finite when the classes are separable).
    max_iter : int
        Newton (or L-BFGS) iterations: inside EM a few suffice (a generalised
        M-step that still increases the expected log-likelihood).
    tol : float
        Stop when the gradient's max-norm falls below ``tol``.
    method : {"auto", "newton", "lbfgs"}
        ``"auto"``: Newton while (k - 1) d <= :data:`NEWTON_MAX_PARAMS`.

    Returns
    -------
    ndarray (k, d), last row 0
    """
    check_choice(method, "gating method", GATING_METHODS)
    n, d = X.shape
    k = resp.shape[1]
    theta = (gating[: k - 1] - gating[-1]).ravel().copy()
    if method == "auto":
        method = "newton" if (k - 1) * d <= NEWTON_MAX_PARAMS else "lbfgs"
    if method == "lbfgs":
        res = minimize(
            lambda t: tuple(-v for v in _gating_objective(t, X, resp, ridge)[:2]),
            theta, jac=True, method="L-BFGS-B",
            options={"maxiter": max(1, max_iter), "gtol": tol},
        )
        theta = res.x
    else:
        value, grad, P = _gating_objective(theta, X, resp, ridge)
        for _ in range(max_iter):
            if np.max(np.abs(grad)) < tol:
                break
            # negative Hessian, block (i, j) = X^T diag(p_i (delta_ij - p_j)) X / n + ridge
            m = (k - 1) * d
            H = np.empty((m, m))
            for i in range(k - 1):
                for j in range(i, k - 1):
                    w = P[:, i] * ((i == j) - P[:, j])
                    block = (X * w[:, None]).T @ X / n
                    H[i * d:(i + 1) * d, j * d:(j + 1) * d] = block
                    H[j * d:(j + 1) * d, i * d:(i + 1) * d] = block.T
            H[np.diag_indices(m)] += ridge + 1e-10
            try:
                step = np.linalg.solve(H, grad)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(H, grad, rcond=None)[0]
            t = 1.0
            for _ in range(30):  # backtracking (Armijo) line search
                cand = theta + t * step
                new_value, new_grad, new_P = _gating_objective(cand, X, resp, ridge)
                if new_value >= value + 1e-4 * t * float(grad @ step):
                    break
                t *= 0.5
            else:
                break
            theta, value, grad, P = cand, new_value, new_grad, new_P
    return np.vstack([theta.reshape(k - 1, d), np.zeros((1, d))])


def _weighted_sse(X, y, r, a, activation) -> float:
    return float(np.sum(r * (y - activation.func(X @ a)) ** 2))


def expert_m_step(
    X: np.ndarray,
    y: np.ndarray,
    resp: np.ndarray,
    experts: np.ndarray,
    activation: Activation,
    max_iter: int = 5,
    damping: float = 1e-3,
) -> np.ndarray:
    """Minimise sum_n r_ni (y_n - g(a_i . x_n))^2 for each expert i.

    Linear g: the weighted least-squares solution. Otherwise ``max_iter``
    Levenberg-Marquardt steps (Gauss-Newton with adaptive damping, each step
    accepted only if it lowers the weighted squared error) from ``experts``.
    """
    k, d = experts.shape
    new = experts.copy()
    eye = np.eye(d)
    for i in range(k):
        r = resp[:, i]
        if activation.is_linear:
            Xr = X * r[:, None]
            A = Xr.T @ X + 1e-10 * (np.trace(Xr.T @ X) / d + 1.0) * eye
            new[i] = np.linalg.solve(A, Xr.T @ y)
            continue
        a = new[i]
        lam = damping
        sse = _weighted_sse(X, y, r, a, activation)
        for _ in range(max_iter):
            t = X @ a
            J = X * activation.derivative(t)[:, None]
            Jr = J * r[:, None]
            A = Jr.T @ J
            b = Jr.T @ (y - activation.func(t))
            diag = np.diag(A).copy() + 1e-12 * (np.trace(A) / d + 1e-12)
            improved = False
            for _ in range(10):
                try:
                    step = np.linalg.solve(A + lam * np.diag(diag) + 1e-12 * eye, b)
                except np.linalg.LinAlgError:
                    lam *= 10.0
                    continue
                cand = a + step
                cand_sse = _weighted_sse(X, y, r, cand, activation)
                if cand_sse < sse:
                    a, sse, improved = cand, cand_sse, True
                    lam = max(lam / 3.0, 1e-12)
                    break
                lam *= 4.0
            if not improved:
                break
        new[i] = a
    return new


def sigma_m_step(
    X: np.ndarray, y: np.ndarray, resp: np.ndarray, experts: np.ndarray, activation: Activation,
    means: np.ndarray | None = None,
) -> float:
    """sigma^2 = mean_n sum_i r_ni (y_n - g(a_i . x_n))^2, floored away from 0.

    ``means`` (g(X A^T)) may be passed to skip recomputing them.
    """
    if means is None:
        means = activation.func(X @ experts.T)
    resid2 = (y[:, None] - means) ** 2
    var = float(np.sum(resp * resid2)) / X.shape[0]
    floor = 1e-12 * (float(np.var(y)) + 1e-300)
    return float(np.sqrt(max(var, floor)))


def _gradient_m_step(X, y, resp, experts, gating, activation, step_size):
    """One gradient-ascent step on the expected complete-data log-likelihood."""
    n = X.shape[0]
    t = X @ experts.T
    err = (y[:, None] - activation.func(t)) * activation.derivative(t) * resp
    new_experts = experts + step_size * (err.T @ X) / n
    P = softmax(X @ gating.T, axis=1)
    grad_W = ((resp - P).T @ X) / n
    new_gating = gating + step_size * grad_W
    return new_experts, new_gating - new_gating[-1]


@dataclass
class EMResult(StartFit):
    """Outcome of :func:`run_em` (one start of a restarted fit: experts, gating, sigma,
    n_iter, log_likelihood, converged, and the stop_reason "converged", "max_iter" or
    "max_time")."""


def run_em(
    X: np.ndarray,
    y: np.ndarray,
    experts: np.ndarray,
    gating: np.ndarray,
    sigma: float,
    activation: Activation,
    *,
    update_experts: bool = True,
    update_sigma: bool = True,
    mstep: str = "full",
    max_iter: int = 200,
    tol: float = 1e-7,
    ridge: float = 0.0,
    gating_newton_steps: int = 5,
    gating_method: str = "auto",
    expert_max_iter: int = 5,
    step_size: float = 1.0,
    max_time: float | None = None,
    history: History | None = None,
    phase: str = "em",
    iteration_offset: int = 0,
) -> EMResult:
    """Expectation-maximisation for the MoE, joint or with the experts fixed.

    Parameters
    ----------
    X, y : validated arrays (n, d) and (n,)
    experts, gating, sigma : starting parameters
    activation : Activation
    update_experts : bool
        False runs the gating-only EM of tensor_em (experts fixed).
    update_sigma : bool
        Whether sigma is re-estimated each iteration.
    mstep : {"full", "gradient"}
        ``"full"``: Newton gating step, least-squares/LM expert step;
        ``"gradient"``: one gradient step of size ``step_size`` ("gradient EM").
    max_iter, tol : int, float
        Stop after ``max_iter`` iterations or when the mean log-likelihood
        changes by less than ``tol * max(1, |ll|)``.
    gating_newton_steps : int
        Newton (or L-BFGS) steps of each gating M-step.
    max_time : float, optional
        Wall-clock budget in seconds (measured by ``history`` when given).
    history : History, optional
        Receives one record per iteration (iteration 0 is the start).
    phase : str
        Phase label of the records.

    Returns
    -------
    EMResult
        With ``stop_reason`` "converged", "max_iter" or "max_time".
    """
    check_choice(mstep, "mstep", MSTEPS)
    experts = np.array(experts, dtype=float)
    gating = np.array(gating, dtype=float)
    gating = gating - gating[-1]
    sigma = float(sigma)
    clock = history if history is not None else History()
    # with the experts fixed (tensor_em's gating EM) their means are computed once
    means = None if update_experts else activation.func(X @ experts.T)
    resp, ll = _e_step(X, y, experts, gating, sigma, activation, means)
    if history is not None:
        history.record(phase, iteration_offset, ll, experts=experts, gating=gating, sigma=sigma)
    converged = False
    stop_reason = "max_iter"
    it = 0
    for it in range(1, max_iter + 1):
        if mstep == "full":
            gating = gating_m_step(X, resp, gating, ridge=ridge, max_iter=gating_newton_steps,
                                   method=gating_method)
            if update_experts:
                experts = expert_m_step(X, y, resp, experts, activation, max_iter=expert_max_iter)
        else:
            new_experts, gating = _gradient_m_step(X, y, resp, experts, gating, activation,
                                                   step_size)
            if update_experts:
                experts = new_experts
        if update_sigma:
            sigma = sigma_m_step(X, y, resp, experts, activation, means)
        resp, new_ll = _e_step(X, y, experts, gating, sigma, activation, means)
        if not np.isfinite(new_ll):
            raise FloatingPointError(f"EM produced a non-finite log-likelihood at iteration {it}")
        if history is not None:
            history.record(phase, iteration_offset + it, new_ll, experts=experts, gating=gating,
                           sigma=sigma)
        change = abs(new_ll - ll)
        ll = new_ll
        if change <= tol * max(1.0, abs(ll)):
            converged, stop_reason = True, "converged"
            break
        if max_time is not None and clock.elapsed() > max_time:
            stop_reason = "max_time"
            break
    return EMResult(experts, gating, sigma, it, ll, converged, stop_reason)
