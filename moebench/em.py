"""The EM pieces shared by tensor_em's gating EM and the joint EM baseline.

* :func:`e_step`: posterior responsibilities and the mean log-likelihood.
* :func:`gating_m_step`: weighted (soft-label) multinomial logistic regression
  by damped Newton, or L-BFGS when (k - 1) d is large.
* :func:`expert_m_step`: weighted least squares (linear g) or damped
  Gauss-Newton / Levenberg-Marquardt (any other g).
* :func:`sigma_m_step`: the closed-form noise update.
* :func:`run_em`: the EM loop (joint, or gating-only with the experts fixed),
  with a full M-step or a single gradient step ("gradient EM").

The gating EM of the moment methods (experts fixed, ridge-penalised) is
:func:`moebench.gating_em.gating_em`: this loop or the quasi-Newton path of
:mod:`moebench.acceleration`, both built on this module (which imports neither).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from moebench.activations import ACTIVATIONS, Activation, _sigmoid_deriv
from moebench.backend import Backend, array_backend, to_backend
from moebench.chunked import LazyRows, blocked_mean, blocked_sum, is_out_of_core
from moebench.history import History, StartFit
from moebench.model import LOG_2PI, MoEModel
from moebench.stopping import StoppingCriterion
from moebench.validation import check_choice

MSTEPS = ("full", "gradient")
#: one noise level for every expert, or one per expert
NOISE_MODELS = ("shared", "per_expert")
GATING_METHODS = ("auto", "newton", "lbfgs")
#: (k - 1) * d above which "auto" uses L-BFGS: a Newton step costs O(n d^2 k^2)
NEWTON_MAX_PARAMS = 400
#: Levenberg-Marquardt stops when its model predicts a relative decrease of the weighted
#: squared error below this (rounding of a sum over the rows; MINPACK's ``ftol``)
LM_FTOL = 1e-12
#: the gating Newton steps stop when the Newton decrement (with the last step's Hessian)
#: predicts a relative increase of the objective below this
NEWTON_FTOL = 1e-12
_TANH = ACTIVATIONS["tanh"]


def e_step(model: MoEModel, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Posterior responsibilities P(z = i | x, y) and the mean log-likelihood.

    Returns
    -------
    resp : ndarray of shape (n, k)
        For ``X`` on disk (a ``numpy.memmap``) a :class:`moebench.chunked.LazyRows`:
        recomputed per row block when indexed with a row slice, never stored.
    mean_log_likelihood : float
    """
    return _e_step(X, y, model.experts, model.gating, model.sigma, model.activation)


def _e_step(X, y, experts, gating, sigma, activation, means=None) -> tuple[np.ndarray, float]:
    resp, ll, _ = _e_step_gate(X, y, experts, gating, sigma, activation, means)
    return resp, ll


def _e_step_gate(X, y, experts, gating, sigma, activation, means=None, log_proba=None
                 ) -> tuple[np.ndarray, float, np.ndarray]:
    """:func:`_e_step` that also returns the gate log-probabilities log softmax(X W^T).

    The gating M-step that follows starts from the same gating, so it reuses them
    (:func:`gating_m_step`'s ``log_proba``) instead of recomputing ``X @ W.T``; and the
    gating M-step's last evaluation leaves them for the next E-step (``log_proba``: the
    gate log-probabilities at ``gating`` when the caller has them).
    Row-wise log-sum-exps on numpy arrays use :mod:`moebench.fastmath` (column passes,
    not scipy's per-row reductions); torch tensors use torch's
    (:func:`moebench.backend.array_backend`).
    """
    if is_out_of_core(X):  # X on disk: the mean over row blocks; responsibilities lazily
        def block(Xb, yb, mb):
            return _e_step_gate(Xb, yb, experts, gating, sigma, activation, mb)

        ll = blocked_mean(lambda *b: block(*b)[1], X, y, means)
        return LazyRows(lambda *b: block(*b)[0], X, y, means, columns=len(experts)), ll, None
    xp = array_backend(X)
    if means is None:
        means = _means(X, experts, activation)
    logp = (log_proba if log_proba is not None
            else xp.log_softmax_rows(X @ xp.param(gating, X).T))
    sigma = float(sigma) if np.ndim(sigma) == 0 else xp.param(np.asarray(sigma, float), X)
    lj = y[:, None] - means
    lj /= sigma
    lj **= 2
    lj *= -0.5
    lj += logp
    lj -= (np.log(sigma) if isinstance(sigma, float) else xp.log(sigma)) + 0.5 * LOG_2PI
    resp, norm = xp.normalize_log_rows(lj)
    return resp, float(norm.mean()), logp


