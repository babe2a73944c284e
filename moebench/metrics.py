"""Parameter and prediction errors, invariant to the order of the experts.

Experts are matched to the truth by the Hungarian algorithm on the pairwise
Euclidean distance matrix; the gating is compared under the same matching in
a gauge-invariant form (each row minus the row of the reference expert, the
expert that is last in the true model), since the softmax is unchanged by
adding a vector to every row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from moebench.model import MoEModel
from moebench.voronoi import voronoi_loss as voronoi_loss  # re-exported: the metric suite

DEFAULT_SUCCESS_THRESHOLD = 0.1


def _as_matrix(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (k, d); got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def match_experts(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Permutation ``perm`` minimising sum_i ||estimate[perm[i]] - truth[i]||.

    Returns
    -------
    perm : ndarray of int, shape (k,)
        ``estimate[perm]`` is aligned with ``truth``.
    """
    est, tru = _as_matrix(estimate, "estimate"), _as_matrix(truth, "truth")
    if est.shape != tru.shape:
        raise ValueError(f"estimate shape {est.shape} differs from truth shape {tru.shape}")
    rows, cols = linear_sum_assignment(cdist(tru, est))
    perm = np.empty(len(rows), dtype=int)
    perm[rows] = cols
    return perm


def expert_error(estimate: np.ndarray, truth: np.ndarray, perm: np.ndarray | None = None) -> float:
    """Frobenius norm ||A_hat[perm] - A|| after optimal matching."""
    perm = match_experts(estimate, truth) if perm is None else perm
    return float(np.linalg.norm(np.asarray(estimate, float)[perm] - np.asarray(truth, float)))


def expert_max_angle(
    estimate: np.ndarray, truth: np.ndarray, perm: np.ndarray | None = None
) -> float:
    """Worst angle (degrees) between a matched estimated expert and its true one."""
    est = _as_matrix(estimate, "estimate")
    tru = _as_matrix(truth, "truth")
    perm = match_experts(est, tru) if perm is None else perm
    est = est[perm]
    cos = np.sum(est * tru, axis=1) / (
        np.linalg.norm(est, axis=1) * np.linalg.norm(tru, axis=1) + 1e-300
    )
    return float(np.degrees(np.max(np.arccos(np.clip(cos, -1.0, 1.0)))))


def gating_error(
    estimate: np.ndarray, truth: np.ndarray, perm: np.ndarray, reference: int | None = None
) -> float:
    """Gauge-invariant gating error under an expert matching.

    Compares ``W_hat[perm[i]] - W_hat[perm[r]]`` with ``W[i] - W[r]`` in Frobenius
    norm, r the reference expert (default: the last true expert).
    """
    est, tru = _as_matrix(estimate, "estimate gating"), _as_matrix(truth, "true gating")
    if est.shape != tru.shape:
        raise ValueError(f"gating shape {est.shape} differs from truth shape {tru.shape}")
    r = tru.shape[0] - 1 if reference is None else reference
    est = est[perm]
    return float(np.linalg.norm((est - est[r]) - (tru - tru[r])))


def prediction_mse(model: MoEModel, X: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of E[y | x] under ``model``."""
    return float(np.mean((np.asarray(y, float) - model.predict(X)) ** 2))


def mean_log_likelihood(model: MoEModel, X: np.ndarray, y: np.ndarray) -> float:
    """Held-out mean conditional log-likelihood of ``model``."""
    return model.mean_log_likelihood(X, y)


def is_success(error: float, threshold: float = DEFAULT_SUCCESS_THRESHOLD) -> bool:
    """A run succeeds when its matched expert error is finite and below ``threshold``."""
    return bool(np.isfinite(error) and error < threshold)


def parameter_errors(
    experts: np.ndarray, gating: np.ndarray, truth: MoEModel,
    threshold: float = DEFAULT_SUCCESS_THRESHOLD,
) -> dict[str, float]:
    """Matched expert and gating errors of estimated parameters against the truth.

    Returns
    -------
    dict
        ``expert_error``, ``expert_max_angle``, ``gating_error``, ``success``.
    """
    perm = match_experts(experts, truth.experts)
    err = expert_error(experts, truth.experts, perm)
    return {
        "expert_error": err,
        "expert_max_angle": expert_max_angle(experts, truth.experts, perm),
        "gating_error": gating_error(gating, truth.gating, perm),
        "success": is_success(err, threshold),
    }


def evaluate(
    model: MoEModel,
    truth: MoEModel | None = None,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    threshold: float = DEFAULT_SUCCESS_THRESHOLD,
) -> dict[str, float]:
    """Every metric that the inputs allow: parameter errors and held-out scores."""
    out: dict[str, float] = {}
    if truth is not None:
        out.update(parameter_errors(model.experts, model.gating, truth, threshold))
    if X_test is not None and y_test is not None:
        out["test_log_likelihood"] = mean_log_likelihood(model, X_test, y_test)
        out["test_mse"] = prediction_mse(model, X_test, y_test)
    return out


def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial rate (95% for the default ``z``).

    Parameters
    ----------
    successes : float
        Number of successes (0 <= successes <= n).
    n : float
        Number of trials; 0 gives (nan, nan).
    z : float
        Normal quantile (1.96: 95%).

    Returns
    -------
    (low, high) : tuple of float
        Bounds in [0, 1]; e.g. 0 of 5 gives (0, 0.434).

    Raises
    ------
    ValueError
        For ``successes`` outside [0, n] or a negative ``n``.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n; got successes="
                         f"{successes!r}, n={n!r}")
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return float(low), float(high)
