"""Resource views: error against time and passes over X, and error, time and memory
against n (the large-n study: ``moebench/configs/large_n.toml``).

``moebench plot --kind resources`` and ``moebench report --table resources`` read the
resource columns of the summary (:data:`moebench.sweep.columns.RESOURCE_COLUMNS`, measured
by :mod:`moebench.sweep.resources`) and the checkpoints' optional ``passes`` column; they
apply to results whose runs fitted data on disk (``passes_over_x`` recorded).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from moebench.sweep.columns import OK_STATUSES, format_value
from moebench.sweep.plots import _set_n_ticks, set_log_x
from moebench.sweep.quantiles import quartiles
from moebench.sweep.report import _markdown
from moebench.sweep.style import Style, derive_style
from moebench.sweep.trajectory import run_curve
from moebench.sweep.views import figure, table

#: the columns of the "against n" row of the figure: (summary column, axis label)
AGAINST_N = (("fit_time", "fit time (s)"), ("peak_anon_mib", "peak anonymous memory (MiB)"))


def on_disk(summary: pd.DataFrame) -> bool:
    """Whether some run of ``summary`` fitted X on disk (recorded ``passes_over_x``)."""
    return ("passes_over_x" in summary.columns
            and bool(pd.to_numeric(summary["passes_over_x"], errors="coerce").notna().any()))


def _chosen(summary: pd.DataFrame, variants: Sequence[str] | None) -> pd.DataFrame:
    """The finished runs of ``variants`` (all when None); ValueError naming valid labels."""
    labels = list(dict.fromkeys(summary["label"]))
    if variants:
        bad = [v for v in variants if v not in labels]
        if bad:
            raise ValueError(f"--variants: unknown variant {bad[0]!r}; valid: {', '.join(labels)}")
        summary = summary[summary["label"].isin(variants)]
    ok = summary[summary["status"].isin(OK_STATUSES)]
    if ok.empty:
        raise ValueError("no finished run to draw (every run failed, or none was chosen)")
    return ok


@figure("resources", help="error against the fit's time and its passes over X (top), "
        "final error, fit time and peak memory against n (bottom), per variant",
        applies=on_disk)
def plot_resources(summary: pd.DataFrame, checkpoints: pd.DataFrame,
                   metric: str = "expert_error", raw: bool = False,
                   style: Style | None = None, variants: Sequence[str] | None = None
                   ) -> Figure:
    """Top: every run's ``metric`` against its clock and its passes over X (one line per
    run, the variant's colour; its anytime estimate unless ``raw``). Bottom: the final
    ``metric``, fit time and peak anonymous memory against n, median and IQR over the
    data sets of each variant (log axes)."""
    ok = _chosen(summary, variants)
    colors = (style or derive_style(summary)).colors
    ck = checkpoints[checkpoints["run_id"].isin(set(ok["run_id"]))]
    fig = Figure(figsize=(13, 8.4), constrained_layout=True)
    grid = fig.add_gridspec(2, 6)
    top = [fig.add_subplot(grid[0, :3]), fig.add_subplot(grid[0, 3:])]
    bottom = [fig.add_subplot(grid[1, 2 * i:2 * i + 2]) for i in range(3)]
    labels = list(dict.fromkeys(ok["label"]))
    for ax, x, xlabel in ((top[0], "time", "fit time (s)"),
                          (top[1], "passes", "passes over X")):
        for label in labels:
            lf = ck[ck["label"] == label]
            for i, (_, run) in enumerate(lf.groupby("run_id", sort=True)):
                xs, ys = run_curve(run, x, metric, raw)
                if len(xs):
                    ax.plot(xs, ys, color=colors[label], lw=1.4, marker=".", ms=3,
                            label=label if i == 0 else None)
        if x == "time":
            set_log_x(ax)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(True, which="both", alpha=0.3)
    for ax, (column, ylabel) in zip(bottom, ((metric, f"final {metric.replace('_', ' ')}"),
                                             *AGAINST_N), strict=True):
        for label in labels:
            runs = ok[ok["label"] == label]
            ns = sorted(runs["n"].unique())
            stats = [quartiles(pd.to_numeric(runs.loc[runs["n"] == n, column],
                                             errors="coerce").to_numpy(float)) for n in ns]
            q1, med, q3 = (np.array(v, dtype=float) for v in zip(*stats, strict=True))
            ax.errorbar(ns, med, yerr=[med - q1, q3 - med], color=colors[label], marker="o",
                        ms=5, capsize=3, lw=1.2)
        set_log_x(ax)
        _set_n_ticks(ax, sorted(ok["n"].unique()))
        if column == "peak_anon_mib":  # memory from 0: a bounded fit is a flat line
            ax.set_ylim(bottom=0, top=1.15 * max(ax.get_ylim()[1], 1.0))
        else:
            ax.set_yscale("log")
        ax.set_xlabel("n")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(*top[0].get_legend_handles_labels(), loc="outside lower center",
               ncol=min(4, len(labels)), fontsize="small", frameon=False)
    first = ok.iloc[0]
    fig.suptitle(f"X on disk: d = {format_value(first['d'])}, k = {format_value(first['k'])}; "
                 f"{len(ok)} runs; bottom: median and IQR over data sets", fontsize="medium")
    return fig


@table("resources", help="per n and variant: final error, fit time, passes over X and "
       "peak memory (median [IQR] over data sets)")
def resources_table(summary: pd.DataFrame, metric: str = "expert_error",
                    variants: Sequence[str] | None = None) -> str:
    """Markdown: one row per (n, variant) with its finished runs, and the median [IQR] of
    the final ``metric``, fit time, passes over X, peak anonymous and peak resident
    memory."""
    if not on_disk(summary):
        raise ValueError("these results record no passes over X (passes_over_x): the "
                         "resources table is for runs on data on disk ([data] memmap)")
    ok = _chosen(summary, variants)

    def cell(values: pd.Series, fmt: str) -> str:
        q1, med, q3 = quartiles(pd.to_numeric(values, errors="coerce").to_numpy(float))
        return "–" if not np.isfinite(med) else f"{med:{fmt}} [{q1:{fmt}}, {q3:{fmt}}]"

    every = summary.groupby(["n", "label"], sort=False).size()
    rows = []
    for (n, label), runs in ok.groupby(["n", "label"], sort=False):
        rows.append({
            "n": format_value(n), "variant": label, "runs": f"{len(runs)} of {every[n, label]}",
            metric.replace("_", " "): cell(runs[metric], ".3g"),
            "fit time (s)": cell(runs["fit_time"], ".3g"),
            "passes over X": cell(runs["passes_over_x"], ".0f"),
            "peak anonymous memory (MiB)": cell(runs["peak_anon_mib"], ".0f"),
            "peak resident memory (MiB)": cell(runs["peak_rss_mib"], ".0f"),
        })
    return _markdown(rows)