def _gating_objective(theta: np.ndarray, X: np.ndarray, resp: np.ndarray, ridge: float,
                      logp: np.ndarray | None = None):
    """Mean soft-label log-likelihood of the gating (last row 0), its gradient, the gate
    probabilities and log-probabilities.

    ``logp``: the gate log-probabilities at ``theta`` when the caller has them. The value
    and gradient are numpy; the (log-)probabilities are on ``X``'s backend.
    """
    xp = array_backend(X)
    k = resp.shape[1]
    n = X.shape[0]
    if is_out_of_core(X):  # X on disk: the mean over row blocks; probabilities lazily
        value, grad = blocked_mean(lambda Xb, rb: _gating_objective(theta, Xb, rb, ridge)[:2],
                                   X, resp)
        W = np.vstack([theta.reshape(k - 1, -1), np.zeros((1, X.shape[1]))])
        return value, grad, LazyRows(lambda Xb: xp.softmax_rows(Xb @ W.T), X, columns=k), None
    if logp is None:
        W = np.vstack([theta.reshape(k - 1, -1), np.zeros((1, X.shape[1]))])
        logp = xp.log_softmax_rows(X @ xp.param(W, X).T)
    value = xp.vdot(resp, logp) / n - 0.5 * ridge * float(theta @ theta)
    P = xp.exp(logp)
    # all k rows of (R - P)^T X in one GEMM on the contiguous difference (no strided copy)
    grad = xp.to_numpy((resp - P).T @ X)[: k - 1] / n - ridge * theta.reshape(k - 1, -1)
    return value, grad.ravel(), P, logp


def _gating_hessian(xp: Backend, X, P, ridge: float) -> np.ndarray:
    """The negative Hessian of the gating objective (numpy, ((k-1) d)^2): block (i, j) is
    X^T diag(p_i (delta_ij - p_j)) X / n, plus ``ridge`` on the diagonal. The weights have
    one sign per block (p_i (1 - p_i) >= 0 on the diagonal, -p_i p_j off it), so each
    block is one :meth:`~moebench.backend.Backend.weighted_gram` (a SYRK)."""
    if is_out_of_core(X):  # X on disk: the mean over row blocks
        return blocked_mean(lambda Xb, Pb: _gating_hessian(xp, Xb, Pb, ridge), X, P)
    n, d = X.shape
    k1 = P.shape[1] - 1
    m = k1 * d
    H = np.empty((m, m))
    for i in range(k1):
        for j in range(i, k1):
            if i == j:
                block = xp.weighted_gram(X, P[:, i] * (1.0 - P[:, i])) / n
            else:
                block = xp.weighted_gram(X, P[:, i] * P[:, j]) / -n
            H[i * d:(i + 1) * d, j * d:(j + 1) * d] = block
            H[j * d:(j + 1) * d, i * d:(i + 1) * d] = block.T
    H[np.diag_indices(m)] += ridge + 1e-10
    return H


