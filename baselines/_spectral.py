"""Spectral initialisation shared by the alt_min and joint_em baselines.

Private module (leading underscore: the registry does not import it as a baseline).

1. :func:`spectral_subspace`: the top-k eigenvectors (by absolute eigenvalue) of
   M = mean(S2(y) (x x^T - I)), where S2(y) = y^2 + gamma y is the second-order
   label transform of the tensor method (gamma = 0 for linear g, so M is
   mean(y^2 x x^T) - mean(y^2) I as in Yi, Caramanis and Sanghavi 2014). Under
   Gaussian x, M = c2 sum_i p_i a_i a_i^T, so its top-k eigenvectors span the experts.
2. :func:`search_in_subspace`: the paper's search for the experts inside that span,
   done as a greedy k-medoids choice among random unit directions of the span,
   scored by the mean over samples of the smallest squared residual
   min_i (y - g(a_i . x))^2 on a subsample.
"""

from __future__ import annotations

import warnings

import numpy as np

from moebench.activations import Activation
from moebench.label_transforms import transform_coefficients


def second_order_label(y: np.ndarray, activation: Activation) -> np.ndarray:
    """S2(y) = y^2 + gamma y with E[h2'(Z)] = 0 (falls back to (y - mean y)^2)."""
    if activation.is_linear:
        return y * y
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gamma = transform_coefficients(activation, 0.0).gamma
    except ValueError:
        yc = y - np.mean(y)
        return yc * yc
    return y * y + gamma * y


def spectral_subspace(X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                      max_rows: int = 200_000) -> np.ndarray:
    """Orthonormal basis (d, k) of the span of the top-k eigenvectors of mean(S2(y)(xx^T - I)).

    At most ``max_rows`` rows (the first ones) are used; the moment is O(n d^2).
    """
    Xs, ys = X[:max_rows], y[:max_rows]
    s2 = second_order_label(ys, activation)
    M = (Xs * s2[:, None]).T @ Xs / Xs.shape[0] - np.mean(s2) * np.eye(X.shape[1])
    vals, vecs = np.linalg.eigh(0.5 * (M + M.T))
    order = np.argsort(-np.abs(vals))[:k]
    return vecs[:, order]


def min_residual_score(X: np.ndarray, y: np.ndarray, experts: np.ndarray,
                       activation: Activation) -> float:
    """Mean over samples of min_i (y - g(a_i . x))^2."""
    r = (y[:, None] - activation.func(X @ experts.T)) ** 2
    return float(np.mean(np.min(r, axis=1)))


def search_in_subspace(
    X: np.ndarray,
    y: np.ndarray,
    basis: np.ndarray,
    k: int,
    activation: Activation,
    rng: np.random.Generator,
    n_candidates: int = 256,
    n_rows: int = 4000,
    n_swaps: int = 2,
) -> np.ndarray:
    """Choose k unit experts in span(basis) that best explain the labels by min residual.

    ``n_candidates`` random unit directions of the span and their negatives
    (a and -a are different experts) are scored on ``n_rows`` random rows; k of them are picked
    greedily to minimise mean_n min_i (y_n - g(a_i . x_n))^2, then improved by
    ``n_swaps`` rounds of best single swaps (k-medoids).

    Returns
    -------
    ndarray (k, d) with unit rows
    """
    n = X.shape[0]
    rows = rng.choice(n, size=min(n_rows, n), replace=False)
    Xs, ys = X[rows], y[rows]
    coef = rng.standard_normal((n_candidates, basis.shape[1]))
    cand = coef @ basis.T
    cand /= np.linalg.norm(cand, axis=1, keepdims=True)
    cand = np.vstack([cand, -cand])
    R = (ys[:, None] - activation.func(Xs @ cand.T)) ** 2  # (n_rows, 2 m)
    chosen: list[int] = []
    best = np.full(R.shape[0], np.inf)
    for _ in range(k):
        scores = np.mean(np.minimum(best[:, None], R), axis=0)
        scores[chosen] = np.inf
        j = int(np.argmin(scores))
        chosen.append(j)
        best = np.minimum(best, R[:, j])
    current = float(np.mean(best))
    for _ in range(n_swaps):
        improved = False
        for pos in range(k):
            others = [c for p, c in enumerate(chosen) if p != pos]
            base = np.min(R[:, others], axis=1)
            scores = np.mean(np.minimum(base[:, None], R), axis=0)
            scores[chosen] = np.inf
            j = int(np.argmin(scores))
            if scores[j] < current - 1e-12:
                chosen[pos], current, improved = j, float(scores[j]), True
        if not improved:
            break
    return cand[chosen].copy()
