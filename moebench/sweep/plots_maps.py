"""Map figures: where the gridlock is (``gridlock``, ``phase``) and the theorem check
(``theorem``), each a registered view (:mod:`moebench.sweep.views`).

``gridlock`` and ``phase`` (:func:`plot_gridlock`, :func:`plot_phase_maps`)
    Where local search is stuck while a reference variant succeeds, from the rates
    of :mod:`moebench.sweep.gridlock`.
``theorem`` (:func:`plot_theorem`)
    The paper's theorem check (:mod:`moebench.sweep.theorem`): per cell of the map,
    the fraction of random starts of the oracle gating EM that reach the
    maximum-likelihood gating, with Wilson 95% intervals.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from moebench.io import atomic_save_figure
from moebench.metrics import wilson_interval
from moebench.sweep.columns import format_value
from moebench.sweep.gridlock import (
    DEFAULT_TOL,
    STUCK_MIN,
    SUCCESS_MIN,
    has_stationarity,
    in_gridlock,
    is_certified,
    local_search_labels,
    phase_table,
    reference_pairs,
    references_in,
)
from moebench.sweep.views import figure


# --------------------------------------------------------------------------- gridlock
def plot_gridlock(
    summary: pd.DataFrame,
    axes: Sequence[str],
    reference: str | None = None,
    baselines: Sequence[str] | None = None,
    stuck_min: float = STUCK_MIN,
    success_min: float = SUCCESS_MIN,
    tol: float = DEFAULT_TOL,
):
    """Where is the gridlock? One panel per baseline, one point per cell of ``axes``.

    A point sits at (success rate of ``reference``, stuck rate of the baseline) in that
    cell, with Wilson 95% intervals as bars; the shaded corner is the gridlock region
    (stuck >= ``stuck_min`` while the reference succeeds >= ``success_min``) and the
    cells in it are named. Where the results record the final gradient norm, only
    stationary runs count as stuck, and each cell's unfinished rate (not counted) is
    drawn as a hollow triangle at the same x.

    Parameters
    ----------
    axes : sequence of str
        Data-setting columns that define a cell (e.g. ``["d", "k", "sigma"]``).
    reference : str, optional
        Default: the first of :func:`moebench.sweep.gridlock.references_in`.
    baselines : sequence of str, optional
        Variant labels to show; default: every local-search variant but the reference.

    Returns
    -------
    matplotlib.figure.Figure
    """
    reference = reference or references_in(summary)[0]
    table = phase_table(summary, axes, tol)
    baselines = list(baselines) if baselines is not None \
        else local_search_labels(summary, reference)
    pairs = reference_pairs(table, axes, baselines, reference)
    if not baselines:
        raise ValueError("no baseline variant to draw: none of the variants is a local-search "
                         "method other than the reference")
    pairs["gridlock"] = in_gridlock(pairs, reference, stuck_min, success_min)
    certified = is_certified(summary)
    stationarity = certified or has_stationarity(summary)
    stuck = "local maximum" if certified else "stuck"

    def bars(k: np.ndarray, n: np.ndarray, centre: np.ndarray) -> np.ndarray:
        lo, hi = np.array([wilson_interval(a, b) for a, b in zip(k, n)]).reshape(-1, 2).T
        return np.vstack([np.clip(centre - lo, 0, None), np.clip(hi - centre, 0, None)])
    ncols = min(3, len(baselines))
    nrows = -(-len(baselines) // ncols)
    fig = Figure(figsize=(4.6 * ncols, 4.2 * nrows))
    grid = fig.subplots(nrows, ncols, squeeze=False)
    rng = np.random.default_rng(0)  # jitter only: rates from 5 seeds sit on a 0.2 lattice
    for ax, label in zip(grid.flat, baselines):
        sub = pairs[pairs["label"] == label]
        x = sub[f"{reference}_success"].to_numpy(dtype=float)
        y = sub["stuck_rate"].to_numpy(dtype=float)
        inside = sub["gridlock"].to_numpy()
        jx = x + rng.uniform(-0.025, 0.025, len(x))
        jy = y + rng.uniform(-0.025, 0.025, len(y))
        ax.axvspan(success_min, 1.06, ymin=(stuck_min + 0.06) / 1.12, color="tab:red",
                   alpha=0.08, lw=0)
        ax.errorbar(jx, jy, yerr=bars(sub["n_stuck"].to_numpy(float),
                                      sub["runs"].to_numpy(float), y),
                    xerr=bars(sub[f"{reference}_n_success"].to_numpy(float),
                              sub[f"{reference}_runs"].to_numpy(float), x),
                    fmt="none", ecolor="0.75", elinewidth=0.4, alpha=0.5)
        if stationarity:
            u = sub["unfinished_rate"].to_numpy(dtype=float)
            ax.scatter(jx, u, s=14, marker="^", facecolors="none", edgecolors="tab:blue",
                       lw=0.6, alpha=0.7, label="unfinished rate (not counted)")
        ax.scatter(jx[~inside], jy[~inside], s=14, color="0.55", alpha=0.7, lw=0,
                   label="other cells")
        ax.scatter(jx[inside], jy[inside], s=30, color="tab:red", lw=0, label="gridlock")
        cells = sub[list(axes)].to_numpy(dtype=object)
        named = [(jx[i], jy[i], cells[i]) for i in np.flatnonzero(inside)]
        for i, (px, py, cell) in enumerate(named[:8]):
            text = " ".join(f"{a}={format_value(v)}" for a, v in zip(axes, cell))
            ax.annotate(text, (px, py), xytext=(0.8, 0.95 - 0.055 * i), textcoords="axes fraction",
                        ha="right", fontsize=6, color="tab:red",
                        arrowprops=dict(arrowstyle="-", color="tab:red", lw=0.4))
        more = " (first 8 named)" if len(named) > 8 else ""
        ax.set_title(f"{label}: {int(inside.sum())} of {len(sub)} cells{more}", fontsize=9)
        ax.set_xlim(-0.06, 1.06)
        ax.set_ylim(-0.06, 1.06)
        ax.set_xlabel(f"{reference} success rate")
        ax.set_ylabel(f"{label} {stuck} rate")
        ax.grid(alpha=0.3)
    for ax in list(grid.flat)[len(baselines):]:
        ax.axis("off")
    grid.flat[0].legend(fontsize=7, loc="center left")
    how = ("certified by moebench classify" if certified
           else "at a stationary point (uncertified)" if stationarity
           else "stationarity unknown: gap alone (uncertified)")
    fig.suptitle(f"Gridlock: {stuck} in >= {stuck_min:.0%} of seeds while {reference} succeeds "
                 f"in >= {success_min:.0%} (cells over {', '.join(axes)})\n{stuck} = "
                 f"log-likelihood > {tol:g}/sample below best and truth, {how}; bars: Wilson "
                 "95% intervals", fontsize=9)
    fig.tight_layout()
    return fig


@figure("gridlock", help=f"the cells of --axes where a local-search variant is stuck in >= "
        f"{STUCK_MIN:.0%} of seeds while --reference succeeds in >= {SUCCESS_MIN:.0%} (a file "
        "per reference)", needs=("axes",))
def gridlock_view(summary: pd.DataFrame, axes: Sequence[str],
                  reference: Sequence[str] | str | None = None, tol: float = DEFAULT_TOL
                  ) -> dict[str, Figure]:
    """:func:`plot_gridlock` per reference (:func:`moebench.sweep.gridlock.references_in`):
    the first is the file itself, the others ``<stem>_<reference>``."""
    return {"" if i == 0 else ref: plot_gridlock(summary, axes, reference=ref, tol=tol)
            for i, ref in enumerate(references_in(summary, reference))}


def phase_figures(summary: pd.DataFrame, x: str, y: str, facet: str | None = None,
                  tol: float = DEFAULT_TOL) -> dict[str, Figure]:
    """One figure per algorithm variant: stuck-rate and success-rate heatmaps over (x, y).

    With ``facet``, one row of heatmaps per value of that column.

    Returns
    -------
    dict
        Variant label -> figure.
    """
    axes = [x, y] + ([facet] if facet else [])
    table = phase_table(summary, axes, tol)
    facets = sorted(table[facet].dropna().unique()) if facet else [None]
    xs = sorted(table[x].dropna().unique())
    ys = sorted(table[y].dropna().unique())
    certified = is_certified(summary)
    stuck = "local maximum" if certified else "stuck"
    panels = [("stuck_rate", "n_stuck", f"{stuck} rate"), ("success_rate", "n_success",
                                                           "success rate")]
    if certified or has_stationarity(summary):
        panels.insert(1, ("unfinished_rate", "n_unfinished", "unfinished rate"))
    figures = {}
    for label in sorted(table["label"].unique()):
        fig = Figure(figsize=(4 * len(panels), 3.2 * len(facets)))
        grid = fig.subplots(len(facets), len(panels), squeeze=False)
        for r, fv in enumerate(facets):
            sub = table[table["label"] == label]
            if facet:
                sub = sub[sub[facet] == fv]
            for c, (col, count, title) in enumerate(panels):
                mat = np.full((len(ys), len(xs)), np.nan)
                text = {}
                for _, row in sub.iterrows():
                    cell = ys.index(row[y]), xs.index(row[x])
                    mat[cell] = row[col]
                    if np.isfinite(row[col]):
                        lo, hi = wilson_interval(row[count], row["runs"])
                        text[cell] = f"{row[col]:.0%}\n{lo:.0%}–{hi:.0%}"
                ax = grid[r, c]
                dark = col != "success_rate"  # high is bad: the reversed map
                im = ax.imshow(mat, vmin=0, vmax=1, cmap="magma_r" if dark else "viridis",
                               origin="lower", aspect="auto")
                for (i, j), v in np.ndenumerate(mat):
                    if (i, j) in text:
                        ax.text(j, i, text[i, j], ha="center", va="center", fontsize=6,
                                color="white" if (v > 0.5) == dark else "black")
                ax.set_xticks(range(len(xs)), [format_value(v) for v in xs])
                ax.set_yticks(range(len(ys)), [format_value(v) for v in ys])
                ax.set_xlabel(x)
                ax.set_ylabel(y)
                where = f" ({facet}={format_value(fv)})" if facet else ""
                ax.set_title(f"{title}{where}", fontsize=9)
                fig.colorbar(im, ax=ax, fraction=0.046)
        how = ("certified by moebench classify" if certified else "uncertified")
        fig.suptitle(f"{label}: {stuck} (likelihood > {tol:g}/sample below best and truth; "
                     f"{how}) and success, with Wilson 95% intervals", fontsize=10)
        fig.tight_layout()
        figures[str(label)] = fig
    return figures




def plot_phase_maps(
    summary: pd.DataFrame,
    x: str,
    y: str,
    out_dir: str | Path,
    facet: str | None = None,
    tol: float = DEFAULT_TOL,
    formats: Sequence[str] = ("png",),
) -> list[Path]:
    """:func:`phase_figures`, each written atomically as ``phase_<label>.<format>`` in
    ``out_dir``. Returns the written files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for label, fig in phase_figures(summary, x, y, facet, tol).items():
        for fmt in formats:
            written.append(atomic_save_figure(fig, out_dir / f"phase_{label}.{fmt}", dpi=110))
    return written