def gating_m_step(
    X: np.ndarray,
    resp: np.ndarray,
    gating: np.ndarray,
    ridge: float = 0.0,
    max_iter: int = 10,
    tol: float = 1e-8,
    method: str = "auto",
    log_proba: np.ndarray | None = None,
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
        Stop when the gradient's max-norm falls below ``tol`` (Newton also stops when
        the Newton decrement, computed with the last Hessian, predicts a relative
        increase below :data:`NEWTON_FTOL`).
    method : {"auto", "newton", "lbfgs"}
        ``"auto"``: Newton while (k - 1) d <= :data:`NEWTON_MAX_PARAMS`.
    log_proba : ndarray (n, k), optional
        log softmax(X gating^T) when the caller has it (the E-step computes it): saves
        the first ``X @ W.T`` of the Newton path.

    Returns
    -------
    ndarray (k, d), last row 0
    """
    return _gating_m_step(X, resp, gating, ridge, max_iter, tol, method, log_proba)[0]


def _gating_m_step(X, resp, gating, ridge=0.0, max_iter=10, tol=1e-8, method="auto",
                   log_proba=None):
    """:func:`gating_m_step`, also returning the gate log-probabilities at the new gating
    when the Newton path has them (its last accepted evaluation; else None): the next
    E-step's ``log_proba``."""
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
        theta, logp = res.x, None
    else:
        value, grad, P, logp = _gating_objective(theta, X, resp, ridge, log_proba)
        H = None
        for _ in range(max_iter):
            if np.max(np.abs(grad)) < tol:
                break
            # the Newton decrement grad.H^-1.grad / 2, estimated with the last step's
            # Hessian, below the objective's rounding: converged, no new Hessian needed
            if H is not None and _newton_decrement(H, grad) <= NEWTON_FTOL * max(1.0,
                                                                               abs(value)):
                break
            H = _gating_hessian(array_backend(X), X, P, ridge)
            try:
                step = np.linalg.solve(H, grad)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(H, grad, rcond=None)[0]
            t = 1.0
            for _ in range(30):  # backtracking (Armijo) line search
                cand = theta + t * step
                new_value, new_grad, new_P, new_logp = _gating_objective(cand, X, resp, ridge)
                if new_value >= value + 1e-4 * t * float(grad @ step):
                    break
                t *= 0.5
            else:
                break
            theta, value, grad, P, logp = cand, new_value, new_grad, new_P, new_logp
    return np.vstack([theta.reshape(k - 1, d), np.zeros((1, d))]), logp


def _newton_decrement(H: np.ndarray, grad: np.ndarray) -> float:
    """grad . H^-1 grad / 2: the objective's predicted increase of a Newton step (inf when
    H is singular, so that the caller takes the step)."""
    try:
        return 0.5 * float(grad @ np.linalg.solve(H, grad))
    except np.linalg.LinAlgError:
        return float("inf")


def _means(X, experts: np.ndarray, activation: Activation):
    """g(X A^T), shape (n, k), on X's backend (X on disk: computed per row block)."""
    if is_out_of_core(X):
        return LazyRows(lambda Xb: _means(Xb, experts, activation), X, columns=len(experts))
    xp = array_backend(X)
    return xp.act_func(activation, X @ xp.param(experts, X).T)


def _sse(r, y, f) -> float:
    """sum_n r_n (y_n - f_n)^2 as a float."""
    return float((r * (y - f) ** 2).sum())


def _derivative_at(xp: Backend, activation: Activation, t, f):
    """g'(t) given f = g(t): the built-in sigmoid and tanh reuse f (the same floating-point
    operations as their ``derivative``, without a second exp/tanh pass)."""
    if activation.derivative is _sigmoid_deriv:
        return f * (1.0 - f)
    if activation.derivative is _TANH.derivative:
        return 1.0 - f**2
    return xp.act_derivative(activation, t)


