"""A plain numpy implementation of moebench's algorithms: the yardstick of issue 13.

About 250 lines, written the way one writes them without a framework: the tensor step
(label transforms, T2, whitening, whitened T3, robust tensor power method), the
gating-only EM with damped Newton M-steps, and joint EM with Levenberg-Marquardt
(Gauss-Newton) expert M-steps. It follows moebench step for step (same starts, same
iteration rules, same tolerances), so the final errors agree with moebench's; it has no
input validation, no history, no restarts and no budgets. It exists so that
``bench_algorithms.AlgorithmsVsPlain`` (asv) and ``tools/measure.py --algorithms`` can
time moebench against it in the same process; :data:`ALGORITHM_ROWS` is the moebench side
of each row.

Not part of the package (imported by the benchmarks only). The label-transform
constants come from :func:`moebench.tensor.label_transforms.transform_coefficients`
(a one-off quadrature, not part of the per-sample work) and the random starts from
:mod:`moebench.starts`, so both implementations start from the same points.
"""

from __future__ import annotations

import numpy as np

from moebench.activations import get_activation
from moebench.generator import as_seed_sequence
from moebench.starts import random_start
from moebench.tensor.label_transforms import transform_coefficients

LOG_2PI = float(np.log(2.0 * np.pi))
#: the algorithms compared: label -> (moebench registry name, options); sigma is given
ALGORITHM_ROWS = {
    "tensor_em": ("tensor_em", {}),
    "tensor_em_refine": ("tensor_em", {"refine": True}),
    "joint_em": ("joint_em", {"n_init": 1}),
}


# -- the model ---------------------------------------------------------------------------
def _lse(a):
    m = a.max(axis=1, keepdims=True)
    return np.log(np.exp(a - m).sum(axis=1)) + m[:, 0]


def e_step(X, y, experts, gating, sigma, g, means=None):
    """Responsibilities and the mean log-likelihood."""
    if means is None:
        means = g(X @ experts.T)
    logits = X @ gating.T
    logp = logits - _lse(logits)[:, None]
    lj = logp - 0.5 * ((y[:, None] - means) / sigma) ** 2 - np.log(sigma) - 0.5 * LOG_2PI
    ll = _lse(lj)
    return np.exp(lj - ll[:, None]), float(ll.mean())


# -- M-steps -------------------------------------------------------------------------------
def _gating_objective(theta, X, resp, ridge):
    n, d = X.shape
    k = resp.shape[1]
    W = np.vstack([theta.reshape(k - 1, d), np.zeros((1, d))])
    logits = X @ W.T
    logp = logits - _lse(logits)[:, None]
    value = float(np.sum(resp * logp)) / n - 0.5 * ridge * float(theta @ theta)
    P = np.exp(logp)
    grad = (resp - P)[:, : k - 1].T @ X / n - ridge * theta.reshape(k - 1, d)
    return value, grad.ravel(), P


def gating_m_step(X, resp, gating, ridge, max_iter, tol=1e-8):
    """Damped Newton on the soft-label multinomial logistic regression (last row 0)."""
    n, d = X.shape
    k = resp.shape[1]
    theta = (gating[: k - 1] - gating[-1]).ravel().copy()
    value, grad, P = _gating_objective(theta, X, resp, ridge)
    m = (k - 1) * d
    for _ in range(max_iter):
        if np.max(np.abs(grad)) < tol:
            break
        H = np.empty((m, m))
        for i in range(k - 1):
            for j in range(i, k - 1):
                w = P[:, i] * ((i == j) - P[:, j])
                block = (X * w[:, None]).T @ X / n
                H[i * d:(i + 1) * d, j * d:(j + 1) * d] = block
                H[j * d:(j + 1) * d, i * d:(i + 1) * d] = block.T
        H[np.diag_indices(m)] += ridge + 1e-10
        step = np.linalg.solve(H, grad)
        t = 1.0
        for _ in range(30):  # Armijo backtracking
            cand = theta + t * step
            new_value, new_grad, new_P = _gating_objective(cand, X, resp, ridge)
            if new_value >= value + 1e-4 * t * float(grad @ step):
                break
            t *= 0.5
        else:
            break
        theta, value, grad, P = cand, new_value, new_grad, new_P
    return np.vstack([theta.reshape(k - 1, d), np.zeros((1, d))])


def expert_m_step(X, y, resp, experts, act, max_iter):
    """Weighted least squares (linear g) or Levenberg-Marquardt steps per expert."""
    k, d = experts.shape
    new = experts.copy()
    eye = np.eye(d)
    for i in range(k):
        r = resp[:, i]
        if act.is_linear:
            Xr = X * r[:, None]
            A = Xr.T @ X
            A = A + 1e-10 * (np.trace(A) / d + 1.0) * eye
            new[i] = np.linalg.solve(A, Xr.T @ y)
            continue
        a, lam = new[i], 1e-3
        sse = float(np.sum(r * (y - act.func(X @ a)) ** 2))
        for _ in range(max_iter):
            t = X @ a
            J = X * act.derivative(t)[:, None]
            Jr = J * r[:, None]
            A = Jr.T @ J
            b = Jr.T @ (y - act.func(t))
            diag = np.diag(A).copy() + 1e-12 * (np.trace(A) / d + 1e-12)
            improved = False
            for _ in range(10):
                step = np.linalg.solve(A + lam * np.diag(diag) + 1e-12 * eye, b)
                cand = a + step
                cand_sse = float(np.sum(r * (y - act.func(X @ cand)) ** 2))
                if cand_sse < sse:
                    a, sse, improved = cand, cand_sse, True
                    lam = max(lam / 3.0, 1e-12)
                    break
                lam *= 4.0
            if not improved:
                break
        new[i] = a
    return new