@figure("phase", help="stuck- and success-rate heatmaps per variant over --axes X Y [FACET] "
        "(a file per variant)", stem="phase", dpi=110, needs=("axes",))
def phase_view(summary: pd.DataFrame, axes: Sequence[str], tol: float = DEFAULT_TOL
               ) -> dict[str, Figure]:
    """:func:`phase_figures` over ``axes`` = X Y [FACET], keyed by variant label."""
    if len(axes) not in (2, 3):
        raise ValueError("--kind phase needs --axes X Y [FACET], data-setting columns such as "
                         f"k gating_scale sigma; got {len(axes)} column(s)")
    return phase_figures(summary, axes[0], axes[1], axes[2] if len(axes) == 3 else None, tol)


# --------------------------------------------------------------------------- theorem check
@figure("theorem", help="the oracle gating EM's random starts that reach the ML gating, per "
        "cell of --axes (results of the theorem config)")
def plot_theorem(summary: pd.DataFrame, axes: Sequence[str] | None = None) -> Any:
    """The theorem check: how many random starts of the oracle gating EM reach the ML gating.

    One panel per activation and k (the first two of ``axes`` present in the
    results, rows and columns), one point per cell of the remaining axes: the
    fraction of random starts that reach the maximum-likelihood gating (the
    likelihood and gating criteria of :mod:`moebench.sweep.theorem`) with its Wilson
    95% interval as a bar, and as a hollow marker the fraction meeting the
    likelihood criterion alone (the gap is "flat" starts: the same likelihood,
    another gating). The counts under each point are the starts not reached: with the
    certified classes of ``moebench classify`` (attached to the summary), local maximum (m),
    saddle (s), singular (z), slow (w), unfinished (u), not classified (n); without them the
    uncertified stuck (s?) and unfinished (u?); and flat (f).

    Parameters
    ----------
    summary : DataFrame
        Summary of a sweep of ``oracle_gating_em`` with ``gating_init`` "truth" and
        "random" variants (``moebench/configs/theorem.toml``).
    axes : sequence of str, optional
        Data-setting columns of a cell; default
        :data:`moebench.sweep.theorem.DEFAULT_AXES`.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When the summary has no oracle runs from both starts (see
        :func:`moebench.sweep.theorem.theorem_runs`).
    """
    from moebench.sweep.theorem import DEFAULT_AXES, GATING_TOL, LL_TOL, theorem_table

    axes = [a for a in (DEFAULT_AXES if axes is None else axes) if a in summary.columns]
    table = theorem_table(summary, axes)
    certified = bool(table["certified"].all())
    marks = ((("n_stuck", "m"), ("n_saddle", "s"), ("n_singular", "z"), ("n_slow", "w"),
              ("n_unfinished", "u"), ("n_not_classified", "n")) if certified else
             (("n_stuck", "s?"), ("n_unfinished", "u?")))
    panel_axes = [a for a in ("activation", "k") if a in axes]
    cell_axes = [a for a in axes if a not in panel_axes]
    row_key = panel_axes[0] if panel_axes else None
    col_key = panel_axes[1] if len(panel_axes) > 1 else None
    rows = sorted(table[row_key].unique(), key=_sort_key) if row_key else [None]
    cols = sorted(table[col_key].unique(), key=_sort_key) if col_key else [None]
    cells = table[cell_axes].drop_duplicates().sort_values(cell_axes) if cell_axes else None
    n_cells = 1 if cells is None else len(cells)
    fig = Figure(figsize=(max(3.2, 0.32 * n_cells + 1.2) * len(cols), 2.9 * len(rows)))
    grid = fig.subplots(len(rows), len(cols), squeeze=False, sharey=True)
    ticks = ["/".join(format_value(v) for v in r) for r in
             cells.itertuples(index=False)] if cells is not None else [""]
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            ax = grid[i, j]
            sub = table
            if row_key:
                sub = sub[sub[row_key] == rv]
            if col_key:
                sub = sub[sub[col_key] == cv]
            if sub.empty:
                ax.set_axis_off()
                continue
            if cells is not None:
                pos = sub[cell_axes].merge(cells.reset_index(drop=True).reset_index(),
                                           on=cell_axes, how="left")["index"].to_numpy()
            else:
                pos = np.zeros(len(sub), dtype=int)
            rate = sub["rate"].to_numpy(float)
            err = np.vstack([rate - sub["low"].to_numpy(float),
                             sub["high"].to_numpy(float) - rate]).clip(0, None)
            ax.axhline(1.0, color="0.85", lw=0.8, zorder=0)
            ax.errorbar(pos, rate, yerr=err, fmt="o", ms=4, color="tab:blue", ecolor="tab:blue",
                        elinewidth=1.0, capsize=2, label="reached the ML gating (95% CI)")
            ax.plot(pos, sub["n_reached_ll"].to_numpy(float) / sub["starts"].to_numpy(float),
                    "o", ms=7, mfc="none", mec="tab:orange", mew=1.0,
                    label="likelihood criterion alone")
            for x, r in zip(pos, sub.to_dict("records"), strict=True):
                miss = [f"{r[c]}{t}" for c, t in (*marks, ("n_flat", "f")) if r[c]]
                if miss:
                    ax.text(x, -0.1, " ".join(miss), ha="center", va="top", fontsize=5.5,
                            rotation=90, color="tab:red")
            ax.set_ylim(-0.4, 1.08)
            ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
            ax.set_xlim(-0.6, n_cells - 0.4)
            ax.set_xticks(range(n_cells), ticks, rotation=90, fontsize=6)
            ax.grid(axis="y", color="0.92", lw=0.6)
            title = ", ".join(f"{key}={format_value(v)}" for key, v in
                              ((row_key, rv), (col_key, cv)) if key)
            ax.set_title(title or "all cells", fontsize=9)
            if j == 0:
                ax.set_ylabel("fraction of random starts")
    for j in range(len(cols)):  # the lowest panel drawn in each column names the cell axes
        shown = [grid[i, j] for i in range(len(rows)) if grid[i, j].axison]
        if shown:
            shown[-1].set_xlabel(" / ".join(cell_axes), fontsize=7)
    handles, labels = next(a for a in grid.flat if a.axison).get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    title = ("Gating EM with the true experts fixed: random starts reaching the ML gating "
             f"(log-likelihood within {LL_TOL:g}/sample and gating within {GATING_TOL:g} of "
             "the truth-started run); red: "
             + ("certified (moebench classify): local maximum (m), saddle (s), singular "
                "(z), slow (w), unfinished (u), not classified (n)" if certified else
                "uncertified: stuck (s?), unfinished (u?)") + ", flat (f)")
    width, height = fig.get_size_inches()
    lines = textwrap.wrap(title, width=max(40, int(width * 72 / (8.5 * 0.55))))
    title_height = len(lines) * 8.5 * 1.3 / 72 + 0.1  # inches, added above the panels
    fig.set_size_inches(width, height + title_height)
    fig.suptitle("\n".join(lines), fontsize=8.5)
    fig.tight_layout(rect=(0, 0.04, 1, 1))  # (tight_layout makes room for the suptitle)
    return fig


def _sort_key(value: Any) -> tuple[int, Any]:
    """Numbers before strings, each in natural order."""
    return (0, float(value)) if isinstance(value, (int, float, np.number)) else (1, str(value))


