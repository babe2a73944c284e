"""Row-block access to data that stays on disk (out-of-core fits).

A fit on a memory-mapped ``X`` (``numpy.memmap``, e.g. ``np.load(path, mmap_mode="r")``
of the ``X.npy`` written by ``moebench generate``) must not hold anything of the size of
``X`` nor (n, k) arrays in memory. Every sum over rows of the EM steps (the E-step's
log-likelihood, the gating and expert M-steps' objectives, gradients and normal
equations, the sigma update, the quasi-Newton gating EM's objective and gradient) goes
through :func:`row_blocks`: for an in-memory array it is one block holding every row, so
the in-memory computation is the same floating-point operations as before; for a memmap it
is consecutive row blocks of about :data:`BLOCK_BYTES` each, and the partial sums are
accumulated in float64. Per-row quantities that a step needs again (the E-step's
responsibilities, inside the M-steps) are not stored: :class:`LazyRows` recomputes them
per block from the parameters they were computed at.

Memory of a blocked pass: a few (block, max(d, k)) float64 arrays, about
:data:`BLOCK_BYTES` each, whatever n. The pages of the memmap itself are file-backed
(page cache), not anonymous memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

#: bytes of one row block of X (float64) in a blocked pass over a memmap
BLOCK_BYTES = 32 << 20
#: fewest rows of a block (whatever d)
MIN_BLOCK_ROWS = 1024
_PASSES = [0]


def passes() -> int:
    """Passes over an on-disk X started so far in this process (:func:`count_pass` calls).

    The count of reads of the data that the sweep's ``passes_over_x`` column and the
    ``passes`` of a fit's history records take differences of. Counted: every blocked
    pass (:func:`row_blocks`: the EM steps, the quasi-Newton objective, sgd's full-data
    log-likelihood), the finite check (:func:`count_nonfinite`), each moment pass of the
    tensor step (:mod:`moebench.tensor.moments`) and each sgd epoch (its minibatches
    together read every row once). Not counted: whole-array reductions made by numpy or
    BLAS on the memmap itself (the scale checks ``np.any(X)`` and ``rms(X)``).
    """
    return _PASSES[0]


def count_pass(X: Any) -> None:
    """Count one pass over ``X`` when it is on disk (a 2-D ``numpy.memmap``; see :func:`passes`).

    Parameters
    ----------
    X : array-like
        The array the pass reads; in-memory arrays and 1-D memmaps (``y``) are not counted.
    """
    if is_out_of_core(X) and X.ndim == 2:
        _PASSES[0] += 1


def is_out_of_core(X: Any) -> bool:
    """Whether ``X`` is visited in row blocks: a ``numpy.memmap`` (data on disk).

    Parameters
    ----------
    X : array-like

    Returns
    -------
    bool
    """
    return isinstance(X, np.memmap)


def block_rows(width: int) -> int:
    """Rows of one block of a blocked pass: about :data:`BLOCK_BYTES` of ``width`` floats.

    Parameters
    ----------
    width : int
        Values per row of the widest per-row array of the pass (``max(d, k)``).

    Returns
    -------
    int
    """
    return int(max(MIN_BLOCK_ROWS, BLOCK_BYTES // (8 * max(1, int(width)))))


def slices(n: int, rows: int) -> list[slice]:
    """Consecutive slices of ``rows`` rows (the last one shorter) covering ``range(n)``.

    Parameters
    ----------
    n, rows : int

    Returns
    -------
    list of slice
    """
    return [slice(i, min(n, i + rows)) for i in range(0, n, rows)]


def row_blocks(X: Any, width: int | None = None) -> list[slice]:
    """The row blocks of a pass over ``X``: ``[slice(0, n)]`` unless ``X`` is on disk.

    Parameters
    ----------
    X : ndarray, memmap or torch tensor of shape (n, d)
    width : int, optional
        Widest per-row array of the pass (default ``d``).

    Returns
    -------
    list of slice
        Consecutive, covering ``range(n)``. For a memmap each call counts as one pass
        (:func:`count_pass`).
    """
    n = X.shape[0]
    if not is_out_of_core(X):
        return [slice(0, n)]
    count_pass(X)
    return slices(n, block_rows(X.shape[1] if width is None else width))


def _rows(a: Any, sl: slice) -> Any:
    """Rows ``sl`` of ``a``: a plain ndarray view for a memmap (no copy; a block is never
    itself out of core), the computed block for :class:`LazyRows`, None for None."""
    if a is None:
        return None
    b = a[sl]
    return b.view(np.ndarray) if isinstance(b, np.memmap) else b


class LazyRows:
    """An (n, m) per-row array that is recomputed per row block instead of stored.

    ``LazyRows(fn, X, *arrays)[sl]`` is ``fn(X[sl], *(a[sl] for a in arrays))``; the E-step's
    responsibilities of an out-of-core fit are one (``fn`` computes them from the
    parameters of that E-step), so an M-step sees, block by block, the responsibilities it
    would read from the stored (n, k) array.

    Parameters
    ----------
    fn : callable
        ``fn(X_block, *array_blocks)`` -> ndarray (rows, m).
    X : array of n rows
    arrays : arrays of n rows, LazyRows or None (positional, any number)
    columns : int
        ``m`` (``shape`` is ``(n, m)``).
    """

    def __init__(self, fn: Callable[..., Any], X: Any, *arrays: Any, columns: int) -> None:
        self.fn, self.X, self.arrays = fn, X, arrays
        self.shape = (X.shape[0], int(columns))

    def __getitem__(self, sl: slice) -> Any:
        if not isinstance(sl, slice):
            raise TypeError(f"LazyRows is indexed by a row slice; got {type(sl).__name__}")
        return self.fn(_rows(self.X, sl), *(_rows(a, sl) for a in self.arrays))


def blocks(X: Any, *arrays: Any, width: int | None = None) -> Iterator[tuple[Any, ...]]:
    """``(X[sl], *(a[sl] for a in arrays))`` for each row block ``sl`` of :func:`row_blocks`.

    Memmap blocks come as plain ndarray views (no copy), :class:`LazyRows` entries are
    computed for the block, ``None`` entries stay ``None``.

    Parameters
    ----------
    X : array of n rows
    arrays : arrays of n rows, LazyRows or None (positional, any number)
    width : int, optional
        As in :func:`row_blocks`.

    Yields
    ------
    tuple
        ``(X_block, *array_blocks)``.
    """
    for sl in row_blocks(X, width):
        yield (_rows(X, sl),) + tuple(_rows(a, sl) for a in arrays)


def _axpy(total: Any, value: Any, w: float) -> Any:
    """``total + w * value`` over floats, arrays and tuples of them (``total`` None: start)."""
    if isinstance(value, tuple):
        if total is None:
            total = (None,) * len(value)
        return tuple(_axpy(t, v, w) for t, v in zip(total, value))
    return w * value if total is None else total + w * value


def blocked_sum(fn: Callable[..., Any], X: Any, *arrays: Any, width: int | None = None
                ) -> Any:
    """A sum over rows, computed block by block when ``X`` is on disk.

    ``fn(X, *arrays)`` returns a sum over the rows it is given (a float, an array or a tuple
    of them); its value on all rows is the sum of its block values. In memory
    ``fn(X, *arrays)`` is returned as it is. Parameters and return value as in
    :func:`blocked_mean`.
    """
    return _blocked(fn, X, arrays, width, mean=False)


def blocked_mean(fn: Callable[..., Any], X: Any, *arrays: Any, width: int | None = None
                 ) -> Any:
    """A mean over rows, computed block by block when ``X`` is on disk.

    ``fn(X, *arrays)`` must return a mean over the rows it is given (a float, an array or a
    tuple of them), or anything affine in such means (e.g. ``mean - ridge * theta``): then
    the weighted mean of its block values, ``sum_b (n_b / n) fn(X_b, ...)``, is its value on
    all rows. In memory ``fn(X, *arrays)`` is returned as it is (the same floating-point
    operations, bit for bit).

    Parameters
    ----------
    fn : callable
    X : array of n rows
    arrays : arrays of n rows, LazyRows or None (positional, any number)
    width : int, optional
        As in :func:`row_blocks`.

    Returns
    -------
    float, ndarray or tuple
    """
    return _blocked(fn, X, arrays, width, mean=True)


def _blocked(fn: Callable[..., Any], X: Any, arrays: tuple, width: int | None, mean: bool
             ) -> Any:
    if not is_out_of_core(X):
        return fn(X, *arrays)
    n = X.shape[0]
    total = None
    for block in blocks(X, *arrays, width=width):
        total = _axpy(total, fn(*block), block[0].shape[0] / n if mean else 1.0)
    return total


def count_nonfinite(X: np.ndarray) -> tuple[int, slice | None]:
    """NaN and infinite values of ``X``, counted block by block without a full-size temporary.

    Parameters
    ----------
    X : ndarray or memmap

    Returns
    -------
    bad : int
        How many values are NaN or infinite.
    first : slice or None
        The first row block that holds one (None when ``bad == 0``).
    """
    count_pass(X)
    bad, first = 0, None
    for sl in slices(X.shape[0], block_rows(X.shape[1] if X.ndim == 2 else 1)):
        block = X[sl]
        ok = np.isfinite(block)
        nb = int(ok.size - np.count_nonzero(ok))
        if nb and first is None:
            first = sl
        bad += nb
    return bad, first
