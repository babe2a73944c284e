"""The torch path of the EM steps in :mod:`moebench.em` (CPU or CUDA).

:mod:`moebench.em` dispatches here when its data arrays ``X`` (and ``y``, the
responsibilities, the gate log-probabilities) are torch tensors; :func:`to_backend`
moves ``X`` and ``y`` to the backend's device once per fit (``run_em`` and
``gating_em_then_refine`` take ``backend="torch"``). The split of the work:

* data-sized arrays (n rows: ``X``, ``y``, responsibilities, means, log-probabilities)
  live on the device, and every pass over them (GEMMs, log-sum-exps, activations,
  reductions) runs there;
* the parameters (experts (k, d), gating (k, d), sigma) and the small linear systems
  (the Newton Hessian ((k-1) d)², the d×d normal equations of the expert steps) stay
  numpy on the host: the iteration logic (line searches, damping, acceptance) is
  therefore bit-for-bit the numpy one, and only reductions over n differ in their
  summation order (agreement with numpy ~1e-13 relative in float64).

Each function here mirrors the one of the same name in :mod:`moebench.em` step for
step (the same formulas and order of operations; see there for the maths). A change
to an algorithm in ``em.py`` must be mirrored here; ``tests/test_em_torch.py`` checks
the two paths agree to 1e-10.

The dtype is the tensors' (float64 by default; :func:`to_backend` takes ``dtype``).
User activations without a ``torch_func`` run through numpy on the host (a device
round trip per call: correct, not fast).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import minimize

from moebench.activations import ACTIVATIONS, LEAKY_SLOPE, Activation
from moebench.model import LOG_2PI

# -- arrays -------------------------------------------------------------------------------


def is_tensor(a: Any) -> bool:
    """Whether ``a`` is a torch tensor (without importing torch)."""
    return getattr(type(a), "__module__", "").split(".")[0] == "torch"


def to_backend(X: Any, y: Any, backend: Any = "torch", dtype: Any = np.float64
               ) -> tuple[Any, Any]:
    """``X`` and ``y`` on ``backend`` (a name or a :class:`~moebench.tensor.backend.Backend`).

    ``backend=None`` returns them as they are. The numpy backend returns numpy arrays
    as they are (tensors come back as numpy); tensors already on the backend's device in
    ``dtype`` are returned unchanged (no copy), so callers may convert once per fit and
    pass the tensors down.

    Raises
    ------
    ValueError
        Unknown backend name (the message lists "numpy", "torch"), or torch missing.
    """
    from moebench.tensor.backend import get_backend

    if backend is None:
        return X, y
    be = get_backend(backend)
    if be.name == "numpy":
        if is_tensor(X) or is_tensor(y):
            return be.to_numpy(X), be.to_numpy(y)
        return X, y
    return be.asarray(X, dtype), be.asarray(y, dtype)


def _torch():
    import torch

    return torch


def _param(a: Any, like: Any) -> Any:
    """A (small) numpy parameter as a tensor on ``like``'s device and dtype."""
    return _torch().as_tensor(np.asarray(a, dtype=np.float64), dtype=like.dtype,
                              device=like.device)


def _host(a: Any) -> np.ndarray:
    """A (small) tensor as a float64 numpy array."""
    return a.detach().to("cpu", dtype=_torch().float64).numpy()


# -- activations --------------------------------------------------------------------------


def _via_numpy(fn: Callable[[np.ndarray], np.ndarray], t: Any) -> Any:
    out = np.asarray(fn(_host(t)), dtype=np.float64)
    return _torch().as_tensor(out, dtype=t.dtype, device=t.device)


def _builtin(activation: Activation) -> str | None:
    """The built-in name whose numpy functions ``activation`` carries, else None."""
    ref = ACTIVATIONS.get(activation.name)
    if ref is not None and ref.func is activation.func and ref.derivative is activation.derivative:
        return activation.name
    return None


def act_func(activation: Activation, t: Any) -> Any:
    """g(t) on a tensor: the built-in torch function, else ``func`` through numpy."""
    if _builtin(activation) is not None and activation.torch_func is not None:
        return activation.torch_func(t)
    return _via_numpy(activation.func, t)


