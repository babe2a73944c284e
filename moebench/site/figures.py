"""The data of the interactive figures, as plain dicts for :func:`moebench.site.encode.dumps`.

Each builder returns one figure spec that ``assets/site.js`` turns into plotly traces::

    {"title": str, "x": str, "y": str, "xlog": bool, "ylog": bool,
     "panels": [{"title": str, "series": [{"name", "color", "x", "y",
                                           optional "lo"/"hi" (a band), "ex"/"ey" (error
                                           bars: [minus, plus]), "links", "text",
                                           "rep" (a repetition per point, the hover
                                           label), "mode", "dash", "thin", "step"}]}],
     "region": [x0, x1, y0, y1] (a shaded corner), "together": bool (every panel at
     once, else one at a time with a selector), "xt": str (a second x axis, "xt" arrays)}

The statistics are the figures' own: each run's curve is
:func:`moebench.sweep.trajectory.run_curve`, bands are
:func:`moebench.sweep.quantiles.median_band` and
:func:`moebench.sweep.quantiles.quartiles`, the gridlock map is
:func:`moebench.sweep.gridlock.phase_table` and :func:`~moebench.sweep.gridlock.reference_pairs`
with Wilson intervals (:func:`moebench.metrics.wilson_interval`), as in the PNG figures.
Curves are thinned for display only (:func:`~moebench.site.encode.display_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from moebench.metrics import wilson_interval
from moebench.site.encode import display_rows
from moebench.site.sources import Cell, Sweep
from moebench.sweep.columns import OK_STATUSES, format_value, varying_settings
from moebench.sweep.gridlock import (
    DEFAULT_TOL,
    STUCK_MIN,
    SUCCESS_MIN,
    in_gridlock,
    is_certified,
    local_search_labels,
    phase_table,
    reference_pairs,
    references_in,
)
from moebench.sweep.plots import curve_grid
from moebench.sweep.quantiles import median_band, quartiles
from moebench.sweep.trajectory import curve_arrays

#: points kept per run trajectory and per median curve
RUN_POINTS = 24
BAND_POINTS = 80
X_LABELS = {"iteration": "iteration + 1", "time": "wall time (s)"}

Curves = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
#: (cell key, x) -> the cell's band series (:func:`cell_bands` computes each once)
Bands = dict[tuple[str, str], list[dict[str, Any]]]


@dataclass
class Drawn:
    """What a sweep's pages are drawn from: the sweep, its runs' curves (:func:`run_curves`)
    of ``metric``, its variants' colours, and the bands computed so far."""

    sweep: Sweep
    curves: Curves
    metric: str
    colors: dict[str, str]
    bands: Bands = field(default_factory=dict)

    def cell_bands(self, cell: Cell, x: str) -> list[dict[str, Any]]:
        """:func:`cell_bands` of ``cell`` against ``x``, each computed once."""
        return cell_bands(self.sweep, cell, self.curves, x, self.colors, self.bands)


def hex_colors(colors: dict[str, str]) -> dict[str, str]:
    """matplotlib colours (``tab:blue``, ``0.5``, ``#1f77b4``) as ``#rrggbb``."""
    from matplotlib.colors import to_hex

    return {label: to_hex(c) for label, c in colors.items()}


def curve_metric(checkpoints: pd.DataFrame) -> str:
    """``expert_error``, or ``log_likelihood`` where no checkpoint has an error (real data)."""
    if "expert_error" in checkpoints.columns and np.isfinite(
            checkpoints["expert_error"].to_numpy(float)).any():
        return "expert_error"
    return "log_likelihood"


def run_curves(checkpoints: pd.DataFrame, metric: str) -> Curves:
    """run id -> {"iteration": (x, y), "time": (x, y)}: every run's anytime curve
    (:func:`moebench.sweep.trajectory.curve_arrays`, the ``curves`` figure's), each run's
    rows in recorded order."""
    if checkpoints.empty:
        return {}
    codes, ids = pd.factorize(checkpoints["run_id"])
    order = np.argsort(codes, kind="stable")
    cols = {c: checkpoints[c].to_numpy(float)[order]
            for c in ("iteration", "time", "log_likelihood", metric)}
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    out: Curves = {}
    for rid, part in zip(ids, np.split(np.arange(len(order)), bounds), strict=True):
        it, t, ll, v = (cols[c][part] for c in ("iteration", "time", "log_likelihood", metric))
        raw = metric == "log_likelihood"
        out[str(rid)] = {x: curve_arrays(it, t, ll, v, x, raw) for x in X_LABELS}
    return out


