"""Checks of array and scalar inputs shared by every estimator, generator and command.

Each failure raises ``ValueError`` with a message that names the problem and
what would be valid. The declared constraints of estimator options and config keys
are in :mod:`moebench.constraints`; the rules that refuse degenerate data and fits in
:mod:`moebench.degenerate`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg


def check_array(a: Any, name: str, ndim: int, dtype: type = np.float64) -> np.ndarray:
    """Return ``a`` as a finite array of ``ndim`` dimensions.

    A ``numpy.memmap`` of ``dtype`` is returned as it is (no copy: its data stay on disk)
    and checked for NaN/inf row block by row block (:mod:`moebench.chunked`); the error
    then also names the first row block holding one.

    Raises
    ------
    ValueError
        Wrong number of dimensions, an empty array, a non-numeric array, NaN/inf,
        complex values (never silently truncated to their real part) or a masked
        array (the mask is not honoured, so it is refused rather than ignored).
    """
    check_real_input(a, name)
    if isinstance(a, np.memmap) and a.dtype == np.dtype(dtype):
        arr = a  # data on disk: kept a memmap (no copy), visited in row blocks
    else:
        try:
            arr = np.asarray(a, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != ndim:
        shape = "(n_samples, n_features)" if ndim == 2 else "(n_samples,)"
        raise ValueError(
            f"{name} must be {ndim}-dimensional with shape {shape}; got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); at least one sample is needed")
    if isinstance(arr, np.memmap):  # block by block: no full-size temporary
        from moebench.chunked import count_nonfinite

        bad, first = count_nonfinite(arr)
        if bad:
            raise ValueError(
                f"{name} contains {bad} NaN or infinite value(s); only finite values are "
                f"valid (the first in rows {first.start} to {first.stop - 1})"
            )
    elif not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s); only finite values are valid"
        )
    return arr


def check_X_y(X: Any, y: Any, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Validate a design matrix and label vector of the same length."""
    X = check_array(X, "X", 2, dtype)
    y = check_array(y, "y", 1, dtype)
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y have mismatched lengths: X has {X.shape[0]} rows, y has {y.shape[0]} values"
        )
    return X, y


