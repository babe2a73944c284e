"""Whitening of the second moment: the one place that ranks, rank-checks and inverts T2.

``T2 = sum_i c'_i a_i a_i^T``. Under the paper's model every ``c'_i = c2 p_i`` has the
sign of the label transform's constant ``c2`` (``p_i > 0``; ``c2`` comes from the
transform's quadrature, :mod:`moebench.tensor.label_transforms`), so the population T2
has ``k`` eigenvalues of that sign and ``d - k`` zeros. The sample T2 adds a symmetric
noise matrix whose eigenvalues have both signs; ranking by ``|eigenvalue|`` would keep a
wrong-sign noise direction whenever it outgrows a weak expert direction. :func:`whiten`
therefore ranks by the signed value ``sign * eigenvalue`` when given the expected
``sign`` (by ``|eigenvalue|`` without one). From the ``k`` kept ones, ``T2 ~ U D U^T``,
the whitening matrix is ``W = U |D|^{-1/2}`` (so that ``W^T T2 W = sign(D)``) and the
un-whitening is ``(W^T)^+ = U |D|^{1/2}``.

**Noise level.** The sample ``T2 = mean_n s2_n (x_n x_n^T - I)``: in the directions
independent of y its entries are averages of ``n`` terms of variance ``E[s2^2]``
(``2 E[s2^2]`` on the diagonal), the scaling of a Wigner matrix, whose largest
eigenvalue sits near ``2 sqrt(E[s2^2] d / n)`` (semicircle edge).
:func:`t2_noise_level` returns ``NOISE_LEVEL_FACTOR * sqrt(mean(s2^2) d / n)`` with
``NOISE_LEVEL_FACTOR = 2.5``: the edge plus room for the largest noise eigenvalue's
finite-d fluctuation (its 99th percentile was 2.2-2.8 times ``sqrt(E[s2^2] d / n)``
in 200 simulated null matrices each at d = 5, 10, 20, 50). It costs one O(n) pass over
``s2``, never over X. A kept eigenvalue *clears the noise* when
``sign * eigenvalue > noise_level``; fewer than ``k`` such eigenvalues means the tensor
step is below its sample complexity (:attr:`Whitening.n_signal`).
:func:`whiten` returns W and the un-whitening, with the eigen-gap, in a
:class:`Whitening`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from moebench.validation import check_choice, check_positive_int

#: The k-th ``|eigenvalue|`` must exceed this fraction of the largest one (rank check).
RANK_RTOL = 1e-10
WHITENING_METHODS = ("eigh", "randomized")
#: the ``whitening`` option of the tensor step: a method, or "auto" (:func:`whitening_method`)
WHITENINGS = ("auto", *WHITENING_METHODS)
#: "auto" whitening uses a dense eigh up to this d, the randomized range finder above it
AUTO_EIGH_MAX_D = 1000
#: :func:`t2_noise_level`: multiple of ``sqrt(mean(s2^2) d / n)`` that T2's noise
#: eigenvalues stay below (the semicircle edge 2, plus 0.5 for finite-d fluctuations).
NOISE_LEVEL_FACTOR = 2.5


def whitening_method(whitening: str, d: int) -> str:
    """The method a ``whitening`` option runs on d features: "auto" is a dense ``eigh`` up to
    :data:`AUTO_EIGH_MAX_D`, the randomized range finder above it."""
    if whitening != "auto":
        return whitening
    return "eigh" if d <= AUTO_EIGH_MAX_D else "randomized"


def t2_noise_level(s2: Any, d: int, factor: float = NOISE_LEVEL_FACTOR) -> float:
    """Level below which an eigenvalue of the sample T2 is indistinguishable from noise.

    ``factor * sqrt(mean(s2^2) * d / n)`` for ``T2 = mean_n s2_n (x_n x_n^T - I)`` with
    ``x ~ N(0, I_d)`` (see the module docstring for the rule and the constant).

    Parameters
    ----------
    s2 : array_like of shape (n,)
        The transformed labels of T2.
    d : int
        Dimension of the inputs.
    factor : float
        The multiple (default :data:`NOISE_LEVEL_FACTOR`).

    Returns
    -------
    float
        The noise level (>= 0).

    Raises
    ------
    ValueError
        Empty or non-finite ``s2``, ``d < 1`` or a negative ``factor``.
    """
    s2 = np.asarray(s2, dtype=np.float64).ravel()
    if s2.size == 0 or not np.all(np.isfinite(s2)):
        raise ValueError("s2 must be a non-empty array of finite values")
    return noise_level_from_mean_square(float(np.dot(s2, s2)) / s2.size, s2.size, d, factor)


def noise_level_from_mean_square(mean_square: float, n: int, d: int,
                                 factor: float = NOISE_LEVEL_FACTOR) -> float:
    """:func:`t2_noise_level` from ``mean(s2^2)`` and ``n`` (e.g. summed over blocks).

    Parameters
    ----------
    mean_square : float
        ``mean(s2^2)`` (>= 0).
    n, d : int
        Samples and dimension.
    factor : float
        The multiple (default :data:`NOISE_LEVEL_FACTOR`).

    Returns
    -------
    float
        ``factor * sqrt(mean_square * d / n)``.
    """
    n = check_positive_int(n, "n")
    d = check_positive_int(d, "d")
    if not (np.isfinite(mean_square) and mean_square >= 0):
        raise ValueError(f"mean_square must be a finite number >= 0; got {mean_square!r}")
    if not (np.isfinite(factor) and factor >= 0):
        raise ValueError(f"factor must be a finite number >= 0; got {factor!r}")
    return float(factor * np.sqrt(mean_square * d / n))


def _canonical_signs(evecs: np.ndarray) -> np.ndarray:
    """Flip each column so that its entry of largest modulus (the first such) is positive.

    ``eigh`` fixes an eigenvector only up to sign, and which sign can change with the last
    bit of the matrix; the whitened tensor's axes then flip with it.
    """
    idx = np.argmax(np.abs(evecs), axis=0)
    signs = np.where(evecs[idx, np.arange(evecs.shape[1])] < 0, -1.0, 1.0)
    return evecs * signs[None, :]


def _order(evals: np.ndarray, k: int, sign: float | None) -> np.ndarray:
    """Indices of the kept eigenvalues, then of the others.

    Kept: the k of largest ``|evals|`` when sign is None; else those with
    ``sign * evals > RANK_RTOL * max|evals|`` (of the sign and not zero to rounding) by
    decreasing ``sign * evals`` (at most k), topped up to k by the largest ``|evals|``
    among the rest. The others follow by decreasing ``|evals|``.
    """
    by_modulus = np.argsort(-np.abs(evals), kind="stable")
    if sign is None:
        return by_modulus
    right = np.argsort(-sign * evals, kind="stable")
    floor = RANK_RTOL * float(np.max(np.abs(evals), initial=0.0))
    first = right[sign * evals[right] > floor][:k]
    if first.size < k:
        first = np.concatenate([first, by_modulus[~np.isin(by_modulus, first)][: k - first.size]])
    return np.concatenate([first, by_modulus[~np.isin(by_modulus, first)]])


def top_eigenpairs(A: np.ndarray, k: int, sign: float | None = None, n_extra: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` leading eigenpairs of a symmetric matrix, by ``|eigenvalue|`` or by sign.

    Parameters
    ----------
    A : ndarray of shape (m, m)
        Symmetrised as ``(A + A^T) / 2`` before the eigendecomposition.
    k : int
        Number of eigenpairs (``k <= m``).
    sign : {None, 1, -1}
        None: the ``k`` of largest ``|eigenvalue|``; +1 (-1): the ``k`` largest (smallest)
        signed eigenvalues.
    n_extra : int
        Further eigenpairs after the ``k``, by decreasing ``|eigenvalue|`` among the rest.

    Returns
    -------
    eigvals : ndarray of shape (min(k + n_extra, m),)
        Signed eigenvalues in that order (ties keep ``eigh``'s order).
    eigvecs : ndarray of shape (m, min(k + n_extra, m))
        The orthonormal eigenvectors, one per column, each with its entry of largest
        modulus positive.
    """
    evals, evecs = np.linalg.eigh(0.5 * (A + A.T))
    order = _order(evals, k, sign)[: k + n_extra]
    return evals[order], _canonical_signs(evecs[:, order])


