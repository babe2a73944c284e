"""Figures of stored sweep results: the shared drawing tools, the curves over iterations
or time and the equal-footing figure; the file writer.

Every figure is a registered view (:mod:`moebench.sweep.views`): ``moebench plot --kind``
lists them with their help. This module holds ``curves``, ``time`` and
``equal_footing``; :mod:`moebench.sweep.plots_finals` the figures of final values
(``sample_complexity``, ``success``, ``heldout``, ``diagnostics``) and
:mod:`moebench.sweep.plots_maps` the maps (``gridlock``, ``phase``, ``theorem``).

Figures are :class:`matplotlib.figure.Figure` objects drawn on their own canvas:
importing this module (or the report, which imports it) does not select or
change matplotlib's backend, so a notebook keeps its own. :func:`save` writes
atomically.

Each variant keeps one colour in every figure, from the config's variant list
(:mod:`moebench.sweep.style`); bands are the quartiles of
:mod:`moebench.sweep.quantiles` and runs are read as curves by
:mod:`moebench.sweep.trajectory`.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from moebench.io import atomic_save_figure, atomic_write_bytes
from moebench.sweep.columns import (
    OK_STATUSES,
    SETTING_COLUMNS,
    format_value,
    is_real_data,
    varying_settings,
)
from moebench.sweep.quantiles import median_band
from moebench.sweep.style import Style, derive_style
from moebench.sweep.trajectory import (
    ERROR_METRICS,
    STEP_NOTE,
    check_inputs,
    run_curve,
    trajectories,
)
from moebench.sweep.views import figure, get_view, views

X_AXES = ("iteration", "time")
METRICS = ("expert_error", "gating_error", "log_likelihood")
SUFFIXES = (".png", ".pdf", ".svg")


def _synthetic(summary: pd.DataFrame) -> bool:
    return not is_real_data(summary)


def _every_checkpoint(summary: pd.DataFrame) -> bool:
    """Synthetic results whose checkpoints were not thinned (steps are checkpoint rows)."""
    thinned = summary.get("checkpoints_thinned", pd.Series(dtype=float)).fillna(0).gt(0).any()
    return _synthetic(summary) and not thinned


def compact_count(v: float) -> str:
    """A sample size as a short tick label: 3000 -> "3k", 1e6 -> "1M", 250 -> "250"."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:g}{suffix}"
    return f"{v:g}"


