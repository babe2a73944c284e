"""The tensor step on a Dask array: per-chunk partial sums on the workers, reduced here.

The moments of :mod:`moebench.tensor.moments` are means over rows, so each block of
rows of a Dask array ``X`` (n, d) contributes a partial sum: a task runs the in-memory
kernel (:func:`~moebench.tensor.moments.second_moment`,
:func:`~moebench.tensor.moments.whitened_third_moment`,
:meth:`~moebench.tensor.moments.SecondMomentOperator.matmat`) on its block and returns
``rows * mean``; the client adds the blocks' sums in block order and divides by ``n``.
Only d×d (T2), d×m (operator products) or k×k×k (whitened T3) arrays travel back, so
the rows never leave the workers. The result equals the in-memory one up to rounding
(about 1e-15 relative).

:func:`tensor_step` runs the paper's tensor step (steps 1-3 of
:class:`moebench.tensor.estimator.TensorEM`) on Dask arrays ``X``, ``y`` with the same
random stream as ``TensorEM(random_state=...)``, so the experts equal those of the
in-memory fit. Passes over the data: one for the label and input statistics (mean y²
for sigma, the rms of X), one for T2 (``2 + n_iter`` with the randomized whitening), one
for the whitened T3.

``dask`` is an optional dependency (``pip install 'moebench[dask]'``); the computations
run on whatever scheduler is active: the ``dask.distributed.Client`` made last, or
dask's local threads without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from moebench.activations import Activation, get_activation
from moebench.base import MoEEstimator
from moebench.degenerate import constant_labels_error, identical_rows_error
from moebench.generator import as_seed_sequence
from moebench.tensor import moments
from moebench.tensor.decomposition import DECOMPOSITIONS, TensorDecomposition, recover_experts
from moebench.tensor.label_transforms import (
    TransformCoefficients,
    apply_transforms,
    sigma_from_mean_square,
    transform_coefficients,
)
from moebench.tensor.moments import DTYPES, min_samples
from moebench.tensor.whitening import (
    WHITENINGS,
    Whitening,
    noise_level_from_mean_square,
    whiten,
    whitening_method,
)
from moebench.validation import check_choice, check_n_experts, check_positive_int, input_scale


def _dask() -> Any:
    try:
        import dask
        import dask.array as da
    except ImportError:  # pragma: no cover - the extra is installed in the dev environment
        raise ImportError("moebench.tensor.distributed needs dask: pip install "
                          "'moebench[dask]'") from None
    return dask, da


# --------------------------------------------------------------------------- blocks
def _row_blocks(X: Any, **weights: Any) -> tuple[list[Any], list[list[Any]], int, int]:
    """Delayed row blocks of ``X`` (every column in one block) and of each 1-d array of
    ``weights`` (by name) aligned to them; returns (X blocks, their blocks, n, d)."""
    _, da = _dask()
    if not isinstance(X, da.Array):
        raise ValueError(f"X must be a dask.array.Array of shape (n, d); got "
                         f"{type(X).__name__} (use moebench.tensor.moments for in-memory "
                         f"arrays)")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional with shape (n_samples, n_features); got "
                         f"shape {X.shape}")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has unknown chunk sizes (nan); call X.compute_chunk_sizes() first")
    n, d = (int(s) for s in X.shape)
    if n == 0 or d == 0:
        raise ValueError(f"X is empty (shape {X.shape}); at least one sample is needed")
    for name, w in weights.items():  # before any rechunking, which would fail on its own
        shape = tuple(getattr(w, "shape", np.shape(w)))
        if len(shape) != 1 or (not np.isnan(shape[0]) and int(shape[0]) != n):
            raise ValueError(f"{name} must have shape (n,) = ({n},) like X's rows; got "
                             f"shape {shape}")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})  # a task needs whole rows
    # blocks of zero rows (ordinary after X[mask].compute_chunk_sizes()) add nothing
    keep = [i for i, rows in enumerate(X.chunks[0]) if rows > 0]
    blocks = [b for (b,) in X.to_delayed()]
    out = []
    for name, w in weights.items():
        if not isinstance(w, da.Array):
            w = da.from_array(np.asarray(w), chunks=(X.chunks[0],))
        if any(np.isnan(c) for c in w.chunks[0]):
            raise ValueError(f"{name} has unknown chunk sizes (nan); call "
                             f"{name}.compute_chunk_sizes() first")
        if w.shape[0] != n:
            raise ValueError(f"{name} must have shape (n,) = ({n},) like X's rows; got "
                             f"shape {w.shape}")
        if w.chunks[0] != X.chunks[0]:
            w = w.rechunk((X.chunks[0],))
        parts = list(w.to_delayed())
        out.append([parts[i] for i in keep])
    return [blocks[i] for i in keep], out, n, d


def _reduce(parts: list[Any]) -> Any:
    """Compute the blocks' partial sums (on the workers) and add them here, in block order."""
    dask, _ = _dask()
    values = dask.compute(*parts)
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


