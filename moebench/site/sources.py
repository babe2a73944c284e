"""The folders a results site is built from: sweeps read through the store, others noted.

:func:`discover` turns the ``RESULTS`` arguments into folders (a results folder itself,
or a folder of them), and :func:`load_sweep` reads one with
:func:`moebench.sweep.store.load_results` and the certified classes
(:func:`moebench.sweep.classify.attach_classes`), the only loader of stored results. A
folder that cannot be read (empty, damaged, written by another store schema, or not a
sweep at all) becomes a :class:`Skipped` with one line saying why, so the other folders
still build.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from moebench.sweep.columns import (
    FAILED_STATUSES,
    OK_STATUSES,
    SETTING_COLUMNS,
    format_value,
    varying_settings,
)

#: files or folders that make a directory a sweep results folder
SWEEP_MARKERS = ("summary.parquet", "records.parquet", "runs", "config.toml")
#: summary columns the cell pages, the cells table and the compare view read (with the
#: setting columns): :attr:`Sweep.runs` holds just these
RUN_READ = ("run_id", "label", "repetition", "seed", "status", "success", "expert_error",
            "gating_error", "fit_time", "n_iter", "stop_reason", "message")
#: checkpoint columns the site reads (the table joins every summary column onto each row)
CHECKPOINT_READ = ("run_id", "phase", "iteration", "time", "log_likelihood", "expert_error",
                   "gating_error")


@dataclass
class Skipped:
    """A folder that is not drawn, with the one line that says why."""

    name: str
    path: Path
    reason: str


@dataclass
class Cell:
    """One data setting of a sweep, across its seeds and variants.

    Attributes
    ----------
    key : str
        File-name-safe key of the cell (its page is ``cells/<key>.html``).
    setting : dict
        The varying setting columns and their values.
    rows : pandas.Index
        The summary rows of the cell's runs.
    """

    key: str
    setting: dict[str, object]
    rows: pd.Index

    def title(self) -> str:
        """``k=2, sigma=0.05`` (or ``all runs`` for a sweep with one setting)."""
        return ", ".join(f"{c}={format_value(v)}" for c, v in self.setting.items()) or "all runs"

    def filters(self) -> list[str]:
        """``--filter KEY=VALUE`` arguments that select the cell's runs."""
        return [f"--filter {shlex.quote(f'{c}={format_value(v)}')}"
                for c, v in self.setting.items()]


@dataclass
class Sweep:
    """One sweep results folder as read from the store.

    Attributes
    ----------
    name, path : the folder's name and path (as given on the command line)
    summary : DataFrame, one row per run, certified classes attached where present
    checkpoints : DataFrame, the columns of :data:`CHECKPOINT_READ`
    config_text : str, the folder's ``config.toml`` ("" when absent)
    description : str, the config's ``description`` (or its name)
    notes : list of str, the store's one-line warnings and notes while reading it
    """

    name: str
    path: Path
    summary: pd.DataFrame
    checkpoints: pd.DataFrame
    config_text: str = ""
    description: str = ""
    notes: list[str] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)

    def cell_runs(self, cell: Cell) -> pd.DataFrame:
        """The :data:`RUN_READ` and setting columns of ``cell``'s runs."""
        return self.runs.loc[cell.rows]

    @property
    def axes(self) -> list[str]:
        """The setting columns that vary across the sweep's cells."""
        return varying_settings(self.summary)

    def status_counts(self) -> dict[str, int]:
        """Runs per status, ``ok`` first, then the failed statuses found."""
        counts = self.summary["status"].value_counts()
        order = [s for s in (*OK_STATUSES, *FAILED_STATUSES) if s in counts.index]
        order += [s for s in counts.index if s not in order]
        return {str(s): int(counts[s]) for s in order}


def is_sweep_folder(path: Path) -> bool:
    """Whether ``path`` looks like a results folder of ``moebench run`` (see
    :data:`SWEEP_MARKERS`)."""
    return any((path / m).exists() for m in SWEEP_MARKERS)


