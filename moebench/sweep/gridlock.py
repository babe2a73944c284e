"""Where is the gridlock? Stuck-run detection and phase tables from stored sweep results.

The figures drawn from these tables (:func:`moebench.sweep.plots.plot_gridlock`,
:func:`moebench.sweep.plots.plot_phase_maps`) live with the other figures.

A run is *stuck* when its final training mean log-likelihood is more than ``tol``
per sample below the best that any method reached on the same data set (same
``data_id``) **and** below the true parameters' log-likelihood on that data. The
second condition keeps sampling error apart from local optima: a run that merely
differs from the best by estimation noise sits above the truth's likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence

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

    def is_local(name: str) -> bool:
        try:  # (the real-data reference, linear_regression, declares local_search = False)
            return algorithm_class(name).local_search
        except ValueError:
            return True

    local = {name: is_local(name) for name in summary["algorithm"].unique()}
    labels = summary.loc[summary["algorithm"].map(local).astype(bool), "label"]
    return [lab for lab in labels.unique() if lab != reference]