def em(X, y, experts, gating, sigma, act, *, update_experts, max_iter, tol, ridge,
       newton_steps, expert_steps):
    """The EM loop with sigma fixed; returns experts, gating, iterations, log-likelihood."""
    gating = gating - gating[-1]
    means = None if update_experts else act.func(X @ experts.T)
    resp, ll = e_step(X, y, experts, gating, sigma, act.func, means)
    it = 0
    while it < max_iter:
        it += 1
        gating = gating_m_step(X, resp, gating, ridge, newton_steps)
        if update_experts:
            experts = expert_m_step(X, y, resp, experts, act, expert_steps)
        resp, new_ll = e_step(X, y, experts, gating, sigma, act.func, means)
        change, ll = abs(new_ll - ll), new_ll
        if change <= tol * max(1.0, abs(ll)):
            break
    return experts, gating, it, ll


# -- the tensor step -------------------------------------------------------------------
def tensor_step(X, y, k, act, sigma, rng, n_starts=30, n_iter=50):
    """Experts from T2's whitening and the whitened T3 (robust tensor power method)."""
    n, d = X.shape
    c = transform_coefficients(act, sigma)
    s2 = y * y + c.gamma * y
    s3 = y * (y * y + c.alpha * y + c.beta)
    T2 = (X * s2[:, None]).T @ X / n - s2.mean() * np.eye(d)
    evals, evecs = np.linalg.eigh(0.5 * (T2 + T2.T))
    order = np.argsort(-np.abs(evals), kind="stable")[:k]
    D, U = evals[order], evecs[:, order]
    W = U / np.sqrt(np.abs(D))
    rng.integers(2**31)  # moebench draws a seed for its (randomised) whitening here
    Uw = X @ W  # (n, k)
    M = np.einsum("n,na,nb,nc->abc", s3, Uw, Uw, Uw, optimize=True) / n
    v, B = s3 @ Uw / n, W.T @ W
    M -= (np.einsum("a,bc->abc", v, B) + np.einsum("b,ac->abc", v, B)
          + np.einsum("c,ab->abc", v, B))
    # robust power method with deflation (symmetrised tensor)
    T = sum(M.transpose(p) for p in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1),
                                     (2, 1, 0))) / 6.0
    experts = np.empty((k, d))

    def power(V):
        for _ in range(n_iter):
            Un = np.einsum("ijk,jm,km->im", T, V, V)
            norms = np.linalg.norm(Un, axis=0)
            norms[norms == 0.0] = 1.0
            Un = Un / norms
            change = float(np.max(np.linalg.norm(Un - V, axis=0)))
            V = Un
            if change < 1e-13:
                break
        return V

    for i in range(k):
        V = rng.standard_normal((k, n_starts))
        V = power(V / np.linalg.norm(V, axis=0))
        vals = np.einsum("ijk,im,jm,km->m", T, V, V, V)
        best = power(V[:, [int(np.argmax(vals))]])[:, 0]
        best /= np.linalg.norm(best)
        lam = float(np.einsum("ijk,i,j,k->", T, best, best, best))
        if lam < 0:
            lam, best = -lam, -best
        T = T - lam * np.einsum("i,j,k->ijk", best, best, best)
        b = best if np.sign(c.c3) * lam >= 0 else -best
        a = U @ (np.sqrt(np.abs(D)) * b)
        experts[i] = a / np.linalg.norm(a)
    return experts


# -- the algorithms ----------------------------------------------------------------------
def fit(algorithm, X, y, k, activation, sigma, random_state=0):
    """Fit ``algorithm`` in {"tensor_em", "tensor_em_refine", "joint_em"} with sigma given.

    Defaults as moebench's: tensor_em gating EM (5 Newton steps, tol 1e-8, 200
    iterations, no ridge), refine (joint EM, 5 LM steps, tol 1e-8, 200 iterations),
    joint_em with one random start (3 Newton, 3 LM steps, ridge 1e-6, tol 1e-6, 100
    iterations). Returns (experts, gating).
    """
    act = get_activation(activation)
    rng = np.random.default_rng(as_seed_sequence(random_state))
    d = X.shape[1]
    if algorithm == "joint_em":
        experts, gating = random_start(rng, k, d)
        experts, gating, _, _ = em(X, y, experts, gating, sigma, act, update_experts=True,
                                   max_iter=100, tol=1e-6, ridge=1e-6, newton_steps=3,
                                   expert_steps=3)
        return experts, gating
    experts = tensor_step(X, y, k, act, sigma, rng)
    experts, gating, _, _ = em(X, y, experts, np.zeros((k, d)), sigma, act,
                               update_experts=False, max_iter=200, tol=1e-8, ridge=0.0,
                               newton_steps=5, expert_steps=5)
    if algorithm == "tensor_em_refine":
        experts, gating, _, _ = em(X, y, experts, gating, sigma, act, update_experts=True,
                                   max_iter=200, tol=1e-8, ridge=0.0, newton_steps=5,
                                   expert_steps=5)
    return experts, gating