def _band(runs: list[tuple[np.ndarray, np.ndarray]], x: str) -> dict[str, Any] | None:
    runs = [r for r in runs if len(r[0])]
    if not runs:
        return None
    grid = curve_grid(runs, x)
    med, q1, q3 = median_band(runs, grid)
    keep = display_rows(len(grid), BAND_POINTS)
    return {"x": grid[keep], "y": med[keep], "lo": q1[keep], "hi": q3[keep]}


def cell_bands(sweep: Sweep, cell: Cell, curves: Curves, x: str,
               colors: dict[str, str], cache: Bands | None = None) -> list[dict[str, Any]]:
    """The median and IQR band of each variant's finished runs in ``cell`` against ``x``
    (kept in ``cache``, and taken from it when there)."""
    if cache is not None and (cell.key, x) in cache:
        return cache[cell.key, x]
    runs = sweep.cell_runs(cell)
    runs = runs[runs["status"].isin(OK_STATUSES)]
    series = []
    for label, frame in runs.groupby("label", sort=False):
        band = _band([curves[r][x] for r in frame["run_id"] if r in curves], x)
        if band is not None:
            series.append({"name": str(label), "color": colors.get(label, "#444444"),
                           "mode": "lines", "step": True, **band})
    if cache is not None:
        cache[cell.key, x] = series
    return series


def curves_figure(drawn: Drawn, x: str) -> dict[str, Any]:
    """Median and IQR band over repetitions against ``x``, one panel per cell."""
    metric = drawn.metric
    panels = [{"title": cell.title(), "key": cell.key, "series": drawn.cell_bands(cell, x)}
              for cell in drawn.sweep.cells]
    return {"title": f"{metric.replace('_', ' ')} vs {'wall time' if x == 'time' else 'iterations'}"
                     " (at the best log-likelihood so far; median and IQR band over repetitions)",
            "x": X_LABELS[x], "y": metric.replace("_", " "), "xlog": True,
            "ylog": metric != "log_likelihood", "panels": [p for p in panels if p["series"]]}


def sample_complexity_figure(sweep: Sweep, colors: dict[str, str],
                             metric: str = "expert_error") -> dict[str, Any] | None:
    """Final error against n: median and IQR per variant, a panel per other setting, with
    an n^-1/2 slope; None where n takes one value or there is no error."""
    s = sweep.summary
    if "n" not in s.columns or s["n"].nunique() < 2 or metric not in s.columns \
            or not np.isfinite(s[metric].to_numpy(float)).any():
        return None
    ok = s[s["status"].isin(OK_STATUSES)]
    cols = varying_settings(s, exclude=("n",))
    groups = ok.groupby(cols, sort=True, dropna=False) if cols else [((), ok)]
    panels = []
    for key, frame in groups:
        key = key if isinstance(key, tuple) else (key,)
        series = []
        for label, lf in frame.groupby("label", sort=True):
            stats = [(n, *quartiles(g[metric])) for n, g in lf.groupby("n", sort=True)]
            n, q1, med, q3 = (np.array(v, float) for v in zip(*stats, strict=True))
            series.append({"name": str(label), "color": colors.get(label, "#444444"),
                           "mode": "lines+markers", "x": n, "y": med, "lo": q1, "hi": q3})
        nn = np.array(sorted(frame["n"].unique()), float)
        best = frame.groupby("n")[metric].median().min()
        if np.isfinite(best) and best > 0:
            series.append({"name": "n^-1/2", "color": "#888888", "mode": "lines", "dash": True,
                           "x": nn, "y": best * np.sqrt(nn[-1] / nn)})
        title = ", ".join(f"{c}={format_value(v)}" for c, v in zip(cols, key, strict=True))
        panels.append({"title": title or "all runs", "series": series})
    return {"title": "sample complexity (median, IQR band; dashed: slope n^-1/2)",
            "x": "n (training samples)", "y": f"final {metric.replace('_', ' ')}",
            "xlog": True, "ylog": True, "panels": panels}


def _bars(k: np.ndarray, n: np.ndarray, centre: np.ndarray) -> list[np.ndarray]:
    lo, hi = np.array([wilson_interval(a, b) if b else (np.nan, np.nan)
                       for a, b in zip(k, n, strict=True)]).reshape(-1, 2).T
    return [np.clip(centre - lo, 0, None), np.clip(hi - centre, 0, None)]