@dataclass(frozen=True)
class Whitening:
    """The whitening of ``T2`` from ``k`` of its eigenpairs (see :func:`whiten`).

    Attributes
    ----------
    W : ndarray of shape (d, k)
        The whitening matrix ``U |D|^{-1/2}``: ``W^T T2 W = sign(D)``.
    eigvals : ndarray of shape (k,)
        The signed eigenvalues ``D``: by decreasing ``sign * D`` when a ``sign`` was given,
        by decreasing ``|D|`` otherwise. Keep the signs: un-whitening is
        ``a_i ∝ U |D|^{1/2} v_i`` for a component ``v_i`` of the whitened tensor.
    eigvecs : ndarray of shape (d, k)
        The orthonormal eigenvectors ``U`` (each with its entry of largest modulus > 0).
    leading_eigvals : ndarray of shape (k + n_extra,)
        ``eigvals`` followed by the ``n_extra`` largest ``|eigenvalues|`` among the others
        (at most ``d`` in all); the eigen-gap reads the first of them.
    sign : float
        The expected sign of the signal eigenvalues (+1 or -1), 0 when none was given.
    noise_level : float
        Eigenvalues of modulus up to this are indistinguishable from sampling noise
        (0: not estimated, see :func:`t2_noise_level`).
    """

    W: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray
    leading_eigvals: np.ndarray
    sign: float = 0.0
    noise_level: float = 0.0

    @property
    def k(self) -> int:
        """Number of components kept."""
        return int(self.eigvals.shape[0])

    @property
    def eigengap(self) -> float:
        """``|lambda_k| / |lambda_{k+1}|``: the k-th kept eigenvalue against the largest
        ``|eigenvalue|`` left out; inf when no (k+1)-th eigenvalue was computed.

        Large means the span of the experts is well separated from the noise.
        """
        ev = self.leading_eigvals
        if ev.size <= self.k:
            return float("inf")
        return float(abs(ev[self.k - 1]) / max(abs(ev[self.k]), 1e-300))

    @property
    def n_signal(self) -> int:
        """Kept eigenvalues that clear the noise: ``sign * eigenvalue > noise_level``
        (``|eigenvalue| > noise_level`` without a sign)."""
        key = np.abs(self.eigvals) if self.sign == 0 else self.sign * self.eigvals
        return int(np.count_nonzero(key > self.noise_level))

    @property
    def below_sample_complexity(self) -> bool:
        """Fewer than ``k`` kept eigenvalues clear the noise (:attr:`n_signal` < k)."""
        return self.n_signal < self.k

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
    sign: float | None = None,
    noise_level: float = 0.0,
) -> Whitening:
    """Whiten ``T2`` with ``k`` of its eigenpairs, checking the rank.

    The ``k`` kept are those of largest ``sign * eigenvalue`` when ``sign`` is given (the
    sign the population T2's eigenvalues have, e.g. that of the label transform's c2),
    else those of largest ``|eigenvalue|``. When fewer than ``k`` eigenvalues have the
    sign, the rest are the largest ``|eigenvalue|`` of the other sign (the result's
    :attr:`Whitening.n_signal` then says so).

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
        Rank check: the k-th kept ``|eigenvalue|`` must exceed ``rtol * max|eigenvalue|``.
    sign : {None, 1, -1}
        Expected sign of the signal eigenvalues (None: rank by ``|eigenvalue|``).
    noise_level : float
        Stored in the result for :attr:`Whitening.n_signal` (e.g. :func:`t2_noise_level`).

    Returns
    -------
    Whitening

    Raises
    ------
    ValueError
        Bad ``k``, ``n_extra``, ``method``, ``sign`` or ``noise_level``, non-square or
        non-finite ``T2``, or ``T2`` of rank < k.
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
    if sign is not None:
        if sign not in (1, -1):
            raise ValueError(f"sign must be None, 1 or -1; got {sign!r}")
        sign = float(sign)
    noise_level = float(noise_level)
    if not (np.isfinite(noise_level) and noise_level >= 0):
        raise ValueError(f"noise_level must be a finite number >= 0; got {noise_level!r}")

    if method == "eigh":
        evals, evecs = top_eigenpairs(T2.to_dense() if is_op else T2, k, sign, m - k)
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
        evals, S = top_eigenpairs(Q.T @ matmat(Q), k, sign, m - k)
        evecs = _canonical_signs(Q @ S)
    top = np.max(np.abs(evals))
    if not np.isfinite(top) or top == 0.0 or np.min(np.abs(evals[:k])) <= rtol * top:
        raise ValueError(
            f"T2 has fewer than k = {k} eigenvalues distinguishable from 0 (|eigenvalues| "
            f"{np.abs(evals[:k])}); the experts are not identifiable from T2 (need rank >= k: "
            "more samples, or a smaller k)"
        )
    U = evecs[:, :k]
    D = evals[:k]
    return Whitening(W=U / np.sqrt(np.abs(D))[None, :], eigvals=D, eigvecs=U,
                     leading_eigvals=evals, sign=0.0 if sign is None else sign,
                     noise_level=noise_level)
