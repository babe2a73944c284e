"""Fit time per variant: a worked example of a view (a figure and a table).

Import this module (from a notebook, a script or a plugin package) and ``moebench plot
--kind fit_time`` and ``moebench report --table fit_time`` exist, listed with their help
in ``--help``; ``moebench plot --kind all`` draws the figure for every results folder its
``applies`` accepts.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from moebench.sweep.columns import OK_STATUSES
from moebench.sweep.quantiles import quartiles
from moebench.sweep.style import Style, derive_style
from moebench.sweep.views import figure, table


@figure("fit_time", help="median fit time per variant, with its interquartile range",
        applies=lambda summary: "fit_time" in summary.columns)
def plot_fit_time(summary: pd.DataFrame, style: Style | None = None) -> Figure:
    """A bar per variant: the median fit time of its finished runs, IQR as the error bar."""
    colors = (style or derive_style(summary)).colors
    ok = summary[summary["status"].isin(OK_STATUSES)]
    fig = Figure(figsize=(5, 3.2), constrained_layout=True)
    ax = fig.subplots()
    for i, (label, runs) in enumerate(ok.groupby("label", sort=False)):
        q1, med, q3 = quartiles(runs["fit_time"])
        ax.bar(i, med, yerr=[[med - q1], [q3 - med]], color=colors[label], capsize=3)
    ax.set_xticks(range(ok["label"].nunique()), list(dict.fromkeys(ok["label"])))
    ax.set_ylabel("fit time (s), median and IQR")
    return fig


@table("fit_time", help="median fit time per variant, with its interquartile range")
def fit_time_table(summary: pd.DataFrame) -> str:
    """Markdown: one row per variant, its finished runs and median [IQR] fit time."""
    ok = summary[summary["status"].isin(OK_STATUSES)]
    lines = ["| variant | runs | fit time (s), median [IQR] |", "|---|---|---|"]
    for label, runs in ok.groupby("label", sort=False):
        q1, med, q3 = quartiles(runs["fit_time"])
        lines.append(f"| {label} | {len(runs)} | {med:.3g} [{q1:.3g}, {q3:.3g}] |")
    return "\n".join(lines) + "\n"
