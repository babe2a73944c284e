"""Starting points shared by the iterative estimators (one module, one definition each).

- :func:`random_start`: random unit experts and a small random gating (joint_em, sgd).
- :func:`data_scale_start`: random experts and gating at the scale of the data
  (``init="data_scale"`` of joint_em and sgd).
- :func:`near_truth_start`: every fitted atom a noisy copy of a true atom, the protocol
  of Nguyen et al. (NeurIPS 2023) for over-specified softmax-gated fits (``init="near_truth"``
  of joint_em and sgd, through :func:`near_truth_fit_start`; it needs the truth, as an
  oracle does).
- :func:`search_in_subspace`: the spectral start's search for the experts inside a
  subspace that spans them (joint_em, sgd, alt_min; the subspace itself, the top
  eigenvectors of a second moment, comes from the caller).

Every helper draws from the ``rng`` it is given, in a fixed order, so a seeded
estimator gets the same start every time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moebench.activations import Activation
from moebench.model import MoEModel

#: standard deviation of the entries of the random gating start
GATING_SCALE = 0.01


def random_unit_experts(rng: np.random.Generator, k: int, d: int) -> np.ndarray:
    """k random unit vectors in R^d (rows), directions uniform on the sphere.

    Parameters
    ----------
    rng : numpy.random.Generator
    k, d : int
        Number of experts and of features.

    Returns
    -------
    ndarray of shape (k, d) with unit rows
    """
    A = rng.standard_normal((k, d))
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def random_start(rng: np.random.Generator, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Random unit experts and a gating with N(0, 0.01^2) entries, last row moved to 0.

    Draws from ``rng`` the experts (:func:`random_unit_experts`), then the gating, for
    ``k`` experts on ``d`` features.

    Returns
    -------
    experts : ndarray of shape (k, d)
    gating : ndarray of shape (k, d), last row 0
    """
    experts = random_unit_experts(rng, k, d)
    gating = GATING_SCALE * rng.standard_normal((k, d))
    return experts, gating - gating[-1]


