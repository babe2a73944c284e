"""Every figure of stored sweep results, drawn without pyplot (the global backend is left alone).

Kinds
-----
``curves``
    Matched expert (or gating) error against iterations or wall time: the median
    over repetitions with the interquartile band, one panel per data setting.
``time``
    ``curves`` against wall time.
``sample_complexity``
    Final error against n (log-log) with an n^-1/2 reference slope.
``success``
    Success rate against k (or d, or another varying setting).
``heldout``
    Real data: held-out mean log-likelihood and MSE against k, with the reference
    models (the linear regression) as dashed lines.
``diagnostics``
    Final error and fitted diagnostics against a setting.
``equal_footing`` (:func:`plot_equal_footing`)
    Methods on equal footing: expert error at equal steps (iterations) and at equal
    estimator time, median and IQR band per variant, two panels per setting.
``gridlock`` and ``phase`` (:func:`plot_gridlock`, :func:`plot_phase_maps`)
    Where local search is stuck while a reference variant succeeds, from the rates
    of :mod:`moebench.sweep.gridlock`.
``theorem`` (:func:`plot_theorem`)
    The paper's theorem check (:mod:`moebench.sweep.theorem`): per cell of the map,
    the fraction of random starts of the oracle gating EM that reach the
    maximum-likelihood gating, with Wilson 95% intervals.

Figures are :class:`matplotlib.figure.Figure` objects drawn on their own canvas:
importing this module (or the report, which imports it) does not select or
change matplotlib's backend, so a notebook keeps its own. :func:`save` writes
atomically.

Each algorithm variant keeps one colour in every figure: the usual labels have
fixed colours, any other label takes the next free colour in sorted order.
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
from moebench.metrics import wilson_interval
from moebench.registry import reference_algorithms
from moebench.sweep.columns import (
    OK_STATUSES,
    SETTING_COLUMNS,
    format_value,
    is_real_data,
    varying_settings,
)
from moebench.sweep.equal_footing import (
    ERROR_METRICS,
    STEP_NOTE,
    anytime_values,
    carry_forward,
    check_inputs,
    median_band,
    trajectories,
)
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
)

KINDS = ("curves", "time", "sample_complexity", "success", "heldout", "diagnostics",
         "equal_footing", "theorem", "all")
X_AXES = ("iteration", "time")
METRICS = ("expert_error", "gating_error", "log_likelihood")
SUFFIXES = (".png", ".pdf", ".svg")

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
            "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]
PINNED_COLORS = {
    "tensor_em": _PALETTE[0], "tensor_em_refine": _PALETTE[1], "tensor_em+refine": _PALETTE[1],
    "joint_em": _PALETTE[2],
    "sgd": _PALETTE[3], "alt_min": _PALETTE[4], "joint_em_restarts": _PALETTE[5],
    "gradient_em": _PALETTE[6], "sgd_plain": _PALETTE[8], "linear_regression": "#000000",
}


def variant_colors(labels: Sequence[str]) -> dict[str, str]:
    """A colour per label: pinned ones fixed, the others the free colours in sorted order."""
    colors = {lab: PINNED_COLORS[lab] for lab in labels if lab in PINNED_COLORS}
    free = sorted((c for c in _PALETTE if c not in PINNED_COLORS.values()),
                  key=lambda c: c != _PALETTE[9])
    free += [c for c in _PALETTE if c not in free]
    i = 0
    for lab in sorted(set(labels)):
        if lab not in colors:
            colors[lab] = free[i % len(free)]
            i += 1
    return colors


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def variant_markers(labels: Sequence[str]) -> dict[str, str]:
    """A marker per label (sorted order), so overlapping lines stay distinguishable."""
    return {lab: MARKERS[i % len(MARKERS)] for i, lab in enumerate(sorted(set(labels)))}


def _set_n_ticks(ax: Any, values: Sequence[float]) -> None:
    ax.set_xticks(list(values))
    ax.set_xticklabels([f"{int(v):,}" if float(v).is_integer() else f"{v:g}" for v in values])
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
def _best_so_far(run: pd.DataFrame, metric: str) -> np.ndarray:
    """``metric`` of the checkpoint with the highest log-likelihood so far (anytime estimate).

    Restarts (joint EM's n_init, sgd's) start over from a poor point; an estimator
    returns its best restart, so the curve follows the best log-likelihood seen.
    """
    return anytime_values(run["log_likelihood"].to_numpy(float), run[metric].to_numpy(float))


def _run_xy(run: pd.DataFrame, x: str, metric: str, raw: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    run = run.sort_index()
    y = run[metric].to_numpy(float) if raw or metric == "log_likelihood" else \
        _best_so_far(run, metric)
    if x == "time":
        xs = np.maximum.accumulate(np.maximum(run["time"].to_numpy(float), 1e-4))
    else:
        it = run["iteration"].to_numpy(float)
        xs = it if np.all(np.diff(it) > 0) else np.arange(len(it), dtype=float)
        xs = xs + 1.0
    keep = np.isfinite(y)
    return xs[keep], y[keep]


def _median_band(runs: list[tuple[np.ndarray, np.ndarray]], x: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xs_all = np.concatenate([r[0] for r in runs])
    if x == "time":
        lo, hi = max(xs_all.min(), 1e-4), xs_all.max()
        grid = np.geomspace(lo, hi, 200) if hi > lo else np.array([lo])
    else:
        grid = np.unique(xs_all)
    vals = np.vstack([carry_forward(rx, ry, grid) for rx, ry in runs])
    ok = np.sum(np.isfinite(vals), axis=0) >= max(1, (len(runs) + 1) // 2)
    with np.errstate(all="ignore"):
        q = np.nanpercentile(np.where(np.isfinite(vals), vals, np.nan), [25, 50, 75], axis=0)
    return grid[ok], q[1][ok], q[0][ok], q[2][ok]


def plot_curves(summary: pd.DataFrame, checkpoints: pd.DataFrame, x: str = "iteration",
                metric: str = "expert_error", raw: bool = False) -> Any:
    """Median and IQR of ``metric`` against iterations or wall time, a panel per setting.

    Each run's curve is its anytime estimate (the checkpoint with the best
    log-likelihood so far), or with ``raw`` every checkpoint as recorded.
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
    colors = variant_colors(sorted(summary["label"].unique()))
    panels = _groups(ck, cols)
    fig, axes = _grid(len(panels))
    for ax, (title, frame) in zip(axes, panels, strict=True):
        for label, lf in frame.groupby("label", sort=True):
            runs = [_run_xy(r, x, metric, raw) for _, r in lf.groupby("run_id", sort=True)]
            runs = [r for r in runs if len(r[0])]
            if not runs:
                continue
            gx, med, q1, q3 = _median_band(runs, x)
            if len(gx) == 1:
                ax.errorbar(gx, med, yerr=[[med[0] - q1[0]], [q3[0] - med[0]]], fmt="o",
                            color=colors[label], ms=5, capsize=3)
            else:
                ax.plot(gx, med, color=colors[label], lw=1.8, drawstyle="steps-post")
                ax.fill_between(gx, q1, q3, color=colors[label], alpha=0.2, step="post", lw=0)
        ax.set_xscale("log")
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