def _set_n_ticks(ax: Any, values: Sequence[float]) -> None:
    """One labelled tick per sample size, short labels (they must not run into each other)."""
    ax.set_xticks(list(values))
    ax.set_xticklabels([compact_count(float(v)) for v in values])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def set_log_x(ax: Any) -> None:
    """A log x axis labelled at its decades only (minor labels would overlap)."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _panel_title(cols: Sequence[str], key: Any) -> str:
    key = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{c}={format_value(v)}" for c, v in zip(cols, key, strict=True))


def _groups(frame: pd.DataFrame, cols: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    if not cols:
        return [("", frame)]
    return [(_panel_title(cols, key), g) for key, g in frame.groupby(list(cols), sort=True,
                                                                         dropna=False)]


def _grid(n_panels: int, width: float = 4.2, height: float = 3.3, max_cols: int = 3):
    ncols = max(1, min(n_panels, max_cols))
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(width * ncols, height * nrows + 0.6), constrained_layout=True)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


def _legend(fig: Any, colors: dict[str, str], labels: Sequence[str],
            markers: dict[str, str] | None = None) -> None:
    handles = [Line2D([], [], color=colors[lab], lw=2,
                          marker=(markers or {}).get(lab)) for lab in labels]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5),
               frameon=False, fontsize="small")



# --------------------------------------------------------------------------- curves
@figure("curves", help="error vs --x (iterations or wall time): median and IQR band over "
        "repetitions, a panel per setting", applies=lambda s: True, stem="curves_{x}")
def plot_curves(summary: pd.DataFrame, checkpoints: pd.DataFrame, x: str = "iteration",
                metric: str = "expert_error", raw: bool = False,
                style: Style | None = None) -> Any:
    """Median and IQR of ``metric`` against iterations or wall time, a panel per setting.

    Each run's curve is its anytime estimate (the checkpoint with the best
    log-likelihood so far; :func:`moebench.sweep.trajectory.run_curve`), or with ``raw``
    every checkpoint as recorded; the band is :func:`moebench.sweep.quantiles.median_band`
    on the union of the runs' iterations (on 200 log-spaced times).
    """
    if x not in X_AXES:
        raise ValueError(f"unknown --x {x!r}; valid choices: {', '.join(X_AXES)}")
    if metric not in METRICS:
        raise ValueError(f"unknown --metric {metric!r}; valid choices: {', '.join(METRICS)}")
    ok_ids = set(summary.loc[summary["status"].isin(OK_STATUSES), "run_id"])
    ck = checkpoints[checkpoints["run_id"].isin(ok_ids)]
    if metric != "log_likelihood" and (ck.empty or not np.isfinite(ck[metric]).any()):
        metric = "log_likelihood"  # real data: no true parameters
    if ck.empty:
        raise ValueError("no finished run has checkpoints to plot")
    cols = varying_settings(summary)
    labels = sorted(ck["label"].unique())
    colors = (style or derive_style(summary)).colors
    panels = _groups(ck, cols)
    fig, axes = _grid(len(panels))
    for ax, (title, frame) in zip(axes, panels, strict=True):
        for label, lf in frame.groupby("label", sort=True):
            runs = [run_curve(r, x, metric, raw) for _, r in lf.groupby("run_id", sort=True)]
            runs = [r for r in runs if len(r[0])]
            if not runs:
                continue
            gx = curve_grid(runs, x)
            med, q1, q3 = median_band(runs, gx)
            if len(gx) == 1:
                ax.errorbar(gx, med, yerr=[[med[0] - q1[0]], [q3[0] - med[0]]], fmt="o",
                            color=colors[label], ms=5, capsize=3)
            else:
                ax.plot(gx, med, color=colors[label], lw=1.8, drawstyle="steps-post")
                ax.fill_between(gx, q1, q3, color=colors[label], alpha=0.2, step="post", lw=0)
        set_log_x(ax)
        if metric != "log_likelihood":
            ax.set_yscale("log")
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("wall time (s)" if x == "time" else "iteration + 1")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(True, which="major", alpha=0.3)
    _legend(fig, colors, labels)
    how = "as recorded" if raw else "at the best log-likelihood so far"
    fig.suptitle(f"{metric.replace('_', ' ')} vs {'wall time' if x == 'time' else 'iterations'}"
                 f" ({how}; median and IQR band over repetitions)", fontsize="medium")
    return fig


def curve_grid(runs: list[tuple[np.ndarray, np.ndarray]], x: str) -> np.ndarray:
    """Where the curves figure reads its runs: every recorded iteration, or 200 log-spaced
    times over the runs' span."""
    xs_all = np.concatenate([r[0] for r in runs])
    if x == "time":
        lo, hi = max(xs_all.min(), 1e-4), xs_all.max()
        return np.geomspace(lo, hi, 200) if hi > lo else np.array([lo])
    return np.unique(xs_all)


@figure("time", help="the curves against wall time", applies=_synthetic)
def plot_time(summary: pd.DataFrame, checkpoints: pd.DataFrame, metric: str = "expert_error",
              raw: bool = False, style: Style | None = None) -> Any:
    """:func:`plot_curves` against wall time."""
    return plot_curves(summary, checkpoints, "time", metric, raw, style)


