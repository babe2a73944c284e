"""Markdown summary tables of stored sweep results.

Per algorithm variant and data setting: runs, failures, median matched expert
error with its interquartile range, success rate, stuck rate, median held-out
log-likelihood and median fit time. A run is *stuck* when its final training
log-likelihood is more than ``tol`` per sample below both the best that any
variant reached on the same data set and the true parameters' log-likelihood:
a local optimum, not sampling error.
"""

from __future__ import annotations

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
    DEFAULT_TOL,
    GROSS_ERROR,
    STUCK_MIN,
    SUCCESS_MIN,
    gridlock_regions,
    has_stationarity,
    local_search_labels,
    mark_stuck,
    phase_table,
    rate_interval,
    references_in,
)


def _median_iqr(values: pd.Series, fmt: str = ".3g") -> str:
    v = values.to_numpy(float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "–"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{med:{fmt}} [{q1:{fmt}}, {q3:{fmt}}]"


def _median(values: pd.Series, fmt: str = ".3g") -> str:
    v = values.to_numpy(float)
    v = v[np.isfinite(v)]
    return f"{np.median(v):{fmt}}" if v.size else "–"


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
    """How stuck runs are told from unfinished ones, and what the intervals are."""
    if known:
        rule = (f", at a stationary point (scaled gradient norm <= {STATIONARY_TOL:g}). "
                "Unfinished: not stationary, and a budget ended it or it has that gap.")
    else:
        rule = (". These results do not record the final gradient norm, so stationarity is "
                "unknown and stuck means the likelihood gap alone (stuck and unfinished are "
                "not told apart).")
    return (rule + f" Gross: expert error > {GROSS_ERROR:g} or a failed run. Rates are given "
            "with their Wilson 95% intervals.")


def _fixed_line(summary: pd.DataFrame, varying: list[str]) -> str:
    fixed = []
    for c in SETTING_COLUMNS:
        if c in summary.columns and c not in varying and c != "n_test":
            vals = summary[c].dropna().unique()
            if len(vals) == 1:
                fixed.append(f"{c}={format_value(vals[0])}")
    return ", ".join(fixed)


def report_table(summary: pd.DataFrame, tol: float = DEFAULT_TOL) -> str:
    """A Markdown report: one row per data setting and algorithm variant."""
    if summary.empty:
        return "(no runs)\n"
    real = is_real_data(summary)
    varying = varying_settings(summary)
    if real:
        varying = [c for c in varying if c != "k"]
        by = [*varying, "k", "label"]
    else:
        by = [*varying, "label"]
        summary = mark_stuck(summary, tol)
    stationarity = not real and has_stationarity(summary)
    rows = []
    for key, g in summary.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {c: format_value(v) for c, v in zip(by, key, strict=True)}
        if real and row["k"] == "1":  # a single linear model (the reference), no mixture
            row["k"] = "1 (linear)"
        row = {"variant": row.pop("label"), **row}
        ok = g[g["status"].isin(OK_STATUSES)]
        row["runs"] = str(len(g))
        row["failed"] = str(int((~g["status"].isin(OK_STATUSES)).sum()))
        if real:
            row["held-out log-lik (mean ± sd)"] = _mean_sd(ok["test_log_likelihood"])
            row["held-out MSE (mean ± sd)"] = _mean_sd(ok["test_mse"])
        else:
            row["expert error, median [IQR]"] = _median_iqr(ok["expert_error"])
            row["expert error, mean"] = _mean(ok["expert_error"])
            err = g["expert_error"].to_numpy(float)
            gross = ~g["status"].isin(OK_STATUSES).to_numpy() | ~(err <= GROSS_ERROR)
            row[f"gross (> {GROSS_ERROR:g})"] = rate_interval(int(gross.sum()), len(g))
            row["success"] = rate_interval(int(g["success"].astype(bool).sum()), len(g))
            row["stuck"] = rate_interval(int(g["stuck"].astype(bool).sum()), len(g))
            if stationarity:
                row["unfinished"] = rate_interval(int(g["unfinished"].astype(bool).sum()),
                                                  len(g))
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
                    "(k = 1).\n")
    else:
        thr = summary["success_threshold"].iloc[0] if "success_threshold" in summary else 0.1
        head.append(f"Success: matched expert error < {thr:g} (failed runs count as failures). "
                    f"Stuck: final training log-likelihood more than {tol:g} per sample below "
                    f"both the best any variant reached on the same data and the truth's"
                    + _stationarity_note(stationarity) + "\n")
    statuses = summary["status"].value_counts().to_dict()
    head.append("Run statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
                + ".\n")
    return "\n".join(head) + "\n" + _markdown(rows)


