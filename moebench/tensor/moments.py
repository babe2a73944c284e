"""Streaming score-function moments of a mixture of experts (the hot path).

With Gaussian inputs ``x ~ N(0, I_d)`` and label transforms ``s2 = S2(y)``,
``s3 = S3(y)`` (see :mod:`moebench.tensor.label_transforms`), the cross-moments are

* ``T2 = E[s2 (x x^T - I)]`` (d, d), and
* ``T3 = E[s3 (x⊗x⊗x - sym(x⊗I))]`` (d, d, d), where ``sym(x⊗I)_{abc} =
  x_a δ_bc + x_b δ_ac + x_c δ_ab``.

The d×d×d tensor is never built on the hot path: after whitening with ``W``
(d, k), :func:`whitened_third_moment` returns ``T3(W, W, W)`` in one streaming
pass of ``O(n d k + n k^3)`` work. Every kernel walks the rows of ``X`` in
chunks (``X`` may be a memmap), computes each chunk in ``dtype`` (float64 or
float32) and accumulates the chunk sums in float64. The array library is chosen
once, by ``backend`` (see :mod:`moebench.backend`); results are float64 numpy
arrays.

Passes over the data: the whitening needs ``T2`` before ``T3(W, W, W)`` can be
projected, so the moment step is two passes (``T2``, then the whitened ``T3``);
with :func:`moebench.tensor.whitening.whiten` (``method="randomized"``) on a
:class:`SecondMomentOperator`
the ``d×d`` matrix is never formed and the whole moment step stays ``O(n d k)``
per pass (``2 + n_iter`` passes for the whitening, one for ``T3``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from moebench import backend as _backend
from moebench.backend import Backend, fused_weighted_gram, get_backend
from moebench.chunked import count_pass
from moebench.validation import check_positive_int

#: Bytes of one chunk (in the compute dtype) when ``chunk_size`` is None: the chunk and
#: its packed Khatri-Rao block stay in a 2 MiB L2 cache.
CHUNK_BYTES = 2 << 20
#: second_moment: up to this fraction of negative weights is handled by subtraction.
NEG_SUBTRACT_FRACTION = 0.25
#: Largest default chunk (rows).
MAX_CHUNK_ROWS = 1 << 15
#: Largest ``d`` accepted by :func:`dense_third_moment`.
DENSE_MAX_D = 100

#: the ``dtype`` option of the tensor step: compute dtype of the moment kernels (the
#: accumulation is float64)
DTYPES = {"float64": np.float64, "float32": np.float32}
_DTYPES = tuple(DTYPES.values())

#: Largest k of the fused whitened-T3 kernel (12 lanes).
FUSED_MAX_K = 12


def min_samples(d: int, k: int) -> int:
    """Smallest n tensor_em accepts: max(10 d, 10 k^3).

    T2 has d(d+1)/2 entries and the whitened T3 has ~k^3/6 distinct ones; with fewer
    than ten samples per dimension (and per k^3 cell) the empirical moments are
    dominated by sampling noise and whitening is meaningless. This is a floor, not an
    accuracy guarantee: the expert error falls like ~n^{-1/2} (see the README table).
    """
    return int(max(10 * d, 10 * k**3))


# --------------------------------------------------------------------------- checks
def _check_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be numpy.float64 or numpy.float32; got {dt}")
    return dt


def _check_X(X: Any) -> np.ndarray:
    """Validate X without copying it (memmaps stay on disk)."""
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"X must be a numeric 2-d array: {exc}") from None
    if X.ndim != 2:
        raise ValueError(
            f"X must be 2-dimensional with shape (n_samples, n_features); got {X.shape}"
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X is empty (shape {X.shape}); at least one sample is needed")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise ValueError(f"X must have a real numeric dtype; got {X.dtype}")
    return X


def _as_float64(a: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None


def _check_finite(a: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values; only finite values are valid")
    return a


def _check_weights(s: Any, name: str, n: int) -> np.ndarray:
    s = _as_float64(s, name)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional with shape (n_samples,); got {s.shape}")
    if s.shape[0] != n:
        raise ValueError(
            f"X and {name} have mismatched lengths: X has {n} rows, {name} has {s.shape[0]} values"
        )
    return _check_finite(s, name)


def _check_matrix(A: Any, name: str, d: int) -> np.ndarray:
    A = _as_float64(A, name)
    if A.ndim == 1:
        A = A[:, None]
    if A.ndim != 2 or A.shape[0] != d or A.shape[1] == 0:
        raise ValueError(f"{name} must have shape (d, m) = ({d}, m) with m >= 1; got {A.shape}")
    return _check_finite(A, name)


def default_chunk_size(d: int, dtype: Any = np.float64, width: int = 0) -> int:
    """Rows per chunk: about :data:`CHUNK_BYTES` per row block of ``max(d, width)`` values.

    A multiple of 256 rows between 256 and :data:`MAX_CHUNK_ROWS`; ``width`` is the
    width of the widest per-row intermediate (the packed Khatri-Rao block).
    """
    itemsize = np.dtype(dtype).itemsize
    rows = CHUNK_BYTES // max(1, max(d, width) * itemsize)
    return int(min(MAX_CHUNK_ROWS, max(256, (rows // 256) * 256)))


def _chunk_bounds(n: int, d: int, chunk_size: int | None, dtype: np.dtype):
    if chunk_size is None:
        chunk_size = default_chunk_size(d, dtype)
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    for start in range(0, n, chunk_size):
        yield start, min(n, start + chunk_size)


def _nonfinite(name: str) -> ValueError:
    return ValueError(
        f"{name}: X contains NaN or infinite values (or the moments overflowed); "
        "only finite values are valid"
    )


def _sym_outer(v: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``sym(v⊗B)_{abc} = v_a B_bc + v_b B_ac + v_c B_ab`` for symmetric ``B``."""
    return (
        v[:, None, None] * B[None, :, :]
        + v[None, :, None] * B[:, None, :]
        + v[None, None, :] * B[:, :, None]
    )


