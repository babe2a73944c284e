"""Certified classes of the runs that end short of the best likelihood: polish, then compare.

A stored run that climbs the likelihood (its estimator's ``local_search`` is True, or it
is a moment method with ``refine``) and ends *short* of the best, is continued by one
common **polisher** (:func:`moebench.sweep.polish.polish`: joint EM from its stored end
point, the same settings for every run) and classified by where the polisher ends. The
definitions, as :func:`assign_classes` computes them (and :data:`CLASS_DEFINITIONS` states
them for the report headers):

* a run is **short** when its final mean training log-likelihood is more than ``tol`` per
  sample below the *best* on its data set (``data_id``) and, where a truth is known, more
  than ``tol`` below the truth's log-likelihood; the *best* is the largest of every ok
  run's log-likelihood and every polished point's on that data set (so classes are
  computed in passes: polish the short runs, recompute the best, polish the runs that
  became short, until none does);
* **fine**: an ok climbing run that is not short;
* **slow**: short, and the polished point is no longer short (the polisher reaches the
  best within ``tol``);
* **local maximum**: the polished point is still short, stationary (scaled gradient norm
  <= :data:`~moebench.sweep.polish.CERTIFY_GRAD_TOL`) and the Hessian of the loss there is
  positive definite beyond :data:`~moebench.sweep.polish.HESSIAN_EPS` (smallest eigenvalue >
  ``HESSIAN_EPS``, scaled coordinates of :mod:`moebench.stationarity`);
* **saddle**: still short, stationary, smallest eigenvalue < ``-HESSIAN_EPS`` (an ascent
  direction remains);
* **singular**: still short, stationary, smallest eigenvalue within ``HESSIAN_EPS`` of 0
  (second order cannot tell; or it could not be computed), or a fit of more experts than
  the truth has (``k_fit > k``: extra atoms make the Hessian singular by nature, so its
  sign says nothing about saddle or local maximum);
* **unfinished**: still short and not stationary when the polisher ends (still climbing:
  its budget, or its tolerance on a flat slope, ended it);
* **failed**: the run's status is not ok, or the polisher raised;
* **not classified**: a method that does not climb the likelihood (tensor_em and
  spectral_experts without refine, alt_min, linear_regression), an oracle that does not
  hold its experts fixed, or a fit of a model the polisher does not fit (joint EM with
  ``intercepts`` or ``noise="per_expert"``: the polisher has neither); **not classified (no
  parameters)**: a climbing run whose record holds no fitted parameters (results made
  before they were stored), which cannot be polished.

**Fixed experts (the oracle's own problem).** An estimator whose experts are held fixed
(``fixed_experts``: :class:`moebench.oracle.OracleGatingEM`, experts and sigma at the truth,
the theorem sweep of :mod:`moebench.sweep.theorem`) climbs the *gating* likelihood alone.
Its short runs are continued by the gating polisher
(:func:`moebench.sweep.polish.polish_gating`: the same settings, the experts and sigma
fixed) and classified by the same rules and thresholds, in that problem: the gradient and
Hessian are those of the gating alone (:func:`moebench.oracle.gating_stationarity`), the
*best* is the best over that data set's gating-polished runs (the oracle's runs and their
polished points; ``best_group``), and the truth condition is dropped (the truth's gating is
a point of the problem, and the truth-started oracle run is in the best's set).

Without a truth (real data) the classes are relative to the best found. The verb
``moebench classify RESULTS`` writes ``polish.parquet`` (one row per polished run, the
resumable cache, keyed by the stored end point and the polisher's settings) and
``classes.parquet`` (one row per run) into the results folder, each atomically; the reports
(:func:`moebench.sweep.gridlock.mark_stuck`) use the classes where that file covers the
folder's runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moebench.constraints import validate_parameter
from moebench.sweep.config_keys import JOBS
from moebench.sweep.polish import (
    CERTIFY_GRAD_TOL,
    HESSIAN_EPS,
    NEWTON_CG_ITER,
    NEWTON_MAX_PARAMS,
    NEWTON_STEPS,
    POLISH_EXPERT_STEPS,
    POLISH_GATING_STEPS,
    POLISH_MAX_ITER,
    POLISH_TOL,
    polish,
    polish_gating,
)

#: the log-likelihood gap per sample below the best run that counts as stuck (``--stuck-tol``;
#: the gridlock rule and the reports use it too)
DEFAULT_TOL = 1e-3

FINE, SLOW, LOCAL_MAX, SADDLE, SINGULAR = "fine", "slow", "local maximum", "saddle", "singular"
UNFINISHED, FAILED, NOT_CLASSIFIED = "unfinished", "failed", "not classified"
NO_PARAMETERS = "not classified (no parameters)"
#: a short climbing run without a polish at this tolerance (``classify`` polishes them all;
#: a report at a smaller tolerance than ``classify`` ran with shows it)
NOT_POLISHED = "not classified (not polished)"
#: every class, in the order reports list them
CLASSES = (FINE, SLOW, LOCAL_MAX, SADDLE, SINGULAR, UNFINISHED, FAILED, NOT_CLASSIFIED,
           NO_PARAMETERS, NOT_POLISHED)

#: the one statement of each class (report headers quote it)
CLASS_DEFINITIONS = {
    "short": "final training log-likelihood more than {tol:g} per sample below the best on the "
             "same data (best over every variant and every polished point){truth}; for "
             "estimators with the experts fixed (the oracle gating EM), in the gating "
             "likelihood: below the best of that data set's oracle runs and their polished "
             "points, no truth condition",
    FINE: "a likelihood-climbing run that is not short",
    SLOW: "short, but the point the polisher (joint EM from the run's end point, tol "
          f"{POLISH_TOL:g}, at most {POLISH_MAX_ITER} iterations, then at most {NEWTON_STEPS} "
          "Newton steps where the loss Hessian is positive definite; with the experts fixed, "
          "the same on the gating alone: gating EM and gating Newton steps, gradient and "
          "Hessian of the gating likelihood) reaches is not short",
    LOCAL_MAX: "the polished point is still short, stationary (scaled gradient norm <= "
               f"{CERTIFY_GRAD_TOL:g}) and the loss Hessian's smallest eigenvalue is > "
               f"{HESSIAN_EPS:g} (certified local maximum; a local optimum)",
    SADDLE: f"still short, stationary, smallest loss-Hessian eigenvalue < -{HESSIAN_EPS:g}",
    SINGULAR: f"still short, stationary, smallest loss-Hessian eigenvalue within "
              f"±{HESSIAN_EPS:g} (or not computable), or over-specified (k_fit > k)",
    UNFINISHED: "still short and not stationary when the polisher ends (still climbing)",
    FAILED: "status not ok, or the polisher failed",
    NOT_CLASSIFIED: "a method that does not climb the likelihood (moment or hard-assignment "
                    "methods without refine, references, oracles without fixed experts), or "
                    "a model the polisher does not fit (intercepts or per-expert noise)",
    NO_PARAMETERS: "a climbing run whose record holds no fitted parameters (cannot be "
                   "polished)",
    NOT_POLISHED: "short at this tolerance but not polished (classify ran with a larger one)",
}

CLASSES_FILE = "classes.parquet"
POLISH_FILE = "polish.parquet"
#: polisher outputs stored per polished run
POLISH_COLUMNS = ("polished_log_likelihood", "polished_grad_norm", "polished_hessian_min_eig",
                  "polish_iterations", "polish_newton_steps", "polish_converged",
                  "polish_stop_reason", "polish_time", "polish_error")


def class_definitions(tol: float, truth: bool = True) -> str:
    """The class definitions as one Markdown paragraph (for report headers)."""
    short = CLASS_DEFINITIONS["short"].format(
        tol=tol, truth=f" and more than {tol:g} below the truth's" if truth else "")
    parts = [f"*Short*: {short}."]
    parts += [f"*{name}*: {CLASS_DEFINITIONS[name]}." for name in
              CLASSES]
    return " ".join(parts)


# --------------------------------------------------------------------------- the classes
def is_short(ll: pd.Series, best: pd.Series, truth: pd.Series | None, tol: float) -> pd.Series:
    """Whether log-likelihoods ``ll`` are short of ``best`` (and of ``truth`` where known)."""
    out = np.isfinite(ll) & (ll < best - tol)
    if truth is not None:
        t = truth.astype(float)
        out &= ~np.isfinite(t) | (ll < t - tol)
    return out


def best_log_likelihood(frame: pd.DataFrame) -> pd.Series:
    """Per row, the best on its data set over ok runs and polished points (see the notes)."""
    ok = frame["status"].eq("ok")
    ll = frame["train_log_likelihood"].astype(float).where(ok)
    if "polished_log_likelihood" in frame.columns:
        ll = np.fmax(ll, frame["polished_log_likelihood"].astype(float).where(ok))
    group = best_groups(frame)
    best = ll.groupby(group).max()
    return group.map(best).astype(float)


def best_groups(frame: pd.DataFrame) -> pd.Series:
    """The set of runs each run's *best* is taken over: its data set (``data_id``), and for
    runs of the gating polisher (estimators whose experts are fixed, e.g. the oracle) that
    data set's gating-polished runs alone (``data_id + "|gating"``): the gating likelihood
    with the experts fixed is another problem than the joint one."""
    group = frame["data_id"].astype(str)
    if "polisher" in frame.columns:
        group = group.where(frame["polisher"].ne("gating"), group + "|gating")
    return group


def assign_classes(frame: pd.DataFrame, tol: float) -> pd.Series:
    """The class of every run (see the module notes).

    Parameters
    ----------
    frame : DataFrame
        One row per run with ``data_id``, ``status``, ``train_log_likelihood``, ``climbs``
        (bool), ``has_parameters`` (bool), optionally ``true_train_log_likelihood``,
        ``polisher`` (:data:`moebench.sweep.polish.POLISHERS`; "gating" rows take their best
        over their data set's gating rows and ignore the truth's log-likelihood) and, for
        polished runs, the :data:`POLISH_COLUMNS` (NaN / empty elsewhere).
    tol : float
        The per-sample log-likelihood tolerance.

    Returns
    -------
    Series of str
        A value of :data:`CLASSES` per row. A short climbing run that was not polished (a
        smaller ``tol`` than the polish was run for) is :data:`NOT_POLISHED`.
    """
    frame = frame.copy()
    for col in POLISH_COLUMNS:
        if col not in frame.columns:
            frame[col] = np.nan
    ll = frame["train_log_likelihood"].astype(float)
    best = best_log_likelihood(frame)
    truth = (frame["true_train_log_likelihood"] if "true_train_log_likelihood" in frame.columns
             else None)
    if truth is not None and "polisher" in frame.columns:  # the gating problem: no truth rule
        truth = truth.astype(float).where(frame["polisher"].ne("gating"))
    ok = frame["status"].eq("ok") & np.isfinite(ll)
    short = ok & is_short(ll, best, truth, tol)
    pll = frame["polished_log_likelihood"].astype(float)
    polished = np.isfinite(pll)
    error = frame["polish_error"].map(lambda e: isinstance(e, str) and e != "").astype(bool)
    still_short = is_short(pll, best, truth, tol)
    grad = frame["polished_grad_norm"].astype(float)
    eig = frame["polished_hessian_min_eig"].astype(float)
    stationary = grad <= CERTIFY_GRAD_TOL
    climbs = frame["climbs"].astype(bool)
    params = frame["has_parameters"].astype(bool)
    # more experts fitted than the truth has: the Hessian is singular by nature there
    over = (frame["k_fit"].astype(float) > frame["k"].astype(float)
            if {"k_fit", "k"} <= set(frame.columns) else pd.Series(False, index=frame.index))
    conditions = [
        ~ok | (climbs & short & error),
        ~climbs,
        ~short,
        ~params,
        ~polished,
        ~still_short,
        ~stationary,
        over.fillna(False).astype(bool),
        eig > HESSIAN_EPS,
        eig < -HESSIAN_EPS,
    ]
    choices = [FAILED, NOT_CLASSIFIED, FINE, NO_PARAMETERS, NOT_POLISHED,
               SLOW, UNFINISHED, SINGULAR, LOCAL_MAX, SADDLE]
    return pd.Series(np.select(conditions, choices, default=SINGULAR), index=frame.index)


# --------------------------------------------------------------------------- one folder
def polish_key(parameters: str, learn_sigma: bool, polisher: str = "joint") -> str:
    """Identifies a polish: the stored end point, the polisher and every polisher setting."""
    fields: list[Any] = [parameters, learn_sigma, POLISH_TOL, POLISH_MAX_ITER,
                         POLISH_GATING_STEPS, POLISH_EXPERT_STEPS, NEWTON_STEPS,
                         NEWTON_MAX_PARAMS, NEWTON_CG_ITER]
    if polisher != "joint":  # (keys of joint polishes stay those of earlier caches)
        fields.append(polisher)
    text = json.dumps(fields)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def climbing_variants(summary: pd.DataFrame, cells: dict[str, Any]) -> dict[str, bool]:
    """Per variant label: whether it climbs the likelihood (:func:`variant_polishers` names
    a polisher for it)."""
    return {label: bool(p) for label, p in variant_polishers(summary, cells).items()}


def variant_polishers(summary: pd.DataFrame, cells: dict[str, Any]) -> dict[str, str]:
    """Per variant label: the polisher of its short runs, "" when it is not classified.

    An unfitted estimator of the variant says whether it climbs (``local_search``; a moment
    method with ``refine`` ends in joint EM and climbs too): "joint"
    (:func:`~moebench.sweep.polish.polish`); an estimator whose experts are held fixed
    (``fixed_experts``, the oracle gating EM, whose experts and sigma are the truth's) climbs
    the gating likelihood alone: "gating" (:func:`~moebench.sweep.polish.polish_gating`);
    other oracles (``needs_truth``), non-climbing methods and fits of a model the polisher
    does not fit (:meth:`~moebench.base.MoEEstimator.fits_plain_model` False): "".
    """
    from moebench.registry import algorithm_class
    from moebench.sweep.worker import build_estimator, climbs_likelihood

    out: dict[str, str] = {}
    by_label = {}
    for run_id in summary["run_id"]:
        cell = cells.get(run_id)
        if cell is not None:
            by_label.setdefault(cell.variant.label, cell)
    for label in summary["label"].unique():
        cell = by_label.get(label)
        if cell is None:
            out[label] = ""
            continue
        try:
            cls = algorithm_class(cell.variant.algorithm)
            if cls.needs_truth:
                fixed = bool(getattr(cls, "fixed_experts", False))
                out[label] = "gating" if fixed and climbs_likelihood(cls) else ""
                continue
            est = build_estimator(cell)
        except (ValueError, ImportError):
            out[label] = ""
            continue
        # the polisher fits the plain model (no biases, one noise level): a fit of another
        # model is left unclassified rather than polished wrongly
        out[label] = "joint" if climbs_likelihood(est) and est.fits_plain_model() else ""
    return out


def _polish_data_set(tasks: list[dict[str, Any]], threads: int = 1) -> list[dict[str, Any]]:
    """Polish every task of one data set (loaded once); one result row per task."""
    from moebench.sweep.data_sources import load_cell_data
    from moebench.sweep.rerun import fitted_model
    from moebench.sweep.worker import limit_threads

    limit_threads(threads)
    data = load_cell_data(tasks[0]["cell"])
    rows = []
    for task in tasks:
        row: dict[str, Any] = {"run_id": task["run_id"], "polish_key": task["key"]}
        try:
            model = fitted_model(task["summary"])
            if task.get("polisher", "joint") == "gating":
                res = polish_gating(data.X, data.y, model.experts, model.gating,
                                    float(model.sigma), task["summary"]["activation"])
            else:
                res = polish(data.X, data.y, model.experts, model.gating, float(model.sigma),
                             task["summary"]["activation"], task["learn_sigma"])
        except (FloatingPointError, ValueError, TypeError, np.linalg.LinAlgError) as exc:
            row.update({c: math.nan for c in POLISH_COLUMNS})
            row.update({"polish_converged": False, "polish_stop_reason": "",
                        "polish_error": f"{type(exc).__name__}: {exc}"})
        else:
            row.update({"polished_log_likelihood": res.log_likelihood,
                        "polished_grad_norm": res.grad_norm,
                        "polished_hessian_min_eig": res.hessian_min_eig,
                        "polish_iterations": res.n_iter,
                        "polish_newton_steps": res.newton_steps,
                        "polish_converged": res.converged,
                        "polish_stop_reason": res.stop_reason, "polish_time": res.time,
                        "polish_error": ""})
        rows.append(row)
    return rows


@dataclass
class ClassifyOutcome:
    """What :func:`classify_results` did."""

    classes: pd.DataFrame
    polished: int
    reused: int
    wall_time: float


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    import io

    from moebench.io import atomic_write_bytes

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def _read_cache(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=["run_id", "polish_key", *POLISH_COLUMNS])
    return pd.read_parquet(path)


def classify_results(results: str | os.PathLike, jobs: int = 1, tol: float | None = None,
                     progress: Callable[[str], None] | None = None) -> ClassifyOutcome:
    """Polish the short climbing runs of a results folder and write their classes.

    Parameters
    ----------
    results : path
        A ``moebench run`` results folder (with its ``config.toml``).
    jobs : int
        Parallel processes (one data set per task).
    tol : float, optional
        Per-sample log-likelihood tolerance (default
        :data:`DEFAULT_TOL`); reports at a larger tolerance reuse
        the polish, a smaller one needs ``classify`` with it.
    progress : callable, optional
        Receives one line per finished data set.

    Returns
    -------
    ClassifyOutcome
        ``classes`` is also written to ``RESULTS/classes.parquet``; ``polished`` counts the
        polishes run now, ``reused`` those taken from ``RESULTS/polish.parquet``.
    """
    from moebench.sweep.rerun import PARAMETERS_KEY, stored_cells, with_parameters
    from moebench.sweep.store import load_results

    tol = DEFAULT_TOL if tol is None else float(tol)
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be finite and >= 0; got {tol!r}")
    validate_parameter("jobs", jobs, [JOBS])
    t0 = time.perf_counter()
    folder = Path(results)
    if folder.is_file():
        folder = folder.parent
    summary, _ = load_results(folder)
    summary = with_parameters(summary, folder)
    cells = stored_cells(folder)
    polishers = variant_polishers(summary, cells)
    frame = summary[[c for c in ("run_id", "data_id", "label", "algorithm", "status",
                                 "train_log_likelihood", "true_train_log_likelihood",
                                 "activation") if c in summary.columns]].copy()
    frame["polisher"] = frame["label"].map(polishers).fillna("").astype(str)
    frame["climbs"] = frame["polisher"].ne("")
    frame["best_group"] = best_groups(frame)
    params = (summary[PARAMETERS_KEY] if PARAMETERS_KEY in summary.columns
              else pd.Series(None, index=summary.index, dtype=object))
    # polishable: stored parameters, and the run's cell in the stored config (for its data)
    frame["has_parameters"] = (params.map(lambda p: isinstance(p, str) and bool(p))
                               & frame["run_id"].isin(list(cells)))
    # sigma is given (and stays fixed) when the variant asks for the truth's and there is one
    learn = {rid: not (c.variant.known_sigma and "source" not in c.data)
             for rid, c in cells.items()}
    frame["learn_sigma"] = frame["run_id"].map(learn).fillna(True).astype(bool)
    frame["polish_key"] = [polish_key(p, ls, pol or "joint") if isinstance(p, str) else ""
                           for p, ls, pol in zip(params, frame["learn_sigma"],
                                                 frame["polisher"])]
    cache_path = folder / POLISH_FILE
    cache = _read_cache(cache_path)
    cache = cache[cache["run_id"].isin(frame["run_id"])].drop_duplicates("run_id", keep="last")
    records = {r["run_id"]: r for r in cache.to_dict("records")}
    keys = dict(zip(frame["run_id"], frame["polish_key"]))
    polisher_of = dict(zip(frame["run_id"], frame["polisher"]))
    summaries = summary.set_index("run_id", drop=False)
    polished = 0
    while True:  # polish the short runs; the best may rise; until no run becomes short
        frame = _with_polish(frame, records)
        todo = frame.loc[assign_classes(frame, tol).eq(NOT_POLISHED), "run_id"].tolist()
        if not todo:
            break
        by_data: dict[str, list[dict[str, Any]]] = {}
        for rid in todo:
            s = summaries.loc[rid].to_dict()
            by_data.setdefault(str(s["data_id"]), []).append(
                {"run_id": rid, "cell": cells[rid], "summary": s, "key": keys[rid],
                 "learn_sigma": bool(learn.get(rid, True)), "polisher": polisher_of[rid]})
        for rows in _run_tasks(list(by_data.values()), jobs, progress):
            for row in rows:
                records[row["run_id"]] = row
                polished += 1
            _write_parquet(pd.DataFrame(list(records.values())), cache_path)
    frame = _with_polish(frame, records)
    frame["class"] = assign_classes(frame, tol)
    frame["best_log_likelihood"] = best_log_likelihood(frame)
    frame["classify_tol"] = tol
    reused = int(np.isfinite(frame["polished_log_likelihood"].astype(float)).sum()
                 + frame["polish_error"].map(lambda e: isinstance(e, str) and e != "").sum()
                 ) - polished
    out = frame[["run_id", "data_id", "label", "class", "climbs", "polisher", "best_group",
                 "has_parameters", "train_log_likelihood",
                 "best_log_likelihood", *POLISH_COLUMNS, "classify_tol"]]
    _write_parquet(out, folder / CLASSES_FILE)
    return ClassifyOutcome(out, polished, reused, time.perf_counter() - t0)


def _with_polish(frame: pd.DataFrame, records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """``frame`` with the cached polish outputs of its runs (matching keys only)."""
    frame = frame.drop(columns=[c for c in POLISH_COLUMNS if c in frame.columns])
    rows = [r for r in records.values() if r.get("polish_key")]
    if not rows:
        return frame.assign(**{c: np.nan for c in POLISH_COLUMNS})
    cache = pd.DataFrame(rows)[["run_id", "polish_key", *POLISH_COLUMNS]]
    merged = frame.merge(cache, on=["run_id", "polish_key"], how="left")
    merged.index = frame.index
    return merged


def _run_tasks(groups: list[list[dict[str, Any]]], jobs: int,
               progress: Callable[[str], None] | None):
    """Yield the result rows of each group (a data set's polishes) as they finish."""
    total = len(groups)
    if jobs == 1 or total == 1:
        for i, group in enumerate(groups, 1):
            rows = _polish_data_set(group)
            if progress:
                progress(f"polished {i}/{total} data sets ({len(rows)} run(s))")
            yield rows
        return
    import multiprocessing

    with ProcessPoolExecutor(max_workers=jobs,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_polish_data_set, group) for group in groups]
        for i, fut in enumerate(as_completed(futures), 1):
            rows = fut.result()
            if progress:
                progress(f"polished {i}/{total} data sets ({len(rows)} run(s))")
            yield rows


def load_classes(results: str | os.PathLike, summary: pd.DataFrame) -> pd.DataFrame | None:
    """The stored classes of a folder when they cover ``summary``'s runs, else None.

    None (with a line on stderr) when ``classes.parquet`` is missing a run of the summary or
    a run's log-likelihood differs from the one classified (the folder changed since).
    """
    path = Path(results)
    path = (path.parent if path.is_file() else path) / CLASSES_FILE
    if not path.is_file():
        return None
    classes = pd.read_parquet(path)
    merged = summary[["run_id", "train_log_likelihood"]].merge(
        classes[["run_id", "train_log_likelihood"]], on="run_id", how="left",
        suffixes=("", "_classified"))
    a = merged["train_log_likelihood"].astype(float).to_numpy()
    b = merged["train_log_likelihood_classified"].astype(float).to_numpy()
    missing = ~merged["run_id"].isin(classes["run_id"]).to_numpy()
    changed = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    if missing.any() or changed.any():
        print(f"{path}: stale ({int(missing.sum())} run(s) not classified, "
              f"{int((changed & ~missing).sum())} changed since); the reports use the "
              f"uncertified gap rule (run `moebench classify {path.parent}`)", file=sys.stderr)
        return None
    return classes


def attach_classes(summary: pd.DataFrame, results: str | os.PathLike) -> pd.DataFrame:
    """``summary`` with the columns of ``classes.parquet`` (``class``, ``climbs``,
    ``has_parameters``, ``classify_tol`` and the polish outputs) when it covers the folder,
    else unchanged."""
    classes = load_classes(results, summary)
    if classes is None:
        return summary
    keep = ["run_id", "class", "climbs", "polisher", "best_group", "has_parameters",
            "classify_tol", *POLISH_COLUMNS]
    keep = [c for c in keep if c in classes.columns]
    base = summary.drop(columns=[c for c in keep[1:] if c in summary.columns])
    return base.merge(classes[keep], on="run_id", how="left")
