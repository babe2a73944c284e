"""Markdown summary tables of stored sweep results.

Per algorithm variant and data setting: runs, failures, median matched expert
error with its interquartile range, success rate, stuck rate, median held-out
log-likelihood and median fit time. A run is *stuck* when its final training
log-likelihood is more than ``tol`` per sample below both the best that any
variant reached on the same data set and the true parameters' log-likelihood:
a local optimum, not sampling error. Where the folder was classified (``moebench
classify``), the tables count the certified classes instead (*local maximum* in place of
stuck; saddle, singular, slow and unfinished apart) and the header quotes their definitions
from :func:`moebench.sweep.classify.class_definitions`; otherwise the header says the
stuck test is *uncertified*. Where runs record the tensor step's flag
(``fitted_below_sample_complexity``: tensor_em, and refine, joint_em(init="tensor")), a
column *tensor step below sample complexity* gives their rate (Wilson 95% interval), apart
from the stuck and class columns, in the summary table, the phase map, the gridlock rows (for
the reference) and the verdict by tolerance (:data:`BELOW_NOTE`).

The tables are registered views (:mod:`moebench.sweep.views`; ``moebench report --table``
lists them): this module holds ``summary`` and the README tables (``accuracy``,
``comparison``, ``phase_times``, ``threshold_n``) with the Markdown helpers they share;
:mod:`moebench.sweep.report_phase` the phase map, gridlock and verdict sections
(``--phase``), :mod:`moebench.sweep.report_time` ``time_to_error`` and
:mod:`moebench.sweep.theorem` ``theorem``. Medians and interquartile ranges are
:func:`moebench.sweep.quantiles.quartiles`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from moebench.stationarity import STATIONARY_TOL
from moebench.sweep.columns import (
    OK_STATUSES,
    SETTING_COLUMNS,
    format_value,
    is_real_data,
    varying_settings,
)
from moebench.sweep.gridlock import (
    BELOW_HEAD,
    DEFAULT_TOL,
    GROSS_ERROR,
    below_rate,
    has_below_flag,
    has_stationarity,
    is_certified,
    mark_stuck,
    rate_interval,
)
from moebench.sweep.quantiles import quartiles
from moebench.sweep.views import table


def _median_iqr(values: pd.Series, fmt: str = ".3g") -> str:
    """``median [q1, q3]`` of the finite values (:func:`quartiles`); "–" when none."""
    q1, med, q3 = quartiles(values.to_numpy(float))
    if not np.isfinite(med):
        return "–"
    return f"{med:{fmt}} [{q1:{fmt}}, {q3:{fmt}}]"


def _median(values: pd.Series, fmt: str = ".3g") -> str:
    """The median of the finite values (:func:`quartiles`); "–" when none."""
    med = quartiles(values.to_numpy(float))[1]
    return f"{med:{fmt}}" if np.isfinite(med) else "–"


def _mean_sd(values: pd.Series, fmt: str = ".3f") -> str:
    v = values.to_numpy(float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "–"
    return f"{np.mean(v):{fmt}} ± {np.std(v, ddof=1) if v.size > 1 else 0.0:{fmt}}"


def _markdown(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no runs)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _mean(values: pd.Series, fmt: str = ".3g") -> str:
    v = values.to_numpy(float)
    v = v[np.isfinite(v)]
    return f"{np.mean(v):{fmt}}" if v.size else "–"


def _stationarity_note(known: bool) -> str:
    """How stuck runs are told from unfinished ones (uncertified), and what the intervals
    are."""
    if known:
        rule = (f", at a stationary point (scaled gradient norm <= {STATIONARY_TOL:g}). "
                "Unfinished: not stationary, and a budget ended it or it has that gap.")
    else:
        rule = (". These results do not record the final gradient norm, so stationarity is "
                "unknown and stuck means the likelihood gap alone (stuck and unfinished are "
                "not told apart).")
    return (rule + " Uncertified: a stationary point at that tolerance may be a flat slope or a "
            "saddle (`moebench classify` certifies the classes)." + _GROSS_NOTE)


_GROSS_NOTE = (f" Gross: expert error > {GROSS_ERROR:g} or a failed run. Rates are given with "
               "their Wilson 95% intervals.")
#: the header's definition of the tensor-step column (issue 26 item 4)
BELOW_NOTE = (f" *{BELOW_HEAD.capitalize()}*: runs whose tensor step kept fewer than k "
              "eigenvalues of T2 with c2's sign above its noise level "
              "(`fitted_below_sample_complexity`: tensor_em, and refine = "
              "joint_em(init=\"tensor\"), which records its start's flag), as a rate of all "
              "the row's runs with its Wilson 95% interval; a flag, not a class: such runs are "
              "also counted in the columns above by their outcome; – where the row's runs "
              "record no tensor step.")

#: the certified class columns of the tables: (column of mark_stuck, table heading)
CLASS_COLUMNS = (("stuck", "local maximum"), ("saddle", "saddle"), ("singular", "singular"),
                 ("slow", "slow"), ("unfinished", "unfinished"))


def _classes_note(summary: pd.DataFrame, tol: float) -> str:
    """The header's class definitions (certified results), from the one place that
    states them."""
    from moebench.sweep.classify import class_definitions

    truth = "true_train_log_likelihood" in summary.columns and bool(
        np.isfinite(summary["true_train_log_likelihood"].astype(float)).any())
    return (f"Classes certified by `moebench classify` (polished at tol "
            f"{float(summary['classify_tol'].iloc[0]):g}; shown at tol {tol:g}): "
            + class_definitions(tol, truth) + _GROSS_NOTE)


def _stuck_name(certified: bool) -> str:
    return "local maximum" if certified else "stuck"


def _oracle_mark(runs: pd.DataFrame) -> str:
    """" (oracle)" for the runs of an estimator that fits with the true parameters
    (``needs_truth``, e.g. oracle_gating_em), else ""."""
    if "algorithm" not in runs.columns or runs.empty:
        return ""
    from moebench.registry import algorithm_class

    try:
        return " (oracle)" if algorithm_class(str(runs["algorithm"].iloc[0])).needs_truth else ""
    except ValueError:  # not registered here
        return ""


def _fixed_line(summary: pd.DataFrame, varying: list[str]) -> str:
    fixed = []
    for c in SETTING_COLUMNS:
        if c in summary.columns and c not in varying and c != "n_test":
            vals = summary[c].dropna().unique()
            if len(vals) == 1:
                fixed.append(f"{c}={format_value(vals[0])}")
    return ", ".join(fixed)


@table("summary", help="(default) per variant and setting: runs, failures, median [IQR] "
       "error, gross, success and stuck (or certified class) rates, held-out "
       "log-likelihood, fit time")
def report_table(summary: pd.DataFrame, tol: float = DEFAULT_TOL) -> str:
    """A Markdown report: one row per data setting and algorithm variant."""
    if summary.empty:
        return "(no runs)\n"
    real = is_real_data(summary)
    varying = varying_settings(summary)
    if real:
        varying = [c for c in varying if c != "k"]
        by = [*varying, "k", "label"]
        if is_certified(summary):  # classes relative to the best found (no truth)
            summary = mark_stuck(summary, tol)
    else:
        by = [*varying, "label"]
        summary = mark_stuck(summary, tol)
    certified = "certified" in summary.columns and bool(summary["certified"].any())
    stationarity = not real and not certified and has_stationarity(summary)
    below = has_below_flag(summary)
    rows = []
    for key, g in summary.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {c: format_value(v) for c, v in zip(by, key, strict=True)}
        if real and row["k"] == "1":  # a single linear model (the reference), no mixture
            row["k"] = "1 (linear)"
        row = {"variant": row.pop("label") + _oracle_mark(g), **row}
        ok = g[g["status"].isin(OK_STATUSES)]
        row["runs"] = str(len(g))
        row["failed"] = str(int((~g["status"].isin(OK_STATUSES)).sum()))
        if real:
            row["held-out log-lik (mean ± sd)"] = _mean_sd(ok["test_log_likelihood"])
            row["held-out MSE (mean ± sd)"] = _mean_sd(ok["test_mse"])
            if certified:
                for col, head in CLASS_COLUMNS:
                    row[head] = rate_interval(int(g[col].astype(bool).sum()), len(g))
            if below:
                row[BELOW_HEAD] = below_rate(g)
        else:
            row["expert error, median [IQR]"] = _median_iqr(ok["expert_error"])
            row["expert error, mean"] = _mean(ok["expert_error"])
            err = g["expert_error"].to_numpy(float)
            if len(ok) and not np.isfinite(ok["expert_error"].to_numpy(float)).any():
                # no matched errors (a fit of another k than the truth's): no rate to give
                row[f"gross (> {GROSS_ERROR:g})"] = row["success"] = "–"
            else:
                gross = ~g["status"].isin(OK_STATUSES).to_numpy() | ~(err <= GROSS_ERROR)
                row[f"gross (> {GROSS_ERROR:g})"] = rate_interval(int(gross.sum()), len(g))
                row["success"] = rate_interval(int(g["success"].astype(bool).sum()), len(g))
            if certified:
                for col, head in CLASS_COLUMNS:
                    row[head] = rate_interval(int(g[col].astype(bool).sum()), len(g))
            else:
                row["stuck"] = rate_interval(int(g["stuck"].astype(bool).sum()), len(g))
            if stationarity:
                row["unfinished"] = rate_interval(int(g["unfinished"].astype(bool).sum()),
                                                  len(g))
            if below:
                row[BELOW_HEAD] = below_rate(g)
            row["gating error, median"] = _median(ok["gating_error"])
            row["held-out log-lik, median"] = _median(ok["test_log_likelihood"], ".4f")
        row["fit time (s), median"] = _median(ok["fit_time"])
        row["iterations, median"] = _median(ok["n_iter"], ".0f")
        rows.append(row)
    head = []
    name = summary["config"].iloc[0] if "config" in summary.columns else ""
    head.append(f"## Sweep results{': ' + str(name) if name else ''}\n")
    fixed = _fixed_line(summary, varying)
    if fixed:
        head.append(f"Fixed: {fixed}. ")
    if real:
        head.append(f"{summary['folds'].iloc[0] if 'folds' in summary else '?'}-fold held-out "
                    "scores in standardised units; the reference is a single linear regression "
                    "(k = 1)." + (" " + _classes_note(summary, tol) if certified else "")
                    + (BELOW_NOTE if below else "") + "\n")
    else:
        thr = summary["success_threshold"].iloc[0] if "success_threshold" in summary else 0.1
        head.append(f"Success: matched expert error < {thr:g} (failed runs count as failures). "
                    + (_classes_note(summary, tol) if certified else
                       f"Stuck: final training log-likelihood more than {tol:g} per sample "
                       f"below both the best any variant reached on the same data and the "
                       f"truth's" + _stationarity_note(stationarity))
                    + (BELOW_NOTE if below else "") + "\n")
    statuses = summary["status"].value_counts().to_dict()
    head.append("Run statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
                + ".\n")
    return "\n".join(head) + "\n" + _markdown(rows)



# --------------------------------------------------------------------------- README tables
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power_of_ten(value: object) -> str:
    """``10⁵`` for an exact power of ten >= 100, else :func:`format_value`."""
    text = format_value(value)
    if text.isdigit() and len(text) >= 3 and text.strip("0") == "1":
        return "10" + str(len(text) - 1).translate(_SUPERSCRIPT)
    return text


def _ordered(values: pd.Series) -> list:
    """Distinct values: numbers ascending, others in order of first appearance (the
    config's order in a summary written by ``moebench run``)."""
    distinct = list(dict.fromkeys(values.tolist()))
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in distinct):
        return sorted(distinct)
    return distinct