def _triu_pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of row ``a`` in the packed upper triangle, and the (k, k) pair index."""
    offsets = np.zeros(k + 1, dtype=np.int64)
    for a in range(k):
        offsets[a + 1] = offsets[a] + (k - a)
    index = np.empty((k, k), dtype=np.int64)
    for a in range(k):
        for b in range(a, k):
            index[a, b] = index[b, a] = offsets[a] + (b - a)
    return offsets, index


def _fused_input(X: np.ndarray, be: Backend, dt: np.dtype) -> np.ndarray | None:
    """X for the fused kernels, or None: the BLAS path runs.

    They take a C-contiguous array or memmap on the numpy backend whose dtype is the
    compute dtype (float64; float32 for the whitened T3 only, X stored as float32).
    """
    if (_backend.FUSED_KERNELS and be.name == "numpy" and X.dtype == dt
            and X.flags.c_contiguous and X.shape[0] > 0):
        return X
    return None


@functools.cache
def _fused_triples(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Where entry (a, b, c) of the whitened T3 sits in the fused kernel's G: the row of
    the pair (i, j) and the lane l of its sorted triple i <= j <= l (pairs sorted by j)."""
    pair = {}
    for b in range(k):
        for a in range(b + 1):
            pair[(a, b)] = len(pair)
    triples = np.sort(np.indices((k, k, k)).reshape(3, -1).T, axis=1)
    rows = np.array([pair[(i, j)] for i, j, _ in triples]).reshape(k, k, k)
    return rows, triples[:, 2].reshape(k, k, k)


