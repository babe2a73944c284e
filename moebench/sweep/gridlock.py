"""Where is the gridlock? Stuck-run detection and phase tables from stored sweep results.

The figures drawn from these tables (:func:`moebench.sweep.plots_maps.plot_gridlock`,
:func:`moebench.sweep.plots_maps.plot_phase_maps`) live with the other figures.

A run is *stuck* when its final training mean log-likelihood is more than ``tol``
per sample below the best that any method reached on the same data set (same
``data_id``) **and** below the true parameters' log-likelihood on that data. The
second condition keeps sampling error apart from local optima: a run that merely
differs from the best by estimation noise sits above the truth's likelihood.

**Certified classes.** Where the folder has been classified (``moebench classify``:
``classes.parquet``, attached to the summary by
:func:`moebench.sweep.classify.attach_classes`), every short likelihood-climbing run was
continued by one common polisher and :func:`mark_stuck` takes its class from
:func:`moebench.sweep.classify.assign_classes` (the definitions are there and in
:data:`moebench.sweep.classify.CLASS_DEFINITIONS`): *stuck* is then a certified **local
maximum**, and **saddle**, **singular**, **slow** and **unfinished** runs are counted apart
(never stuck). The best on a data set then includes the polished points.

**Uncertified (gap rule).** Without classes, where the results record the final gradient
norm (``fitted_grad_norm``; see :mod:`moebench.stationarity`), a run is *stationary* when
that scaled norm is at most ``stationary_tol``
(:data:`moebench.stationarity.STATIONARY_TOL`, 1e-2), and

* **stuck**: a likelihood gap (the rule above) at a stationary point;
* **unfinished**: not stationary, and its budget ended it (``stop_reason`` in
  :data:`BUDGET_STOPS`) or it has a likelihood gap;
* **fine**: otherwise.

Where the gradient norm is missing (results recorded before it existed, or a method
that does not record it) stationarity is unknown and the classification falls back to
the gap alone: stuck = gap, never unfinished (``run_class`` says "stuck (gap only)").
Reports call these results *uncertified*: a stationary point at that tolerance may be a
flat slope or a saddle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from moebench.metrics import wilson_interval
from moebench.stationarity import STATIONARY_TOL
from moebench.sweep.classify import DEFAULT_TOL

#: the stuck tolerances the verdict is shown under (``moebench report --stuck-tols``)
VERDICT_TOLS = (1e-4, 1e-3, 1e-2)
#: stop reasons that mean a budget, not a criterion, ended the fit
BUDGET_STOPS = ("max_iter", "max_time", "max_epochs")
#: expert error above which a run is a gross failure (a wrong basin)
GROSS_ERROR = 0.3
#: summary column with the final scaled gradient norm
GRAD_NORM_COLUMN = "fitted_grad_norm"
#: summary column of the tensor step's flag (issue 26 item 4): fewer than k eigenvalues of T2
#: with c2's sign clear its noise level (tensor_em, and joint_em(init="tensor") = refine,
#: which records its start's flag); the reports show it in its own column, apart from stuck
BELOW_COLUMN = "fitted_below_sample_complexity"
#: the reports' heading of that column
BELOW_HEAD = "tensor step below sample complexity"
#: a gridlock cell: a baseline stuck in at least STUCK_MIN of the seeds while the
#: reference succeeds in at least SUCCESS_MIN
STUCK_MIN = 0.3
SUCCESS_MIN = 0.9
#: a candidate cell, to be re-run with more seeds: a local-search variant stuck in at least
#: this fraction of the cell's seeds
CANDIDATE_MIN = 0.2


def mark_stuck(summary: pd.DataFrame, tol: float = DEFAULT_TOL,
               stationary_tol: float = STATIONARY_TOL) -> pd.DataFrame:
    """Add ``best_log_likelihood``, ``likelihood_gap``, ``gap``, ``stationary``, ``stuck``,
    ``unfinished``, ``saddle``, ``singular``, ``slow``, ``certified`` and ``run_class``
    columns (see the module notes).

    Parameters
    ----------
    summary : DataFrame
        One row per run with ``data_id``, ``status``, ``train_log_likelihood`` and
        ``true_train_log_likelihood``; with the classes of ``classes.parquet`` attached
        (:func:`moebench.sweep.classify.attach_classes`) the certified classes are used.
    tol : float
        Tolerance in mean log-likelihood per sample.
    stationary_tol : float
        Uncertified rule only: scaled gradient norm at or below which a run is stationary.

    Returns
    -------
    DataFrame
        A copy; failed runs (status not "ok") are never counted as stuck or unfinished
        and get NaN gaps and ``run_class`` "failed". ``stationary`` is NaN where the
        gradient norm is unknown (certified: where the run was not polished);
        ``saddle``, ``singular`` and ``slow`` are False without classes.
    """
    required = {"data_id", "status", "train_log_likelihood"}
    missing = required - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks column(s) {', '.join(sorted(missing))}; is it a "
                         "`moebench run` summary?")
    if is_certified(summary):
        return _mark_certified(summary, tol)
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
    gap = ok & (out["likelihood_gap"] > tol) & below_truth
    grad = (out[GRAD_NORM_COLUMN].astype(float) if GRAD_NORM_COLUMN in out.columns
            else pd.Series(np.nan, index=out.index))
    known = ok & np.isfinite(grad)
    stationary = known & (grad <= stationary_tol)
    budget = (out["stop_reason"].isin(BUDGET_STOPS) if "stop_reason" in out.columns
              else pd.Series(False, index=out.index))
    out["gap"] = gap
    out["stationary"] = stationary.astype(float).where(known)
    out["stuck"] = gap & (stationary | ~known)
    out["unfinished"] = known & ~stationary & (budget | gap)
    out["saddle"] = out["singular"] = out["slow"] = False
    out["certified"] = False
    out["run_class"] = np.select(
        [~ok, out["stuck"] & known, out["stuck"], out["unfinished"]],
        ["failed", "stuck", "stuck (gap only)", "unfinished"], default="fine")
    return out


def is_certified(summary: pd.DataFrame) -> bool:
    """Whether ``summary`` carries the certified classes of ``moebench classify``."""
    return "class" in summary.columns and "climbs" in summary.columns and bool(
        summary["class"].notna().all()) and not summary.empty


def _mark_certified(summary: pd.DataFrame, tol: float) -> pd.DataFrame:
    """:func:`mark_stuck` from the polish outputs (the classes at ``tol``)."""
    from moebench.sweep import classify as c

    out = summary.copy()
    if "has_parameters" not in out.columns:
        from moebench.sweep.rerun import PARAMETERS_KEY

        out["has_parameters"] = (out[PARAMETERS_KEY].map(lambda p: isinstance(p, str) and
                                                          bool(p))
                                 if PARAMETERS_KEY in out.columns else False)
    ll = out["train_log_likelihood"].astype(float)
    ok = out["status"].eq("ok") & np.isfinite(ll)
    out["best_log_likelihood"] = c.best_log_likelihood(out)
    out["likelihood_gap"] = np.where(ok, out["best_log_likelihood"] - ll, np.nan)
    truth = (out["true_train_log_likelihood"] if "true_train_log_likelihood" in out.columns
             else None)
    if truth is not None and "polisher" in out.columns:  # the gating problem: no truth rule
        truth = truth.astype(float).where(out["polisher"].ne("gating"))
    out["gap"] = ok & c.is_short(ll, out["best_log_likelihood"], truth, tol)
    cls = c.assign_classes(out, tol)
    grad = out["polished_grad_norm"].astype(float)
    out["stationary"] = (grad <= c.CERTIFY_GRAD_TOL).astype(float).where(np.isfinite(grad))
    out["stuck"] = cls.eq(c.LOCAL_MAX)
    out["unfinished"] = cls.eq(c.UNFINISHED)
    out["saddle"] = cls.eq(c.SADDLE)
    out["singular"] = cls.eq(c.SINGULAR)
    out["slow"] = cls.eq(c.SLOW)
    out["certified"] = True
    out["run_class"] = cls
    return out


def below_sample_complexity(summary: pd.DataFrame) -> pd.Series:
    """Per run: 1.0 where the tensor step was below its sample complexity, 0.0 where it was
    not, NaN where the run records no such flag (no tensor step, or results made before it
    existed)."""
    if BELOW_COLUMN not in summary.columns:
        return pd.Series(np.nan, index=summary.index)
    flag = summary[BELOW_COLUMN]
    return flag.map(lambda v: np.nan if v is None or (isinstance(v, float) and np.isnan(v))
                    else float(bool(v))).astype(float)


def has_below_flag(summary: pd.DataFrame) -> bool:
    """Whether any run of ``summary`` records :data:`BELOW_COLUMN`."""
    return bool(below_sample_complexity(summary).notna().any())


def below_rate(summary: pd.DataFrame) -> str:
    """The runs of ``summary`` whose tensor step was below its sample complexity, as a rate
    over all its runs with its Wilson 95% interval; "–" when none records the flag."""
    flag = below_sample_complexity(summary)
    if not flag.notna().any():
        return "–"
    return rate_interval(int((flag == 1.0).sum()), len(summary))


def has_stationarity(summary: pd.DataFrame) -> bool:
    """Whether any run of ``summary`` records its final gradient norm."""
    return GRAD_NORM_COLUMN in summary.columns and bool(
        np.isfinite(summary[GRAD_NORM_COLUMN].astype(float)).any())


def rate_interval(successes: float, n: float) -> str:
    """A rate with its Wilson 95% interval, e.g. ``"40% [12–77%]"`` ("–" for n = 0)."""
    if not n:
        return "–"
    low, high = wilson_interval(successes, n)
    return f"{successes / n:.0%} [{low:.0%}–{high:.0%}]"


def phase_table(summary: pd.DataFrame, axes: Sequence[str], tol: float = DEFAULT_TOL
                ) -> pd.DataFrame:
    """Stuck, unfinished and success rates (with counts) and expert errors per setting and
    variant.

    Parameters
    ----------
    axes : sequence of str
        Data-setting columns that define a cell of the map (e.g. ``["k", "gating_scale"]``).

    Returns
    -------
    DataFrame
        Columns ``*axes, label, runs, failed, stuck_rate, success_rate,
        median_expert_error, median_gap, n_stuck, n_success, n_unfinished,
        unfinished_rate, mean_expert_error, n_gross, gross_rate, n_saddle, n_singular,
        n_slow, n_below`` (``n_below``: runs whose tensor step was below its sample
        complexity, :data:`BELOW_COLUMN`, NaN where no run of the cell records the flag;
        ``n_unfinished`` is NaN where no run of the cell records its gradient
        norm, or, certified, was polished; gross: expert error > :data:`GROSS_ERROR`,
        failed runs included). With certified classes (:func:`mark_stuck`) *stuck* counts
        the certified local maxima only; saddles, singular, slow and unfinished runs are
        counted apart.
    """
    marked = mark_stuck(summary, tol)
    below = below_sample_complexity(marked)
    marked = marked.assign(below=below.fillna(0.0), below_known=below.notna())
    unknown = [a for a in axes if a not in marked.columns]
    if unknown:
        raise ValueError(f"unknown axis column(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(c for c in marked.columns if marked[c].nunique() > 1)}")
    ok = marked["status"].eq("ok")
    err = marked["expert_error"].astype(float)
    gross = ~ok | ~np.isfinite(err) | (err > GROSS_ERROR)
    known = marked["stationary"].notna() | marked["certified"].astype(bool)
    grouped = marked.assign(ok=ok, gross=gross, known=known
                            ).groupby([*axes, "label"], dropna=False)
    table = grouped.agg(
        runs=("run_id", "size"),
        failed=("ok", lambda s: int((~s).sum())),
        stuck_rate=("stuck", "mean"),
        success_rate=("success", "mean"),
        median_expert_error=("expert_error", "median"),
        median_gap=("likelihood_gap", "median"),
        n_stuck=("stuck", "sum"),
        n_success=("success", lambda s: int(s.astype(bool).sum())),
        n_unfinished=("unfinished", "sum"),
        n_saddle=("saddle", "sum"),
        n_singular=("singular", "sum"),
        n_slow=("slow", "sum"),
        n_known=("known", "sum"),
        mean_expert_error=("expert_error", "mean"),
        n_gross=("gross", "sum"),
        n_below=("below", "sum"),
        n_below_known=("below_known", "sum"),
    ).reset_index()
    table["n_below"] = table["n_below"].astype(float).where(table["n_below_known"] > 0)
    table["n_unfinished"] = table["n_unfinished"].astype(float).where(table["n_known"] > 0)
    table["unfinished_rate"] = table["n_unfinished"] / table["runs"]
    table["gross_rate"] = table["n_gross"] / table["runs"]
    return table.drop(columns=["n_known", "n_below_known"])


def reference_pairs(
    table: pd.DataFrame, axes: Sequence[str], baselines: Sequence[str], reference: str
) -> pd.DataFrame:
    """Per cell of ``axes`` and baseline: its stuck rate next to ``reference``'s success rate.

    Columns ``*axes, label, stuck_rate, <reference>_success`` (NaN where the reference
    has no run in the cell), and, when ``table`` has them, ``runs``, ``n_stuck``,
    ``unfinished_rate``, ``<reference>_runs``, ``<reference>_n_success`` (for
    intervals) and ``<reference>_n_below`` (its runs whose tensor step was below its sample
    complexity); rows grouped by baseline in the given order.
    """
    labels = set(table["label"])
    if reference not in labels:
        raise ValueError(f"unknown reference variant {reference!r}; variants: "
                         f"{', '.join(sorted(labels))}")
    unknown = [b for b in baselines if b not in labels]
    if unknown:
        raise ValueError(f"unknown baseline variant(s) {', '.join(unknown)}; variants: "
                         f"{', '.join(sorted(labels - {reference}))}")
    extra_ref = [c for c in ("runs", "n_success", "n_below") if c in table.columns]
    ref = table.loc[table["label"] == reference, [*axes, "success_rate", *extra_ref]]
    ref = ref.rename(columns={"success_rate": f"{reference}_success",
                              **{c: f"{reference}_{c}" for c in extra_ref}})
    extra = [c for c in ("runs", "n_stuck", "unfinished_rate") if c in table.columns]
    base = table.loc[table["label"].isin(baselines), [*axes, "label", "stuck_rate", *extra]]
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


def candidate_cells(table: pd.DataFrame, axes: Sequence[str], baselines: Sequence[str],
                    candidate_min: float = CANDIDATE_MIN) -> pd.DataFrame:
    """Cells of ``axes`` where some baseline is stuck in >= ``candidate_min`` of its runs.

    Parameters
    ----------
    table : DataFrame
        :func:`phase_table` over ``axes``.
    baselines : sequence of str
        The local-search variant labels that count.

    Returns
    -------
    DataFrame
        One row per cell, in the table's order: ``*axes``, ``variants`` (the stuck
        labels, comma-separated) and ``stuck_rate`` (the largest of their stuck rates).
    """
    hits = table[table["label"].isin(list(baselines)) & (table["stuck_rate"] >= candidate_min)]
    if hits.empty:
        return pd.DataFrame(columns=[*axes, "variants", "stuck_rate"])
    return hits.groupby(list(axes), sort=False, dropna=False).agg(
        variants=("label", ", ".join), stuck_rate=("stuck_rate", "max")).reset_index()


def cells_toml(cells: pd.DataFrame, axes: Sequence[str]) -> str:
    """The ``cells = [...]`` entry of a config's ``[data]`` table that re-runs ``cells``
    (see :func:`candidate_cells`)."""
    def value(v: object) -> str:
        v = v.item() if hasattr(v, "item") else v
        return json.dumps(v) if isinstance(v, (str, bool)) else repr(v)

    items = ["{" + ", ".join(f"{a} = {value(r[a])}" for a in axes) + "}"
             for r in cells.to_dict("records")]
    return "cells = [\n" + "".join(f"    {item},\n" for item in items) + "]"


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


def references_in(summary: pd.DataFrame, references: Sequence[str] | str | None = None
                  ) -> list[str]:
    """The reference labels to use: the given ones (a string is one), or by default the
    variants of ``summary`` that start from the tensor step, refinements first
    (:func:`moebench.sweep.style.default_references`; a config's ``[report] references``
    arrive here as ``references``).

    Raises
    ------
    ValueError
        When none is given and no variant starts from the tensor step.
    """
    if isinstance(references, str):
        return [references]
    if references:
        return list(references)
    from moebench.sweep.style import default_references, variant_list

    found = default_references(variant_list(summary))
    if not found:
        raise ValueError("no reference variant: none of "
                         f"{', '.join(map(str, dict.fromkeys(summary['label'])))} starts from "
                         "the tensor step; name one with --reference or the config's "
                         "[report] references")
    return found