def _scaled(Xb: np.ndarray, x_scale: float | tuple[int, float]) -> np.ndarray:
    """The block in the tensor step's coordinates: divided by ``2**e`` (exact), then by
    ``s``, as ``TensorEM.fit`` divides X (``x_scale`` is ``(e, s)`` or a plain divisor)."""
    e, s = x_scale if isinstance(x_scale, tuple) else (0, float(x_scale))
    if e:
        Xb = np.ldexp(np.asarray(Xb, dtype=float), -e)
    return Xb if s == 1.0 else Xb / s


def _t2_sum(Xb: np.ndarray, s2b: np.ndarray, x_scale: Any, chunk_size: int | None,
            dtype: Any) -> np.ndarray:
    """Partial sum of T2 over one block: rows * (the block's T2)."""
    return Xb.shape[0] * moments.second_moment(_scaled(Xb, x_scale), s2b,
                                               chunk_size=chunk_size, dtype=dtype)


def _t3w_sum(Xb: np.ndarray, s3b: np.ndarray, W: np.ndarray, x_scale: Any,
             chunk_size: int | None, dtype: Any) -> np.ndarray:
    """Partial sum of T3(W, W, W) over one block."""
    return Xb.shape[0] * moments.whitened_third_moment(_scaled(Xb, x_scale), s3b, W,
                                                       chunk_size=chunk_size, dtype=dtype)


def _matmat_sum(Xb: np.ndarray, s2b: np.ndarray, Omega: np.ndarray, x_scale: Any,
                chunk_size: int | None, dtype: Any) -> np.ndarray:
    """Partial sum of T2 @ Omega over one block."""
    op = moments.SecondMomentOperator(_scaled(Xb, x_scale), s2b, chunk_size=chunk_size,
                                      dtype=dtype)
    return Xb.shape[0] * op.matmat(Omega)


def _sum_of_squares(w: np.ndarray) -> float:
    """sum w^2 of one block (for T2's noise level)."""
    w = np.asarray(w, dtype=float)
    return float(np.dot(w, w))


def _stats_sum(Xb: np.ndarray, yb: np.ndarray) -> np.ndarray:
    """[sum y^2, max |x|, sum (x / max|x|)^2, min y, max y, min of each column of X, max
    of each column] of one block (rms without overflow; the ranges tell degenerate data)."""
    yb = np.asarray(yb, dtype=float)
    Xb = np.asarray(Xb, dtype=float)
    if not (np.all(np.isfinite(yb)) and np.all(np.isfinite(Xb))):
        raise ValueError("X or y contains NaN or infinite values; only finite values are valid")
    top = float(np.max(np.abs(Xb))) if Xb.size else 0.0
    ssq = float(np.sum(np.square(Xb / top))) if top > 0 else 0.0
    return np.concatenate([[float(np.sum(yb * yb)), top, ssq, yb.min(), yb.max()],
                           Xb.min(axis=0), Xb.max(axis=0)])