# --------------------------------------------------------------------------- equal footing
def plot_equal_footing(summary: pd.DataFrame, checkpoints: pd.DataFrame,
                       metric: str = "expert_error", raw: bool = False,
                       facet: Sequence[str] | None = None,
                       variants: Sequence[str] | None = None,
                       style: Style | None = None) -> Any:
    """Methods on equal footing: ``metric`` against steps and against estimator time.

    Two panels per data setting: above, the error at equal steps (iterations; step 0
    is a run's first estimate, tensor_em's tensor step; see
    :mod:`moebench.sweep.trajectory` for what one step is per algorithm); below,
    the same runs at equal time on the estimator's own clock, every phase and restart
    counted (log scale). Each line is a variant's median over its finished runs with
    the interquartile band; each run is read off a common grid with its last value
    carried forward (a run that ended keeps its final value, drawn step-wise), and a
    variant's line ends where its longest run ended (dot). The error axis is
    logarithmic.

    Parameters
    ----------
    summary, checkpoints : DataFrame
        Stored results (:func:`moebench.sweep.store.load_results`).
    metric : str
        ``expert_error`` (default) or ``gating_error``.
    raw : bool
        Each checkpoint's error as recorded instead of the anytime estimate (the error
        at the best log-likelihood so far).
    facet : sequence of str, optional
        Setting columns with one panel pair per value (default: every varying setting;
        runs of the settings left out are pooled).
    variants : sequence of str, optional
        The variant labels to draw (default: all).
    style : Style, optional
        Colours (default: derived from ``summary``, :mod:`moebench.sweep.style`).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        For a metric that is not an error, results without checkpoints, an unknown
        variant or facet column, or no finished run with checkpoints.
    """
    labels = check_inputs(summary, checkpoints, metric, variants)
    settings = [c for c in SETTING_COLUMNS if c in summary.columns]
    if facet is not None:
        bad = [c for c in facet if c not in settings]
        if bad:
            raise ValueError(f"unknown facet column(s) {', '.join(map(repr, bad))}; valid "
                             f"choices: {', '.join(settings)}")
    cols = list(dict.fromkeys(facet)) if facet is not None else varying_settings(summary)
    runs = summary[summary["status"].isin(OK_STATUSES) & summary["label"].isin(labels)]
    runs = runs[runs["run_id"].isin(set(checkpoints["run_id"]))]
    if runs.empty:
        raise ValueError(f"no finished run of {', '.join(labels)} has checkpoints to draw")
    traj = trajectories(checkpoints[checkpoints["run_id"].isin(set(runs["run_id"]))],
                        metric, raw)
    colors = (style or derive_style(summary)).colors
    panels = _groups(runs, cols)
    ncols = max(1, min(len(panels), 3))
    blocks = -(-len(panels) // ncols)
    fig = Figure(figsize=(3.9 * ncols, 2 * 2.6 * blocks + 1.1), constrained_layout=True)
    grid = fig.subplots(2 * blocks, ncols, squeeze=False)
    for i in range(len(panels), blocks * ncols):
        grid[2 * (i // ncols), i % ncols].set_visible(False)
        grid[2 * (i // ncols) + 1, i % ncols].set_visible(False)
    drawn: set[str] = set()
    for i, (title, frame) in enumerate(panels):
        ax_s, ax_t = grid[2 * (i // ncols), i % ncols], grid[2 * (i // ncols) + 1, i % ncols]
        curves = {lab: [traj[r] for r in frame.loc[frame["label"] == lab, "run_id"]
                        if len(traj[r][0])] for lab in sorted(frame["label"].unique())}
        curves = {lab: c for lab, c in curves.items() if c}
        if not curves:
            continue
        t_lo = min(float(c[1][0]) for cs in curves.values() for c in cs)
        t_hi = max(float(c[1][-1]) for cs in curves.values() for c in cs)
        t_lo = max(t_lo, 1e-4)
        t_grid = np.geomspace(t_lo, max(t_hi, t_lo), 160)
        for lab, cs in curves.items():
            drawn.add(lab)
            s_end = max(c[0][-1] for c in cs)
            s_grid = np.arange(0.0, s_end + 1)
            tg = t_grid[t_grid <= max(c[1][-1] for c in cs) * (1 + 1e-9)]
            for ax, xg, pairs in ((ax_s, s_grid, [(c[0], c[2]) for c in cs]),
                                  (ax_t, tg, [(np.maximum(c[1], 1e-4), c[2]) for c in cs])):
                med, q1, q3 = median_band(pairs, xg)
                ax.plot(xg, med, color=colors[lab], lw=1.6, drawstyle="steps-post")
                ax.fill_between(xg, q1, q3, color=colors[lab], alpha=0.18, step="post", lw=0)
                last = np.flatnonzero(np.isfinite(med))
                if last.size:
                    ax.plot(xg[last[-1]], med[last[-1]], "o", color=colors[lab], ms=3.5)
        name = metric.replace("_", " ")
        for ax, what in ((ax_s, "equal steps"), (ax_t, "equal time")):
            ax.set_yscale("log")
            ax.set_title(f"{title}: {what}" if title else what, fontsize="medium")
            ax.set_ylabel(name)
            ax.grid(True, which="major", alpha=0.3)
        ax_s.set_xlabel("step (iteration / epoch; 0 = first estimate)")
        set_log_x(ax_t)
        ax_t.set_xlabel("estimator time (s), all phases")
    shown = [lab for lab in sorted(summary["label"].unique()) if lab in drawn]
    _legend(fig, colors, shown)
    how = "as recorded" if raw else "anytime estimate: the error at the best log-likelihood so far"
    fig.suptitle(f"{name} at equal steps and at equal estimator time ({how}; median and IQR "
                 f"band over finished runs)\n{textwrap.fill(STEP_NOTE + '.', 150)}\nEach run "
                 "keeps its last value after its last checkpoint (carried forward); a line ends "
                 "(dot) where the variant's longest run ended.", fontsize="small")
    return fig




@figure("equal_footing", help="expert error at equal steps and at equal estimator time, a "
        "panel pair per setting or per --axes value (--metric: an error; other metrics draw "
        "expert_error)", applies=_every_checkpoint)
def equal_footing_view(summary: pd.DataFrame, checkpoints: pd.DataFrame,
                       metric: str = "expert_error", raw: bool = False,
                       axes: Sequence[str] | None = None, variants: Sequence[str] | None = None,
                       style: Style | None = None) -> Any:
    """:func:`plot_equal_footing` with ``--axes`` as its facets; a metric that is not an
    error (``log_likelihood``) draws the expert error."""
    return plot_equal_footing(summary, checkpoints,
                              metric if metric in ERROR_METRICS else "expert_error", raw,
                              facet=axes, variants=variants, style=style)


#: colours of a ``compact`` PNG (a palette image, about a third of the full-colour size)
COMPACT_COLORS = 64


def draw(kind: str, summary: pd.DataFrame, checkpoints: pd.DataFrame | None = None,
         **inputs: Any) -> Any:
    """The figure (or dict of figures) of the registered view ``kind``, as ``moebench plot
    --kind`` draws it; ``inputs`` are the other :data:`moebench.sweep.views.INPUTS` (``x``,
    ``metric``, ``style``, ...), each left at the view's default when not given.

    Raises
    ------
    ValueError
        For an unknown kind (naming the registered ones) or an input the registry does not
        know.
    """
    from moebench.sweep.views import INPUTS, call

    bad = [name for name in inputs if name not in INPUTS]
    if bad:
        raise ValueError(f"unknown input(s) {', '.join(bad)}; valid: {', '.join(INPUTS)}")
    given = {"summary": summary, "checkpoints": checkpoints, **inputs}
    view = get_view("figure", kind)
    return call(view, {name: value for name, value in given.items()
                       if name in view.inputs and (value is not None or name in inputs)})


def applicable_kinds(summary: pd.DataFrame) -> list[str]:
    """The figure kinds that ``--kind all`` draws for these results (each registered
    figure's ``applies``)."""
    return [name for name, view in views("figure").items()
            if view.applies is not None and view.applies(summary)]


def save(fig: Any, path: str | os.PathLike, compact: bool = False, dpi: int = 130) -> Path:
    """Save a figure (format from the suffix: .png, .pdf, .svg), atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path
        The figure file; its suffix gives the format.
    compact : bool
        PNG only: store a palette image of :data:`COMPACT_COLORS` colours (for figures
        committed to the repository; lines and bands stay distinct). Ignored for PDF
        and SVG.
    dpi : int
        Resolution of a PNG.

    Returns
    -------
    Path
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"figure file must end in {', '.join(SUFFIXES)}; got {path.name!r}")
    if compact and path.suffix.lower() == ".png":
        import io

        from PIL import Image

        buf = io.BytesIO()
        fig.savefig(buf, dpi=dpi, format="png")
        buf.seek(0)
        image = Image.open(buf).convert("RGB").quantize(
            colors=COMPACT_COLORS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        out = io.BytesIO()
        image.save(out, format="png", optimize=True)
        atomic_write_bytes(path, out.getvalue())
        return path
    return atomic_save_figure(fig, path, dpi=dpi, format=path.suffix.lower()[1:])


def default_figure(summary: pd.DataFrame, checkpoints: pd.DataFrame, path: str | os.PathLike,
                   style: Style | None = None) -> Path:
    """The figure ``moebench run`` draws: error vs wall time (held-out scores on real data),
    in ``style`` (default: derived from ``summary``)."""
    if is_real_data(summary):  # the heldout figure, by name (plots_finals builds on this module)
        return save(get_view("figure", "heldout").func(summary, style), path)
    return save(plot_curves(summary, checkpoints, "time", style=style), path)
