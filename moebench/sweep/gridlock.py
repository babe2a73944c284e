"""Where is the gridlock? Stuck-run detection and phase maps from stored sweep results.

A run is *stuck* when its final training mean log-likelihood is more than ``tol``
per sample below the best that any method reached on the same data set (same
``data_id``) **and** below the true parameters' log-likelihood on that data. The
second condition keeps sampling error apart from local optima: a run that merely
differs from the best by estimation noise sits above the truth's likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_TOL = 1e-3
#: a gridlock cell: a baseline stuck in at least STUCK_MIN of the seeds while the
#: reference succeeds in at least SUCCESS_MIN
STUCK_MIN = 0.3
SUCCESS_MIN = 0.9


def mark_stuck(summary: pd.DataFrame, tol: float = DEFAULT_TOL) -> pd.DataFrame:
    """Add ``best_log_likelihood``, ``likelihood_gap`` and ``stuck`` columns.

    Parameters
    ----------
    summary : DataFrame
        One row per run with ``data_id``, ``status``, ``train_log_likelihood`` and
        ``true_train_log_likelihood``.
    tol : float
        Tolerance in mean log-likelihood per sample.

    Returns
    -------
    DataFrame
        A copy; failed runs (status not "ok") are never counted as stuck and get NaN gaps.
    """
    required = {"data_id", "status", "train_log_likelihood"}
    missing = required - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks column(s) {', '.join(sorted(missing))}; is it a "
                         "`moebench run` summary?")
    out = summary.copy()
    ll = out["train_log_likelihood"].astype(float)
    ok = out["status"].eq("ok") & np.isfinite(ll)
    best = out[ok].groupby("data_id")["train_log_likelihood"].max()
    out["best_log_likelihood"] = out["data_id"].map(best).astype(float)
    out["likelihood_gap"] = np.where(ok, out["best_log_likelihood"] - ll, np.nan)
    if "true_train_log_likelihood" in out.columns:  # synthetic data: truth known
        below_truth = ll < out["true_train_log_likelihood"].astype(float) - tol
    else:
        below_truth = True
    out["stuck"] = ok & (out["likelihood_gap"] > tol) & below_truth
    return out


def phase_table(summary: pd.DataFrame, axes: Sequence[str], tol: float = DEFAULT_TOL
                ) -> pd.DataFrame:
    """Stuck rate, success rate and median expert error per setting and variant.

    Parameters
    ----------
    axes : sequence of str
        Data-setting columns that define a cell of the map (e.g. ``["k", "gating_scale"]``).
    """
    marked = mark_stuck(summary, tol)
    unknown = [a for a in axes if a not in marked.columns]
    if unknown:
        raise ValueError(f"unknown axis column(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(c for c in marked.columns if marked[c].nunique() > 1)}")
    ok = marked["status"].eq("ok")
    grouped = marked.assign(ok=ok).groupby([*axes, "label"], dropna=False)
    table = grouped.agg(
        runs=("run_id", "size"),
        failed=("ok", lambda s: int((~s).sum())),
        stuck_rate=("stuck", "mean"),
        success_rate=("success", "mean"),
        median_expert_error=("expert_error", "median"),
        median_gap=("likelihood_gap", "median"),
    ).reset_index()
    return table


def reference_pairs(
    table: pd.DataFrame, axes: Sequence[str], baselines: Sequence[str], reference: str
) -> pd.DataFrame:
    """Per cell of ``axes`` and baseline: its stuck rate next to ``reference``'s success rate.

    Columns ``*axes, label, stuck_rate, <reference>_success`` (NaN where the reference
    has no run in the cell); rows grouped by baseline in the given order.
    """
    labels = set(table["label"])
    if reference not in labels:
        raise ValueError(f"unknown reference variant {reference!r}; variants: "
                         f"{', '.join(sorted(labels))}")
    unknown = [b for b in baselines if b not in labels]
    if unknown:
        raise ValueError(f"unknown baseline variant(s) {', '.join(unknown)}; variants: "
                         f"{', '.join(sorted(labels - {reference}))}")
    ref = table.loc[table["label"] == reference, [*axes, "success_rate"]]
    ref = ref.rename(columns={"success_rate": f"{reference}_success"})
    base = table.loc[table["label"].isin(baselines), [*axes, "label", "stuck_rate"]]
    order = {label: i for i, label in enumerate(baselines)}
    pairs = base.merge(ref, on=list(axes), how="left")
    return pairs.sort_values("label", key=lambda s: s.map(order), kind="stable",
                             ignore_index=True)


def in_gridlock(pairs: pd.DataFrame, reference: str, stuck_min: float = STUCK_MIN,
                success_min: float = SUCCESS_MIN) -> pd.Series:
    """Which rows of :func:`reference_pairs` are gridlock cells."""
    return (pairs["stuck_rate"] >= stuck_min) & (pairs[f"{reference}_success"] >= success_min)


def gridlock_regions(
    table: pd.DataFrame,
    axes: Sequence[str],
    baselines: Sequence[str],
    reference: str,
    stuck_min: float = STUCK_MIN,
    success_min: float = SUCCESS_MIN,
) -> pd.DataFrame:
    """Settings where a baseline is stuck in >= ``stuck_min`` of seeds while
    ``reference`` (e.g. tensor_em with refine) succeeds in >= ``success_min``."""
    pairs = reference_pairs(table, axes, baselines, reference)
    return pairs[in_gridlock(pairs, reference, stuck_min, success_min)].reset_index(drop=True)


def local_search_labels(summary: pd.DataFrame, reference: str) -> list[str]:
    """Variant labels that maximise the likelihood by local search, other than ``reference``.

    Algorithms whose class sets ``local_search = False`` (tensor_em, alt_min: moment or
    hard-assignment estimators, whose likelihood gap is estimation error or bias, not a
    local optimum) are left out; an algorithm that is not registered here is kept.
    """
    if "algorithm" not in summary.columns:
        return [lab for lab in summary["label"].unique() if lab != reference]
    from moebench.registry import algorithm_class
    from moebench.sweep.config import REFERENCE

    def is_local(name: str) -> bool:
        if name == REFERENCE:  # the real-data linear regression
            return False
        try:
            return algorithm_class(name).local_search
        except ValueError:
            return True

    local = {name: is_local(name) for name in summary["algorithm"].unique()}
    labels = summary.loc[summary["algorithm"].map(local).astype(bool), "label"]
    return [lab for lab in labels.unique() if lab != reference]


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
    cell; the shaded corner is the gridlock region (stuck >= ``stuck_min`` while the
    reference succeeds >= ``success_min``) and the cells in it are named.

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = phase_table(summary, axes, tol)
    baselines = list(baselines) if baselines is not None \
        else local_search_labels(summary, reference)
    pairs = reference_pairs(table, axes, baselines, reference)
    if not baselines:
        raise ValueError("no baseline variant to draw: none of the variants is a local-search "
                         "method other than the reference")
    pairs["gridlock"] = in_gridlock(pairs, reference, stuck_min, success_min)
    ncols = min(3, len(baselines))
    nrows = -(-len(baselines) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.2 * nrows), squeeze=False)
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
        ax.scatter(jx[~inside], jy[~inside], s=14, color="0.55", alpha=0.7, lw=0,
                   label="other cells")
        ax.scatter(jx[inside], jy[inside], s=30, color="tab:red", lw=0, label="gridlock")
        cells = sub[list(axes)].to_numpy(dtype=object)
        named = [(jx[i], jy[i], cells[i]) for i in np.flatnonzero(inside)]
        for i, (px, py, cell) in enumerate(named[:8]):
            text = " ".join(f"{a}={_label(v)}" for a, v in zip(axes, cell))
            ax.annotate(text, (px, py), xytext=(0.8, 0.95 - 0.055 * i), textcoords="axes fraction",
                        ha="right", fontsize=6, color="tab:red",
                        arrowprops=dict(arrowstyle="-", color="tab:red", lw=0.4))
        more = " (first 8 named)" if len(named) > 8 else ""
        ax.set_title(f"{label}: {int(inside.sum())} of {len(sub)} cells{more}", fontsize=9)
        ax.set_xlim(-0.06, 1.06)
        ax.set_ylim(-0.06, 1.06)
        ax.set_xlabel(f"{reference} success rate")
        ax.set_ylabel(f"{label} stuck rate")
        ax.grid(alpha=0.3)
    for ax in list(grid.flat)[len(baselines):]:
        ax.axis("off")
    grid.flat[0].legend(fontsize=7, loc="center left")
    fig.suptitle(f"Gridlock: stuck in >= {stuck_min:.0%} of seeds while {reference} succeeds "
                 f"in >= {success_min:.0%} (cells over {', '.join(axes)}; stuck = log-likelihood "
                 f"> {tol:g}/sample below best and truth)", fontsize=9)
    fig.tight_layout()
    return fig


def _label(value: object) -> str:
    return f"{value:g}" if isinstance(value, (int, float, np.number)) else str(value)


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

    With ``facet``, one row of heatmaps per value of that column.
    Returns the written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = [x, y] + ([facet] if facet else [])
    table = phase_table(summary, axes, tol)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    facets = sorted(table[facet].dropna().unique()) if facet else [None]
    xs = sorted(table[x].dropna().unique())
    ys = sorted(table[y].dropna().unique())
    written = []
    for label in sorted(table["label"].unique()):
        fig, grid = plt.subplots(len(facets), 2, figsize=(8, 3.2 * len(facets)), squeeze=False)
        for r, fv in enumerate(facets):
            sub = table[table["label"] == label]
            if facet:
                sub = sub[sub[facet] == fv]
            for c, (col, title) in enumerate((("stuck_rate", "stuck rate"),
                                              ("success_rate", "success rate"))):
                mat = np.full((len(ys), len(xs)), np.nan)
                for _, row in sub.iterrows():
                    mat[ys.index(row[y]), xs.index(row[x])] = row[col]
                ax = grid[r, c]
                im = ax.imshow(mat, vmin=0, vmax=1, cmap="magma_r" if c == 0 else "viridis",
                               origin="lower", aspect="auto")
                for (i, j), v in np.ndenumerate(mat):
                    if np.isfinite(v):
                        ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7,
                                color="white" if (v > 0.5) == (c == 0) else "black")
                ax.set_xticks(range(len(xs)), [_label(v) for v in xs])
                ax.set_yticks(range(len(ys)), [_label(v) for v in ys])
                ax.set_xlabel(x)
                ax.set_ylabel(y)
                ax.set_title(f"{title}" + (f" ({facet}={_label(fv)})" if facet else ""), fontsize=9)
                fig.colorbar(im, ax=ax, fraction=0.046)
        fig.suptitle(f"{label}: stuck (likelihood > {tol:g}/sample below best and truth) "
                     f"and success", fontsize=10)
        fig.tight_layout()
        for fmt in formats:
            path = out_dir / f"phase_{label}.{fmt}"
            fig.savefig(path, dpi=110)
            written.append(path)
        plt.close(fig)
    return written