def act_derivative(activation: Activation, t: Any) -> Any:
    """g'(t) on a tensor (closed form for the built-ins, else ``derivative`` through numpy)."""
    torch = _torch()
    name = _builtin(activation)
    if name == "linear":
        return torch.ones_like(t)
    if name == "sigmoid":
        s = torch.sigmoid(t)
        return s * (1.0 - s)
    if name == "relu":
        return (t > 0).to(t.dtype)
    if name == "tanh":
        return 1.0 - torch.tanh(t) ** 2
    if name == "leaky_relu":
        return torch.where(t > 0, torch.ones_like(t), torch.full_like(t, LEAKY_SLOPE))
    return _via_numpy(activation.derivative, t)


def _derivative_at(activation: Activation, t: Any, f: Any) -> Any:
    """g'(t) given f = g(t) (sigmoid and tanh reuse f, as :func:`moebench.em._derivative_at`)."""
    name = _builtin(activation)
    if name == "sigmoid":
        return f * (1.0 - f)
    if name == "tanh":
        return 1.0 - f**2
    return act_derivative(activation, t)


def means(X: Any, experts: np.ndarray, activation: Activation) -> Any:
    """g(X A^T), shape (n, k), on X's device."""
    return act_func(activation, X @ _param(experts, X).T)


# -- E-step -------------------------------------------------------------------------------


def e_step_gate(X, y, experts, gating, sigma, activation, means_=None
                ) -> tuple[Any, float, Any]:
    """Responsibilities, mean log-likelihood and gate log-probabilities (torch
    :func:`moebench.em._e_step_gate`)."""
    torch = _torch()
    if means_ is None:
        means_ = means(X, experts, activation)
    logp = torch.log_softmax(X @ _param(gating, X).T, dim=1)
    sigma = float(sigma)
    lj = y[:, None] - means_
    lj /= sigma
    lj **= 2
    lj *= -0.5
    lj += logp
    lj -= np.log(sigma) + 0.5 * LOG_2PI
    norm = torch.logsumexp(lj, dim=1)
    lj -= norm[:, None]
    resp = lj.exp_()
    return resp, float(norm.mean()), logp


# -- gating M-step ------------------------------------------------------------------------


def gating_objective(theta: np.ndarray, X, resp, ridge: float, logp=None):
    """Value, gradient (numpy) and probabilities (tensor) of the gating objective (torch
    :func:`moebench.em._gating_objective`)."""
    torch = _torch()
    k = resp.shape[1]
    n, d = X.shape
    if logp is None:
        W = np.vstack([theta.reshape(k - 1, -1), np.zeros((1, d))])
        logp = torch.log_softmax(X @ _param(W, X).T, dim=1)
    value = float(torch.sum(resp * logp)) / n - 0.5 * ridge * float(theta @ theta)
    P = torch.exp(logp)
    grad = _host((resp - P)[:, : k - 1].T @ X) / n - ridge * theta.reshape(k - 1, -1)
    return value, grad.ravel(), P


def _gating_hessian(X, P, ridge: float) -> np.ndarray:
    """The negative Hessian of the gating objective (blocks as in :func:`moebench.em`)."""
    n, d = X.shape
    k1 = P.shape[1] - 1
    m = k1 * d
    H = np.empty((m, m))
    for i in range(k1):
        for j in range(i, k1):
            w = P[:, i] * (float(i == j) - P[:, j])
            block = _host((X * w[:, None]).T @ X) / n
            H[i * d:(i + 1) * d, j * d:(j + 1) * d] = block
            H[j * d:(j + 1) * d, i * d:(i + 1) * d] = block.T
    H[np.diag_indices(m)] += ridge + 1e-10
    return H