# --------------------------------------------------------------------------- moments
def second_moment(X: Any, s2: Any, *, chunk_size: int | None = None,
                  dtype: Any = np.float64) -> np.ndarray:
    """``T2 = mean_n s2_n (x_n x_n^T - I)`` of a Dask array, reduced from per-block sums.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Rows in blocks of any size (columns are merged into one block per task).
    s2 : dask.array.Array or ndarray of shape (n,)
        Transformed labels ``S2(y)``; rechunked to X's row blocks.
    chunk_size, dtype
        Passed to :func:`moebench.tensor.moments.second_moment` inside each task.

    Returns
    -------
    ndarray of shape (d, d), float64, symmetric: the in-memory result up to rounding.
    """
    Xs, (s2s,), n, _ = _row_blocks(X, s2=s2)
    dask, _ = _dask()
    task = dask.delayed(_t2_sum, pure=True)
    return _reduce([task(b, w, 1.0, chunk_size, dtype) for b, w in zip(Xs, s2s, strict=True)]
                   ) / n


def whitened_third_moment(X: Any, s3: Any, W: Any, *, chunk_size: int | None = None,
                          dtype: Any = np.float64) -> np.ndarray:
    """``T3(W, W, W)`` of a Dask array in one pass, reduced from per-block sums.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
    s3 : dask.array.Array or ndarray of shape (n,)
        Transformed labels ``S3(y)``.
    W : ndarray of shape (d, k)
        Whitening matrix (sent to every task).
    chunk_size, dtype
        Passed to :func:`moebench.tensor.moments.whitened_third_moment` inside each task.

    Returns
    -------
    ndarray of shape (k, k, k), float64: the in-memory result up to rounding.
    """
    Xs, (s3s,), n, d = _row_blocks(X, s3=s3)
    W = moments._check_matrix(W, "W", d)
    dask, _ = _dask()
    task = dask.delayed(_t3w_sum, pure=True)
    return _reduce([task(b, w, W, 1.0, chunk_size, dtype)
                    for b, w in zip(Xs, s3s, strict=True)]) / n


class DaskSecondMomentOperator:
    """``T2`` of a Dask array as an implicit operator (for ``whiten(method="randomized")``).

    Each :meth:`matmat` is one pass: every task returns its block's ``T2 @ Omega``
    partial sum (:class:`moebench.tensor.moments.SecondMomentOperator`).

    Parameters
    ----------
    X, s2, chunk_size, dtype
        As for :func:`second_moment`.
    x_scale : float
        Rows are divided by it inside each task (1: as given).

    Attributes
    ----------
    shape : tuple of int
        ``(d, d)``.
    n_passes : int
        Passes over the data made so far.
    """

    def __init__(self, X: Any, s2: Any, *, chunk_size: int | None = None,
                 dtype: Any = np.float64, x_scale: float = 1.0) -> None:
        self._X, (self._s2,), self.n, d = _row_blocks(X, s2=s2)
        self.shape = (d, d)
        self.chunk_size = chunk_size
        self.dtype = moments._check_dtype(dtype)
        self.x_scale = float(x_scale)
        self.n_passes = 0

    def matmat(self, Omega: Any) -> np.ndarray:
        """Return ``T2 @ Omega`` (d, m) as float64."""
        Om = moments._check_matrix(Omega, "Omega", self.shape[0])
        dask, _ = _dask()
        task = dask.delayed(_matmat_sum, pure=True)
        out = _reduce([task(b, w, Om, self.x_scale, self.chunk_size, self.dtype)
                       for b, w in zip(self._X, self._s2, strict=True)]) / self.n
        self.n_passes += 1
        return out

    def __matmul__(self, Omega: Any) -> np.ndarray:
        return self.matmat(Omega)

    def to_dense(self) -> np.ndarray:
        """The d×d matrix (one pass of per-block T2 sums)."""
        dask, _ = _dask()
        task = dask.delayed(_t2_sum, pure=True)
        self.n_passes += 1
        return _reduce([task(b, w, self.x_scale, self.chunk_size, self.dtype)
                        for b, w in zip(self._X, self._s2, strict=True)]) / self.n


