"""Real data for sweeps: a CSV/TSV file, standardised, split into k folds.

The inputs are whitened and the target standardised with the training fold's
mean and covariance (so held-out scores are in standardised units), and a single
linear regression (a Gaussian linear model fitted by least squares, i.e. a
mixture with one linear expert) is the reference every mixture is compared with.
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moebench.generator import standardize

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class CSVTable:
    """A numeric table read from a CSV source."""

    path: str
    features: tuple[str, ...]
    target: str
    X: np.ndarray
    y: np.ndarray


def _resolve(path: str) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else Path.cwd() / p


@functools.lru_cache(maxsize=8)
def _read(path: str, sep: str) -> pd.DataFrame:
    if sep == "auto":
        return pd.read_csv(path, sep=None, engine="python")
    return pd.read_csv(path, sep=sep)


def load_csv_source(source: dict[str, Any]) -> CSVTable:
    """Read ``source`` = {csv, target, features (None: every other column), sep}.

    Relative paths are resolved against the current working directory.

    Raises
    ------
    FileNotFoundError, ValueError
        A missing file, an unknown column, non-numeric or missing values.
    """
    path = _resolve(source["csv"])
    if not path.is_file():
        raise FileNotFoundError(
            f"data.source.csv: no file {str(path)!r} (relative paths are read from the current "
            f"directory {os.getcwd()})")
    sep = source.get("sep", "auto")
    try:
        frame = _read(str(path), sep)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, csv.Error,
            UnicodeDecodeError) as exc:
        why = "it is empty" if path.stat().st_size == 0 else str(exc).strip().splitlines()[0]
        raise ValueError(f"data.source.csv: cannot read {str(path)!r} as a table with "
                         f"sep = {sep!r}: {why}") from None
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise ValueError(f"data.source.csv: {str(path)!r} has no data rows (columns: "
                         f"{', '.join(map(str, frame.columns)) or 'none'})")
    columns = [str(c) for c in frame.columns]
    target = source["target"]
    if target not in columns:
        raise ValueError(f"data.source.target: no column {target!r} in {path.name}; columns: "
                         f"{', '.join(columns)}")
    features = source.get("features") or [c for c in columns if c != target]
    bad = [f for f in features if f not in columns or f == target]
    if bad:
        raise ValueError(f"data.source.features: unknown column {bad[0]!r}; valid: "
                         f"{', '.join(c for c in columns if c != target)}")
    try:
        X = frame[features].to_numpy(dtype=float)
        y = frame[target].to_numpy(dtype=float)
    except ValueError as exc:
        raise ValueError(f"{path.name}: features and target must be numeric: {exc}") from None
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError(f"{path.name} has missing or non-finite values in the chosen columns")
    if len(y) < 10:
        raise ValueError(f"{path.name} has only {len(y)} rows; at least 10 are needed")
    return CSVTable(str(path), tuple(features), target, X, y)


def fold_split(n: int, folds: int, fold: int, seed: np.random.SeedSequence
               ) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices of fold ``fold`` of a shuffled ``folds``-fold split.

    Raises
    ------
    ValueError
        ``folds`` is not in [2, n] (every held-out fold needs a row) or ``fold`` is not
        in [0, folds).
    """
    if not 2 <= folds <= n:
        raise ValueError(f"data.folds = {folds} must be between 2 and the number of rows "
                         f"({n})")
    if not 0 <= fold < folds:
        raise ValueError(f"fold = {fold} must be in [0, {folds})")
    perm = np.random.default_rng(seed).permutation(n)
    test = np.sort(np.array_split(perm, folds)[fold])
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), test


def standardized_fold(table: CSVTable, train: np.ndarray, test: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Whiten X and standardise y with the training rows' statistics."""
    X_train, mean, cov = standardize(table.X[train])
    X_test, _, _ = standardize(table.X[test], mean, cov)
    mu, sd = float(np.mean(table.y[train])), float(np.std(table.y[train]))
    if sd <= 0:
        raise ValueError(f"the target {table.target!r} is constant on the training rows")
    return X_train, (table.y[train] - mu) / sd, X_test, (table.y[test] - mu) / sd


def linear_regression(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray
                      ) -> dict[str, float]:
    """Least-squares Gaussian linear model: train/held-out mean log-likelihood and MSE."""
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    var = float(np.mean(resid**2))
    sigma = float(np.sqrt(var))

    def loglik(res: np.ndarray) -> float:
        return float(np.mean(-0.5 * res**2 / var - np.log(sigma) - 0.5 * LOG_2PI))

    test_resid = y_test - X_test @ coef
    return {"train_log_likelihood": loglik(resid), "test_log_likelihood": loglik(test_resid),
            "test_mse": float(np.mean(test_resid**2)), "train_mse": var, "sigma_hat": sigma}