def _final_errors(g: pd.DataFrame, metric: str) -> np.ndarray:
    """The metric of every run of ``g``; a failed run counts as inf (never a success)."""
    v = g[metric].to_numpy(float).copy()
    v[~g["status"].isin(OK_STATUSES).to_numpy()] = np.inf
    return v


@table("accuracy", help="median --metric by n, k (rows) and activation (columns), one table "
       "per variant")
def accuracy_table(summary: pd.DataFrame, metric: str = "expert_error",
                   rows: tuple[str, ...] = ("n", "k"), columns: str = "activation",
                   fmt: str = ".3f") -> str:
    """Markdown: the median ``metric`` over repetitions, ``rows`` down and ``columns`` across,
    one table per algorithm variant (the README's "Measured accuracy" table).

    Parameters
    ----------
    summary : DataFrame
        Stored results (``load_results``).
    metric : str
        A metric column, e.g. ``"expert_error"`` or ``"gating_error"``.
    rows : tuple of str
        Setting columns down the table (powers of ten written as 10⁴).
    columns : str
        Setting column across the table, in the config's order.
    fmt : str
        Format of the medians.

    Returns
    -------
    str
    """
    for col in (*rows, columns, metric):
        if col not in summary.columns:
            raise ValueError(f"column {col!r} is not in the results; valid columns: "
                             f"{', '.join(map(str, summary.columns))}")
    out = []
    for label in _ordered(summary["label"]):
        g = summary[summary["label"] == label]
        seeds = sorted({int(v) for v in g.groupby([*rows, columns]).size()})
        cols = _ordered(g[columns])
        table = []
        for key, cell in g.groupby(list(rows), sort=True):
            key = key if isinstance(key, tuple) else (key,)
            row = {r: _power_of_ten(v) for r, v in zip(rows, key, strict=True)}
            for c in cols:
                v = _final_errors(cell[cell[columns] == c], metric)
                row[format_value(c)] = f"{np.median(v):{fmt}}" if v.size else "–"
            table.append(row)
        out.append(f"### {label}: median {metric} over {'/'.join(map(str, seeds))} "
                   f"repetition(s)\n\n" + _markdown(table))
    return "\n".join(out)


