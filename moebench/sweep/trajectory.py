"""Per-run trajectories: a run's checkpoints as a curve, for every figure and table.

Every run of a sweep stores its checkpoints (one record per iteration, with the
estimator's own clock, which excludes metric evaluation). This module is the one place
that turns them into curves: :func:`run_curve` for the ``curves`` and ``time`` figures
(every recorded checkpoint against iteration or wall time), :func:`run_trajectory` for
what the ``equal_footing`` figure and the ``time_to_error`` table compare (steps and
estimator time from a run's first estimate), both with the same anytime estimate
(:func:`anytime_values`) and read off a common grid by :func:`carry_forward` (the band
over runs is :func:`moebench.sweep.quantiles.median_band`):

*Steps.* A run's steps are its checkpoints in the order they were recorded,
counted from its first estimate of the experts (the first checkpoint with a
finite expert error) as step 0. Records before it (tensor_em's ``moments``
phase) are setup, not steps, but their time counts. So one step is one recorded
iteration of whatever the algorithm iterates: an EM iteration for joint_em (each
start's initial point is a checkpoint too, and restarts follow one another), an
epoch for sgd, an alternating round for alt_min (its final gating fit is one
more), and for tensor_em the tensor step (moments and decomposition) is step 0,
then one step per gating-EM iteration (the first is the start's evaluation) and,
with ``refine``, per joint-EM iteration. Steps of different algorithms cost
different amounts of work; the time axis is the common currency.

*Time.* The estimator's clock at the checkpoint, from the start of ``fit``
through every phase and restart.

*Value.* By default the anytime estimate: the metric of the checkpoint with the
highest log-likelihood so far, which is what a restarted estimator would return
if stopped there (restarts start over from a poor point). With ``raw``, the
metric as recorded.

*On a common grid.* A run's value at a grid point is its value at its last
checkpoint at or before that point (last value carried forward: a run that ended
keeps its final value); before its first estimate a run has none, and the median
over runs counts such a run as worse than any value (so the median is drawn only
once at least half the runs have an estimate).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: metrics the equal-footing figure and table accept (errors against the true parameters)
ERROR_METRICS = ("expert_error", "gating_error")

#: what one step is, per algorithm (figure notes and docs)
STEP_NOTE = ("step 0 = a run's first estimate (tensor_em: the tensor step); then one step per "
             "recorded iteration: EM iteration (joint_em; tensor_em's gating EM and refine), "
             "sgd epoch, alt_min round; restarts count one after another")


def anytime_values(log_likelihood: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` at the checkpoint with the highest log-likelihood so far.

    A non-finite log-likelihood counts as the lowest, so a run whose records have
    none (e.g. a tensor step alone) follows its latest record.

    Parameters
    ----------
    log_likelihood, values : ndarray of shape (m,)
        One entry per checkpoint, in recorded order.

    Returns
    -------
    ndarray of shape (m,)
    """
    ll = np.asarray(log_likelihood, float)
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    best = np.zeros(len(ll), dtype=int)
    for i in range(1, len(ll)):
        best[i] = i if ll[i] >= ll[best[i - 1]] else best[i - 1]
    return np.asarray(values, float)[best]