def gridlock_figures(sweep: Sweep, references: list[str], cell_links: dict[tuple, str],
                     tol: float = DEFAULT_TOL) -> list[dict[str, Any]]:
    """The gridlock map per reference: a point per cell and local-search variant at
    (reference's success rate, the variant's stuck rate), Wilson 95% bars, the gridlock
    corner shaded; each point links to its cell page. Empty where the sweep has no
    reference or no local-search variant."""
    s, axes = sweep.summary, sweep.axes
    try:
        refs = references_in(s, references or None)
        table = phase_table(s, axes, tol)
    except ValueError:
        return []
    certified = is_certified(s)
    stuck = "local maximum" if certified else "stuck"
    out = []
    for ref in refs:
        if ref not in set(s["label"]):
            continue
        baselines = local_search_labels(s, ref)
        if not baselines:
            continue
        pairs = reference_pairs(table, axes, baselines, ref)
        pairs["gridlock"] = in_gridlock(pairs, ref)
        panels = []
        for label in baselines:
            sub = pairs[pairs["label"] == label]
            x = sub[f"{ref}_success"].to_numpy(float)
            y = sub["stuck_rate"].to_numpy(float)
            keys = [tuple(row) for row in sub[axes].itertuples(index=False)] if axes else [()]
            titles = [", ".join(f"{a}={format_value(v)}" for a, v in zip(axes, k, strict=True))
                      for k in keys]
            text = [f"{t}<br>{ref} success {int(ns)}/{int(nr)}, {label} {stuck} "
                    f"{int(k)}/{int(n)}" for t, ns, nr, k, n in zip(
                        titles, sub[f"{ref}_n_success"], sub[f"{ref}_runs"], sub["n_stuck"],
                        sub["runs"], strict=True)]
            inside = sub["gridlock"].to_numpy(bool)
            panels.append({"title": f"{label}: {int(inside.sum())} of {len(sub)} cells",
                           "series": [{
                               "name": label, "mode": "markers", "x": x, "y": y,
                               "color": "#7f7f7f", "colors": np.where(inside, "#d62728",
                                                                      "#7f7f7f").tolist(),
                               "ex": _bars(sub[f"{ref}_n_success"].to_numpy(float),
                                           sub[f"{ref}_runs"].to_numpy(float), x),
                               "ey": _bars(sub["n_stuck"].to_numpy(float),
                                           sub["runs"].to_numpy(float), y),
                               "links": [cell_links.get(k, "") for k in keys], "text": text}]})
        out.append({"title": f"gridlock map, reference {ref}: {stuck} in >= {STUCK_MIN:.0%} of "
                             f"seeds while {ref} succeeds in >= {SUCCESS_MIN:.0%} (cells over "
                             f"{', '.join(axes) or 'the one setting'}; Wilson 95% bars; click a "
                             "point to open its cell)",
                    "x": f"{ref} success rate", "y": f"{stuck} rate", "xlog": False,
                    "ylog": False, "range": [-0.06, 1.06], "region": [SUCCESS_MIN, 1.06,
                                                                      STUCK_MIN, 1.06],
                    "panels": panels, "together": True})
    return out


def trajectories_figure(drawn: Drawn, cell: Cell) -> dict[str, Any]:
    """Every run of ``cell``: its anytime curve against iterations (``x``) and wall time
    (``xt``), thinned to about :data:`RUN_POINTS` points; one series per variant, its runs
    one after another with a gap (``null``) between them, ``rep`` each point's repetition
    (the hover label)."""
    runs, metric, colors = drawn.sweep.cell_runs(cell), drawn.metric, drawn.colors
    gap = np.array([np.nan])
    series = []
    for label, frame in runs.groupby("label", sort=False):
        parts: dict[str, list[np.ndarray]] = {"x": [], "xt": [], "y": [], "rep": []}
        reps = frame["repetition"] if "repetition" in frame else np.full(len(frame), np.nan)
        for rid, rep in zip(frame["run_id"], reps, strict=True):
            curve = drawn.curves.get(str(rid))
            if curve is None or not len(curve["iteration"][0]):
                continue
            (xi, y), (xt, _) = curve["iteration"], curve["time"]
            keep = display_rows(len(xi), RUN_POINTS)
            for key, values in (("x", xi[keep]), ("xt", xt[keep]), ("y", y[keep]),
                                ("rep", np.full(len(keep), float(rep)))):
                parts[key] += [values, gap]
        if parts["x"]:
            series.append({"name": str(label), "color": colors.get(label, "#444444"),
                           "mode": "lines+markers", "step": True, "thin": True,
                           **{k: np.concatenate(v[:-1]) for k, v in parts.items()}})
    return {"title": f"each run's {metric.replace('_', ' ')} (at the best log-likelihood so "
                     "far), coloured by variant", "x": X_LABELS["iteration"],
            "xt": X_LABELS["time"], "y": metric.replace("_", " "), "xlog": True,
            "ylog": metric != "log_likelihood", "panels": [{"title": "", "series": series}]}
