"""The paper's theorem, tested: does the gating EM with the true experts reach the ML gating?

Makkuva et al. (arXiv:1802.07417) prove that with the experts known, the EM on the
gating alone converges to the true gating from a random start (k = 2; larger k open).
The sweep ``theorem`` (``moebench/configs/theorem.toml``) runs the oracle
``oracle_gating_em`` (:mod:`moebench.oracle`) on each data set from the true gating
(``gating_init = "truth"``: the maximum-likelihood gating next to the truth, the
per-data reference) and from several random starts (``gating_init = "random"``).

A random start **reaches the ML gating** when, against the truth-started run on the
same data (same ``data_id``),

* its final training mean log-likelihood is at most ``ll_tol`` (1e-4) per sample
  below, and
* its gating is within ``gating_tol`` (1e-2) of the truth-started gating, as the
  relative Frobenius distance of the free rows ||W - W*||_F / ||W*||_F (the rows are
  comparable directly: the experts are the true ones, so there is no label switching,
  and both gatings have their last row at 0).

A start that does not reach it is

* *flat*: the same likelihood (within ``ll_tol``) but a gating further than
  ``gating_tol`` away: a flat ridge of the likelihood or a second ML point, not a
  worse optimum;
* *failed*: the run did not finish (error, timeout);
* or it has a *likelihood gap* (more than ``ll_tol`` per sample below the truth-started
  run), and its class says why.

**Certified classes** (the folder was classified: ``moebench classify RESULTS --tol 1e-4``
wrote ``classes.parquet``, attached by :func:`moebench.sweep.classify.attach_classes`).
Every oracle run short of the best on its data set, in the oracle's own problem (the
gating likelihood with the experts and sigma fixed at the truth; the best over that data
set's oracle runs, the truth-started one included, and their polished points), was
continued by the common gating polisher (:func:`moebench.sweep.polish.polish_gating`:
gating EM, tol 1e-10, at most 1000 iterations, then Newton steps on the gating where its
loss Hessian is positive definite) and classified by
:func:`moebench.sweep.classify.assign_classes` (recomputed here at ``ll_tol``): a start with
a gap is *slow* (the polisher reaches the best), a certified *local maximum* (stationary:
scaled gating-gradient norm <= :data:`moebench.sweep.polish.CERTIFY_GRAD_TOL`, and the
smallest eigenvalue of the gating loss Hessian > :data:`moebench.sweep.polish.HESSIAN_EPS`),
a *saddle* (< -HESSIAN_EPS), *singular* (within), *unfinished* (not stationary when the
polisher's budget ends) or *not classified* (no polish at ``ll_tol``: classify ran with a
larger tolerance, the run holds no fitted parameters, or the polisher failed). Only a
certified local maximum is called *stuck* (a local optimum).

**Uncertified** (no classes): the gap rule of the sweep, which the reports call
uncertified: *stuck (uncertified)*: a gap, ended by the EM's own criterion at a point with
``fitted_grad_norm`` <= :data:`moebench.stationarity.STATIONARY_TOL` (a flat slope or a
saddle cannot be told from a maximum); *unfinished (uncertified)*: a gap, and a budget
ended the run or it is not stationary.

Rates carry Wilson 95% intervals (:func:`moebench.metrics.wilson_interval`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from moebench.stationarity import STATIONARY_TOL
from moebench.sweep import classify as c
from moebench.sweep.gridlock import BUDGET_STOPS, is_certified, rate_interval
from moebench.sweep.views import table

#: log-likelihood gap per sample below which a random start reached the truth-started one
LL_TOL = 1e-4
#: relative gating distance below which a random start's gating is the truth-started one
GATING_TOL = 1e-2
#: summary columns of the oracle's gating (``gating_free_`` attribute, ``"i_j"`` keys)
GATING_PREFIX = "fitted_gating_free_"
#: the cells of the map
DEFAULT_AXES = ("activation", "k", "gating_scale", "expert_angle", "sigma")
#: summary column that holds the oracle's start
INIT_COLUMN = "param_gating_init"
#: certified classes of a start with a likelihood gap, as (column of :func:`theorem_runs`,
#: class of :mod:`moebench.sweep.classify`, report heading)
GAP_CLASSES = (("stuck", c.LOCAL_MAX, "local maximum (stuck)"), ("saddle", c.SADDLE, "saddle"),
               ("singular", c.SINGULAR, "singular"), ("slow", c.SLOW, "slow"),
               ("unfinished", c.UNFINISHED, "unfinished"))


def _gating_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return frame[columns].to_numpy(float) if columns else np.zeros((len(frame), 0))


def _gating_init(summary: pd.DataFrame) -> pd.Series:
    """Each run's ``gating_init``: the recorded option, or the oracle's default where the
    variant left it unset; "" for runs of other algorithms."""
    from moebench.oracle import ORACLE, OracleGatingEM

    init = (summary[INIT_COLUMN] if INIT_COLUMN in summary.columns
            else pd.Series(np.nan, index=summary.index, dtype=object))
    oracle = (summary["algorithm"].eq(ORACLE) if "algorithm" in summary.columns
              else pd.Series(True, index=summary.index))
    init = init.where(init.notna(), OracleGatingEM().gating_init)
    return init.where(oracle, "").astype(str)


def theorem_runs(summary: pd.DataFrame, ll_tol: float = LL_TOL, gating_tol: float = GATING_TOL
                 ) -> pd.DataFrame:
    """One row per random start, compared with the truth-started run on the same data.

    Parameters
    ----------
    summary : DataFrame
        Summary of a sweep of ``oracle_gating_em`` with ``gating_init`` "truth" and
        "random" variants (columns ``data_id``, ``status``, ``train_log_likelihood``,
        ``param_gating_init`` and ``fitted_gating_free_*``).
    ll_tol, gating_tol : float
        The two criteria (see the module notes).

    Returns
    -------
    DataFrame
        The random starts' rows with ``ll_gap`` (truth-started minus own, per sample),
        ``gating_distance``, ``reached_ll``, ``reached_gating``, ``reached``, ``gapped``
        (ok, a gap above ``ll_tol``), ``stuck``, ``saddle``, ``singular``, ``slow``,
        ``unfinished``, ``not_classified``, ``flat``, ``failed``, ``better`` (above the
        truth-started run by more than ``ll_tol``), ``certified`` (the classes of
        ``moebench classify``; else the uncertified rule: ``stuck`` and ``unfinished`` only,
        the other classes False), ``theorem_class`` (the certified class, "" uncertified),
        and the truth-started run's ``ref_gating_error`` (its distance to the true gating)
        and ``ref_budget`` (whether a budget ended it). Starts whose data set has no
        successful truth-started run are left out.

    Raises
    ------
    ValueError
        When the summary has no oracle runs from both starts.
    """
    for name, value in (("ll_tol", ll_tol), ("gating_tol", gating_tol)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    need = {"data_id", "status", "train_log_likelihood"}
    missing = sorted(need - set(summary.columns))
    if missing:
        raise ValueError(f"summary lacks column(s) {', '.join(missing)}: the theorem table "
                         "needs a sweep of oracle_gating_em with gating_init \"truth\" and "
                         "\"random\" variants (moebench/configs/theorem.toml)")
    init = _gating_init(summary)
    certified = is_certified(summary)
    if certified:  # the classes at ll_tol, from the stored polish outputs
        summary = summary.assign(theorem_class=c.assign_classes(summary, ll_tol))
    ref = summary[init.eq("truth") & summary["status"].eq("ok")]
    starts = summary[init.eq("random")]
    if ref.empty or starts.empty:
        raise ValueError(f"the theorem table needs successful {INIT_COLUMN} = \"truth\" runs "
                         f"and {INIT_COLUMN} = \"random\" runs; found {len(ref)} and "
                         f"{len(starts)}")
    ref = ref.drop_duplicates("data_id").set_index("data_id")
    starts = starts[starts["data_id"].isin(ref.index)].copy()
    cols = sorted(c for c in summary.columns if c.startswith(GATING_PREFIX))
    mine = np.nan_to_num(_gating_matrix(starts, cols))
    theirs_frame = ref.loc[starts["data_id"]]
    theirs = np.nan_to_num(_gating_matrix(theirs_frame, cols))
    scale = np.linalg.norm(theirs, axis=1)
    dist = np.linalg.norm(mine - theirs, axis=1) / np.where(scale > 0, scale, 1.0)
    ok = starts["status"].eq("ok").to_numpy()
    ll = starts["train_log_likelihood"].to_numpy(float)
    gap = theirs_frame["train_log_likelihood"].to_numpy(float) - ll
    gap = np.where(ok, gap, np.nan)
    dist = np.where(ok & bool(cols), dist, np.nan)
    starts["ll_gap"] = gap
    starts["ref_gating_error"] = (theirs_frame["gating_error"].to_numpy(float)
                                  if "gating_error" in theirs_frame else np.nan)
    starts["ref_budget"] = (theirs_frame["stop_reason"].isin(BUDGET_STOPS).to_numpy()
                            if "stop_reason" in theirs_frame else False)
    starts["gating_distance"] = dist
    starts["failed"] = ~ok
    starts["reached_ll"] = ok & (gap <= ll_tol)
    starts["reached_gating"] = ok & (dist <= gating_tol)
    starts["reached"] = starts["reached_ll"] & starts["reached_gating"]
    starts["better"] = ok & (gap < -ll_tol)
    gapped = ok & ~starts["reached_ll"].to_numpy()
    starts["gapped"] = gapped
    starts["certified"] = certified
    if certified:
        cls = starts["theorem_class"].astype(str).to_numpy()
        for col, name, _ in GAP_CLASSES:
            starts[col] = gapped & (cls == name)
        starts["not_classified"] = gapped & ~np.isin(cls, [name for _, name, _ in GAP_CLASSES])
    else:
        grad = (starts["fitted_grad_norm"].to_numpy(float) if "fitted_grad_norm" in starts
                else np.full(len(starts), np.nan))
        stationary = np.isfinite(grad) & (grad <= STATIONARY_TOL)
        budget = (starts["stop_reason"].isin(BUDGET_STOPS).to_numpy()
                  if "stop_reason" in starts else np.zeros(len(starts), dtype=bool))
        starts["theorem_class"] = ""
        starts["stuck"] = gapped & stationary & ~budget
        starts["unfinished"] = gapped & (~stationary | budget)
        starts["saddle"] = starts["singular"] = starts["slow"] = False
        starts["not_classified"] = False
    starts["flat"] = starts["reached_ll"] & ~starts["reached_gating"]
    return starts.reset_index(drop=True)


def theorem_table(summary: pd.DataFrame, axes: Sequence[str] = DEFAULT_AXES,
                  ll_tol: float = LL_TOL, gating_tol: float = GATING_TOL) -> pd.DataFrame:
    """Per cell of ``axes``: how many random starts reached the ML gating.

    Returns
    -------
    DataFrame
        Columns ``*axes, starts, data_sets, n_reached, rate, low, high`` (Wilson 95%),
        ``n_reached_ll`` (the likelihood criterion alone), ``n_stuck`` (certified: local
        maxima), ``n_saddle``, ``n_singular``, ``n_slow``, ``n_unfinished``,
        ``n_not_classified``, ``certified``, ``n_flat``, ``n_failed``, ``n_better``,
        ``max_ll_gap``, ``max_gating_distance`` and
        ``median_iterations`` (of the runs that did not fail), and per data set of the
        truth-started run: ``ref_gating_error`` (median distance of the ML gating from the
        true gating) and ``ref_unfinished`` (data sets where a budget ended it).
    """
    from moebench.metrics import wilson_interval

    runs = theorem_runs(summary, ll_tol, gating_tol)
    axes = [a for a in axes if a in runs.columns]
    grouped = runs.groupby(axes, dropna=False, sort=True) if axes else [((), runs)]
    rows = []
    for key, g in grouped:
        key = key if isinstance(key, tuple) else (key,)
        n, hit = len(g), int(g["reached"].sum())
        low, high = wilson_interval(hit, n)
        rows.append({**dict(zip(axes, key, strict=True)), "starts": n,
                     "data_sets": int(g["data_id"].nunique()), "n_reached": hit,
                     "rate": hit / n, "low": low, "high": high,
                     "n_reached_ll": int(g["reached_ll"].sum()),
                     "n_stuck": int(g["stuck"].sum()), "n_unfinished": int(g["unfinished"].sum()),
                     "n_saddle": int(g["saddle"].sum()), "n_singular": int(g["singular"].sum()),
                     "n_slow": int(g["slow"].sum()),
                     "n_not_classified": int(g["not_classified"].sum()),
                     "certified": bool(g["certified"].all()),
                     "n_flat": int(g["flat"].sum()),
                     "n_failed": int(g["failed"].sum()), "n_better": int(g["better"].sum()),
                     "max_ll_gap": float(np.nanmax(g["ll_gap"])) if g["ll_gap"].notna().any()
                     else np.nan,
                     "max_gating_distance": float(np.nanmax(g["gating_distance"]))
                     if g["gating_distance"].notna().any() else np.nan,
                     "median_iterations": _median_iterations(g),
                     "ref_gating_error": float(g.drop_duplicates("data_id")[
                         "ref_gating_error"].median()),
                     "ref_unfinished": int(g.drop_duplicates("data_id")["ref_budget"].sum())})
    return pd.DataFrame(rows)


def _median_iterations(runs: pd.DataFrame) -> float:
    """Median EM iterations of the runs that did not fail (NaN if none or no column)."""
    if "n_iter" not in runs.columns or runs["failed"].all():
        return float("nan")
    return float(np.median(runs.loc[~runs["failed"], "n_iter"].astype(float)))


def _fmt(value: float, spec: str = ".1e") -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:{spec}}"


def _markdown_rows(table: pd.DataFrame, axes: list[str], certified: bool = False) -> str:
    from moebench.sweep.columns import format_value

    if certified:
        classes = [(f"n_{col}", head) for col, _, head in GAP_CLASSES]
        classes.append(("n_not_classified", "not classified"))
    else:
        classes = [("n_stuck", "stuck (uncertified)"),
                   ("n_unfinished", "unfinished (uncertified)")]
    head = [*axes, "starts (data sets)", "reached ML gating [95% CI]", "LL only",
            *(h for _, h in classes), "flat", "failed", "max LL gap", "max gating dist",
            "median iter", "truth start: gating error (median)", "truth start unfinished"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in table.to_dict("records"):
        cells = [format_value(r[a]) for a in axes]
        cells += [f"{r['starts']} ({r['data_sets']})",
                  f"{r['n_reached']}/{r['starts']} = " + rate_interval(r["n_reached"],
                                                                       r["starts"]),
                  str(r["n_reached_ll"]), *(_count(r[col], r["starts"]) for col, _ in classes),
                  str(r["n_flat"]), str(r["n_failed"]), _fmt(r["max_ll_gap"]),
                  _fmt(r["max_gating_distance"]),
                  _fmt(r["median_iterations"], ".0f"), _fmt(r["ref_gating_error"], ".3g"),
                  str(r["ref_unfinished"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _count(hits: int, n: int) -> str:
    """A class count with its rate and Wilson 95% interval ("0" when none)."""
    return f"{hits} = {rate_interval(hits, n)}" if hits else "0"


@table("theorem", help="the oracle gating EM's random starts that reach the ML gating, per "
       "cell (results of the theorem config)")
def theorem_report(summary: pd.DataFrame, axes: Sequence[str] = DEFAULT_AXES,
                   ll_tol: float = LL_TOL, gating_tol: float = GATING_TOL) -> str:
    """Markdown: the theorem check pooled by activation and k, then per cell of ``axes``.

    Parameters
    ----------
    summary : DataFrame
        Summary of the ``theorem`` sweep (see :func:`theorem_runs`).
    axes : sequence of str
        Data-setting columns of a cell (those absent from the summary are dropped).
    ll_tol, gating_tol : float
        The two criteria of "reached the ML gating".

    Returns
    -------
    str
    """
    axes = [a for a in axes if a in summary.columns]
    pooled_axes = [a for a in ("activation", "k") if a in axes]
    pooled = theorem_table(summary, pooled_axes, ll_tol, gating_tol)
    cells = theorem_table(summary, axes, ll_tol, gating_tol)
    total = theorem_table(summary, [], ll_tol, gating_tol).iloc[0]
    runs = theorem_runs(summary, ll_tol, gating_tol)
    certified = bool(total["certified"])
    if certified:
        gap_rule = (
            "A start with a likelihood gap is classified by where the common gating polisher "
            "ends (certified by `moebench classify`; the oracle's own problem, the gating "
            "likelihood with the experts and sigma fixed at the truth): "
            + "; ".join(f"*{head}*: {c.CLASS_DEFINITIONS[name]}"
                        for _, name, head in GAP_CLASSES)
            + f"; *not classified*: short at {ll_tol:g} but not polished at that tolerance "
            "(run `moebench classify RESULTS --tol "
            f"{ll_tol:g}`), no stored parameters, or the polisher failed. Short: "
            + c.CLASS_DEFINITIONS["short"].format(tol=ll_tol, truth="") + ".")
        counts = ", ".join(f"{int(total[f'n_{col}'])} {head}" for col, _, head in GAP_CLASSES)
        counts += f", {int(total['n_not_classified'])} not classified"
    else:
        gap_rule = (
            "Uncertified (no `moebench classify` classes): *stuck (uncertified)*: a likelihood "
            "gap at a point where the scaled gating-gradient norm is <= "
            f"{STATIONARY_TOL:g}, ended by the EM's own criterion (a flat slope or a saddle is "
            "not told from a local maximum); *unfinished (uncertified)*: a gap, and a budget "
            "ended it or it is not stationary. Run `moebench classify RESULTS --tol "
            f"{ll_tol:g}` to certify them.")
        counts = (f"{int(total['n_stuck'])} stuck (uncertified), "
                  f"{int(total['n_unfinished'])} unfinished (uncertified)")
    head = (
        "## The paper's theorem: gating EM with the true experts fixed (oracle_gating_em)\n\n"
        "Oracle runs: the experts and sigma are the TRUE ones; only the gating is fitted. A "
        "random start (gating drawn at the data's scale) reaches the ML gating when its final "
        f"training log-likelihood is within {ll_tol:g} per sample of the run started at the "
        f"true gating on the same data AND its gating is within {gating_tol:g} of that run's "
        "(relative Frobenius distance of the free rows). Not reached: *flat* (the same "
        "likelihood, another gating), failed, or a likelihood gap. " + gap_rule
        + " 'LL only': starts meeting the likelihood criterion alone. Rates with Wilson 95% "
        "intervals.\n\n"
        f"All cells: {int(total['n_reached'])} of {int(total['starts'])} random starts "
        f"reached the ML gating, {rate_interval(total['n_reached'], total['starts'])}; "
        f"{counts}, {int(total['n_flat'])} flat, {int(total['n_failed'])} failed; "
        f"{int(runs['better'].sum())} ended above the truth-started run by more than the "
        "tolerance.\n")
    return (head + "\n### Pooled by activation and k\n\n"
            + _markdown_rows(pooled, pooled_axes, certified)
            + "\n### Per cell\n\n" + _markdown_rows(cells, axes, certified))
