"""Input checks shared by every estimator, generator and command.

Each failure raises ``ValueError`` with a message that names the problem and
what would be valid.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def check_array(a: Any, name: str, ndim: int, dtype: type = np.float64) -> np.ndarray:
    """Return ``a`` as a finite array of ``ndim`` dimensions.

    Raises
    ------
    ValueError
        Wrong number of dimensions, an empty array, a non-numeric array, or NaN/inf.
    """
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
    if not np.all(np.isfinite(arr)):
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
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be a positive float or None; got {sigma!r}") from None
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


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Check an integer option ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_float(value: Any, name: str, strict: bool = False) -> float:
    """Check a finite real option: ``> 0`` when ``strict``, else ``>= 0``."""
    bound = "> 0" if strict else ">= 0"
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating, np.integer))
    if ok:
        value = float(value)
        ok = bool(np.isfinite(value)) and (value > 0 if strict else value >= 0)
    if not ok:
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")
    return value