def data_scale_start(rng: np.random.Generator, X: np.ndarray, y: np.ndarray, k: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Random experts and gating drawn at the scale of the data (``init="data_scale"``).

    With s_x^2 = mean(X^2) (the mean square of an input coordinate) and d features:

    - experts: entries N(0, var(y) / (d s_x^2)), so that a_i . x has about the variance of y;
    - gating: entries N(0, 1 / (d s_x^2)), so that each logit W_i . x has about unit
      variance (gating probabilities of order one, neither flat nor saturated);
      then the last row is subtracted.

    Draws the experts, then the gating, from ``rng``.

    Returns
    -------
    experts : ndarray of shape (k, d)
    gating : ndarray of shape (k, d), last row 0
    """
    d = X.shape[1]
    s2 = float(np.mean(np.square(X))) or 1.0
    experts = rng.standard_normal((k, d)) * np.sqrt((float(np.var(y)) or 1.0) / (d * s2))
    gating = rng.standard_normal((k, d)) / np.sqrt(d * s2)
    return experts, gating - gating[-1]


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
    (a and -a are different experts) are scored on ``n_rows`` random rows; k of them are
    picked greedily to minimise mean_n min_i (y_n - g(a_i . x_n))^2, then improved by
    ``n_swaps`` rounds of best single swaps (k-medoids). This is the search of the
    spectral start, in place of the grid search of Yi, Caramanis and Sanghavi (2014),
    which is written for k = 2.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    basis : ndarray of shape (d, m)
        Orthonormal basis of a subspace that spans the experts.
    k : int
        Number of experts to choose.
    activation : Activation
        Expert activation g.
    rng : numpy.random.Generator
        Draws the rows, then the candidate directions.
    n_candidates, n_rows, n_swaps : int
        Random directions, scored rows and swap rounds.

    Returns
    -------
    ndarray of shape (k, d) with unit rows
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


#: Nguyen et al. (2023)'s start noise: standard deviations c n^p on gates, experts, variances
NEAR_TRUTH_NOISE = {"gating": (0.005, -0.083), "experts": (0.05, -0.083),
                    "variance": (0.005, -0.25)}


def near_truth_start(rng: np.random.Generator, truth: MoEModel, k: int, n: int,
                     x_scale: float = 1.0) -> dict[str, np.ndarray]:
    """A start near the truth for ``k >= k*`` experts (Nguyen et al. 2023's protocol).

    Fitted atoms 0..k*-2 copy the true non-reference atoms, the last fitted atom copies the
    reference (the last true atom), and the k - k* atoms between copy true atoms drawn
    uniformly from ``rng``; so every true atom is covered. Each copy gets Gaussian noise of
    standard deviation 0.005 n^-0.083 on its gate (bias and weights) and 0.05 n^-0.083 on
    its expert (intercept and weights). Its variance starts, as the authors' code does, at
    the true *standard deviation* plus |N(0, 0.005 n^-0.25)| (noise is drawn in that
    order: owners, gate weights, gate biases, expert weights, intercepts, variances).

    Parameters
    ----------
    rng : numpy.random.Generator
    truth : MoEModel
        The true model, in the fit's units.
    k : int
        Fitted experts, at least the truth's.
    n : int
        Training rows (the noise shrinks with n).
    x_scale : float
        The fit sees X / x_scale: weight noise is drawn in X's units and scaled by it.

    Returns
    -------
    dict
        ``experts`` (k, d), ``gating`` (k, d), ``expert_bias`` (k,), ``gating_bias`` (k,),
        ``sigma`` (k,).
    """
    k_true, d = truth.n_experts, truth.n_features
    if k < k_true:
        raise ValueError(f"init='near_truth' needs at least the truth's {k_true} experts; "
                         f"got n_experts={k}")
    extra = rng.integers(0, k_true, size=k - k_true)
    owners = np.concatenate([np.arange(k_true - 1), extra, [k_true - 1]]).astype(int)
    sd = {key: c * float(n) ** p for key, (c, p) in NEAR_TRUTH_NOISE.items()}
    zeros = np.zeros(k_true)
    gating_bias = truth.gating_bias if truth.gating_bias is not None else zeros
    expert_bias = truth.expert_bias if truth.expert_bias is not None else zeros
    sigma = np.broadcast_to(np.asarray(truth.sigma, dtype=float), (k_true,))
    gating = truth.gating[owners] + sd["gating"] * x_scale * rng.standard_normal((k, d))
    g_bias = gating_bias[owners] + sd["gating"] * rng.standard_normal(k)
    experts = truth.experts[owners] + sd["experts"] * x_scale * rng.standard_normal((k, d))
    e_bias = expert_bias[owners] + sd["experts"] * rng.standard_normal(k)
    variance = sigma[owners] + np.abs(sd["variance"] * rng.standard_normal(k))
    return {"experts": experts, "gating": gating - gating[-1], "expert_bias": e_bias,
            "gating_bias": g_bias - g_bias[-1], "sigma": np.sqrt(variance)}


def near_truth_fit_start(rng: np.random.Generator, truth: MoEModel | None, k: int, n: int,
                         x_scale: float, *, intercepts: bool, per_expert: bool,
                         sigma: float | None, fit: str) -> tuple[np.ndarray, np.ndarray, Any]:
    """:func:`near_truth_start` in a fit's coordinates (``init="near_truth"`` of joint_em
    and sgd).

    With ``intercepts`` the bias columns come last (the fit runs on [X, 1],
    :mod:`moebench.intercepts`); the noise is per expert with ``per_expert``, else their
    rms; a given ``sigma`` replaces it. ``fit`` names the estimator in the error raised
    when ``truth`` is None.

    Returns
    -------
    experts : ndarray of shape (k, d) or (k, d + 1)
    gating : ndarray of shape (k, d) or (k, d + 1), last row 0
    sigma : float or ndarray of shape (k,)
    """
    if truth is None:
        raise ValueError(f"{fit} with init='near_truth' starts from the true parameters: "
                         "fit(X, y, truth=...) with truth a MoEModel or MoEData "
                         "(synthetic data only); got truth=None")
    start = near_truth_start(rng, truth, k, n, x_scale)
    experts, gating = start["experts"], start["gating"]
    if intercepts:
        experts = np.hstack([experts, start["expert_bias"][:, None]])
        gating = np.hstack([gating, start["gating_bias"][:, None]])
    s0: Any = start["sigma"] if per_expert else float(np.sqrt(np.mean(start["sigma"] ** 2)))
    return experts, gating, s0 if sigma is None else sigma