def discover(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The folders to build from ``paths``: each results folder itself, each other folder's
    sub-folders (sorted by name; hidden ones left out).

    Raises
    ------
    ValueError
        For a path that is not a directory (naming it).
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise ValueError(f"RESULTS {str(p)!r} is not a directory; give results folders "
                             "(e.g. results/paper) or a folder of them (e.g. results)")
        if is_sweep_folder(p):
            found.append(p)
        else:
            found += sorted(q for q in p.iterdir() if q.is_dir() and not q.name.startswith("."))
    return list(dict.fromkeys(found))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _config_meta(path: Path) -> tuple[str, str]:
    """(config text, description) of a folder's config.toml; ("", "") when unreadable."""
    from moebench.io import tomllib  # (tomli on Python 3.10)

    try:
        text = (path / "config.toml").read_text()
        raw = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "", ""
    return text, str(raw.get("description") or raw.get("name") or "")


def cell_key(setting: dict[str, object]) -> str:
    """A file-name-safe key of a setting (``k2_sigma0.05``; ``all`` for none)."""
    text = "_".join(f"{c}{format_value(v)}" for c, v in setting.items()) or "all"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)


def split_cells(summary: pd.DataFrame) -> list[Cell]:
    """The cells of a summary: one per combination of its varying settings, in order."""
    axes = varying_settings(summary)
    if not axes:
        return [Cell("all", {}, summary.index)]
    cells, seen = [], set()
    for values, frame in summary.groupby(axes, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        setting = dict(zip(axes, values, strict=True))
        key = cell_key(setting)
        while key in seen:
            key += "_"
        seen.add(key)
        cells.append(Cell(key, setting, frame.index))
    return cells


def load_sweep(path: Path) -> Sweep | Skipped:
    """Read one folder through the store, or say in one line why it is not drawn.

    The store's warnings and notes (a stale table rebuilt, an old schema read as such) are
    kept in :attr:`Sweep.notes` and passed on to stderr.
    """
    from moebench.sweep.classify import attach_classes
    from moebench.sweep.store import load_results

    name = path.name
    if not any(path.iterdir()):
        return Skipped(name, path, "empty folder: no results")
    if not is_sweep_folder(path):
        files = ", ".join(sorted(p.name for p in path.iterdir())[:5])
        return Skipped(name, path, f"not a sweep results folder (no summary.parquet, "
                       f"records.parquet or runs/; it holds {files})")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            summary, checkpoints = load_results(path)
            if summary.empty or "status" not in summary.columns:
                raise ValueError("it holds no runs")
            summary = attach_classes(summary, path)
    except Exception as exc:  # noqa: BLE001 - any damage is one line, never a broken site
        sys.stderr.write(err.getvalue())
        return Skipped(name, path, f"could not be read: {_first_line(exc)}")
    sys.stderr.write(err.getvalue())
    notes = [line.removeprefix("moebench: ") for line in err.getvalue().splitlines() if line]
    cols = [c for c in CHECKPOINT_READ if c in checkpoints.columns]
    text, description = _config_meta(path)
    summary = _plain_strings(summary.reset_index(drop=True))
    sweep = Sweep(name, path, summary, checkpoints[cols], text, description or name, notes)
    sweep.cells = split_cells(summary)
    keep = [c for c in (*RUN_READ, *SETTING_COLUMNS) if c in summary.columns]
    sweep.runs = summary[keep]
    return sweep


def _plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its string columns as Python objects (row-wise reads of arrow-backed
    strings cost a conversion per row and per page)."""
    strings = {c: object for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)}
    return frame.astype(strings) if strings else frame


def load_all(paths: Iterable[Path]) -> list[Sweep | Skipped]:
    """:func:`load_sweep` of every folder, in order."""
    return [load_sweep(p) for p in paths]
