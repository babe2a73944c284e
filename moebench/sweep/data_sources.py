"""Where a sweep cell's rows come from: one small interface over synthetic data and CSV folds.

A data source (as benchopt's datasets) turns a cell into its arrays::

    data = data_source(cell.data).load(cell)   # CellData: X, y, X_test, y_test, truth

:class:`SyntheticSource`
    Rows drawn from a true mixture (``truth``) built from the cell's data setting.
:class:`CSVSource`
    A CSV/TSV file, split into k folds; the inputs are whitened and the target
    standardised with the training fold's mean and covariance (so held-out scores
    are in standardised units); there is no ``truth``.

Every seed derives from the cell (:meth:`moebench.sweep.config.Cell.data_seed`) and
none from the algorithm, so every variant of a repetition sees the same rows.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from moebench.generator import iter_moe_blocks, make_moe_model, standardize, truth_model
from moebench.model import MoEModel

if TYPE_CHECKING:
    from moebench.sweep.config import Cell


@dataclass(frozen=True)
class CellData:
    """The rows of one cell: training and held-out arrays, and the true model if known."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    #: the true parameters (synthetic data); None on real data
    truth: MoEModel | None = None


class DataSource(Protocol):
    """What the worker asks of a data source: the rows of a cell."""

    def load(self, cell: Cell) -> CellData:
        """Training and held-out rows of ``cell`` (and the truth, or None)."""
        ...


class SyntheticSource:
    """Rows drawn from a true mixture built from the cell's data setting.

    The true parameters depend on the setting without ``n``, ``n_test`` and
    ``input_distribution`` (so every sample size and input law of a repetition
    learns the same model), the training rows on ``n`` too, the held-out rows on
    ``n_test``; none depend on the algorithm.
    """

    def load(self, cell: Cell) -> CellData:
        """The true model, training rows and held-out rows of a synthetic cell."""
        s = cell.data
        # every fitted k sees the same data (k_fit and the input law are not in the seed)
        entropy = cell.data_seed("n", "n_test", "input_distribution", "input_interval",
                                 "k_fit").entropy
        if s.get("truth") is not None:
            model = truth_model(s["truth"], s["d"], s["k"], s["activation"])
        else:
            model = make_moe_model(s["d"], s["k"], s["activation"], s["sigma"], s["gating"],
                                   s["gating_scale"], s["min_angle"], s["expert_angle"],
                                   random_state=np.random.SeedSequence(entropy, spawn_key=(0,)),
                                   gating_angle=s["gating_angle"])
        dist = (s["input_distribution"], s.get("input_interval"))
        X, y = _rows(model, s["n"], np.random.SeedSequence(entropy, spawn_key=(1, s["n"])), dist)
        Xt, yt = _rows(model, s["n_test"],
                       np.random.SeedSequence(entropy, spawn_key=(2, s["n_test"])), dist)
        return CellData(X, y, Xt, yt, model)


class CSVSource:
    """Standardised train/held-out rows of one fold of a CSV file (``data.source``).

    The split depends on (base seed, source, number of folds, repetition) only, so
    every k and algorithm sees the same folds.
    """

    def load(self, cell: Cell) -> CellData:
        """The standardised training and held-out rows of the cell's fold; no truth."""
        s = cell.data
        table = load_csv_source(s["source"])
        seed = cell.data_seed("k", "activation", "fold")
        train, test = fold_split(len(table.y), s["folds"], s["fold"], seed)
        return CellData(*standardized_fold(table, train, test))


def data_source(data: dict[str, Any]) -> DataSource:
    """The data source of a cell's data setting: a CSV file when it names ``source``."""
    return CSVSource() if "source" in data else SyntheticSource()


def load_cell_data(cell: Cell) -> CellData:
    """The rows of ``cell`` from its data source."""
    return data_source(cell.data).load(cell)


def _rows(model: MoEModel, n: int, seed: np.random.SeedSequence,
          design: tuple[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    Xs, ys = [], []
    distribution, interval = design
    for X, y, _ in iter_moe_blocks(model, n, seed, input_distribution=distribution,
                                   input_interval=None if interval is None else tuple(interval)):
        Xs.append(X)
        ys.append(y)
    return np.concatenate(Xs), np.concatenate(ys)


@dataclass(frozen=True)
class CSVTable:
    """A numeric table read from a CSV source."""

    path: str
    features: tuple[str, ...]
    target: str
    X: np.ndarray
    y: np.ndarray


def file_digest(path: str | os.PathLike) -> str:
    """The first 16 hex digits of the SHA-256 of a file's bytes (a CSV source's identity)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


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
