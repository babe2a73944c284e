"""The timings page: the asv results the project stores, as offline charts.

``benchmarks/report.py`` writes the latest asv run of a machine (asv's own results under
``.asv/results``) to ``results/performance/benchmarks.csv`` (one row per benchmark and
parameter set: ``benchmark, params, value, unit``). Every such file in the folders the site
is built from becomes one chart per benchmark class (each method a panel; hover shows the
value) and one filterable table. asv's own HTML (``asv publish``) loads its scripts from a
CDN and shows nothing offline; these charts need nothing but the bundled plotly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from moebench.site.html import esc, figure_slot, note, page, table

#: the file the timings are read from, in any folder the site is built from
TIMINGS_FILE = "benchmarks.csv"
TIMINGS_COLUMNS = ("benchmark", "params", "value", "unit")


def find_timings(folders: Sequence[Path]) -> list[tuple[Path, pd.DataFrame | str]]:
    """Each ``benchmarks.csv`` of ``folders``: its table, or one line saying why not."""
    out: list[tuple[Path, pd.DataFrame | str]] = []
    for folder in folders:
        path = folder / TIMINGS_FILE
        if not path.is_file():
            continue
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            out.append((path, f"could not be read: {exc}"))
            continue
        missing = [c for c in TIMINGS_COLUMNS if c not in frame.columns]
        out.append((path, f"lacks the column(s) {', '.join(missing)}" if missing else frame))
    return out


def _unit_scale(unit: str) -> tuple[float, str]:
    return (2.0**-20, "MiB") if unit == "bytes" else (1.0, unit or "value")


def timing_figures(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One chart per benchmark class: a panel per method, a point per parameter set."""
    frame = frame.assign(cls=frame["benchmark"].str.rpartition(".")[0],
                         method=frame["benchmark"].str.rpartition(".")[2])
    specs = []
    for cls, g in frame.groupby("cls", sort=True):
        panels = []
        for method, m in g.groupby("method", sort=True):
            scale, unit = _unit_scale(str(m["unit"].iloc[0]))
            values = m["value"].astype(float) * scale
            panels.append({"title": f"{method} ({unit})", "series": [{
                "name": method, "color": "#1f77b4", "mode": "markers",
                "x": [str(p) for p in m["params"]], "y": values.to_numpy(float),
                "text": [f"{method} {p}: {v:.4g} {unit}" for p, v in zip(
                    m["params"], values, strict=True)]}]})
        specs.append({"title": f"{cls} (asv; one point per parameter set)",
                      "x": "parameters", "y": "value", "xlog": False, "ylog": True,
                      "category": True, "panels": panels})
    return specs


def timings_page(found: list[tuple[Path, pd.DataFrame | str]]) -> str:
    """``timings.html``."""
    parts = ["<p>The asv benchmark results stored with the results (written from asv's "
             "<code>.asv/results</code> by <code>python benchmarks/report.py</code>).</p>"]
    if not found:
        parts.append(note(f"no {TIMINGS_FILE} in the folders given: no timings to show"))
    for i, (path, frame) in enumerate(found):
        parts.append(f"<h2>{esc(path)}</h2>")
        if isinstance(frame, str):
            parts.append(note(f"{path}: {frame}", "skipped"))
            continue
        for j, spec in enumerate(timing_figures(frame)):
            parts.append(figure_slot(f"timing_{i}_{j}", spec))
        rows = [(b, p, f"{float(v):.4g}", u) for b, p, v, u in
                frame[list(TIMINGS_COLUMNS)].itertuples(index=False)]
        parts.append(table(("benchmark", "parameters", "value", "unit"), rows))
    return page("Timings (asv)", "\n".join(parts), "")
