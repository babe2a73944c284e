"""The ``time_to_error`` table: how often and how fast each variant's error first reaches a
target, from the trajectories of :mod:`moebench.sweep.trajectory`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from moebench.sweep.columns import OK_STATUSES, format_value
from moebench.sweep.gridlock import rate_interval
from moebench.sweep.report import (
    _fixed_line,
    _markdown,
    _median,
    _median_iqr,
    _setting_variant_groups,
)
from moebench.sweep.trajectory import STEP_NOTE, check_inputs, first_reach, trajectories
from moebench.sweep.views import table


def _check_targets(targets: object) -> list[float]:
    """The error targets as floats; ValueError naming the bad one."""
    values = [targets] if isinstance(targets, (int, float)) else list(targets or [])
    if not values:
        raise ValueError("--target-error needs at least one error target > 0 (e.g. 0.3 0.1)")
    out = []
    for v in values:
        ok = isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
        if not ok or not np.isfinite(v) or v <= 0:
            raise ValueError(f"--target-error must be finite numbers > 0; got {v!r} (valid: an "
                             "error level such as 0.3, 0.1 or 0.01)")
        out.append(float(v))
    return list(dict.fromkeys(out))


def time_to_error(summary: pd.DataFrame, checkpoints: pd.DataFrame, target: float,
                  metric: str = "expert_error", raw: bool = False) -> pd.DataFrame:
    """Per run of ``summary``: whether, when and at which step ``metric`` first reached
    ``target``.

    Every run is kept: a failed run, a run without checkpoints and a run whose error
    never falls to ``target`` have ``reached`` False and NaN step and time. Steps and
    the error read off each checkpoint are those of :mod:`moebench.sweep.trajectory`
    (the anytime estimate unless ``raw``); time is the estimator's clock at that
    checkpoint, every phase and restart counted.

    Parameters
    ----------
    summary, checkpoints : DataFrame
        Stored results.
    target : float
        The error level, > 0.
    metric : str
        ``expert_error`` or ``gating_error``.
    raw : bool
        The error as recorded instead of the anytime estimate.

    Returns
    -------
    DataFrame
        ``run_id``, ``reached``, ``step``, ``time`` in the order of ``summary``.
    """
    target = _check_targets([target])[0]
    check_inputs(summary, checkpoints, metric, None)
    ok = summary.loc[summary["status"].isin(OK_STATUSES), "run_id"]
    traj = trajectories(checkpoints[checkpoints["run_id"].isin(set(ok))], metric, raw)
    rows = []
    for rid in summary["run_id"]:
        hit = first_reach(*traj[rid], target) if rid in traj else None
        rows.append({"run_id": rid, "reached": hit is not None,
                     "step": hit[0] if hit else np.nan, "time": hit[1] if hit else np.nan})
    return pd.DataFrame(rows, columns=["run_id", "reached", "step", "time"])


@table("time_to_error", help="per variant and setting, the fraction of runs whose --metric "
       "ever reaches each --target-error (Wilson 95% interval) and the median estimator time "
       "and step to first reach it")
def time_to_error_table(summary: pd.DataFrame, checkpoints: pd.DataFrame,
                        targets: float | list[float] = (0.1,), metric: str = "expert_error",
                        variants: list[str] | None = None, raw: bool = False) -> str:
    """Markdown: per target, variant and setting, how often and how fast ``metric`` first
    reached the target.

    Columns: runs (every run of the variant and setting; failed runs and runs without
    checkpoints count as not reached, never dropped), reached (the fraction with its
    Wilson 95% interval), the median [IQR] estimator time and the median step over the
    runs that reached it, and the median time over all runs with a run that never
    reached it counting as infinite ("not reached" when half or more never did).
    Settings and variants keep the config's order.

    Parameters
    ----------
    summary, checkpoints : DataFrame
        Stored results (:func:`moebench.sweep.store.load_results`).
    targets : float or list of float
        Error levels, each > 0 (e.g. ``[0.3, 0.1, 0.01]``).
    metric : str
        ``expert_error`` (default) or ``gating_error``.
    variants : list of str, optional
        The variant labels to tabulate (default: every variant with checkpoints; the
        others are named in a note).
    raw : bool
        The error as recorded instead of the anytime estimate (error at the best
        log-likelihood so far).

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For a target that is not a finite number > 0, a metric that is not an error,
        results without checkpoints, or an unknown variant (or one without checkpoints).
    """
    targets = _check_targets(targets)
    labels = check_inputs(summary, checkpoints, metric, variants)
    have = set(checkpoints["run_id"])
    bare = [lab for lab in labels
            if not summary.loc[summary["label"] == lab, "run_id"].isin(have).any()]
    if variants is not None and bare:
        with_ck = [lab for lab in dict.fromkeys(summary["label"])
                   if summary.loc[summary["label"] == lab, "run_id"].isin(have).any()]
        raise ValueError(f"variant(s) {', '.join(map(repr, bare))} have no checkpoints; "
                         f"valid choices: {', '.join(with_ck)}")
    labels = [lab for lab in labels if lab not in bare]
    summary = summary[summary["label"].isin(labels)]
    by, groups = _setting_variant_groups(summary)
    name = metric.replace("_", " ")
    how = "as recorded" if raw else "the anytime estimate (the error at the best log-likelihood " \
        "so far)"
    text = [f"## Time to reach {name} <= target\n",
            f"Every run of a variant and setting counts: a run that never reaches the target "
            f"(or failed, or has no checkpoints) is not reached, never dropped. Reached: the "
            f"fraction with its Wilson 95% interval. Time: the estimator's own clock at the "
            f"first checkpoint at or below the target (every phase and restart counted, metric "
            f"evaluation excluded), median [IQR] over the runs that reached it; all runs: the "
            f"median with a run never reaching it counted as infinite. Step: {STEP_NOTE}. "
            f"Error: {how}.\n"]
    if bare:
        text.append(f"Not shown (no checkpoints): {', '.join(bare)}.\n")
    fixed = _fixed_line(summary, by)
    if fixed:
        text.append(f"Fixed: {fixed}.\n")
    for target in targets:
        hits = time_to_error(summary, checkpoints, target, metric, raw).set_index("run_id")
        rows = []
        for key, g in groups:
            h = hits.loc[g["run_id"]]
            reached = h[h["reached"]]
            row = {c: format_value(v) for c, v in zip(by, key[:-1], strict=True)}
            failed = int((~g["status"].isin(OK_STATUSES)).sum())
            row["variant"] = key[-1] + (f" ({failed} failed)" if failed else "")
            row["runs"] = str(len(g))
            row["reached"] = rate_interval(len(reached), len(g))
            row["time (s), median [IQR] of reached"] = _median_iqr(reached["time"])
            row["step, median of reached"] = _median(reached["step"], ".3g")
            all_times = np.where(h["reached"], h["time"], np.inf).astype(float)
            med = float(np.median(all_times)) if all_times.size else np.nan
            row["time (s), median of all runs"] = f"{med:.3g}" if np.isfinite(med) \
                else "not reached"
            rows.append(row)
        text.append(f"\n### {name} <= {target:g}\n\n" + _markdown(rows))
    return "\n".join(text)