def check_expert_step_out_of_core(activation: Activation, fit: str = "") -> None:
    """Raise ValueError unless :func:`expert_m_step` can run on X on disk (a memmap).

    Its blocked path sums the normal equations of linear experts; the damped Gauss-Newton
    steps of nonlinear ones need X in memory. Estimators call it before any work
    (:meth:`moebench.base.MoEEstimator.check_out_of_core`); ``fit`` names the fit and the
    option that asks for the step.
    """
    if not activation.is_linear:
        raise ValueError(
            f"{fit + ': ' if fit else ''}the expert M-step on X on disk (a numpy.memmap) "
            f"supports activation 'linear' only; got {activation.name!r}: load X into "
            f"memory (np.asarray(X)) for nonlinear experts")


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

    Linear g: the weighted least-squares solution. Otherwise up to ``max_iter``
    Levenberg-Marquardt steps (Gauss-Newton with adaptive damping, each step
    accepted only if it lowers the weighted squared error) from ``experts``, stopping
    early when a step's predicted decrease is below :data:`LM_FTOL` relative. The d x d
    systems are solved on the host (numpy) whatever ``X``'s backend.
    """
    xp = array_backend(X)
    k, d = experts.shape
    new = np.array(experts, dtype=np.float64)
    eye = np.eye(d)
    if is_out_of_core(X):
        check_expert_step_out_of_core(activation)
    # linear g: the normal equations of every expert (summed over row blocks on disk)
    normal = blocked_sum(_normal_equations, X, y, resp) if activation.is_linear else None
    for i in range(k):
        if normal is not None:
            gram = normal[0][i]
            A = gram + 1e-10 * (np.trace(gram) / d + 1.0) * eye
            new[i] = np.linalg.solve(A, normal[1][i])
            continue
        r = resp[:, i]
        a = new[i]
        lam = damping
        # X @ a and g(X @ a) of the current point are kept from the accepted candidate's
        # error evaluation (the same numbers the next step would recompute)
        t = X @ xp.param(a, X)
        f = xp.act_func(activation, t)
        sse = _sse(r, y, f)
        for _ in range(max_iter):
            # J^T diag(r) J and J^T diag(r) (y - f) with J = diag(g') X, as one scaled copy
            # of X and one GEMM (no J, no r * J)
            gp = _derivative_at(xp, activation, t, f)
            rg = r * gp
            A = xp.weighted_gram(X, rg * gp)
            b = xp.to_numpy(X.T @ (rg * (y - f)))
            diag = np.diag(A).copy() + 1e-12 * (np.trace(A) / d + 1e-12)
            improved = False
            for _ in range(10):
                try:
                    step = np.linalg.solve(A + lam * np.diag(diag) + 1e-12 * eye, b)
                except np.linalg.LinAlgError:
                    lam *= 10.0
                    continue
                # the model's predicted decrease 2 s.b - s.A.s below the sum's rounding:
                # converged (a candidate would only compare rounding noise)
                if 2.0 * float(step @ b) - float(step @ A @ step) <= LM_FTOL * sse:
                    break
                cand = a + step
                cand_t = X @ xp.param(cand, X)
                cand_f = xp.act_func(activation, cand_t)
                cand_sse = _sse(r, y, cand_f)
                if cand_sse < sse:
                    a, sse, improved = cand, cand_sse, True
                    t, f = cand_t, cand_f
                    lam = max(lam / 3.0, 1e-12)
                    break
                lam *= 4.0
            if not improved:
                break
        new[i] = a
    return new


def _normal_equations(X, y, resp) -> tuple[np.ndarray, np.ndarray]:
    """sum_n r_ni x_n x_n^T (k, d, d) and sum_n r_ni y_n x_n (k, d): the weighted
    least-squares systems of the linear experts, as numpy."""
    xp = array_backend(X)
    k = resp.shape[1]
    grams, rhs = [], []
    for i in range(k):
        r = resp[:, i]
        grams.append(xp.weighted_gram(X, r))
        rhs.append(xp.to_numpy(X.T @ (r * y)))
    return np.stack(grams), np.stack(rhs)


def sigma_m_step(
    X: np.ndarray, y: np.ndarray, resp: np.ndarray, experts: np.ndarray, activation: Activation,
    means: np.ndarray | None = None,
) -> float:
    """sigma^2 = mean_n sum_i r_ni (y_n - g(a_i . x_n))^2, floored away from 0.

    ``means`` (g(X A^T)) may be passed to skip recomputing them.
    """
    def mean_resid2(Xb, yb, rb, mb) -> float:
        if mb is None:
            mb = _means(Xb, experts, activation)
        resid2 = (yb[:, None] - mb) ** 2
        return float((rb * resid2).sum()) / Xb.shape[0]

    var = blocked_mean(mean_resid2, X, y, resp, means)  # one block in memory
    floor = 1e-12 * (array_backend(y).var(y) + 1e-300)
    return float(np.sqrt(max(var, floor)))


def sigma_per_expert_m_step(
    X: np.ndarray, y: np.ndarray, resp: np.ndarray, experts: np.ndarray, activation: Activation,
    means: np.ndarray | None = None,
) -> np.ndarray:
    """sigma_i^2 = sum_n r_ni (y_n - g(a_i . x_n))^2 / sum_n r_ni for each expert, floored.

    X in memory, numpy (the per-expert noise option refuses the other paths).
    """
    if means is None:
        means = _means(X, experts, activation)
    weight = resp.sum(axis=0)
    var = (resp * (y[:, None] - means) ** 2).sum(axis=0) / np.maximum(weight, 1e-300)
    floor = 1e-12 * (float(np.var(y)) + 1e-300)
    return np.sqrt(np.maximum(var, floor))


def _gradient_m_step(X, y, resp, experts, gating, activation, step_size):
    """One gradient-ascent step on the expected complete-data log-likelihood (affine in
    means over rows: on disk, the weighted mean of its row blocks' steps)."""
    if is_out_of_core(X):
        return blocked_mean(lambda Xb, yb, rb: _gradient_m_step(
            Xb, yb, rb, experts, gating, activation, step_size), X, y, resp)
    xp = array_backend(X)
    n = X.shape[0]
    t = X @ xp.param(experts, X).T
    err = (y[:, None] - xp.act_func(activation, t)) * xp.act_derivative(activation, t) * resp
    new_experts = experts + step_size * xp.to_numpy(err.T @ X) / n
    P = xp.softmax_rows(X @ xp.param(gating, X).T)
    grad_W = xp.to_numpy((resp - P).T @ X) / n
    new_gating = gating + step_size * grad_W
    return new_experts, new_gating - new_gating[-1]


def _penalised(ll: float, gating: np.ndarray, ridge: float) -> float:
    """ll - ridge / 2 ||W||_F^2 (the gating rows relative to the last one)."""
    free = gating[:-1] - gating[-1]
    return float(ll - 0.5 * ridge * float(np.sum(free * free)))


def record_sigma(sigma: float | np.ndarray) -> float:
    """A record's one ``sigma``: the noise level, or the rms of the per-expert ones."""
    return float(sigma) if np.ndim(sigma) == 0 else float(np.sqrt(np.mean(np.square(sigma))))


@dataclass
class EMResult(StartFit):
    """Outcome of :func:`run_em` (one start of a restarted fit: experts, gating, sigma,
    n_iter, log_likelihood, converged, and the stop_reason "converged", "max_iter" or
    "max_time")."""


def loop_start(experts, gating, sigma: float, history: History | None
                 ) -> tuple[np.ndarray, np.ndarray, float, History]:
    """An EM loop's start: float copies of the experts and the gating (last row 0), sigma
    as a float, and the clock (``history``, else a fresh :class:`History`).

    Shared by :func:`run_em` and the quasi-Newton gating EM
    (:func:`moebench.acceleration.gating_em_quasi_newton`).
    """
    experts = np.array(experts, dtype=float)
    gating = np.array(gating, dtype=float)
    gating = gating - gating[-1]
    sigma = float(sigma) if np.ndim(sigma) == 0 else np.array(sigma, dtype=float)
    return experts, gating, sigma, history if history is not None else History()


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
    backend: str | None = None,
    stopping: StoppingCriterion | None = None,
    limit_name: str = "max_iter",
    noise: str = "shared",
) -> EMResult:
    """Expectation-maximisation for the MoE, joint or with the experts fixed.

    Parameters
    ----------
    X, y : validated arrays (n, d) and (n,)
        ``X`` may be a ``numpy.memmap`` (data on disk): every step then passes over it in
        row blocks and recomputes the responsibilities per block instead of storing (n, k)
        arrays (:mod:`moebench.chunked`; linear experts when they are updated).
    experts, gating, sigma : starting parameters
    activation : Activation
    update_experts : bool
        False runs the gating-only EM of tensor_em (experts fixed).
    update_sigma : bool
        Whether sigma is re-estimated each iteration.
    mstep : {"full", "gradient"}
        ``"full"``: Newton gating step, least-squares/LM expert step;
        ``"gradient"``: one gradient step of size ``step_size`` ("gradient EM").
    max_iter : int
        This loop's own limit on its iterations (its stop reason is ``limit_name``).
    tol : float
        Without ``stopping``: stop when the mean log-likelihood changes by at most
        ``tol * max(1, |ll|)`` (with ``stopping``, the criterion's tolerance applies).
    gating_newton_steps : int
        Newton (or L-BFGS) steps of each gating M-step.
    max_time : float, optional
        Without ``stopping``: wall-clock budget in seconds (measured by ``history`` when
        given).
    history : History, optional
        Receives one record per iteration (iteration 0 is the start).
    phase : str
        Phase label of the records.
    backend : {"numpy", "torch"} or None
        Array library of the E- and M-steps (:mod:`moebench.backend`; torch on CUDA
        when available). ``X`` and ``y`` move to the device here unless they are tensors there
        already; the parameters stay numpy. None: the library of ``X`` as given.
    stopping : StoppingCriterion, optional
        The fit's stopping criterion (:mod:`moebench.stopping`): it counts this loop's
        iterations against the fit's total budgets, applies its tolerance and names the
        stop (precedence: "converged", this loop's ``limit_name``, "max_iter",
        "max_time"). None: a criterion of this call alone, from ``tol`` and ``max_time``.
        When the criterion's iteration budget is already spent, no iteration runs.
    limit_name : str
        The stop reason when ``max_iter`` (this loop's own limit) ends it.
    noise : {"shared", "per_expert"}
        One noise level for every expert, or one per expert (``sigma`` then a (k,)
        array; X in memory, numpy backend).

    Returns
    -------
    EMResult
        With ``stop_reason`` "converged", ``limit_name``, "max_iter" or "max_time".
    """
    check_choice(mstep, "mstep", MSTEPS)
    check_choice(noise, "noise", NOISE_MODELS)
    X, y = to_backend(X, y, backend)
    experts, gating, sigma, clock = loop_start(experts, gating, sigma, history)
    # with the experts fixed (tensor_em's gating EM) their means are computed once
    means = None if update_experts else _means(X, experts, activation)
    # the E-step's gate log-probabilities start the next gating M-step (same gating)
    resp, ll, log_proba = _e_step_gate(X, y, experts, gating, sigma, activation, means)
    # the gating EM (experts fixed) climbs the ridge-penalised objective: its records carry it
    penalised = history is not None and not update_experts
    if history is not None:
        history.record(phase, iteration_offset, ll, experts=experts, gating=gating,
                       sigma=record_sigma(sigma),
                       **({"objective": _penalised(ll, gating, ridge)} if penalised else {}))
    stop = stopping if stopping is not None else StoppingCriterion(
        max_time=max_time, tol=tol, clock=clock)
    limit = int(max_iter)
    it = 0
    # nothing to run: this loop's own limit is 0, or the fit's iteration budget is spent
    stop_reason = limit_name if limit <= 0 else (
        "max_iter" if stop.iterations_left() == 0 else None)
    while stop_reason is None:
        it += 1
        if mstep == "full":
            gating, log_proba = _gating_m_step(X, resp, gating, ridge=ridge,
                                               max_iter=gating_newton_steps,
                                               method=gating_method, log_proba=log_proba)
            if update_experts:
                experts = expert_m_step(X, y, resp, experts, activation, max_iter=expert_max_iter)
        else:
            new_experts, gating = _gradient_m_step(X, y, resp, experts, gating, activation,
                                                   step_size)
            log_proba = None
            if update_experts:
                experts = new_experts
        # the new experts' means, computed once for the sigma step and the E-step
        cur_means = means if means is not None else _means(X, experts, activation)
        if update_sigma and noise == "per_expert":
            sigma = sigma_per_expert_m_step(X, y, resp, experts, activation, cur_means)
        elif update_sigma:
            sigma = sigma_m_step(X, y, resp, experts, activation, cur_means)
        # the gate log-probabilities of the gating M-step's last evaluation, when it has them
        resp, new_ll, log_proba = _e_step_gate(X, y, experts, gating, sigma, activation,
                                               cur_means, log_proba)
        if not np.isfinite(new_ll):
            raise FloatingPointError(f"EM produced a non-finite log-likelihood at iteration {it}")
        if history is not None:
            history.record(phase, iteration_offset + it, new_ll, experts=experts, gating=gating,
                           sigma=record_sigma(sigma),
                           **({"objective": _penalised(new_ll, gating, ridge)}
                              if penalised else {}))
        # the criterion's O(1) check: tolerance, then this loop's limit, the fit's
        # iteration budget, the time budget
        stop_reason = stop.check(new_ll, ll, limit_name if it >= limit else None)
        ll = new_ll
    converged = stop_reason == "converged"
    return EMResult(experts, gating, sigma, it, ll, converged, stop_reason)