def gating_m_step(X, resp, gating: np.ndarray, ridge: float = 0.0, max_iter: int = 10,
                  tol: float = 1e-8, method: str = "auto", log_proba=None) -> np.ndarray:
    """Torch :func:`moebench.em.gating_m_step` (Newton on the device's Hessian blocks, or
    L-BFGS; ``"auto"`` as there)."""
    from moebench.em import NEWTON_MAX_PARAMS

    n, d = X.shape
    k = resp.shape[1]
    theta = (gating[: k - 1] - gating[-1]).ravel().copy()
    if method == "auto":
        method = "newton" if (k - 1) * d <= NEWTON_MAX_PARAMS else "lbfgs"
    if method == "lbfgs":
        res = minimize(
            lambda t: tuple(-v for v in gating_objective(t, X, resp, ridge)[:2]),
            theta, jac=True, method="L-BFGS-B",
            options={"maxiter": max(1, max_iter), "gtol": tol},
        )
        theta = res.x
    else:
        value, grad, P = gating_objective(theta, X, resp, ridge, log_proba)
        for _ in range(max_iter):
            if np.max(np.abs(grad)) < tol:
                break
            H = _gating_hessian(X, P, ridge)
            try:
                step = np.linalg.solve(H, grad)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(H, grad, rcond=None)[0]
            t = 1.0
            for _ in range(30):  # backtracking (Armijo) line search
                cand = theta + t * step
                new_value, new_grad, new_P = gating_objective(cand, X, resp, ridge)
                if new_value >= value + 1e-4 * t * float(grad @ step):
                    break
                t *= 0.5
            else:
                break
            theta, value, grad, P = cand, new_value, new_grad, new_P
    return np.vstack([theta.reshape(k - 1, d), np.zeros((1, d))])


# -- expert and sigma M-steps -------------------------------------------------------------


def _sse(r, y, f) -> float:
    return float(_torch().sum(r * (y - f) ** 2))


def expert_m_step(X, y, resp, experts: np.ndarray, activation: Activation, max_iter: int = 5,
                  damping: float = 1e-3) -> np.ndarray:
    """Torch :func:`moebench.em.expert_m_step`: weighted least squares (linear g) or
    Levenberg-Marquardt; the d×d systems are solved on the host."""
    k, d = experts.shape
    new = np.array(experts, dtype=np.float64)
    eye = np.eye(d)
    for i in range(k):
        r = resp[:, i]
        if activation.is_linear:
            Xr = X * r[:, None]
            gram = _host(Xr.T @ X)
            A = gram + 1e-10 * (np.trace(gram) / d + 1.0) * eye
            new[i] = np.linalg.solve(A, _host(Xr.T @ y))
            continue
        a = new[i]
        lam = damping
        t = X @ _param(a, X)
        f = act_func(activation, t)
        sse = _sse(r, y, f)
        for _ in range(max_iter):
            gp = _derivative_at(activation, t, f)
            rg = r * gp
            A = _host((X * (rg * gp)[:, None]).T @ X)
            b = _host(X.T @ (rg * (y - f)))
            diag = np.diag(A).copy() + 1e-12 * (np.trace(A) / d + 1e-12)
            improved = False
            for _ in range(10):
                try:
                    step = np.linalg.solve(A + lam * np.diag(diag) + 1e-12 * eye, b)
                except np.linalg.LinAlgError:
                    lam *= 10.0
                    continue
                cand = a + step
                cand_t = X @ _param(cand, X)
                cand_f = act_func(activation, cand_t)
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


def sigma_m_step(X, y, resp, experts: np.ndarray, activation: Activation, means_=None
                 ) -> float:
    """Torch :func:`moebench.em.sigma_m_step`."""
    torch = _torch()
    if means_ is None:
        means_ = means(X, experts, activation)
    var = float(torch.sum(resp * (y[:, None] - means_) ** 2)) / X.shape[0]
    floor = 1e-12 * (float(torch.var(y, correction=0)) + 1e-300)
    return float(np.sqrt(max(var, floor)))


