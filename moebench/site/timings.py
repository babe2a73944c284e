"""The timings page: asv results, as offline charts.

Two sources, each one table of ``benchmark, params, value, unit`` (one row per benchmark
and parameter set):

* ``benchmarks.csv`` in a folder the site is built from: what ``tools/asv_report.py``
  writes from the latest asv run of a machine (``results/performance/benchmarks.csv``);
* asv's own result files (one JSON file per run: ``results``, ``result_columns``,
  ``commit_hash``), found anywhere in those folders (``results/performance/gpu/``), and
  the newest run of each machine of an asv results folder (``--asv``, default
  ``.asv/results`` where it exists).

Each becomes one chart per benchmark class (each method a panel; hover shows the value)
and one filterable table. asv's own HTML (``asv publish``) loads its scripts from a CDN
and shows nothing offline; these charts need nothing but the bundled plotly.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from moebench.site.html import esc, figure_slot, note, page, table

#: the file the timings are read from, in any folder the site is built from
TIMINGS_FILE = "benchmarks.csv"
TIMINGS_COLUMNS = ("benchmark", "params", "value", "unit")


def asv_rows(data: dict[str, Any]) -> pd.DataFrame:
    """The rows of one asv result file (``results`` keyed by benchmark; each entry's
    ``result`` values in the order of the product of its ``params``); failed or skipped
    values (None, NaN) are left out."""
    columns = data.get("result_columns") or ["result", "params"]
    rows = []
    for name, entry in data["results"].items():
        rec = dict(zip(columns, entry, strict=False)) if isinstance(entry, list) else \
            {"result": entry}
        values = rec.get("result")
        values = values if isinstance(values, list) else [values]
        combos = list(itertools.product(*rec.get("params") or [])) or [()]
        kind = name.rpartition(".")[2].split("_", 1)[0]
        unit = {"time": "s", "peakmem": "bytes", "mem": "bytes"}.get(kind, "")
        for combo, value in zip(combos, values, strict=False):
            if isinstance(value, (int, float)) and math.isfinite(value):
                params = "(" + ", ".join(str(v).strip("'") for v in combo) + ")"
                rows.append((name, params, float(value), unit))
    return pd.DataFrame(rows, columns=list(TIMINGS_COLUMNS))


def _asv_file(path: Path) -> tuple[str, pd.DataFrame] | None:
    """(title, rows) of an asv result file, or None for any other JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict) \
            or "commit_hash" not in data:
        return None
    machine = (data.get("params") or {}).get("machine", "")
    when = time.strftime("%Y-%m-%d", time.gmtime(data["date"] / 1000)) \
        if isinstance(data.get("date"), (int, float)) else ""
    title = (f"{path}: asv run of {str(data['commit_hash'])[:10]}"
             + (f" on {machine}" if machine else "") + (f", {when}" if when else ""))
    return title, asv_rows(data)


def _newest_runs(asv_dir: Path) -> list[Path]:
    """The newest result file of each machine folder of an asv results folder."""
    newest = []
    for machine in sorted(p for p in asv_dir.iterdir() if p.is_dir()):
        runs = [f for f in machine.glob("*.json") if f.name != "machine.json"]
        if runs:
            newest.append(max(runs, key=lambda f: f.stat().st_mtime))
    return newest


def find_timings(folders: Sequence[Path], asv_dirs: Sequence[Path] = ()
                 ) -> list[tuple[str, pd.DataFrame | str]]:
    """Every timing table of ``folders`` and ``asv_dirs`` (see the module notes): its title
    and its rows, or one line saying why it cannot be shown."""
    out: list[tuple[str, pd.DataFrame | str]] = []
    for folder in folders:
        path = folder / TIMINGS_FILE
        if path.is_file():
            try:
                frame = pd.read_csv(path)
            except (OSError, ValueError) as exc:
                out.append((str(path), f"could not be read: {exc}"))
            else:
                missing = [c for c in TIMINGS_COLUMNS if c not in frame.columns]
                out.append((f"{path} (tools/asv_report.py)",
                            f"lacks the column(s) {', '.join(missing)}" if missing else frame))
        for sub in sorted(folder.rglob("*.json")):
            found = _asv_file(sub)
            if found is not None:
                out.append(found)
    for asv_dir in asv_dirs:
        for run in _newest_runs(asv_dir):
            found = _asv_file(run)
            out.append(found if found is not None else (str(run), "not an asv result file"))
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


def timings_page(found: list[tuple[str, pd.DataFrame | str]]) -> str:
    """``timings.html``."""
    parts = ["<p>asv benchmark results: the <code>benchmarks.csv</code> tables that "
             "<code>python tools/asv_report.py</code> writes from asv's results, and asv's "
             "own result files.</p>"]
    if not found:
        parts.append(note(f"no {TIMINGS_FILE} and no asv result file in the folders given: "
                          "no timings to show"))
    for i, (title, frame) in enumerate(found):
        parts.append(f"<h2>{esc(title)}</h2>")
        if isinstance(frame, str):
            parts.append(note(f"{title}: {frame}", "skipped"))
            continue
        if frame.empty:
            parts.append(note(f"{title}: no benchmark value (every one failed or skipped)"))
            continue
        for j, spec in enumerate(timing_figures(frame)):
            parts.append(figure_slot(f"timing_{i}_{j}", spec))
        rows = [(b, p, f"{float(v):.4g}", u) for b, p, v, u in
                frame[list(TIMINGS_COLUMNS)].itertuples(index=False)]
        parts.append(table(("benchmark", "parameters", "value", "unit"), rows))
    return page("Timings (asv)", "\n".join(parts), "")
