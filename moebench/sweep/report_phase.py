"""The ``moebench report --phase`` sections: the phase map over chosen data-setting columns,
the candidate cells to re-run, the gridlock cells per reference and the verdict by stuck
tolerance (definitions in :mod:`moebench.sweep.gridlock`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from moebench.sweep.columns import format_value
from moebench.sweep.gridlock import (
    BELOW_HEAD,
    CANDIDATE_MIN,
    DEFAULT_TOL,
    GROSS_ERROR,
    STUCK_MIN,
    SUCCESS_MIN,
    below_rate,
    candidate_cells,
    cells_toml,
    gridlock_regions,
    has_below_flag,
    has_stationarity,
    is_certified,
    local_search_labels,
    mark_stuck,
    phase_table,
    rate_interval,
    references_in,
)
from moebench.sweep.report import BELOW_NOTE, CLASS_COLUMNS, _markdown, _stuck_name


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
        The reference variant(s); None: the variants that start from the tensor step,
        refinements first (:func:`moebench.sweep.gridlock.references_in`), side by side.
    stuck_tols : list of float, optional
        Also state the verdict (gridlock cells per baseline and reference, overall stuck
        rates) under each of these stuck tolerances (e.g. 1e-4, 1e-3, 1e-2).
    """
    table = phase_table(summary, axes, tol)
    certified = is_certified(summary)
    stationarity = has_stationarity(summary) or certified
    stuck = _stuck_name(certified)
    below = "n_below" in table.columns and bool(np.isfinite(table["n_below"]).any())
    rows = []
    for _, r in table.iterrows():
        row = {a: format_value(r[a]) for a in axes}
        row.update({"variant": r["label"], "runs": str(r["runs"]), "failed": str(r["failed"]),
                    stuck: rate_interval(r["n_stuck"], r["runs"])})
        if certified:
            for col, head in CLASS_COLUMNS[1:4]:
                row[head] = rate_interval(r[f"n_{col}"], r["runs"])
        if stationarity:
            row["unfinished"] = ("–" if not np.isfinite(r["n_unfinished"])
                                 else rate_interval(r["n_unfinished"], r["runs"]))
        if below:
            row[BELOW_HEAD] = ("–" if not np.isfinite(r["n_below"])
                               else rate_interval(r["n_below"], r["runs"]))
        row.update({"success": rate_interval(r["n_success"], r["runs"]),
                    "expert error, median": f"{r['median_expert_error']:.3g}",
                    "mean": f"{r['mean_expert_error']:.3g}",
                    f"gross (> {GROSS_ERROR:g})": rate_interval(r["n_gross"], r["runs"])})
        rows.append(row)
    text = [f"## Phase map over {', '.join(axes)}\n",
            ("Certified classes (`moebench classify`; definitions in the summary's header).\n"
             if certified else "Uncertified stuck test (no `moebench classify` classes).\n")
            + (BELOW_NOTE.lstrip() + "\n" if below else ""),
            _markdown(rows)]
    text.append(_candidates_section(summary, table, axes, reference))
    for ref in references_in(summary, reference):
        regions = gridlock_regions(table, axes, local_search_labels(summary, ref), ref,
                                   stuck_min, success_min)
        text.append(f"\n## Gridlock: {stuck} >= {stuck_min:.0%} while {ref} succeeds >= "
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
            row[stuck] = rate_interval(r["n_stuck"], r["runs"])
            if stationarity and np.isfinite(r["unfinished_rate"]):
                row["unfinished"] = f"{r['unfinished_rate']:.0%}"
            row[f"{ref} success"] = rate_interval(r[f"{ref}_n_success"], r[f"{ref}_runs"])
            n_below = r.get(f"{ref}_n_below", np.nan)
            if below and np.isfinite(n_below):
                row[f"{ref}: {BELOW_HEAD}"] = rate_interval(n_below, r[f"{ref}_runs"])
            out_rows.append(row)
        text.append(_markdown(out_rows))
    if stuck_tols:
        text.append(verdict_by_tolerance(summary, axes, stuck_tols, reference, stuck_min,
                                         success_min))
    return "\n".join(text)


def _candidates_section(summary: pd.DataFrame, table: pd.DataFrame, axes: list[str],
                        reference: str | list[str] | None) -> str:
    """Markdown: the candidate cells (a local method stuck in >= CANDIDATE_MIN of seeds),
    with the ``cells = [...]`` entry of a config that re-runs them."""
    refs = references_in(summary, reference)
    baselines = [lab for lab in local_search_labels(summary, refs[0]) if lab not in refs]
    cells = candidate_cells(table, axes, baselines)
    head = (f"\n## Candidate cells: a local method stuck in >= {CANDIDATE_MIN:.0%} of seeds "
            f"({len(cells)} of {len(table.drop_duplicates(list(axes)))})\n")
    if cells.empty:
        return head + "\nNone.\n"
    rows = [{**{a: format_value(r[a]) for a in axes}, "stuck variants": r["variants"],
             "largest stuck rate": f"{r['stuck_rate']:.0%}"} for r in cells.to_dict("records")]
    return (head + "\n" + _markdown(rows) + "\nTo re-run them with more seeds, put this "
            "in the `[data]` table of a config (with a new `seed` and `repetitions`):\n\n"
            "```toml\n" + cells_toml(cells, axes) + "\n```\n")


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
                   _stuck_name(bool(marked["certified"].any())):
                       rate_interval(int(g["stuck"].sum()), len(g))}
            for ref in refs:
                row[f"gridlock cells vs {ref}"] = str(int(counts[ref].get(label, 0)))
            rows.append(row)
    note = ""
    flagged = [ref for ref in refs if has_below_flag(summary[summary["label"] == ref])]
    if flagged:
        note += ("\n" + "; ".join(
            f"{ref}: {BELOW_HEAD} in "
            f"{below_rate(summary[summary['label'] == ref])} of its runs"
            for ref in flagged) + " (a flag of the tensor step, apart from the stuck "
                 "column).\n")
    if is_certified(summary):
        polished_at = float(summary["classify_tol"].iloc[0])
        below = [t for t in tols if t < polished_at]
        if below:
            note = (f"\nAt tol {', '.join(f'{t:g}' for t in below)} (below the {polished_at:g} "
                    "that `moebench classify` ran with) short runs it did not polish are not "
                    "classified and not counted; run `moebench classify --tol` with the "
                    "smallest tolerance to certify them.\n")
    return (f"\n## Verdict by stuck tolerance (cells over {', '.join(axes)})\n\n"
            + _markdown(rows) + note)
