"""Figures of final values: sample complexity, success rate, held-out scores (real data)
and fitted diagnostics, each a registered view (:mod:`moebench.sweep.views`).

``sample_complexity``
    Final error against n (log-log) with an n^-1/2 reference slope.
``success``
    Success rate against k (or d, or another varying setting).
``heldout``
    Real data: held-out mean log-likelihood and MSE against k, with the reference
    models (the linear regression) as dashed lines.
``diagnostics``
    Final error and fitted diagnostics against a setting.

Medians and bands are :func:`moebench.sweep.quantiles.quartiles`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from moebench.registry import reference_algorithms
from moebench.sweep.columns import OK_STATUSES, is_real_data, varying_settings
from moebench.sweep.plots import _grid, _groups, _legend, _set_n_ticks, _synthetic
from moebench.sweep.quantiles import quartiles
from moebench.sweep.style import Style, derive_style
from moebench.sweep.views import figure


def _several_n(summary: pd.DataFrame) -> bool:
    return _synthetic(summary) and "n" in summary.columns and summary["n"].nunique() > 1


@figure("sample_complexity", help="final error vs n (log-log), median and IQR band, with an "
        "n^-1/2 slope (--metric log_likelihood draws expert_error)", applies=_several_n)
def plot_sample_complexity(summary: pd.DataFrame, metric: str = "expert_error",
                           style: Style | None = None) -> Any:
    """Final error against n, median and IQR over repetitions, log-log.

    A likelihood has no error slope: ``metric="log_likelihood"`` draws the expert error.
    """
    if metric == "log_likelihood":
        metric = "expert_error"
    if "n" not in summary.columns or summary["n"].nunique() < 2:
        raise ValueError("the sample-complexity figure needs results at two or more values of n")
    ok = summary[summary["status"].isin(OK_STATUSES)]
    cols = varying_settings(summary, exclude=("n",))
    style = style or derive_style(summary)
    colors, markers = style.colors, style.markers
    panels = _groups(ok, cols)
    fig, axes = _grid(len(panels))
    for ax, (title, frame) in zip(axes, panels, strict=True):
        for label, lf in frame.groupby("label", sort=True):
            stats = [(n, *quartiles(g[metric])) for n, g in lf.groupby("n", sort=True)]
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


@figure("success", help="success rate vs k or d (or --by)", applies=_synthetic)
def plot_success(summary: pd.DataFrame, by: str | None = None, style: Style | None = None
                 ) -> Any:
    """Success rate (every run counts; failures are failures) against k, d or ``by``."""
    if "expert_error" not in summary or not np.isfinite(summary["expert_error"]).any():
        raise ValueError("the success figure needs synthetic results (true parameters)")
    by = by or _success_axis(summary)
    if by not in summary.columns:
        raise ValueError(f"unknown --by {by!r}; valid: {', '.join(varying_settings(summary))}")
    cols = varying_settings(summary, exclude=(by,))
    style = style or derive_style(summary)
    colors, markers = style.colors, style.markers
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


@figure("heldout", help="real data: held-out log-likelihood and MSE vs k, the linear "
        "regression dashed", applies=is_real_data)
def plot_heldout(summary: pd.DataFrame, style: Style | None = None) -> Any:
    """Real data: held-out log-likelihood and MSE against k (mean +- sd over folds).

    One column of panels per other varying setting (e.g. activation); the linear
    regression reference is the dashed line with its +- sd band.
    """
    ok = summary[summary["status"].isin(OK_STATUSES)]
    if ok.empty:
        raise ValueError("no finished run to plot")
    colors = (style or derive_style(summary)).colors
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


@figure("diagnostics", help="final expert error and fitted diagnostics vs --by")
def plot_diagnostics(summary: pd.DataFrame, by: str | None = None, style: Style | None = None
                     ) -> Any:
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
    style = style or derive_style(summary)
    colors, markers = style.colors, style.markers
    categorical = not pd.api.types.is_numeric_dtype(summary[by])
    for j, (title, frame) in enumerate(panels):
        ax = axes[0, j]
        for label, lf in frame.groupby("label", sort=True):
            pairs = list(lf.groupby(by, sort=True)["expert_error"])
            q1, med, q3 = (np.array(q, float) for q in zip(
                *(quartiles(g) for _, g in pairs), strict=True))
            index = [key for key, _ in pairs]
            xs = [str(v) for v in index] if categorical else np.array(index, float)
            ax.plot(xs, med, "-", marker=markers[label], color=colors[label], lw=1.6,
                    mfc="none")
            ax.fill_between(xs, q1, q3, color=colors[label], alpha=0.15, lw=0)
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