# --------------------------------------------------------------------------- tensor step
@dataclass(frozen=True)
class TensorStep:
    """What :func:`tensor_step` recovers.

    Attributes
    ----------
    experts : ndarray of shape (k, d)
        The experts in X's units (unit norm when X has unit rms).
    sigma : float
        The sigma used by the label transforms (given, or estimated from mean y²).
    coefficients : TransformCoefficients
    whitening : Whitening
        The whitening of T2 (W, eigenvalues of c2's sign, eigen-gap, noise level and
        ``below_sample_complexity``, as the estimator's fitted attributes).
    T2 : ndarray of shape (d, d) or None
        The second moment (None with the randomized whitening, which never forms it).
    T3w : ndarray of shape (k, k, k)
        The whitened third moment.
    decomposition : TensorDecomposition
        With its ``residual``, ``eigengap`` and ``ill_conditioned``.
    x_scale : float
        What X was divided by before the moments (1.0: X used as given; else
        ``2**e * s``, the power of two of ``fit`` times :func:`input_scale`'s divisor).
    """

    experts: np.ndarray
    sigma: float
    coefficients: TransformCoefficients
    whitening: Whitening
    T2: np.ndarray | None
    T3w: np.ndarray
    decomposition: TensorDecomposition
    x_scale: float