def _setting_variant_groups(summary: pd.DataFrame
                            ) -> tuple[list[str], list[tuple[tuple[Any, ...], pd.DataFrame]]]:
    """The varying settings ``by`` and, per setting and variant in the config's order, the
    key (the values of ``by``, then the label) with the rows of ``summary`` it holds."""
    by = varying_settings(summary)
    order = {c: {v: i for i, v in enumerate(_ordered(summary[c]))} for c in [*by, "label"]}
    keys = summary[[*by, "label"]].drop_duplicates()
    keys = keys.sort_values([*by, "label"], key=lambda s: s.map(order[s.name]))
    groups = []
    for key in keys.itertuples(index=False):
        mask = np.ones(len(summary), bool)
        for c, v in zip([*by, "label"], key, strict=True):
            mask &= (summary[c] == v).to_numpy()
        groups.append((tuple(key), summary[mask]))
    return by, groups


@table("comparison", help="repetitions, median --metric, success rate and median fit time "
       "per varying setting and variant")
def comparison_table(summary: pd.DataFrame, metric: str = "expert_error") -> str:
    """Markdown: per varying setting and variant, repetitions, median ``metric``, success
    rate with its Wilson 95% interval and median fit time (the README's "baselines next to
    tensor_em" table).

    A failed run counts as a failure with an infinite error. Settings and variants keep
    the config's order. On real data (no true parameters: no success, no parameter
    error) the table shows the held-out log-likelihood and MSE instead of a success
    rate, and ``metric`` only where a run has a finite value of it.

    Parameters
    ----------
    summary : DataFrame
    metric : str

    Returns
    -------
    str
    """
    if summary.empty:
        return "(no runs)\n"
    by, groups = _setting_variant_groups(summary)
    real = is_real_data(summary)
    show_metric = not real or bool(np.isfinite(summary[metric].to_numpy(float)).any())
    rows = []
    for key, g in groups:
        row = {c: format_value(v) for c, v in zip(by, key[:-1], strict=True)}
        ok = g[g["status"].isin(OK_STATUSES)]
        row.update({"algorithm": key[-1], "seeds": str(g["repetition"].nunique())})
        if show_metric:
            med = np.median(_final_errors(g, metric))
            row[f"median {metric.replace('_', ' ')}"] = f"{med:.4f}"
        if real:  # no truth: nothing succeeds or fails against it
            row["held-out log-lik (mean ± sd)"] = _mean_sd(ok["test_log_likelihood"])
            row["held-out MSE (mean ± sd)"] = _mean_sd(ok["test_mse"])
        else:
            row["success rate"] = rate_interval(int(g["success"].astype(bool).sum()), len(g))
        row["median time (s)"] = _median(ok["fit_time"], ".2f")
        failed = int((~g["status"].isin(OK_STATUSES)).sum())
        if failed:
            row["algorithm"] += f" ({failed} failed)"
        rows.append(row)
    return _markdown(rows)