# --------------------------------------------------------------------------- T2
def second_moment(
    X: Any,
    s2: Any,
    *,
    chunk_size: int | None = None,
    backend: str | Backend = "numpy",
    dtype: Any = np.float64,
) -> np.ndarray:
    """Second cross-moment ``T2 = mean_n s2_n (x_n x_n^T - I)``.

    Parameters
    ----------
    X : ndarray or memmap of shape (n, d)
    s2 : ndarray of shape (n,)
        Transformed labels ``S2(y)``.
    chunk_size : int, optional
        Rows per chunk (default :func:`default_chunk_size`).
    backend : {"numpy", "torch"} or Backend
    dtype : numpy.float64 or numpy.float32
        Compute dtype of each chunk; chunk sums are accumulated in float64.

    Returns
    -------
    ndarray of shape (d, d), float64, symmetric.

    Notes
    -----
    One pass; per chunk the rows are scaled by ``sqrt(|s2|)`` into a cache-sized
    buffer ``Y`` and ``Y^T Y`` runs as a symmetric rank-m update (numpy dispatches
    ``Y.T @ Y`` to SYRK, half the flops of a general GEMM). Rows with ``s2 < 0`` are
    subtracted: twice ``Y_-^T Y_-`` when they are at most
    :data:`NEG_SUBTRACT_FRACTION` of the chunk, otherwise the chunk is gathered
    positive rows first and two SYRKs are taken. Memory: one chunk buffer.

    With :data:`~moebench.backend.FUSED_KERNELS` (float64, numpy backend,
    C-contiguous X) a fused kernel scales the rows while it packs them for its SYRK
    tiles, in one pass whatever the signs (``chunk_size`` is then unused).
    """
    X = _check_X(X)
    n, d = X.shape
    s2 = _check_weights(s2, "s2", n)
    dt = _check_dtype(dtype)
    be = get_backend(backend)
    rows = (check_positive_int(chunk_size, "chunk_size") if chunk_size is not None
            else default_chunk_size(d, dt))  # checked on the fused path too
    acc = np.zeros((d, d))
    buf = None
    count_pass(X)  # one pass over X (fused or chunked)
    fused = _fused_input(X, be, dt) if dt == np.float64 else None
    if fused is not None:
        acc = fused_weighted_gram(fused, s2)
    chunks = _chunk_bounds(n, d, rows, dt) if fused is None else ()  # the BLAS path
    for i, j in chunks:
        m = j - i
        if buf is None:
            buf = be.empty((min(rows, n), d), dt)
        Xc = be.asarray(X[i:j], dt)
        sc = s2[i:j]
        neg = np.flatnonzero(sc < 0)
        if neg.size <= NEG_SUBTRACT_FRACTION * m:
            # Y = sqrt|s| X_c in one contiguous pass; then remove the negative rows twice.
            Y = be.multiply(Xc, be.asarray(np.sqrt(np.abs(sc)), dt)[:, None], out=buf[:m])
            part = Y.T @ Y
            if neg.size:
                Yn = be.take_rows(Y, neg)
                part = part - 2.0 * (Yn.T @ Yn)
            acc += be.to_numpy(part)
        else:
            # many negative weights: gather positive rows first, negative rows last
            perm = np.argsort(sc < 0, kind="stable")
            Y = be.take_rows(Xc, perm, out=buf[:m])
            Y *= be.asarray(np.sqrt(np.abs(sc[perm])), dt)[:, None]
            P, N = Y[: m - neg.size], Y[m - neg.size :]
            acc += be.to_numpy(P.T @ P) - be.to_numpy(N.T @ N)
    T2 = acc / n
    T2[np.diag_indices(d)] -= s2.mean()
    T2 = 0.5 * (T2 + T2.T)
    if not np.all(np.isfinite(T2)):
        raise _nonfinite("second_moment")
    return T2


class SecondMomentOperator:
    """``T2`` as an implicit symmetric operator: products ``T2 @ Omega`` from the data.

    ``T2 @ Omega = mean_n s2_n x_n (x_n^T Omega) - mean(s2) Omega`` costs one
    streaming pass of ``O(n d m)`` for ``Omega`` of shape (d, m); the d×d matrix is
    never formed. Used by :func:`moebench.tensor.whitening.whiten` with
    ``method="randomized"``.

    Parameters
    ----------
    X, s2, chunk_size, backend, dtype
        As for :func:`second_moment`.

    Attributes
    ----------
    shape : tuple of int
        ``(d, d)``.
    n_passes : int
        Passes over the data made so far (one per :meth:`matmat`).
    """

    def __init__(
        self,
        X: Any,
        s2: Any,
        *,
        chunk_size: int | None = None,
        backend: str | Backend = "numpy",
        dtype: Any = np.float64,
    ) -> None:
        self.X = _check_X(X)
        self.s2 = _check_weights(s2, "s2", self.X.shape[0])
        self.chunk_size = chunk_size
        self.backend = get_backend(backend)
        self.dtype = _check_dtype(dtype)
        d = self.X.shape[1]
        self.shape = (d, d)
        self.n_passes = 0

    def matmat(self, Omega: Any) -> np.ndarray:
        """Return ``T2 @ Omega`` (d, m) as float64."""
        n, d = self.X.shape
        Om = _check_matrix(Omega, "Omega", d)
        be, dt = self.backend, self.dtype
        Ob = be.asarray(Om, dt)
        acc = np.zeros(Om.shape)
        count_pass(self.X)
        for i, j in _chunk_bounds(n, d, self.chunk_size, dt):
            Xc = be.asarray(self.X[i:j], dt)
            P = Xc @ Ob
            sc = be.asarray(self.s2[i:j], dt)
            acc += be.to_numpy(Xc.T @ (P * sc[:, None]))
        self.n_passes += 1
        out = acc / n - self.s2.mean() * Om
        if not np.all(np.isfinite(out)):
            raise _nonfinite("SecondMomentOperator.matmat")
        return out

    def __matmul__(self, Omega: Any) -> np.ndarray:
        return self.matmat(Omega)

    def to_dense(self) -> np.ndarray:
        """The d×d matrix (one SYRK pass, :func:`second_moment`)."""
        self.n_passes += 1
        return second_moment(
            self.X, self.s2, chunk_size=self.chunk_size, backend=self.backend, dtype=self.dtype
        )