def tensor_step(X: Any, y: Any, k: int, activation: str | Activation = "linear",
                sigma: float | None = None, *, random_state: Any = None,
                decomposition: str = "power", n_starts: int = 30, n_power_iter: int = 50,
                whitening: str = "auto", chunk_size: int | None = None,
                dtype: str = "float64") -> TensorStep:
    """The tensor step of :class:`~moebench.tensor.estimator.TensorEM` on Dask arrays.

    Label transforms, T2 and its whitening, the whitened T3 and its decomposition,
    as ``TensorEM(n_experts=k, activation=activation, sigma=sigma,
    random_state=random_state, ...).fit(X, y)`` computes them, with every pass over
    the rows done by per-block tasks (see the module docstring). The experts equal
    the in-memory fit's (its ``experts_`` with ``gating_em_iter=0``) up to rounding.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Inputs, ideally x ~ N(0, I). Inside the tasks X is divided by the power of two
        nearest its rms and then, unless its rms is 1 up to sampling noise, by the rest
        of it (:func:`~moebench.validation.input_scale`), as the estimator does.
        Blocks of zero rows are skipped.
    y : dask.array.Array or ndarray of shape (n,)
        Labels (rechunked to X's row blocks).
    k : int
        Number of experts, 2 <= k <= d.
    activation : str or Activation
        Expert activation (its c2 and c3 must not vanish).
    sigma : float or None
        Noise level; None estimates it from mean(y²) (one pass over y).
    random_state : int, SeedSequence or None
        Seeds the randomized whitening and the decomposition's random starts.
    decomposition : {"power", "jennrich"}
    n_starts, n_power_iter : int
        Random starts and iterations of the robust tensor power method.
    whitening : {"auto", "eigh", "randomized"}
        "auto": eigh up to d = 1000, the randomized range finder (implicit T2
        products, the d×d matrix never formed) above.
    chunk_size : int or None
        Rows per chunk inside each task (None: automatic).
    dtype : {"float64", "float32"}
        Compute dtype of the moment kernels (sums in float64).

    Returns
    -------
    TensorStep

    Raises
    ------
    ValueError
        X is not a 2-d Dask array; y's length differs from X's rows; k > d; fewer than
        ``min_samples(d, k)`` rows; non-finite X or y; an unknown option (the message
        lists the valid choices); T2 of rank < k. Constant y or identical rows of X
        raise :class:`~moebench.degenerate.DegenerateFitError` (a ValueError) with the
        estimators' message (:func:`~moebench.degenerate.check_degenerate_data`).
    ImportError
        dask is not installed.
    """
    dask, _ = _dask()
    check_choice(decomposition, "decomposition", DECOMPOSITIONS)
    check_choice(whitening, "whitening", WHITENINGS)
    check_choice(dtype, "dtype", tuple(DTYPES))
    n_starts = check_positive_int(n_starts, "n_starts")
    n_power_iter = check_positive_int(n_power_iter, "n_power_iter")
    Xs, (ys,), n, d = _row_blocks(X, y=y)
    # TensorEM's own checks of k (2 <= k <= d), the activation and sigma, without its options
    k, act = check_n_experts(k, d, require_k_le_d=True), get_activation(activation)
    if n < min_samples(d, k):
        raise ValueError(f"tensor_step needs at least max(10 d, 10 k^3) = {min_samples(d, k)} "
                         f"rows (d = {d}, k = {k}); got n = {n}")
    MoEEstimator.check_params({"sigma": sigma})  # the estimators' own check: True is not 1
    sigma = None if sigma is None else float(sigma)
    dt = DTYPES[dtype]

    # pass 1: mean y^2 (sigma) and the rms of X (the moments assume E[x x^T] = I)
    stats = dask.compute(*[dask.delayed(_stats_sum, pure=True)(b, w)
                           for b, w in zip(Xs, ys, strict=True)])
    stats = np.array(stats)
    # the estimators' rule for degenerate data (check_degenerate_data), from the ranges
    if stats[:, 3].min() == stats[:, 4].max():
        raise constant_labels_error("tensor_step", n, float(stats[0, 3]))
    if np.array_equal(stats[:, 5:5 + d].min(axis=0), stats[:, 5 + d:].max(axis=0)):
        raise identical_rows_error("tensor_step", n)
    top = float(stats[:, 1].max())
    ssq = float(np.sum(stats[:, 2] * (stats[:, 1] / top) ** 2)) if top > 0 else 0.0
    x_rms = top * float(np.sqrt(ssq / (n * d))) if top > 0 else 0.0
    if x_rms == 0.0:
        raise ValueError("X is all zeros; the moments need inputs with E[x x^T] = I")
    # TensorEM.fit's coordinates: X / 2**e (MoEEstimator.fit, exact), then / s (input_scale)
    e = int(np.round(np.log2(x_rms)))
    s = input_scale(float(np.ldexp(x_rms, -e)), n * d)
    x_scale = (e, s)
    sigma0 = (sigma_from_mean_square(float(stats[:, 0].sum()) / n, act) if sigma is None
              else float(sigma))
    coef = transform_coefficients(act, sigma0)
    transformed = [dask.delayed(apply_transforms, pure=True, nout=2)(w, coef) for w in ys]
    s2s = [s2 for s2, _ in transformed]
    s3s = [s3 for _, s3 in transformed]

    # pass 2: T2 (dense, or implicit products for the randomized whitening)
    rng = np.random.default_rng(as_seed_sequence(random_state))
    method = whitening_method(whitening, d)
    T2 = None
    if method == "eigh":
        T2 = _reduce([dask.delayed(_t2_sum, pure=True)(b, w, x_scale, chunk_size, dt)
                      for b, w in zip(Xs, s2s, strict=True)]) / n
        if not np.all(np.isfinite(T2)):
            raise moments._nonfinite("second_moment")
        target: Any = T2
    else:
        target = _DelayedOperator(Xs, s2s, n, d, x_scale, chunk_size, dt)
    # the k kept eigenvalues have c2's sign; their noise level needs mean(s2^2) (y only)
    s2_ssq = float(_reduce([dask.delayed(_sum_of_squares, pure=True)(w) for w in s2s]))
    wh = whiten(target, k, method, n_extra=1, random_state=int(rng.integers(2**31)),
                sign=float(np.sign(coef.c2)),
                noise_level=noise_level_from_mean_square(s2_ssq / n, n, d))

    # pass 3: the whitened third moment, then the decomposition (on the client)
    T3w = _reduce([dask.delayed(_t3w_sum, pure=True)(b, w, wh.W, x_scale, chunk_size, dt)
                   for b, w in zip(Xs, s3s, strict=True)]) / n
    experts, dec = recover_experts(T3w, wh, coef.c3, decomposition, rng, n_starts=n_starts,
                                   n_iter=n_power_iter)
    if s != 1.0:  # back to X's units, in the estimator's order
        experts = experts / s
    if e:
        experts = np.ldexp(experts, -e)
    return TensorStep(experts, sigma0, coef, wh, T2, T3w, dec, float(np.ldexp(s, e)))


class _DelayedOperator(DaskSecondMomentOperator):
    """A :class:`DaskSecondMomentOperator` over already delayed blocks (s2 from y)."""

    def __init__(self, Xs: list[Any], s2s: list[Any], n: int, d: int, x_scale: float,
                 chunk_size: int | None, dtype: Any) -> None:
        self._X, self._s2, self.n, self.shape = Xs, s2s, n, (d, d)
        self.chunk_size, self.dtype, self.x_scale = chunk_size, np.dtype(dtype), x_scale
        self.n_passes = 0
