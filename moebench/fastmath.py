"""Row-wise log-sum-exp kernels for the (n, k) arrays of the EM hot loop.

scipy's ``logsumexp`` / ``log_softmax`` along a short last axis (k = 3 .. 10 columns)
spend most of their time in per-row reductions and generic bookkeeping; here every
reduction runs column by column over the whole length n (k vectorised passes), with
the usual max shift for stability. Rows whose maximum is not finite (all -inf, or a
+inf entry) are shifted by 0 instead, so an all -inf row gives -inf (as scipy) and a
row with some -inf entries gives exact zeros there, never NaN (an all -inf row has
no posterior: its weights and log-softmax are NaN, as scipy's).
"""

from __future__ import annotations

import numpy as np


def row_max(a: np.ndarray) -> np.ndarray:
    """Maximum of each row of a 2-d array, shape (n,) (NaN propagates as in ``np.max``)."""
    a = np.asarray(a, dtype=float)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"a must be a 2-d array with at least one column; got shape {a.shape}")
    m = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        np.maximum(m, a[:, j], out=m)
    return m


def _row_sum(e: np.ndarray) -> np.ndarray:
    s = e[:, 0].copy()
    for j in range(1, e.shape[1]):
        s += e[:, j]
    return s


def _shift(a: np.ndarray) -> np.ndarray:
    m = row_max(a)
    m[~np.isfinite(m)] = 0.0
    return m


def log_softmax_rows(a: np.ndarray) -> np.ndarray:
    """a_ij - logsumexp_j(a_ij), shape (n, k); as ``scipy.special.log_softmax(a, axis=1)``."""
    a = np.asarray(a, dtype=float)
    shifted = a - _shift(a)[:, None]
    e = np.exp(shifted)
    with np.errstate(divide="ignore", invalid="ignore"):  # an all -inf row gives NaN
        shifted -= np.log(_row_sum(e))[:, None]
    return shifted


def normalize_log_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior weights and normaliser of each row: ``(exp(a - lse), lse)``.

    One exponential pass for both (the weights are exp(a - m) / sum, not a second
    exp), which is what the E-step needs: responsibilities and per-sample
    log-likelihoods.

    Returns
    -------
    weights : ndarray (n, k), rows summing to 1
    lse : ndarray (n,), log(sum_j exp(a_ij)) (``scipy.special.logsumexp(a, axis=1)``)
    """
    a = np.asarray(a, dtype=float)
    m = _shift(a)
    e = a - m[:, None]
    np.exp(e, out=e)
    s = _row_sum(e)
    with np.errstate(divide="ignore", invalid="ignore"):  # an all -inf row: NaN weights
        e /= s[:, None]
        return e, np.log(s) + m