@table("phase_times", help="per run, the estimator's recorded phase times (tensor_em)")
def phase_times_table(summary: pd.DataFrame) -> str:
    """Markdown: one row per run with its setting, the estimator's recorded phase times
    (``fitted_phase_times_<phase>`` columns, tensor_em's ``phase_times_``), fit time,
    iterations and errors.

    Parameters
    ----------
    summary : DataFrame

    Returns
    -------
    str
    """
    phases = [c for c in summary.columns if c.startswith("fitted_phase_times_")]
    if not phases:
        raise ValueError("no fitted_phase_times_* columns in these results: only estimators "
                         "with a phase_times_ dict (tensor_em) record them")
    rows = []
    for r in summary.to_dict("records"):
        row = {c: format_value(r[c]) for c in ("n", "d", "k", "activation") if c in r}
        row["variant"] = r["label"]
        for c in phases:
            v = r[c]
            row[c.removeprefix("fitted_phase_times_") + " (s)"] = \
                "–" if v is None or not np.isfinite(v) else f"{v:.3g}"
        row["fit (s)"] = f"{r['fit_time']:.3g}"
        row["iterations"] = format_value(r["n_iter"])
        row["expert error"] = f"{r['expert_error']:.4f}"
        row["gating error"] = f"{r['gating_error']:.4f}"
        rows.append(row)
    return _markdown(rows)


