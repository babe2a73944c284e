"""Whitening of the second moment: the one place that ranks, rank-checks and inverts T2.

``T2 = sum_i c'_i a_i a_i^T`` may be indefinite (``c'_i`` can be negative), so its
eigenpairs are ranked by ``|eigenvalue|``. From the ``k`` leading ones,
``T2 ~ U D U^T``, the whitening matrix is ``W = U |D|^{-1/2}`` (so that
``W^T T2 W = sign(D)``) and the un-whitening is ``(W^T)^+ = U |D|^{1/2}``.
:func:`whiten` returns both, with the eigen-gap, in a :class:`Whitening`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from moebench.validation import check_choice, check_positive_int

#: The k-th ``|eigenvalue|`` must exceed this fraction of the largest one (rank check).
RANK_RTOL = 1e-10
WHITENING_METHODS = ("eigh", "randomized")


def top_eigenpairs(A: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` eigenpairs of largest ``|eigenvalue|`` of a symmetric matrix.

    Parameters
    ----------
    A : ndarray of shape (m, m)
        Symmetrised as ``(A + A^T) / 2`` before the eigendecomposition.
    k : int
        Number of eigenpairs (``k <= m``).

    Returns
    -------
    eigvals : ndarray of shape (k,)
        Signed eigenvalues by decreasing absolute value (ties keep ``eigh``'s order).
    eigvecs : ndarray of shape (m, k)
        The orthonormal eigenvectors, one per column.
    """
    evals, evecs = np.linalg.eigh(0.5 * (A + A.T))
    order = np.argsort(-np.abs(evals), kind="stable")[:k]
    return evals[order], evecs[:, order]


@dataclass(frozen=True)
class Whitening:
    """The whitening of ``T2`` from its ``k`` eigenpairs of largest ``|eigenvalue|``.

    Attributes
    ----------
    W : ndarray of shape (d, k)
        The whitening matrix ``U |D|^{-1/2}``: ``W^T T2 W = sign(D)``.
    eigvals : ndarray of shape (k,)
        The signed eigenvalues ``D``, by decreasing absolute value. Keep the signs:
        un-whitening is ``a_i ∝ U |D|^{1/2} v_i`` for a component ``v_i`` of the
        whitened tensor.
    eigvecs : ndarray of shape (d, k)
        The orthonormal eigenvectors ``U``.
    leading_eigvals : ndarray of shape (k + n_extra,)
        ``eigvals`` followed by the ``n_extra`` next signed eigenvalues asked of
        :func:`whiten` (at most ``d`` in all); the eigen-gap reads the first of them.
    """

    W: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray
    leading_eigvals: np.ndarray

    @property
    def k(self) -> int:
        """Number of components kept."""
        return int(self.eigvals.shape[0])

    @property
    def eigengap(self) -> float:
        """``|lambda_k| / |lambda_{k+1}|`` of T2; inf when no (k+1)-th eigenvalue was computed.

        Large means the span of the experts is well separated from the noise.
        """
        ev = self.leading_eigvals
        if ev.size <= self.k:
            return float("inf")
        return float(abs(ev[self.k - 1]) / max(abs(ev[self.k]), 1e-300))

    @property
    def unwhitening(self) -> np.ndarray:
        """``(W^T)^+ = U |D|^{1/2}`` of shape (d, k): maps whitened vectors back to R^d."""
        return self.eigvecs * np.sqrt(np.abs(self.eigvals))[None, :]

    def unwhiten(self, vectors: Any) -> np.ndarray:
        """Unit-norm rows ``a_i ∝ U |D|^{1/2} b_i`` for whitened components ``b_i`` (rows).

        Parameters
        ----------
        vectors : ndarray of shape (r, k)
            Whitened components, one per row.

        Returns
        -------
        ndarray of shape (r, d)
            The un-whitened directions, each of unit norm (a zero column stays zero).
        """
        A = self.unwhitening @ np.asarray(vectors, float).T  # (d, r)
        norms = np.linalg.norm(A, axis=0, keepdims=True)
        norms[norms == 0.0] = 1.0
        return (A / norms).T


