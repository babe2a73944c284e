"""The compare view: two variants (of one sweep, or of two sweeps) side by side.

Each sweep ships one ``compare/<sweep>.js`` file (loaded on demand by ``compare.html``,
which works from ``file://`` where reading JSON files is not allowed) with, per cell and
variant, the run count, successes, stuck runs (certified local maxima where the folder is
classified), median error and fit time, and the median band against iterations;
``site.js`` matches the two sides' cells by their settings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from moebench.site.encode import dumps
from moebench.site.figures import Drawn
from moebench.site.html import page
from moebench.sweep.columns import OK_STATUSES


def compare_data(drawn: Drawn, stuck: pd.Series) -> dict[str, Any]:
    """One sweep's compare data (see the module notes)."""
    sweep, colors = drawn.sweep, drawn.colors
    labels = [str(v) for v in dict.fromkeys(sweep.summary["label"])]
    cells = []
    for cell in sweep.cells:
        runs = sweep.cell_runs(cell).assign(_stuck=stuck.loc[cell.rows])
        stats: dict[str, Any] = {}
        bands = {b["name"]: {k: b[k] for k in ("x", "y", "lo", "hi")}
                 for b in drawn.cell_bands(cell, "iteration")}
        for label, g in runs.groupby("label", sort=False):
            ok = g["status"].isin(OK_STATUSES)
            succ = g["success"].fillna(False).astype(bool).sum() if "success" in g else np.nan
            err = g.loc[ok, "expert_error"].astype(float).median() if "expert_error" in g \
                else np.nan
            time = g.loc[ok, "fit_time"].astype(float).median() if "fit_time" in g else np.nan
            stats[str(label)] = {"runs": len(g), "ok": int(ok.sum()), "success": int(succ)
                                 if np.isfinite(succ) else None,
                                 "stuck": int(g["_stuck"].sum()), "error": float(err),
                                 "time": float(time), "band": bands.get(label)}
        cells.append({"key": cell.key, "title": cell.title(), "stats": stats})
    return {"name": sweep.name, "metric": drawn.metric, "labels": labels,
            "colors": {lab: colors.get(lab, "#444444") for lab in labels}, "cells": cells}


def compare_script(data: dict[str, Any]) -> str:
    """``compare/<sweep>.js``: registers the sweep's compare data."""
    return (f"window.MOEBENCH_COMPARE = window.MOEBENCH_COMPARE || {{}};\n"
            f"window.MOEBENCH_COMPARE[{dumps(data['name'])}] = {dumps(data)};\n")


def compare_page(sweeps: list[tuple[str, list[str], int]]) -> str:
    """``compare.html``: pick a sweep and a variant on each side (``sweeps``: each sweep's
    name, variant labels in order, and run count)."""
    listing = dumps({name: {"labels": labels, "runs": runs} for name, labels, runs in sweeps})
    sides = "".join(
        f'<fieldset class="side"><legend>{side}</legend>'
        f'<label>sweep <select id="sweep-{side}"></select></label> '
        f'<label>variant <select id="variant-{side}"></select></label></fieldset>'
        for side in ("A", "B"))
    body = (f"<p>Two variants, of one sweep or of two sweeps, cell by cell: their success and "
            f"stuck rates (Wilson 95% intervals), median error and fit time, and their median "
            f"curves (IQR bands) side by side. Cells are matched by their settings.</p>"
            f'<form class="compare">{sides}</form>'
            f'<label>cell of the curves <select id="compare-cell"></select></label>'
            f'<div class="figure" id="compare-figure"></div>'
            f'<div id="compare-table"></div>'
            f'<script type="application/json" id="compare-sweeps">{listing}</script>'
            f"<script>document.addEventListener('DOMContentLoaded', "
            f"function () {{ MoebenchSite.compare(); }});</script>")
    return page("Compare two variants", body, "")
