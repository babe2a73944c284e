"""Which runs of a sweep to run: ``--filter``/``--limit`` selections, streamed and counted
without listing the runs, and the cost estimate of a selection from stored wall times."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moebench.sweep.config import Run, SweepConfig


@dataclass(frozen=True)
class RunSelection:
    """The runs a sweep selected, as a sequence that is never listed: ``len`` is the count
    (:func:`count_runs`), iterating streams them again (:func:`iter_selected`)."""

    config: SweepConfig
    filters: tuple[str, ...]
    limit: int | None
    count: int

    def __iter__(self) -> Iterator[Run]:
        return iter_selected(self.config, self.filters, self.limit)

    def __len__(self) -> int:
        return self.count


#: filter keys that are not data keys
RUN_KEYS = ("label", "algorithm", "repetition")


def parse_filters(filters: Iterable[str], data_keys: Iterable[str]) -> dict[str, list[str]]:
    """``KEY=VALUE`` filters as key -> values, every key checked.

    The same key given twice selects runs with either value (``--filter k=2 --filter
    k=3``: k is 2 or 3); different keys must all match.

    Raises
    ------
    ValueError
        A filter without ``=`` or with a key that is neither a data key nor ``label``,
        ``algorithm`` or ``repetition``.
    """
    parsed: dict[str, list[str]] = {}
    for f in filters:
        if "=" not in f:
            raise ValueError(f"--filter takes KEY=VALUE (e.g. k=3, label=joint_em); got {f!r}")
        key, value = (part.strip() for part in f.split("=", 1))
        parsed.setdefault(key, [])
        if value not in parsed[key]:
            parsed[key].append(value)
    valid = set(RUN_KEYS) | set(data_keys)
    for key in parsed:
        if key not in valid:
            raise ValueError(f"--filter: unknown key {key!r}; valid keys: "
                             f"{', '.join(sorted(valid))}")
    return parsed


def _value_matches(field: Any, value: str) -> bool:
    if str(field) == value:
        return True
    try:  # numbers match by value: gating_scale=8 selects 8.0, k=3.0 selects 3
        return (isinstance(field, (int, float)) and not isinstance(field, bool)
                and float(field) == float(value))
    except ValueError:
        return False


def cell_matches(cell: Run, parsed: dict[str, list[str]], *, repetition: bool = True) -> bool:
    """Whether the run ``cell`` matches every filter key (one of its values); ``repetition=False``
    leaves the repetition filter out (the counting checks it once for every run)."""
    for key, values in parsed.items():
        if key in cell.variant.setting:
            continue  # a variant that fixes this key (the reference: k = 1) matches any
        if key in ("label", "algorithm"):
            field = getattr(cell.variant, key)
        elif key == "repetition":
            if not repetition:
                continue
            field = cell.repetition
        else:
            field = cell.data[key]
        if not any(_value_matches(field, v) for v in values):
            return False
    return True


def select_cells(cells: Iterable[Run], filters: Iterable[str] = (), limit: int | None = None
                 ) -> list[Run]:
    """The runs of ``cells`` matching every ``key=value`` filter (data keys, label,
    algorithm, repetition).

    A key given more than once matches any of its values (see :func:`parse_filters`).
    """
    cells = list(cells)
    parsed = parse_filters(filters, cells[0].data if cells else ())
    chosen = [c for c in cells if cell_matches(c, parsed)]
    return chosen[:limit] if limit is not None else chosen


def iter_selected(config: SweepConfig, filters: Iterable[str] = (), limit: int | None = None
                  ) -> Iterator[Run]:
    """The runs of :func:`select_cells` on ``config.cells()``, streamed (nothing is listed)."""
    parsed = parse_filters(filters, config.data_grid[0] if config.data_grid else ())
    chosen = (c for c in config.iter_cells() if cell_matches(c, parsed))
    return itertools.islice(chosen, limit) if limit is not None else chosen


@dataclass
class RunCount:
    """How many runs a config has and a selection takes, counted from the grid's shape."""

    #: every run of the config
    total: int
    #: the runs the filters and the limit select
    selected: int
    #: variant label -> selected runs (before the limit)
    by_variant: dict[str, int]
    #: (variant label, data setting, selected runs) of every selected pair (before the limit)
    by_pair: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)