def whiten(
    T2: Any,
    k: int,
    method: str = "eigh",
    *,
    n_extra: int = 0,
    n_oversamples: int = 10,
    n_iter: int = 2,
    random_state: int | np.random.Generator | None = 0,
    rtol: float = RANK_RTOL,
) -> Whitening:
    """Whiten ``T2`` with its ``k`` eigenpairs of largest ``|eigenvalue|``, checking the rank.

    Parameters
    ----------
    T2 : ndarray of shape (d, d), or an operator with ``shape`` and ``matmat``
        The second moment, dense or implicit (e.g.
        :class:`moebench.tensor.moments.SecondMomentOperator`; ``method="randomized"``
        only needs products ``T2 @ Omega``, ``"eigh"`` densifies an operator with its
        ``to_dense``).
    k : int
        Number of components (``1 <= k <= d``).
    method : {"eigh", "randomized"}
        ``"eigh"``: full symmetric eigendecomposition, ``O(d^3)``. ``"randomized"``:
        a randomised range finder (Halko, Martinsson & Tropp 2011) with ``n_iter``
        power iterations on ``k + n_extra + n_oversamples`` columns; ``2 + n_iter``
        products with ``T2``, each ``O(n d k)`` on an operator.
    n_extra : int
        Further eigenvalues to compute beyond the k-th (kept in
        ``leading_eigvals``, not rank-checked); 1 gives the eigen-gap.
    n_oversamples, n_iter : int
        Randomised method only.
    random_state : int, Generator or None
        Seed of the randomised test matrix.
    rtol : float
        Rank check: the k-th ``|eigenvalue|`` must exceed ``rtol * max|eigenvalue|``.

    Returns
    -------
    Whitening

    Raises
    ------
    ValueError
        Bad ``k``, ``n_extra`` or ``method``, non-square or non-finite ``T2``, or ``T2``
        of rank < k.
    """
    check_choice(method, "whitening method", WHITENING_METHODS)
    is_op = hasattr(T2, "matmat") and hasattr(T2, "shape")
    if is_op:
        d = int(T2.shape[0])
    else:
        T2 = np.asarray(T2, dtype=np.float64)
        if T2.ndim != 2 or T2.shape[0] != T2.shape[1]:
            raise ValueError(f"T2 must be a square (d, d) matrix; got shape {T2.shape}")
        if not np.all(np.isfinite(T2)):
            raise ValueError("T2 contains NaN or infinite values; only finite values are valid")
        d = T2.shape[0]
    k = check_positive_int(k, "k")
    if k > d:
        raise ValueError(f"k = {k} exceeds the dimension d = {d} of T2; need 1 <= k <= d")
    m = min(k + check_positive_int(n_extra, "n_extra", minimum=0), d)

    if method == "eigh":
        evals, evecs = top_eigenpairs(T2.to_dense() if is_op else T2, m)
    else:
        n_oversamples = check_positive_int(n_oversamples, "n_oversamples", minimum=0)
        n_iter = check_positive_int(n_iter, "n_iter", minimum=0)
        ell = min(d, m + n_oversamples)
        rng = np.random.default_rng(random_state)

        def matmat(M: np.ndarray) -> np.ndarray:
            return T2.matmat(M) if is_op else T2 @ M

        Q, _ = np.linalg.qr(matmat(rng.standard_normal((d, ell))))
        for _ in range(n_iter):
            Q, _ = np.linalg.qr(matmat(Q))
        evals, S = top_eigenpairs(Q.T @ matmat(Q), m)
        evecs = Q @ S
    top = np.max(np.abs(evals))
    if not np.isfinite(top) or top == 0.0 or np.abs(evals[k - 1]) <= rtol * top:
        raise ValueError(
            f"T2 has fewer than k = {k} eigenvalues distinguishable from 0 (|eigenvalues| "
            f"{np.abs(evals[:k])}); the experts are not identifiable from T2 (need rank >= k: "
            "more samples, or a smaller k)"
        )
    U = evecs[:, :k]
    D = evals[:k]
    return Whitening(W=U / np.sqrt(np.abs(D))[None, :], eigvals=D, eigvecs=U,
                     leading_eigvals=evals)