# --------------------------------------------------------------------------- T3(W, W, W)
def whitened_third_moment(
    X: Any,
    s3: Any,
    W: Any,
    *,
    chunk_size: int | None = None,
    backend: str | Backend = "numpy",
    dtype: Any = np.float64,
) -> np.ndarray:
    """Whitened third moment ``T3(W, W, W)`` in one streaming pass.

    ``M = mean_n s3_n [u_n⊗u_n⊗u_n - sym(u_n⊗B)]`` with ``u_n = W^T x_n`` and
    ``B = W^T W``, which equals ``T3(W, W, W)`` for
    ``T3 = E[s3 (x⊗x⊗x - sym(x⊗I))]``.

    Parameters
    ----------
    X : ndarray or memmap of shape (n, d)
    s3 : ndarray of shape (n,)
        Transformed labels ``S3(y)``.
    W : ndarray of shape (d, k)
        Whitening matrix (e.g. ``whiten(T2, k).W``, :mod:`moebench.tensor.whitening`).
    chunk_size, backend, dtype
        As for :func:`second_moment`.

    Returns
    -------
    ndarray of shape (k, k, k), float64, fully symmetric.

    Notes
    -----
    Per chunk of m rows: one projection ``U^T = W^T X_c^T`` (k, m), the packed
    symmetric Khatri–Rao rows ``u_a u_b`` for ``a <= b`` (k(k+1)/2, m), and one GEMM
    with ``(s3 * U)`` giving the k(k+1)/2 × k distinct entries. The ``sym(u⊗B)``
    term only needs ``sum_n s3_n u_n``. Work ``O(n d k + n k^3)``, memory
    ``O(k^3 + m k^2)`` beyond the chunk; d×d×d is never built. With
    :data:`~moebench.backend.FUSED_KERNELS` and ``k <= FUSED_MAX_K`` (numpy
    backend, C-contiguous X of the compute dtype) one fused kernel does the projection 4
    rows at a time (6 in float32) and the packed cubic sums for the entries with
    ``c >= b`` only (``chunk_size`` is then unused); in float32 its sums over 1024-row
    blocks are float32.
    """
    X = _check_X(X)
    n, d = X.shape
    s3 = _check_weights(s3, "s3", n)
    W = _check_matrix(W, "W", d)
    k = W.shape[1]
    dt = _check_dtype(dtype)
    be = get_backend(backend)
    offsets, index = _triu_pairs(k)
    p = int(offsets[-1])
    rows = (check_positive_int(chunk_size, "chunk_size") if chunk_size is not None
            else default_chunk_size(d, dt, p + k))  # checked on the fused path too
    count_pass(X)  # one pass over X (fused or chunked)
    fused = _fused_input(X, be, dt) if k <= FUSED_MAX_K else None
    if fused is not None:  # one pass: projection and cubic sums in registers
        width = FUSED_MAX_K if dt == np.float64 else 16  # 3 or 2 registers of lanes
        lanes = np.zeros((d, width), dtype=dt)
        lanes[:, :k] = W
        G = np.zeros((-(-p // 4) * 4, width))
        v = np.zeros(width)
        weights = np.ascontiguousarray(s3)
        _backend._fused.wt3(fused.ctypes.data, weights.ctypes.data, n, d, k, lanes.ctypes.data,
                   G.ctypes.data, v.ctypes.data, int(dt == np.float32))  # float32 sums
        M, v = G[_fused_triples(k)], v[:k]
    else:
        Wt = be.asarray(W.T, dt)  # (k, d)
        G = np.zeros((p, k))
        v = np.zeros(k)
        buf = None
        for i, j in _chunk_bounds(n, d, rows, dt):
            m = j - i
            if buf is None or buf.shape[1] != m:
                buf = be.empty((p, m), dt)
            Xc = be.asarray(X[i:j], dt)
            Ut = Wt @ Xc.T  # (k, m): the projection
            for a in range(k):  # packed symmetric Khatri-Rao rows u_a * u_b, b >= a
                be.multiply(Ut[a : a + 1], Ut[a:], out=buf[offsets[a] : offsets[a + 1]])
            Us = Ut * be.asarray(s3[i:j], dt)[None, :]
            G += be.to_numpy(buf @ Us.T)  # the one GEMM: (p, m) @ (m, k)
            v += be.to_numpy(be.rowsum(Us))
        M = G[index]
    # NaN/inf in X reach M or v (NaN * 0 is NaN), so one check at the end suffices.
    if not (np.all(np.isfinite(M)) and np.all(np.isfinite(v))):
        raise _nonfinite("whitened_third_moment")
    return (M - _sym_outer(v, W.T @ W)) / n


# --------------------------------------------------------------------------- T3(I, v, v)
def third_moment_products(
    X: Any,
    s3: Any,
    V: Any,
    *,
    chunk_size: int | None = None,
    backend: str | Backend = "numpy",
    dtype: Any = np.float64,
) -> np.ndarray:
    """Implicit products ``T3(I, v, v)`` for each column ``v`` of ``V``, in ``O(n d m)``.

    ``T3(I, v, v) = mean_n s3_n [(x_n.v)^2 x_n - (v.v) x_n - 2 (x_n.v) v]``.

    Parameters
    ----------
    X : ndarray or memmap of shape (n, d)
    s3 : ndarray of shape (n,)
    V : ndarray of shape (d, m) or (d,)
        The vectors, one per column.
    chunk_size, backend, dtype
        As for :func:`second_moment`.

    Returns
    -------
    ndarray of shape (d, m), float64 (``(d, 1)`` for a single vector).
    """
    X = _check_X(X)
    n, d = X.shape
    s3 = _check_weights(s3, "s3", n)
    V = _check_matrix(V, "V", d)
    dt = _check_dtype(dtype)
    be = get_backend(backend)
    Vb = be.asarray(V, dt)
    R = np.zeros(V.shape)
    xs = np.zeros(d)
    pv = np.zeros(V.shape[1])
    count_pass(X)
    for i, j in _chunk_bounds(n, d, chunk_size, dt):
        Xc = be.asarray(X[i:j], dt)
        sc = be.asarray(s3[i:j], dt)
        P = Xc @ Vb  # (m, q)
        SP = P * sc[:, None]
        R += be.to_numpy(Xc.T @ (SP * P))
        xs += be.to_numpy(Xc.T @ sc)
        pv += be.to_numpy(be.colsum(SP))
    out = (R - np.outer(xs, np.sum(V * V, axis=0)) - 2.0 * V * pv[None, :]) / n
    if not np.all(np.isfinite(out)):
        raise _nonfinite("third_moment_products")
    return out


# --------------------------------------------------------------------------- dense reference
def dense_third_moment(X: Any, s3: Any, *, chunk_size: int | None = None) -> np.ndarray:
    """Dense reference ``T3 = mean_n s3_n (x⊗x⊗x - sym(x⊗I))`` of shape (d, d, d).

    ``O(n d^3)`` work and ``O(d^3)`` memory: for tests and benchmarks only.

    Raises
    ------
    ValueError
        ``d > DENSE_MAX_D`` (100), or bad input.
    """
    X = _check_X(X)
    n, d = X.shape
    if d > DENSE_MAX_D:
        raise ValueError(
            f"dense_third_moment builds a d^3 tensor and is limited to d <= {DENSE_MAX_D}; "
            f"got d = {d} (use whitened_third_moment or third_moment_products)"
        )
    s3 = _check_weights(s3, "s3", n)
    acc = np.zeros((d, d * d))
    mvec = np.zeros(d)
    rows = chunk_size or max(64, min(4096, (1 << 22) // (d * d * 8)))
    for i, j in _chunk_bounds(n, d, rows, np.dtype(np.float64)):
        Xc = np.asarray(X[i:j], dtype=np.float64)
        sc = s3[i:j]
        Xs = Xc * sc[:, None]
        KR = (Xc[:, :, None] * Xc[:, None, :]).reshape(j - i, d * d)
        acc += Xs.T @ KR
        mvec += Xs.sum(axis=0)
    T = acc.reshape(d, d, d) / n - _sym_outer(mvec / n, np.eye(d))
    if not np.all(np.isfinite(T)):
        raise _nonfinite("dense_third_moment")
    return T