def _repetitions_selected(values: list[str] | None, repetitions: int) -> int:
    """How many of ``range(repetitions)`` match one of the repetition filter ``values``."""
    if values is None:
        return repetitions
    reps = set()
    for value in values:
        try:
            f = float(value)
        except ValueError:
            continue
        if f.is_integer() and 0 <= f < repetitions:
            reps.add(int(f))
    return len(reps)


def count_runs(config: SweepConfig, filters: Iterable[str] = (), limit: int | None = None
               ) -> RunCount:
    """Count the runs of ``config`` and of a selection without listing them.

    One pass over the distinct (data setting, variant) pairs (:meth:`SweepConfig.pairs`),
    each counted once per selected repetition: time and memory grow with the number of
    settings and variants, not with the repetitions. Agrees with
    ``len(select_cells(config.cells(), filters, limit))``.
    """
    parsed = parse_filters(filters, config.data_grid[0] if config.data_grid else ())
    reps = _repetitions_selected(parsed.get("repetition"), config.repetitions)
    total = selected = 0
    by_variant: dict[str, int] = {}
    by_pair: list[tuple[str, dict[str, Any], int]] = []
    for _, variant, data in config.pairs():
        total += config.repetitions
        cell = Run(data, variant, 0, config.seed, config.success_threshold)
        if reps and cell_matches(cell, parsed, repetition=False):
            selected += reps
            by_variant[variant.label] = by_variant.get(variant.label, 0) + reps
            by_pair.append((variant.label, data, reps))
    if limit is not None:
        selected = min(selected, limit)
    return RunCount(total, selected, by_variant, by_pair)


def _setting_value(value: Any) -> str:
    """A data-setting value as a key that a config value and its stored column agree on."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return repr(float(value))
    return str(value)


def estimate_cost(out: str | os.PathLike, count: RunCount, jobs: int = 1) -> str | None:
    """One line estimating the selected runs' cost from the stored runs in ``out``.

    Each selected (variant, data setting) pair costs its repetitions times the median
    ``wall_time`` of the stored runs of the same variant label and setting (any status:
    a failed run took its time too), or, where the folder holds none of that setting,
    of the variant's stored runs at any setting; pairs of variants without stored runs
    are left out and said so. None when ``out`` holds no stored run of a selected
    variant (nothing to estimate from). Reads only ``summary.parquet``'s ``label``,
    ``wall_time`` and data-setting columns.
    """
    import pandas as pd

    path = Path(out) / "summary.parquet"
    if not path.is_file() or not count.by_pair:
        return None
    try:
        names = set(_parquet_columns(path))
        keys = sorted({key for _, data, _ in count.by_pair for key, value in data.items()
                       if key in names and not isinstance(value, dict)})
        stored = pd.read_parquet(path, columns=["label", "wall_time", *keys])
    except Exception:  # noqa: BLE001 - an unreadable or old table: no estimate
        return None
    stored = stored[stored["label"].isin(list(count.by_variant))
                    & pd.to_numeric(stored["wall_time"], errors="coerce").notna()]
    if stored.empty:
        return None
    stored = stored.assign(wall_time=stored["wall_time"].astype(float))
    by_label = stored.groupby("label")["wall_time"].median().to_dict()
    settings = stored[keys].map(_setting_value).agg("|".join, axis=1) if keys else ""
    by_setting = stored.assign(setting=settings).groupby(["label", "setting"])[
        "wall_time"].median().to_dict()
    seconds, same, other, listed = 0.0, 0, 0, 0
    missing = set()
    for label, data, runs in count.by_pair:
        listed += runs
        key = "|".join(_setting_value(data.get(k)) for k in keys) if keys else ""
        if (label, key) in by_setting:
            seconds += runs * by_setting[label, key]
            same += runs
        elif label in by_label:
            seconds += runs * by_label[label]
            other += runs
        else:
            missing.add(label)
    share = count.selected / listed if listed else 0.0  # the --limit, pro rata
    hours = seconds * share / 3600.0
    covered = round((same + other) * share)
    line = (f"cost estimate: {hours:.3g} run-hours ({hours / max(1, jobs):.3g} h at --jobs "
            f"{jobs}) for {covered} of the {count.selected} selected runs, from the median "
            f"wall time of {len(stored)} stored run(s) in {path} ({round(same * share)} runs "
            f"by their variant and data setting, {round(other * share)} by their variant at "
            f"other settings)")
    if missing:
        line += f"; variant(s) without stored runs not estimated: {', '.join(sorted(missing))}"
    return line


def _parquet_columns(path: Path) -> list[str]:
    """The column names of a parquet file, read from its schema only."""
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)