def gradient_m_step(X, y, resp, experts: np.ndarray, gating: np.ndarray,
                    activation: Activation, step_size: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Torch :func:`moebench.em._gradient_m_step` (one gradient-ascent step)."""
    torch = _torch()
    n = X.shape[0]
    t = X @ _param(experts, X).T
    err = (y[:, None] - act_func(activation, t)) * act_derivative(activation, t) * resp
    new_experts = experts + step_size * _host(err.T @ X) / n
    P = torch.softmax(X @ _param(gating, X).T, dim=1)
    new_gating = gating + step_size * _host((resp - P).T @ X) / n
    return new_experts, new_gating - new_gating[-1]


# -- the quasi-Newton gating EM's objective -----------------------------------------------


def variance(y: Any) -> float:
    """Population variance of a numpy array or a tensor (as ``np.var``)."""
    if is_tensor(y):
        return float(_torch().var(y, correction=0))
    return float(np.var(y))


class MarginalLikelihood:
    """Torch twin of :class:`moebench.acceleration._MarginalLikelihood` (the observed-data
    log-likelihood of the gating with the experts fixed, and its gradient).

    The same interface (``evaluate(z)`` -> ``(-objective, -gradient)`` as numpy,
    ``gating(z)``, ``last_z``, ``last_ll``, ``last_sigma``, ``n_eval``) and the same
    operations in the same order on the (k, n) arrays, which live on ``X``'s device.
    """

    def __init__(self, X: Any, y: Any, experts: np.ndarray, activation: Activation,
                 sigma: float, ridge: float, update_sigma: bool) -> None:
        self.X = X
        self.n, self.d = X.shape
        self.k = experts.shape[0]
        self.ridge = float(ridge)
        self.update_sigma = bool(update_sigma)
        means_t = act_func(activation, _param(experts, X) @ X.T)
        resid2 = y[None, :] - means_t
        resid2 **= 2
        if self.update_sigma:
            self.resid2 = resid2
        else:
            resid2 *= -0.5 / sigma**2
            resid2 -= np.log(sigma) + 0.5 * LOG_2PI
            self.log_dens = resid2
        self.sigma = float(sigma)
        self.last_z: np.ndarray | None = None
        self.last_ll = np.nan
        self.last_sigma = float(sigma)
        self.n_eval = 0

    def sigma_step(self, z: np.ndarray) -> float:
        """The plain EM's closed-form sigma^2 update at ``z`` (torch ``sigma_step``)."""
        torch = _torch()
        sigma = float(np.exp(z[-1]))
        L = _param(self.gating(z), self.X) @ self.X.T
        L -= L.max(dim=0).values
        L -= torch.log(torch.exp(L).sum(dim=0))
        L -= self.resid2 * (0.5 / sigma**2)
        L -= L.max(dim=0).values
        L.exp_()
        L /= L.sum(dim=0)
        return float(torch.sum(L * self.resid2)) / self.n

    def gating(self, z: np.ndarray) -> np.ndarray:
        """The (k, d) gating of the parameter vector ``z`` (last row 0)."""
        k, d = self.k, self.d
        return np.vstack([z[: (k - 1) * d].reshape(k - 1, d), np.zeros((1, d))])

    def evaluate(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """``(-objective, -gradient)`` at ``z`` = (theta[, log sigma]); two products with X."""
        torch = _torch()
        self.n_eval += 1
        k, n = self.k, self.n
        m = (k - 1) * self.d
        theta = z[:m]
        X = self.X
        L = _param(self.gating(z), X) @ X.T          # logits (k, n)
        L -= L.max(dim=0).values
        P = torch.exp(L)
        s1 = P.sum(dim=0)
        if self.update_sigma:
            sigma = float(np.exp(z[-1]))
            log_dens = self.resid2 * (-0.5 / sigma**2)
            log_dens -= float(z[-1]) + 0.5 * LOG_2PI
            L += log_dens
        else:
            sigma = self.sigma
            L += self.log_dens
        m2 = L.max(dim=0).values
        L -= m2
        L.exp_()
        s2 = L.sum(dim=0)
        ll = float(torch.mean(torch.log(s2 / s1) + m2))
        if not np.isfinite(ll):
            raise FloatingPointError(
                "gating EM (quasi-Newton) produced a non-finite log-likelihood "
                f"(|gating| = {float(np.linalg.norm(theta)):.3g}, sigma = {sigma:.3g})")
        L /= s2
        P /= s1
        grad = np.empty_like(z)
        if self.update_sigma:
            grad[-1] = float(torch.sum(L * self.resid2)) / (n * sigma**2) - 1.0
        L -= P
        grad[:m] = (_host(L[: k - 1] @ X) / n).ravel()
        value = ll
        if self.ridge:
            grad[:m] -= self.ridge * theta
            value -= 0.5 * self.ridge * float(theta @ theta)
        self.last_z = z.copy()
        self.last_ll, self.last_sigma = ll, sigma
        return -value, -grad
