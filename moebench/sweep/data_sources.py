"""Where a sweep cell's rows come from: one small interface over synthetic data and CSV folds.

A data source (as benchopt's datasets) turns a cell into its arrays::

    data = data_source(cell.data).load(cell)   # CellData: X, y, X_test, y_test, truth

:class:`SyntheticSource`
    Rows drawn from a true mixture (``truth``) built from the cell's data setting.
:class:`CSVSource`
    A CSV/TSV file, split into k folds; the inputs are whitened and the target
    standardised with the training fold's mean and covariance (so held-out scores
    are in standardised units); there is no ``truth``.
:class:`MemmapSource`
    The ``.npy`` memmaps of ``moebench generate --out DIR`` (data on disk, fitted out of
    core), identified by their generator parameters, not by their folder.

Every seed derives from the run (:meth:`moebench.sweep.config.Run.data_seed`) and
none from the algorithm, so every variant of a repetition sees the same rows.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from moebench.activations import get_activation
from moebench.generator import iter_moe_blocks, make_moe_model, standardize, truth_model
from moebench.model import MoEModel


class DataRequest(Protocol):
    """What a data source is asked for: one run's data setting and the seeds derived from
    it (a :class:`moebench.sweep.config.Run`; declared here so that the config, which
    reads CSV sources while it is checked, can import this module and not the reverse)."""

    data: dict[str, Any]

    def data_seed(self, *salt: str) -> np.random.SeedSequence:
        """The data's seed from the setting's values of ``salt``."""
        ...


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

    def load(self, cell: DataRequest) -> CellData:
        """Training and held-out rows of ``cell`` (and the truth, or None)."""
        ...


class SyntheticSource:
    """Rows drawn from a true mixture built from the cell's data setting.

    The true parameters depend on the setting without ``n``, ``n_test`` and
    ``input_distribution`` (so every sample size and input law of a repetition
    learns the same model), the training rows on ``n`` too, the held-out rows on
    ``n_test``; none depend on the algorithm.
    """

    def load(self, cell: DataRequest) -> CellData:
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

    def load(self, cell: DataRequest) -> CellData:
        """The standardised training and held-out rows of the cell's fold; no truth."""
        s = cell.data
        table = load_csv_source(s["source"])
        seed = cell.data_seed("k", "activation", "fold")
        train, test = fold_split(len(table.y), s["folds"], s["fold"], seed)
        return CellData(*standardized_fold(table, train, test))


class MemmapSource:
    """The ``X.npy`` / ``y.npy`` memmaps of ``moebench generate --out DIR`` (``data.memmap``).

    The training rows are loaded with ``mmap_mode="r"``: X stays on disk and the
    estimators take their out-of-core paths (:mod:`moebench.chunked`). The folder is
    where the data lie, not what they are: the cell's generator parameters (``n``, ``d``,
    ``k``, ``activation``, ``sigma``, ``gating``, ``gating_scale``, ``min_angle`` and
    ``generator_seed``, the ``--seed`` of ``generate``) identify the data set, and the
    folder's ``params.json`` must record the same ones. The true model is the one
    ``params.json`` records; ``n_test`` held-out rows are drawn from it in memory, seeded
    by the cell (every variant of a data set sees the same ones).
    """

    def load(self, cell: DataRequest) -> CellData:
        """The memmapped training rows, held-out rows drawn from the truth, the truth."""
        s = cell.data
        folder = _resolve(s["memmap"])
        missing = [name for name in MEMMAP_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"data.memmap: no {', '.join(missing)} in {str(folder)!r}; make this data set "
                f"with `{generate_command(s)}`")
        meta = json.loads((folder / "params.json").read_text())
        recorded = meta.get("params", {})
        wanted = generator_params(s)
        diff = [f"{'generator_seed' if key == 'random_state' else key} = "
                f"{recorded.get(key)!r}, this cell's {value!r}"
                for key, value in wanted.items() if recorded.get(key) != value]
        if diff:
            raise ValueError(
                f"data.memmap: {str(folder)!r} holds another data set ({'; '.join(diff)}); "
                f"make this one with `{generate_command(s)}`")
        X = np.load(folder / "X.npy", mmap_mode="r")
        y = np.load(folder / "y.npy", mmap_mode="r")
        if X.shape != (s["n"], s["d"]) or y.shape != (s["n"],):
            raise ValueError(
                f"data.memmap: X.npy {X.shape} and y.npy {y.shape} in {str(folder)!r} do not have "
                f"the shapes ({s['n']}, {s['d']}) and ({s['n']},) of params.json (an interrupted "
                f"or altered write?); make it again with `{generate_command(s)}`")
        truth = MoEModel(np.asarray(meta["experts"], float), np.asarray(meta["gating"], float),
                         float(meta["sigma"]), get_activation(meta["activation"]))
        entropy = cell.data_seed("n", "n_test").entropy
        Xt, yt = _rows(truth, s["n_test"],
                       np.random.SeedSequence(entropy, spawn_key=(2, s["n_test"])),
                       ("gaussian", None))
        return CellData(X, y, Xt, yt, truth)


#: the files ``moebench generate --out DIR`` writes and :class:`MemmapSource` reads
MEMMAP_FILES = ("X.npy", "y.npy", "params.json")
#: ``moebench generate`` options and their defaults: cell key -> (option, default)
GENERATE_OPTIONS: dict[str, tuple[str, Any]] = {
    "n": ("--n", None), "d": ("--d", None), "k": ("--k", None),
    "activation": ("--activation", "linear"), "sigma": ("--sigma", 0.1),
    "gating": ("--gating", "orthogonal"), "gating_scale": ("--gating-scale", 1.0),
    "min_angle": ("--min-angle", 0.0), "generator_seed": ("--seed", 0),
}


def generator_params(data: dict[str, Any]) -> dict[str, Any]:
    """The ``params`` that ``moebench generate`` records in ``params.json`` for a cell."""
    out = {key: data[key] for key in GENERATE_OPTIONS if key != "generator_seed"}
    out["random_state"] = data["generator_seed"]
    return out


def generate_command(data: dict[str, Any]) -> str:
    """The ``moebench generate`` command that writes a memmap cell's data set."""
    words = ["moebench generate"]
    for key, (option, default) in GENERATE_OPTIONS.items():
        if default is None or data[key] != default:
            words.append(f"{option} {data[key]}")
    words.append(f"--out {data['memmap']}")
    return " ".join(words)


def data_source(data: dict[str, Any]) -> DataSource:
    """The data source of a cell's data setting: a CSV file when it names ``source``, the
    memmaps of ``moebench generate`` when it names ``memmap``, else synthetic rows."""
    if "source" in data:
        return CSVSource()
    return MemmapSource() if "memmap" in data else SyntheticSource()


def load_cell_data(cell: DataRequest) -> CellData:
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