# --------------------------------------------------------------------------- finals
def _quartiles(values: pd.Series) -> tuple[float, float, float]:
    v = values.to_numpy(float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return q1, med, q3


def plot_sample_complexity(summary: pd.DataFrame, metric: str = "expert_error") -> Any:
    """Final error against n, median and IQR over repetitions, log-log."""
    if "n" not in summary.columns or summary["n"].nunique() < 2:
        raise ValueError("the sample-complexity figure needs results at two or more values of n")
    ok = summary[summary["status"].isin(OK_STATUSES)]
    cols = varying_settings(summary, exclude=("n",))
    colors = variant_colors(sorted(summary["label"].unique()))
    markers = variant_markers(summary["label"].unique())
    panels = _groups(ok, cols)
    fig, axes = _grid(len(panels))
    for ax, (title, frame) in zip(axes, panels, strict=True):
        for label, lf in frame.groupby("label", sort=True):
            stats = [(n, *_quartiles(g[metric])) for n, g in lf.groupby("n", sort=True)]
            n, q1, med, q3 = (np.array(s, float) for s in zip(*stats, strict=True))
            ax.plot(n, med, "-", marker=markers[label], color=colors[label], lw=1.6, ms=5,
                    mfc="none")
            ax.fill_between(n, q1, q3, color=colors[label], alpha=0.2, lw=0)
        nn = np.array(sorted(frame["n"].unique()), float)
        best = frame.groupby("n")[metric].median().min()
        if np.isfinite(best) and best > 0:
            ax.plot(nn, best * np.sqrt(nn[-1] / nn), "--", color="0.5", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _set_n_ticks(ax, nn)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("n (training samples)")
        ax.set_ylabel(f"final {metric.replace('_', ' ')}")
        ax.grid(True, which="major", alpha=0.3)
    labels = sorted(ok["label"].unique())
    _legend(fig, colors, labels, markers)
    fig.suptitle("sample complexity (median, IQR band; dashed: slope n^-1/2)",
                 fontsize="medium")
    return fig


def _success_axis(summary: pd.DataFrame) -> str:
    for c in ("k", "d"):
        if c in summary.columns and summary[c].nunique() > 1:
            return c
    varying = varying_settings(summary)
    return varying[0] if varying else "k"


def plot_success(summary: pd.DataFrame, by: str | None = None) -> Any:
    """Success rate (every run counts; failures are failures) against k, d or ``by``."""
    if "expert_error" not in summary or not np.isfinite(summary["expert_error"]).any():
        raise ValueError("the success figure needs synthetic results (true parameters)")
    by = by or _success_axis(summary)
    if by not in summary.columns:
        raise ValueError(f"unknown --by {by!r}; valid: {', '.join(varying_settings(summary))}")
    cols = varying_settings(summary, exclude=(by,))
    colors = variant_colors(sorted(summary["label"].unique()))
    markers = variant_markers(summary["label"].unique())
    panels = _groups(summary, cols)
    fig, axes = _grid(len(panels))
    categorical = not pd.api.types.is_numeric_dtype(summary[by])
    labels = sorted(summary["label"].unique())
    for ax, (title, frame) in zip(axes, panels, strict=True):
        for label, lf in frame.groupby("label", sort=True):
            rate = lf.groupby(by, sort=True)["success"].apply(lambda s: s.astype(bool).mean())
            # a small vertical offset per variant keeps equal rates visible
            offset = 0.012 * (labels.index(label) - (len(labels) - 1) / 2)
            xs = [str(v) for v in rate.index] if categorical else rate.index.to_numpy(float)
            ax.plot(xs, rate.to_numpy(float) + offset, "-", marker=markers[label],
                    color=colors[label], lw=1.6, ms=6, mfc="none")
        ax.set_ylim(-0.05, 1.05)
        if not categorical:
            ax.set_xticks(sorted(frame[by].unique()))
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(by)
        ax.set_ylabel("success rate")
        ax.grid(True, alpha=0.3)
    _legend(fig, colors, labels, markers)
    threshold = summary["success_threshold"].iloc[0] if "success_threshold" in summary else 0.1
    fig.suptitle(f"success rate (matched expert error < {threshold:g})", fontsize="medium")
    return fig


def plot_heldout(summary: pd.DataFrame) -> Any:
    """Real data: held-out log-likelihood and MSE against k (mean +- sd over folds).

    One column of panels per other varying setting (e.g. activation); the linear
    regression reference is the dashed line with its +- sd band.
    """
    ok = summary[summary["status"].isin(OK_STATUSES)]
    if ok.empty:
        raise ValueError("no finished run to plot")
    colors = variant_colors(sorted(summary["label"].unique()))
    is_ref = ok["algorithm"].isin(reference_algorithms()) if "algorithm" in ok \
        else pd.Series(False, index=ok.index)
    ref, models = ok[is_ref], ok[~is_ref]
    ref_labels = sorted(ref["label"].unique())
    cols = varying_settings(models, exclude=("k",))
    groups = _groups(models, cols) if not models.empty else [("", models)]
    metrics = ("test_log_likelihood", "test_mse")
    ncols = len(groups)
    fig = Figure(figsize=(4.6 * ncols, 6.8), constrained_layout=True)
    axes = fig.subplots(2, ncols, squeeze=False)
    labels = sorted(models["label"].unique())
    ks = sorted(models["k"].unique()) if not models.empty else []
    for j, (title, frame) in enumerate(groups):
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            for lab in ref_labels:
                rows = ref[ref["label"] == lab]
                m, s = float(rows[metric].mean()), float(rows[metric].std(ddof=1) or 0.0)
                ax.axhline(m, color=colors[lab], ls="--", lw=1.2)
                ax.axhspan(m - s, m + s, color=colors[lab], alpha=0.08, lw=0)
            for pos, label in enumerate(labels):
                stats = frame[frame["label"] == label].groupby("k")[metric].agg(["mean", "std"])
                if stats.empty:
                    continue
                shift = 0.08 * (pos - (len(labels) - 1) / 2)
                ax.errorbar(stats.index.to_numpy(float) + shift, stats["mean"],
                            yerr=stats["std"].fillna(0), fmt="o-", color=colors[label],
                            capsize=3, lw=1.6, ms=4)
            ax.set_xticks(ks)
            ax.set_xlabel("k (experts)")
            ax.set_ylabel(metric.replace("_", " ") + " (standardised)")
            ax.set_title(title, fontsize="medium")
            ax.grid(True, alpha=0.3)
    _legend(fig, colors, labels + ref_labels)
    name = ok["dataset"].iloc[0] if "dataset" in ok else "real data"
    fig.suptitle(f"{name}: held-out scores over folds (mean +- sd; dashed: linear regression)",
                 fontsize="medium")
    return fig


def plot_diagnostics(summary: pd.DataFrame, by: str | None = None) -> Any:
    """Final expert error per variant against ``by`` (one panel per value of the other
    varying settings), and below it the fitted diagnostics that estimators report
    (``fitted_*`` columns, e.g. tensor_em's assumption check and T2 eigen-gap).

    Built for assumption-violation sweeps: the error shows the bias, the diagnostics
    show whether a user could have seen it coming from the fit alone.
    """
    ok = summary[summary["status"].isin(OK_STATUSES)]
    if ok.empty or "expert_error" not in ok:
        raise ValueError("the diagnostics figure needs finished synthetic runs")
    by = by or _success_axis(summary)
    if by not in summary.columns:
        raise ValueError(f"unknown --by {by!r}; valid: {', '.join(varying_settings(summary))}")
    diag_cols = [c for c in ("fitted_assumption_check", "fitted_t2_eigengap")
                 if c in ok.columns and ok[c].notna().any()]
    cols = varying_settings(summary, exclude=(by,))
    panels = _groups(ok, cols)
    rows = 1 + len(diag_cols)
    fig = Figure(figsize=(4.2 * len(panels), 3.2 * rows))
    axes = fig.subplots(rows, len(panels), squeeze=False)
    labels = sorted(summary["label"].unique())
    colors = variant_colors(labels)
    markers = variant_markers(labels)
    categorical = not pd.api.types.is_numeric_dtype(summary[by])
    for j, (title, frame) in enumerate(panels):
        ax = axes[0, j]
        for label, lf in frame.groupby("label", sort=True):
            q1, med, q3 = (lf.groupby(by, sort=True)["expert_error"].quantile(q)
                           for q in (0.25, 0.5, 0.75))
            xs = [str(v) for v in med.index] if categorical else med.index.to_numpy(float)
            ax.plot(xs, med.to_numpy(float), "-", marker=markers[label], color=colors[label],
                    lw=1.6, mfc="none")
            ax.fill_between(xs, q1.to_numpy(float), q3.to_numpy(float), color=colors[label],
                            alpha=0.15, lw=0)
        ax.set_yscale("log")
        ax.set_title(title, fontsize="medium")
        ax.set_ylabel("final expert error")
        ax.grid(True, alpha=0.3)
        for i, col in enumerate(diag_cols, start=1):
            axd = axes[i, j]
            for label, lf in frame[frame[col].notna()].groupby("label", sort=True):
                med = lf.groupby(by, sort=True)[col].median()
                xs = [str(v) for v in med.index] if categorical else med.index.to_numpy(float)
                axd.plot(xs, med.to_numpy(float), "-", marker=markers[label],
                         color=colors[label], lw=1.6, mfc="none")
            axd.set_ylabel(col.removeprefix("fitted_").replace("_", " ") + " (median)")
            axd.grid(True, alpha=0.3)
        axes[-1, j].set_xlabel(by)
    _legend(fig, colors, labels, markers)
    fig.suptitle(f"final expert error (median, IQR) and fitted diagnostics against {by}",
                 fontsize="medium")
    return fig


# --------------------------------------------------------------------------- equal footing
def plot_equal_footing(summary: pd.DataFrame, checkpoints: pd.DataFrame,
                       metric: str = "expert_error", raw: bool = False,
                       facet: Sequence[str] | None = None,
                       variants: Sequence[str] | None = None) -> Any:
    """Methods on equal footing: ``metric`` against steps and against estimator time.

    Two panels per data setting: above, the error at equal steps (iterations; step 0
    is a run's first estimate, tensor_em's tensor step; see
    :mod:`moebench.sweep.equal_footing` for what one step is per algorithm); below,
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
    colors = variant_colors(sorted(summary["label"].unique()))
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
        ax_t.set_xscale("log")
        ax_t.set_xlabel("estimator time (s), all phases")
    shown = [lab for lab in sorted(summary["label"].unique()) if lab in drawn]
    _legend(fig, colors, shown)
    how = "as recorded" if raw else "anytime estimate: the error at the best log-likelihood so far"
    fig.suptitle(f"{name} at equal steps and at equal estimator time ({how}; median and IQR "
                 f"band over finished runs)\n{textwrap.fill(STEP_NOTE + '.', 150)}\nEach run "
                 "keeps its last value after its last checkpoint (carried forward); a line ends "
                 "(dot) where the variant's longest run ended.", fontsize="small")
    return fig


# --------------------------------------------------------------------------- gridlock
def plot_gridlock(
    summary: pd.DataFrame,
    axes: Sequence[str],
    reference: str = "tensor_em_refine",
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
    baselines : sequence of str, optional
        Variant labels to show; default: every local-search variant but the reference.

    Returns
    -------
    matplotlib.figure.Figure
    """
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


def plot_phase_maps(
    summary: pd.DataFrame,
    x: str,
    y: str,
    out_dir: str | Path,
    facet: str | None = None,
    tol: float = DEFAULT_TOL,
    formats: Sequence[str] = ("png",),
) -> list[Path]:
    """One figure per algorithm variant: stuck-rate and success-rate heatmaps over (x, y).

    With ``facet``, one row of heatmaps per value of that column. Each figure is
    written atomically as ``phase_<label>.<format>`` in ``out_dir``.
    Returns the written files.
    """
    axes = [x, y] + ([facet] if facet else [])
    table = phase_table(summary, axes, tol)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    facets = sorted(table[facet].dropna().unique()) if facet else [None]
    xs = sorted(table[x].dropna().unique())
    ys = sorted(table[y].dropna().unique())
    certified = is_certified(summary)
    stuck = "local maximum" if certified else "stuck"
    panels = [("stuck_rate", "n_stuck", f"{stuck} rate"), ("success_rate", "n_success",
                                                           "success rate")]
    if certified or has_stationarity(summary):
        panels.insert(1, ("unfinished_rate", "n_unfinished", "unfinished rate"))
    written = []
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
        for fmt in formats:
            path = out_dir / f"phase_{label}.{fmt}"
            written.append(atomic_save_figure(fig, path, dpi=110))
    return written


# --------------------------------------------------------------------------- theorem check
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
    import textwrap

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


# --------------------------------------------------------------------------- entry points
def draw(kind: str, summary: pd.DataFrame, checkpoints: pd.DataFrame, x: str = "iteration",
         metric: str = "expert_error", by: str | None = None, raw: bool = False) -> Any:
    """The figure of one ``kind`` (not ``all``)."""
    if kind == "curves":
        return plot_curves(summary, checkpoints, x, metric, raw)
    if kind == "time":
        return plot_curves(summary, checkpoints, "time", metric, raw)
    if kind == "sample_complexity":
        return plot_sample_complexity(summary, metric if metric != "log_likelihood"
                                      else "expert_error")
    if kind == "success":
        return plot_success(summary, by)
    if kind == "heldout":
        return plot_heldout(summary)
    if kind == "diagnostics":
        return plot_diagnostics(summary, by)
    if kind == "equal_footing":
        return plot_equal_footing(summary, checkpoints,
                                  metric if metric in ERROR_METRICS else "expert_error", raw)
    if kind == "theorem":
        return plot_theorem(summary)
    raise ValueError(f"unknown --kind {kind!r}; valid choices: {', '.join(KINDS)}")


def applicable_kinds(summary: pd.DataFrame) -> list[str]:
    """The kinds that the results support (``all`` draws these)."""
    if is_real_data(summary):
        return ["heldout", "curves"]
    kinds = ["curves", "time", "success", "equal_footing"]
    if summary.get("checkpoints_thinned", pd.Series(dtype=float)).fillna(0).gt(0).any():
        kinds.remove("equal_footing")  # steps are checkpoint rows: thinned runs lack them
    if "n" in summary.columns and summary["n"].nunique() > 1:
        kinds.insert(2, "sample_complexity")
    return kinds


#: colours of a ``compact`` PNG (a palette image, about a third of the full-colour size)
COMPACT_COLORS = 64


def save(fig: Any, path: str | os.PathLike, compact: bool = False) -> Path:
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
        fig.savefig(buf, dpi=130, format="png")
        buf.seek(0)
        image = Image.open(buf).convert("RGB").quantize(
            colors=COMPACT_COLORS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        out = io.BytesIO()
        image.save(out, format="png", optimize=True)
        atomic_write_bytes(path, out.getvalue())
        return path
    return atomic_save_figure(fig, path, dpi=130, format=path.suffix.lower()[1:])


def default_figure(summary: pd.DataFrame, checkpoints: pd.DataFrame, path: str | os.PathLike
                   ) -> Path:
    """The figure ``moebench run`` draws: error vs wall time (held-out scores on real data)."""
    if is_real_data(summary):
        return save(plot_heldout(summary), path)
    return save(plot_curves(summary, checkpoints, "time"), path)