def check_n_experts(k: Any, d: int | None = None, *, require_k_le_d: bool = False) -> int:
    """Validate the number of experts.

    Parameters
    ----------
    k : int
        Number of experts; must be an integer >= 2.
    d : int, optional
        Input dimension, for methods that need ``k <= d``.
    require_k_le_d : bool
        Whether ``k <= d`` is required.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"n_experts must be an integer >= 2; got {k!r}")
    if k < 2:
        raise ValueError(f"n_experts must be >= 2 (a mixture needs at least two experts); got {k}")
    if require_k_le_d and d is not None and k > d:
        raise ValueError(
            f"n_experts = {k} exceeds the input dimension d = {d}; this method needs "
            f"n_experts <= d (linearly independent experts)"
        )
    return int(k)


def check_sigma(sigma: Any, allow_none: bool = True) -> float | None:
    """Validate a noise level: a positive finite float, or None (estimate it)."""
    if sigma is None:
        if allow_none:
            return None
        raise ValueError("sigma must be a positive float; got None")
    if isinstance(sigma, np.ndarray) and sigma.ndim == 0 and sigma.dtype.kind in "iuf":
        sigma = sigma.item()
    if isinstance(sigma, (bool, np.bool_)) or not isinstance(
            sigma, (int, float, np.integer, np.floating)):
        raise ValueError(f"sigma must be a positive real number or None (not a bool or a "
                         f"string); got {sigma!r} of type {type(sigma).__name__}")
    s = float(sigma)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"sigma must be a positive finite float or None; got {sigma!r}")
    return s


def check_choice(value: Any, name: str, choices: tuple | list) -> Any:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(
            f"unknown {name} {value!r}; valid choices are {', '.join(map(repr, choices))}"
        )
    return value


def check_model_input(X: Any, d: int, who: str) -> np.ndarray:
    """X as a checked (n, d) float array for a model ``who`` with ``d`` inputs."""
    X = check_array(X, "X", 2)
    if X.shape[1] != d:
        raise ValueError(f"X has {X.shape[1]} features, but {who} is expecting {d} features "
                         f"as input (d = {d})")
    return X


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Check an integer option ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_real_input(a: Any, name: str) -> None:
    """Refuse complex values and masked arrays before any conversion to float.

    ``np.asarray(complex_array, dtype=float)`` keeps only the real part (with a
    warning) and a masked array's mask is dropped by ``np.asarray``: both would fit
    something other than what the user passed.

    Raises
    ------
    ValueError
        ``a`` is a masked array, or holds complex numbers.
    """
    if isinstance(a, np.ma.MaskedArray):
        raise ValueError(
            f"{name} is a masked array; masks are not honoured, so masked arrays are refused: "
            f"drop the masked rows (e.g. {name}[~{name}.mask.any(axis=-1)]) or fill them "
            f"({name}.filled(value)) and pass a plain ndarray"
        )
    dtypes = getattr(a, "dtypes", None)  # a pandas DataFrame (or Series: dtype)
    kinds: list[str] = []
    if dtypes is not None and hasattr(dtypes, "__iter__"):
        kinds = [getattr(t, "kind", "") for t in dtypes]
    elif hasattr(a, "dtype"):
        kinds = [getattr(a.dtype, "kind", "")]
    elif isinstance(a, (list, tuple, complex)):
        try:
            kinds = [np.asarray(a).dtype.kind]
        except (TypeError, ValueError):
            kinds = []
    if "c" in kinds:
        raise ValueError(
            f"{name} has complex values; only real numbers are valid (it is not truncated to "
            f"its real part: pass {name}.real or abs({name}) explicitly if that is meant)"
        )


def rms(a: np.ndarray) -> float:
    """Root mean square of a finite array, without overflow or underflow of the squares.

    BLAS ``nrm2`` (through :func:`scipy.linalg.norm`) scales as it sums, in one pass and
    without a temporary the size of ``a``: this runs on every ``fit``'s X.
    """
    a = np.asarray(a, dtype=float)
    if a.size == 0:
        return 0.0
    return float(scipy.linalg.norm(a.ravel(), check_finite=False)) / float(np.sqrt(a.size))


def power_of_two_scale(a: np.ndarray) -> int:
    """The exponent e with 2**e closest (in log) to rms(a); 0 for unit-scale data.

    Dividing by 2**e (``np.ldexp(a, -e)``) is exact in floating point, so data whose
    rms lies in [2**-0.5, 2**0.5) is left untouched bit for bit.
    """
    r = rms(a)
    if r == 0.0:
        return 0
    return int(np.round(np.log2(r)))


#: X (after the power-of-two rescale) whose rms is off 1 by more than this is always
#: divided by its rms by ``fit`` (:func:`input_scale`); the fit is mapped back to X's units
INPUT_RMS_TOL = 0.1
#: ... and X whose rms is off 1 by more than this many standard deviations of the rms of
#: n d standard normal values (1 / sqrt(2 n d)) too: only an X whose scale is 1 as far as
#: its own sampling noise can tell is used as given (see :func:`input_scale`)
INPUT_RMS_NOISE_SDS = 10.0


def input_scale(x_rms: float, n_values: int) -> float:
    """What ``fit`` divides X by after the power of two: its rms, or 1 when that is 1 up
    to noise.

    :meth:`moebench.MoEEstimator.fit` divides X by the power of two nearest its rms
    (exact), so ``x_rms`` lies in [2**-0.5, 2**0.5), then by this. An X whose rms is
    1 within its sampling noise (``|x_rms - 1| <=`` :data:`INPUT_RMS_NOISE_SDS` ``/
    sqrt(2 n_values)``, never more than :data:`INPUT_RMS_TOL`) is used as given, bit for
    bit (every committed result); any other is divided by its rms, so that every
    algorithm works in standardised coordinates (random starts, ridges, step sizes and
    tensor_em's moments, which assume E[x x^T] = I, defined there) and scaling X by
    c > 0 scales the experts by 1/c up to rounding. The band where X is used as given
    is the sampling noise of the rms itself (0.009 for n d = 6e5), so the fit is
    continuous up to noise at its edge; tensor_em's former fixed band of +-0.1 made a
    cliff (an X of rms 1.08 was used as given, its moments 17% off, one of rms 1.12 was
    standardised).

    Parameters
    ----------
    x_rms : float
        The rms of X (after the power-of-two rescale).
    n_values : int
        The number of entries of X, n d.

    Returns
    -------
    float
        The divisor (1.0: X as given).
    """
    if x_rms <= 0.0:
        return 1.0
    tol = min(INPUT_RMS_TOL, INPUT_RMS_NOISE_SDS / math.sqrt(2.0 * max(n_values, 1)))
    return 1.0 if abs(x_rms - 1.0) <= tol else float(x_rms)


def feature_names(X: Any) -> np.ndarray | None:
    """Column names of a DataFrame-like ``X`` when all are strings (scikit-learn's rule).

    Columns that are all non-strings (a frame's default 0, 1, ...) carry no names.

    Raises
    ------
    ValueError
        Some column names are strings and some are not (scikit-learn refuses them too):
        the columns could be neither matched by name nor trusted by position.
    """
    columns = getattr(X, "columns", None)
    if columns is None or getattr(X, "ndim", 2) != 2:
        return None
    names = [c for c in columns]
    strings = [isinstance(c, str) for c in names]
    if any(strings) and not all(strings):
        kinds = sorted({type(c).__name__ for c in names})
        raise ValueError(
            f"X has column names of mixed types ({', '.join(kinds)}): feature names are "
            f"supported only when every column name is a string; convert them all, e.g. "
            f"X.columns = X.columns.astype(str), or none (a plain array)")
    if not names or not all(strings):
        return None
    return np.asarray(names, dtype=object)


def check_feature_names(fitted: np.ndarray | None, X: Any) -> None:
    """Check that a DataFrame ``X`` has the columns seen at fit, in the same order.

    Nothing is checked when the fit saw no names or ``X`` carries none (a plain array
    is taken positionally). Columns are never reordered silently: a model's parameters
    are positional, so a reordered frame is refused, as scikit-learn does.

    Raises
    ------
    ValueError
        Naming the missing, unexpected or reordered columns.
    """
    names = feature_names(X)
    if fitted is None or names is None:
        return
    fitted_list, given = [str(c) for c in fitted], [str(c) for c in names]
    if fitted_list == given:
        return
    missing = [c for c in fitted_list if c not in given]
    extra = [c for c in given if c not in fitted_list]
    parts = []
    if missing:
        parts.append(f"missing column(s) {', '.join(map(repr, missing))}")
    if extra:
        parts.append(f"unexpected column(s) {', '.join(map(repr, extra))}")
    if not parts:
        parts.append(f"columns reordered: got {given}")
    raise ValueError(
        f"X has different feature names than at fit: {'; '.join(parts)}; expected the columns "
        f"{fitted_list} in this order (select them with X[{fitted_list}])"
    )