def crossing_n(n: np.ndarray, error: np.ndarray, threshold: float) -> float:
    """The sample size at which ``error`` (median error at each ``n``) first falls to
    ``threshold``, interpolated linearly in log n and log error between the two sizes
    around the crossing.

    Returns ``n[0]`` when the error is already at or below the threshold at the smallest
    size, and ``inf`` when it never gets there.
    """
    order = np.argsort(n)
    n, error = np.asarray(n, float)[order], np.asarray(error, float)[order]
    below = np.flatnonzero(error <= threshold)
    if not below.size:
        return math.inf
    i = int(below[0])
    if i == 0:
        return float(n[0])
    e0, e1 = error[i - 1], error[i]
    if not np.isfinite(e0) or e1 <= 0:
        return float(n[i])
    t = (math.log(e0) - math.log(threshold)) / (math.log(e0) - math.log(e1))
    return float(math.exp(math.log(n[i - 1]) + t * (math.log(n[i]) - math.log(n[i - 1]))))


@table("threshold_n", help="median --metric at every n and the n at which it reaches the "
       "success threshold (consistency curves)")
def threshold_n_table(summary: pd.DataFrame, metric: str = "expert_error",
                      threshold: float | None = None) -> str:
    """Markdown: for each variant and setting, the median ``metric`` at every n and the n
    at which the median reaches ``threshold`` (:func:`crossing_n`), with the success rate
    (Wilson 95% interval) at the largest n.

    Parameters
    ----------
    summary : DataFrame
        Stored results with an ``n`` column taking several values.
    metric : str
    threshold : float, optional
        Default: the results' ``success_threshold``.

    Returns
    -------
    str
    """
    for col in ("n", metric):
        if col not in summary.columns:
            raise ValueError(f"column {col!r} is not in the results; valid columns: "
                             f"{', '.join(map(str, summary.columns))}")
    sizes = _ordered(summary["n"])
    if len(sizes) < 2:
        raise ValueError(f"--table threshold_n needs results at several n; these have n = "
                         f"{', '.join(map(str, sizes))}")
    if threshold is None:
        threshold = float(summary["success_threshold"].iloc[0])
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive number; got {threshold!r}")
    by = varying_settings(summary, exclude=("n",))
    rows = []
    for key, g in summary.groupby(["label", *by], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {"variant": key[0], **{c: format_value(v) for c, v in zip(by, key[1:],
                                                                        strict=True)}}
        medians = []
        for n in sizes:
            v = _final_errors(g[g["n"] == n], metric)
            medians.append(float(np.median(v)) if v.size else math.nan)
            row[f"n = {_power_of_ten(n)}"] = f"{medians[-1]:.3g}" if v.size else "–"
        known = np.isfinite(medians)
        cross = crossing_n(np.asarray(sizes, float)[known], np.asarray(medians)[known],
                           threshold)
        row[f"n at median ≤ {threshold:g}"] = (f"> {_power_of_ten(sizes[-1])}"
                                               if math.isinf(cross) else f"{cross:.2g}")
        last = g[g["n"] == sizes[-1]]
        hits = int((_final_errors(last, metric) <= threshold).sum())
        row[f"≤ {threshold:g} at n = {_power_of_ten(sizes[-1])}"] = (
            f"{hits}/{len(last)} {rate_interval(hits, len(last))}")
        rows.append(row)
    return (f"Median {metric} over the repetitions at each n (a failed run counts as inf); "
            f"the n at which the median reaches {threshold:g}, interpolated in log n and "
            f"log error between the sizes around the crossing.\n\n" + _markdown(rows))


