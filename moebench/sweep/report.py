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

from moebench.sweep.columns import (
    OK_STATUSES,
    SETTING_COLUMNS,
    format_value,
    is_real_data,
    varying_settings,
)
from moebench.sweep.gridlock import (
    DEFAULT_TOL,
    STUCK_MIN,
    SUCCESS_MIN,
    gridlock_regions,
    local_search_labels,
    mark_stuck,
    phase_table,
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
            row["success"] = f"{g['success'].astype(bool).mean():.0%}"
            row["stuck"] = f"{g['stuck'].astype(bool).mean():.0%}"
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
                    f"both the best any variant reached on the same data and the truth's.\n")
    statuses = summary["status"].value_counts().to_dict()
    head.append("Run statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
                + ".\n")
    return "\n".join(head) + "\n" + _markdown(rows)


def phase_report(summary: pd.DataFrame, axes: list[str], reference: str = "tensor_em_refine",
                 tol: float = DEFAULT_TOL, stuck_min: float = STUCK_MIN,
                 success_min: float = SUCCESS_MIN) -> str:
    """Markdown: stuck and success rates per setting of ``axes`` and variant, then the
    settings where another variant is stuck in >= ``stuck_min`` of seeds while
    ``reference`` succeeds in >= ``success_min``."""
    table = phase_table(summary, axes, tol)
    regions = gridlock_regions(table, axes, local_search_labels(summary, reference), reference,
                               stuck_min, success_min)
    rows = []
    for _, r in table.iterrows():
        row = {a: format_value(r[a]) for a in axes}
        row.update({"variant": r["label"], "runs": str(r["runs"]), "failed": str(r["failed"]),
                    "stuck": f"{r['stuck_rate']:.0%}", "success": f"{r['success_rate']:.0%}",
                    "expert error, median": f"{r['median_expert_error']:.3g}"})
        rows.append(row)
    text = [f"## Phase map over {', '.join(axes)}\n", _markdown(rows),
            f"\n## Gridlock: stuck >= {stuck_min:.0%} while {reference} succeeds >= "
            f"{success_min:.0%}\n"]
    if regions.empty:
        text.append("No such setting in these results.\n")
    else:
        text.append(_markdown([{c: format_value(v) for c, v in r.items()}
                               for r in regions.to_dict("records")]))
    return "\n".join(text)