def phase_report(summary: pd.DataFrame, axes: list[str],
                 reference: str | list[str] | None = None, tol: float = DEFAULT_TOL,
                 stuck_min: float = STUCK_MIN, success_min: float = SUCCESS_MIN,
                 stuck_tols: list[float] | None = None) -> str:
    """Markdown: stuck and success rates per setting of ``axes`` and variant, then, for
    each reference, the settings where another variant is stuck in >= ``stuck_min`` of
    seeds while the reference succeeds in >= ``success_min``.

    Parameters
    ----------
    reference : str, list of str or None
        The reference variant(s); None: those of
        :data:`moebench.sweep.gridlock.DEFAULT_REFERENCES` present (tensor_em + refine,
        and the paper's estimator, tensor_em alone), side by side.
    stuck_tols : list of float, optional
        Also state the verdict (gridlock cells per baseline and reference, overall stuck
        rates) under each of these stuck tolerances (e.g. 1e-4, 1e-3, 1e-2).
    """
    table = phase_table(summary, axes, tol)
    stationarity = has_stationarity(summary)
    rows = []
    for _, r in table.iterrows():
        row = {a: format_value(r[a]) for a in axes}
        row.update({"variant": r["label"], "runs": str(r["runs"]), "failed": str(r["failed"]),
                    "stuck": rate_interval(r["n_stuck"], r["runs"])})
        if stationarity:
            row["unfinished"] = ("–" if not np.isfinite(r["n_unfinished"])
                                 else rate_interval(r["n_unfinished"], r["runs"]))
        row.update({"success": rate_interval(r["n_success"], r["runs"]),
                    "expert error, median": f"{r['median_expert_error']:.3g}",
                    "mean": f"{r['mean_expert_error']:.3g}",
                    f"gross (> {GROSS_ERROR:g})": rate_interval(r["n_gross"], r["runs"])})
        rows.append(row)
    text = [f"## Phase map over {', '.join(axes)}\n", _markdown(rows)]
    for ref in references_in(summary, reference):
        regions = gridlock_regions(table, axes, local_search_labels(summary, ref), ref,
                                   stuck_min, success_min)
        text.append(f"\n## Gridlock: stuck >= {stuck_min:.0%} while {ref} succeeds >= "
                    f"{success_min:.0%}\n")
        if not stationarity:
            text.append("Stuck = likelihood gap alone (stationarity unknown in these "
                        "results).\n")
        if regions.empty:
            text.append("No such setting in these results.\n")
            continue
        out_rows = []
        for r in regions.to_dict("records"):
            row = {a: format_value(r[a]) for a in axes}
            row["label"] = r["label"]
            row["stuck"] = rate_interval(r["n_stuck"], r["runs"])
            if stationarity and np.isfinite(r["unfinished_rate"]):
                row["unfinished"] = f"{r['unfinished_rate']:.0%}"
            row[f"{ref} success"] = rate_interval(r[f"{ref}_n_success"], r[f"{ref}_runs"])
            out_rows.append(row)
        text.append(_markdown(out_rows))
    if stuck_tols:
        text.append(verdict_by_tolerance(summary, axes, stuck_tols, reference, stuck_min,
                                         success_min))
    return "\n".join(text)


def verdict_by_tolerance(summary: pd.DataFrame, axes: list[str], tols: list[float],
                         reference: str | list[str] | None = None,
                         stuck_min: float = STUCK_MIN, success_min: float = SUCCESS_MIN
                         ) -> str:
    """Markdown: per stuck tolerance, each local-search variant's overall stuck rate (with
    its Wilson 95% interval) and its number of gridlock cells against each reference.

    Parameters
    ----------
    tols : list of float
        Stuck tolerances (per-sample log-likelihood gaps), e.g. ``[1e-4, 1e-3, 1e-2]``.
    """
    refs = references_in(summary, reference)
    rows = []
    for tol in tols:
        table = phase_table(summary, axes, tol)
        marked = mark_stuck(summary, tol)
        counts = {ref: gridlock_regions(table, axes, local_search_labels(summary, ref), ref,
                                        stuck_min, success_min)["label"].value_counts()
                  for ref in refs}
        labels = [lab for lab in dict.fromkeys(marked["label"])
                  if lab in set(local_search_labels(summary, refs[0])) - set(refs)]
        for label in labels:
            g = marked[marked["label"] == label]
            row = {"stuck tol": f"{tol:g}", "variant": label,
                   "stuck": rate_interval(int(g["stuck"].sum()), len(g))}
            for ref in refs:
                row[f"gridlock cells vs {ref}"] = str(int(counts[ref].get(label, 0)))
            rows.append(row)
    return (f"\n## Verdict by stuck tolerance (cells over {', '.join(axes)})\n\n"
            + _markdown(rows))



# --------------------------------------------------------------------------- README tables
#: ``moebench report --table`` choices: the default report and the README tables
TABLES = ("summary", "accuracy", "comparison", "phase_times")
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


def comparison_table(summary: pd.DataFrame, metric: str = "expert_error") -> str:
    """Markdown: per varying setting and variant, repetitions, median ``metric``, success
    rate with its Wilson 95% interval and median fit time (the README's "baselines next to
    tensor_em" table).

    A failed run counts as a failure with an infinite error. Settings and variants keep
    the config's order.

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
    by = varying_settings(summary)
    order = {c: {v: i for i, v in enumerate(_ordered(summary[c]))} for c in [*by, "label"]}
    keys = summary[[*by, "label"]].drop_duplicates()
    keys = keys.sort_values([*by, "label"], key=lambda s: s.map(order[s.name]))
    rows = []
    for key in keys.itertuples(index=False):
        mask = np.ones(len(summary), bool)
        for c, v in zip([*by, "label"], key, strict=True):
            mask &= (summary[c] == v).to_numpy()
        g = summary[mask]
        row = {c: format_value(v) for c, v in zip(by, key[:-1], strict=True)}
        ok = g[g["status"].isin(OK_STATUSES)]
        med = np.median(_final_errors(g, metric))
        row.update({"algorithm": key[-1], "seeds": str(g["repetition"].nunique()),
                    f"median {metric.replace('_', ' ')}": f"{med:.4f}",
                    "success rate": rate_interval(int(g["success"].astype(bool).sum()),
                                                  len(g)),
                    "median time (s)": _median(ok["fit_time"], ".2f")})
        failed = int((~g["status"].isin(OK_STATUSES)).sum())
        if failed:
            row["algorithm"] += f" ({failed} failed)"
        rows.append(row)
    return _markdown(rows)


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
