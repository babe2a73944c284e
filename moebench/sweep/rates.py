"""Convergence rates: log loss on log n, with a bootstrap interval for the slope.

Papers on softmax-gated MoE (Nguyen, Nguyen, Ho et al., NeurIPS 2023) read rates off
log-log plots: an ordinary least-squares line through (log n, log loss), the loss the
mean over repetitions at each n. The slope depends on the statistic (a few large losses at
small n carry the mean) and on where the fit starts, so :func:`rate_fits` gives, for each
variant and fitted k, the slope for the **mean** and the **median** over repetitions and
for several **starting sample sizes** (every :data:`WINDOW_STEP`-th n of the grid, while at
least :data:`MIN_POINTS` sizes remain), each with a percentile bootstrap interval:
repetitions are resampled with replacement within each n (:data:`N_BOOTSTRAP` resamples,
seeded), the statistic and the line recomputed. A loss that is NaN (a Voronoi cell larger
than rbar is known for) or a failed run is left out; a statistic that is not positive
leaves its n out of the line.

Views: the table ``rates`` (``moebench report --table rates``) and the figure ``rates``
(``moebench plot --kind rates``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from moebench.sweep.columns import OK_STATUSES
from moebench.sweep.style import Style, derive_style
from moebench.sweep.views import figure, table

#: the losses whose rates are fitted, when the results have them
RATE_LOSSES = ("voronoi_loss", "voronoi_loss_translated")
STATISTICS = ("mean", "median")
N_BOOTSTRAP = 2000
WINDOW_STEP = 3
MIN_POINTS = 4
CONFIDENCE = 0.95


#: the top of a rates panel: larger mean losses (a diverged gating bias) are marked, not drawn
Y_MAX = 1e30


def _has_rates(summary: pd.DataFrame) -> bool:
    return ("voronoi_loss" in summary.columns and "n" in summary.columns
            and summary["n"].nunique() >= MIN_POINTS)


def _k_column(summary: pd.DataFrame) -> pd.Series:
    """The fitted k of every run (``k_fit``, else the truth's ``k``)."""
    k = summary["k"] if "k" in summary.columns else pd.Series(np.nan, index=summary.index)
    if "k_fit" in summary.columns:
        k = summary["k_fit"].where(summary["k_fit"].notna(), k)
    return k.astype(float)


def _stat(values: np.ndarray, stat: str) -> float:
    return float(np.mean(values) if stat == "mean" else np.median(values))


def ols_slope(n: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of log(loss) on log(n) (ordinary least squares).

    Returns NaN, NaN with fewer than two positive, finite points.
    """
    keep = np.isfinite(loss) & (loss > 0)
    if keep.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(n[keep]), np.log(loss[keep]), 1)
    return float(slope), float(intercept)


def rate_fit(groups: list[np.ndarray], n: np.ndarray, stat: str, rng: np.random.Generator,
             n_boot: int = N_BOOTSTRAP) -> dict[str, float]:
    """The line and its bootstrap interval for one window: ``groups[j]`` the losses at ``n[j]``.

    Returns
    -------
    dict
        ``slope``, ``constant`` (exp(intercept): loss ~ constant n^slope), ``low``,
        ``high`` (the percentile interval at :data:`CONFIDENCE`), ``points``.
    """
    point = np.array([_stat(g, stat) for g in groups])
    slope, intercept = ols_slope(n, point)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        resampled = np.array([_stat(g[rng.integers(0, len(g), len(g))], stat) for g in groups])
        boots[b] = ols_slope(n, resampled)[0]
    boots = boots[np.isfinite(boots)]
    alpha = (1.0 - CONFIDENCE) / 2.0
    low, high = (np.quantile(boots, [alpha, 1.0 - alpha]) if boots.size
                 else (float("nan"), float("nan")))
    return {"slope": slope, "constant": float(np.exp(intercept)), "low": float(low),
            "high": float(high), "points": int(np.sum(np.isfinite(point) & (point > 0)))}


def rate_fits(summary: pd.DataFrame, losses: tuple[str, ...] = RATE_LOSSES,
              n_boot: int = N_BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """Rates of every variant and fitted k, for each loss, statistic and starting n.

    Returns
    -------
    DataFrame
        One row per (label, k_fit, loss, statistic, n_start) with ``slope``,
        ``constant``, ``low``, ``high``, ``points`` and ``runs`` (losses used).
    """
    ok = summary[summary["status"].isin(OK_STATUSES)].copy()
    ok["k_fit"] = _k_column(ok)
    rows = []
    for (label, k_fit), runs in ok.groupby(["label", "k_fit"], sort=False):
        for loss in (name for name in losses if name in runs.columns):
            by_n = {int(n): g[loss].to_numpy(float) for n, g in runs.groupby("n")}
            by_n = {n: v[np.isfinite(v)] for n, v in by_n.items()}
            sizes = np.array(sorted(n for n, v in by_n.items() if v.size))
            for first in range(0, max(len(sizes) - MIN_POINTS + 1, 0), WINDOW_STEP):
                window = sizes[first:]
                groups = [by_n[n] for n in window]
                for stat in STATISTICS:
                    rng = np.random.default_rng([seed, first, STATISTICS.index(stat)])
                    fit = rate_fit(groups, window.astype(float), stat, rng, n_boot)
                    rows.append({"label": label, "k_fit": int(k_fit), "loss": loss,
                                 "statistic": stat, "n_start": int(window[0]),
                                 "runs": int(sum(g.size for g in groups)), **fit})
    return pd.DataFrame(rows)


@table("rates", help="log loss on log n (Voronoi losses): slope with a bootstrap 95% "
                     "interval, mean and median over repetitions, several starting n")
def rates_table(summary: pd.DataFrame) -> str:
    """Markdown: one row per variant, fitted k, loss, statistic and starting n."""
    if not _has_rates(summary):
        return (f"No rates: the results need Voronoi losses (a truth) and at least "
                f"{MIN_POINTS} sample sizes.\n")
    fits = rate_fits(summary)
    lines = ["| variant | k fitted | loss | statistic | from n | sizes | runs | "
             "slope [95% bootstrap] | loss ~ C n^slope, C |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in fits.itertuples(index=False):
        lines.append(f"| {row.label} | {row.k_fit} | {row.loss} | {row.statistic} | "
                     f"{row.n_start} | {row.points} | {row.runs} | {row.slope:.3f} "
                     f"[{row.low:.3f}, {row.high:.3f}] | {row.constant:.3g} |")
    return "\n".join(lines) + "\n"


@figure("rates", help="mean and median Voronoi losses against n (log-log) per fitted k, "
                      "with the least-squares line from the first n",
        applies=_has_rates)
def plot_rates(summary: pd.DataFrame, style: Style | None = None) -> Figure:
    """One panel per fitted k: each variant's mean (solid) and median (dashed) loss."""
    colors = (style or derive_style(summary)).colors
    ok = summary[summary["status"].isin(OK_STATUSES)].copy()
    ok["k_fit"] = _k_column(ok)
    ks = sorted(ok["k_fit"].dropna().unique())
    # a loss column with no number (no translated loss for a regression truth) gets no row
    numeric = {name: pd.to_numeric(ok[name], errors="coerce") for name in RATE_LOSSES
               if name in ok.columns}
    losses = [name for name, values in numeric.items() if np.isfinite(values).any()]
    for name in losses:
        ok[name] = numeric[name]
    fig = Figure(figsize=(4.2 * max(len(ks), 1), 3.4 * len(losses)), constrained_layout=True)
    axes = np.atleast_2d(fig.subplots(len(losses), max(len(ks), 1), squeeze=False))
    for r, loss in enumerate(losses):
        for c, k in enumerate(ks):
            ax = axes[r, c]
            shown: list[np.ndarray] = []  # the plotted values: the y range comes from them
            for label, runs in ok[ok["k_fit"] == k].groupby("label", sort=False):
                by_n = runs.groupby("n")[loss]
                n = np.array(sorted(runs["n"].unique()), dtype=float)
                for stat, dash in (("mean", "-"), ("median", "--")):
                    vals = by_n.agg(lambda v, s=stat: _stat(v[np.isfinite(v)].to_numpy(), s)
                                    if np.isfinite(v).any() else np.nan).to_numpy(float)
                    ax.plot(n, vals, dash, marker="o", ms=3, color=colors[label],
                            label=f"{label}, {stat}")
                    shown.append(vals)
                    slope, intercept = ols_slope(n, vals)
                    if np.isfinite(slope):
                        with np.errstate(over="ignore"):
                            line = np.exp(intercept) * n**slope
                        ax.plot(n, np.where(np.isfinite(line), line, np.nan), ":",
                                color=colors[label], lw=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            values = np.concatenate(shown) if shown else np.array([])
            values = values[np.isfinite(values) & (values > 0)]
            if values.size:  # a loss can reach 1e300 (exp of a diverged gating bias)
                top = min(values.max() * 2, Y_MAX)
                ax.set_ylim(values.min() / 2, top)
                if values.max() > Y_MAX:
                    ax.text(0.98, 0.98, f"off the scale: up to {values.max():.1e}",
                            transform=ax.transAxes, ha="right", va="top", fontsize=7)
            ax.set_title(f"k fitted = {int(k)}: {loss.replace('_', ' ')}", fontsize=9)
            ax.set_xlabel("n")
            if c == 0:
                ax.set_ylabel("loss over repetitions")
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    return fig