def run_trajectory(run: pd.DataFrame, metric: str = "expert_error", raw: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One run's (steps, times, values) from its first estimate on (see the module text).

    Parameters
    ----------
    run : DataFrame
        The checkpoints of one run (columns ``time``, ``log_likelihood``,
        ``expert_error`` and ``metric``), in recorded order or any order of ``time``.
    metric : str
        ``expert_error`` or ``gating_error``.
    raw : bool
        The metric as recorded instead of the anytime estimate.

    Returns
    -------
    steps, times, values : ndarray
        Empty when the run has no estimate of the experts.
    """
    run = run.sort_values("time", kind="stable")
    first = np.flatnonzero(np.isfinite(run["expert_error"].to_numpy(float)))
    if first.size == 0:
        return np.array([]), np.array([]), np.array([])
    run = run.iloc[first[0]:]
    values = run[metric].to_numpy(float)
    if not raw:
        values = anytime_values(run["log_likelihood"].to_numpy(float), values)
    steps = np.arange(len(run), dtype=float)
    times = np.maximum.accumulate(run["time"].to_numpy(float))
    return steps, times, values


def run_curve(run: pd.DataFrame, x: str = "iteration", metric: str = "expert_error",
              raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One run's (x, values) over every recorded checkpoint (the ``curves`` figure).

    Parameters
    ----------
    run : DataFrame
        The checkpoints of one run, in recorded order (index order).
    x : str
        ``"iteration"``: the recorded iteration + 1 (the record's position + 1 where the
        iterations do not increase, e.g. across restarts); ``"time"``: the estimator's
        clock, non-decreasing and at least 1e-4 s (a log axis); ``"passes"``: the passes
        over an on-disk X so far (the checkpoints' optional ``passes`` column; a run
        without it gives an empty curve).
    metric : str
        The checkpoint column; ``log_likelihood`` is always as recorded.
    raw : bool
        The metric as recorded instead of the anytime estimate.

    Returns
    -------
    xs, values : ndarray
        Checkpoints whose value is not finite are left out.
    """
    run = run.sort_index()
    passes = run["passes"].to_numpy(float) if "passes" in run.columns else None
    return curve_arrays(run["iteration"].to_numpy(float), run["time"].to_numpy(float),
                        run["log_likelihood"].to_numpy(float), run[metric].to_numpy(float),
                        x, raw or metric == "log_likelihood", passes)


def curve_arrays(iteration: np.ndarray, time: np.ndarray, log_likelihood: np.ndarray,
                 values: np.ndarray, x: str = "iteration", raw: bool = False,
                 passes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`run_curve` on one run's checkpoint columns (in recorded order) as arrays.

    ``raw`` takes ``values`` as recorded (always so for the log-likelihood itself);
    ``passes`` is the optional ``passes`` column (None: ``x = "passes"`` gives an empty
    curve).
    """
    y = np.asarray(values, float)
    if not raw:
        y = anytime_values(log_likelihood, y)
    if x == "time":
        xs = np.maximum.accumulate(np.maximum(np.asarray(time, float), 1e-4))
    elif x == "passes":
        if passes is None:
            return np.array([]), np.array([])
        xs = np.fmax.accumulate(np.asarray(passes, float))
    else:
        it = np.asarray(iteration, float)
        xs = it if np.all(np.diff(it) > 0) else np.arange(len(it), dtype=float)
        xs = xs + 1.0
    keep = np.isfinite(y) & np.isfinite(xs)
    return xs[keep], y[keep]


def first_reach(steps: np.ndarray, times: np.ndarray, values: np.ndarray, target: float
                ) -> tuple[float, float] | None:
    """(step, time) of the first checkpoint with ``values <= target``; None if never."""
    hit = np.flatnonzero(np.asarray(values, float) <= target)
    if hit.size == 0:
        return None
    return float(steps[hit[0]]), float(times[hit[0]])


def carry_forward(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The run's value at each grid point: its last checkpoint at or before it.

    After the last checkpoint the final value stays; before the first there is none
    (NaN). A NaN value recorded at a checkpoint stays NaN until the next one.

    Parameters
    ----------
    x : ndarray
        Checkpoint positions (steps or times), non-decreasing.
    y : ndarray
        Values at the checkpoints.
    grid : ndarray
        Where to read the run off.

    Returns
    -------
    ndarray of the shape of ``grid``
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    idx = np.searchsorted(x, np.asarray(grid, float), side="right") - 1
    if x.size == 0:
        return np.full(np.shape(grid), np.nan)
    return np.where(idx >= 0, y[np.clip(idx, 0, None)], np.nan)


def trajectories(checkpoints: pd.DataFrame, metric: str = "expert_error", raw: bool = False
                 ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`run_trajectory` of every run in ``checkpoints``, by run id."""
    return {rid: run_trajectory(run, metric, raw)
            for rid, run in checkpoints.groupby("run_id", sort=True)}


def check_inputs(summary: pd.DataFrame, checkpoints: pd.DataFrame, metric: str,
                 variants: Sequence[str] | None) -> list[str]:
    """Validate the shared inputs of the figure and the table; the variants to show.

    Raises
    ------
    ValueError
        For a metric other than :data:`ERROR_METRICS`, results without checkpoints
        holding that metric, a variant that is not in the results, or runs whose
        checkpoints were thinned (``checkpoints_thinned`` > 0 in the summary).
    """
    if metric not in ERROR_METRICS:
        raise ValueError(f"metric must be one of {', '.join(ERROR_METRICS)} (errors against "
                         f"the true parameters); got {metric!r}")
    if checkpoints is None or checkpoints.empty or "run_id" not in checkpoints.columns:
        raise ValueError("these results have no checkpoints: the equal-footing figure and the "
                         "time_to_error table need the per-iteration checkpoints "
                         "(checkpoints.parquet)")
    for col in ("time", "log_likelihood", "expert_error", metric):
        if col not in checkpoints.columns:
            raise ValueError(f"the checkpoints lack the column {col!r}; present: "
                             f"{', '.join(map(str, checkpoints.columns))}")
    if not np.isfinite(checkpoints[metric].to_numpy(float)).any():
        raise ValueError(f"no checkpoint has a finite {metric}: the results hold no true "
                         "parameters (real data?), so there is no error to reach")
    present = list(dict.fromkeys(summary["label"]))
    chosen = present if variants is None else list(dict.fromkeys(variants))
    unknown = [v for v in chosen if v not in present]
    if unknown or (variants is not None and not chosen):
        raise ValueError(f"unknown variant(s) {', '.join(map(repr, unknown)) or '(none)'}; "
                         f"valid choices: {', '.join(present)}")
    thinned = summary.get("checkpoints_thinned")  # moebench pack --thin-checkpoints
    if thinned is not None and (thinned[summary["label"].isin(chosen)].fillna(0) > 0).any():
        raise ValueError("the checkpoints of these results were thinned (moebench pack "
                         "--thin-checkpoints), so a run's rows are no longer its steps: the "
                         "equal-footing figure and the time_to_error table need every "
                         "checkpoint (results packed without --thin-checkpoints)")
    return chosen
