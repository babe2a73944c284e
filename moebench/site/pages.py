"""The index, sweep and cell pages of the results site.

A sweep page holds its report tables (the registered ``summary`` table of
:mod:`moebench.sweep.views`, then the Markdown reports committed in the folder), its
interactive figures (:mod:`moebench.site.figures`), its cells and its committed PNG
figures; a cell page (one data setting across seeds) holds every run with its status,
class, error, time and stop reason, each run's trajectory, and the ``moebench run``
command that re-runs the cell.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from moebench.site.figures import (
    Drawn,
    curves_figure,
    gridlock_figures,
    sample_complexity_figure,
    trajectories_figure,
)
from moebench.site.html import details, esc, figure_slot, markdown, note, page, table
from moebench.site.sources import Cell, Skipped, Sweep
from moebench.sweep.columns import OK_STATUSES, format_value

#: summary columns of a cell page's runs table: (column, heading)
RUN_COLUMNS = (("label", "variant"), ("repetition", "rep."), ("seed", "seed"),
               ("status", "status"), ("run_class", "class"), ("expert_error", "expert error"),
               ("gating_error", "gating error"), ("fit_time", "fit time (s)"),
               ("n_iter", "iterations"), ("stop_reason", "stop reason"),
               ("message", "message"), ("run_id", "run id"))


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def sweep_href(name: str) -> str:
    """The sweep page's path from the site's root."""
    return f"sweeps/{quote(name)}/index.html"


def provenance(summary: pd.DataFrame) -> dict[str, str]:
    """Date range, commit(s), machine(s) and code version(s) of a sweep's runs."""
    def values(col: str, n: int = 0) -> list[str]:
        if col not in summary.columns:
            return []
        counts = summary[col].dropna().astype(str)
        counts = (counts.str[:n] if n else counts).value_counts()
        return [str(v) for v in counts.index if v]

    dates = sorted(v[:10] for v in values("finished_at"))
    commits = values("git_commit", 10)
    hosts = values("hostname")
    cpus = values("cpu")
    def more(xs):
        return (f"{xs[0]} (+{len(xs) - 1} more)" if len(xs) > 1 else (xs[0] if xs else ""))
    date = f"{dates[0]} to {dates[-1]}" if dates and dates[0] != dates[-1] else \
        (dates[0] if dates else "")
    machine = " · ".join(x for x in (more(hosts), more(cpus)) if x)
    return {"date": date, "commit": more(commits), "machine": machine,
            "code version": ", ".join(values("code_version"))}


def classes_and_stuck(summary: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each run's class and whether it is stuck: certified (``moebench classify``) where the
    folder has the classes, else the gap rule's (:func:`moebench.sweep.gridlock.mark_stuck`);
    "" and False where neither applies (no likelihoods, an older schema)."""
    from moebench.sweep.gridlock import is_certified, mark_stuck

    try:
        marked = mark_stuck(summary)
    except (ValueError, KeyError):
        return pd.Series("", index=summary.index), pd.Series(False, index=summary.index)
    classes = summary["class"] if is_certified(summary) else marked["run_class"]
    return classes.astype(str).astype(object), marked["stuck"].astype(bool)


# --------------------------------------------------------------------------- index
def verdict_html(text: str, sweeps: Sequence[str]) -> str:
    """The verdict table (hand-written Markdown) as HTML, each sweep it names in code
    linked to its page and relative links to Markdown files left as text."""
    text = re.sub(r"\[([^\]]+)\]\((?!https?://)[^)]*\)", r"\1", text)
    out = markdown(text)
    for name in sorted(sweeps, key=len, reverse=True):
        out = out.replace(f"<code>{esc(name)}</code>",
                          f'<a href="{sweep_href(name)}"><code>{esc(name)}</code></a>')
    return out


def find_verdict(start: Path) -> tuple[str, Path] | None:
    """The first Markdown table whose first heading names "claim" in the README.md of
    ``start`` or of a folder above it (at most two up), with that file."""
    for folder in (start, *list(start.resolve().parents)[:2]):
        readme = folder / "README.md"
        if readme.is_file():
            found = verdict_table(readme.read_text(encoding="utf-8"))
            if found:
                return found, readme
    return None


def verdict_table(text: str) -> str:
    """The first Markdown table of ``text`` whose header row's first cell names a claim."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and "claim" in line.split("|")[1].lower() and \
                i + 1 < len(lines) and set(lines[i + 1].replace("|", "").strip()) <= set("-: "):
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            return "\n".join(lines[i:end]) + "\n"
    return ""


def index_page(items: Sequence[Sweep | Skipped], verdict: tuple[str, Path] | None,
               timings: bool) -> str:
    """The front page: the verdict table, every sweep and every folder not drawn."""
    sweeps = [s for s in items if isinstance(s, Sweep)]
    parts = []
    if verdict:
        text, where = verdict
        parts.append(f"<h2>The verdict</h2><p class=\"caption\">From {esc(where.name)} "
                     "(hand-written; counts with Wilson 95% intervals). Each sweep it names "
                     "links to its page.</p>" + verdict_html(text, [s.name for s in sweeps]))
    rows = []
    for s in sweeps:
        prov = provenance(s.summary)
        status = ", ".join(f"{k} {v}" for k, v in s.status_counts().items())
        rows.append((f'<a href="{sweep_href(s.name)}">{esc(s.name)}</a>', s.description,
                     len(s.summary), len(s.cells), status, prov["date"], prov["commit"],
                     prov["machine"]))
    parts.append("<h2>Sweeps</h2>" + table(
        ("sweep", "description", "runs", "cells", "status", "date", "commit", "machine"),
        rows, raw=(0,)))
    skipped = [s for s in items if isinstance(s, Skipped)]
    if skipped:
        parts.append("<h2>Folders not drawn</h2>" + "".join(
            note(f"{s.name}: {s.reason}", "skipped") for s in skipped))
    parts.append('<p><a href="compare.html">Compare two variants</a>'
                 + (' · <a href="timings.html">timings (asv)</a>' if timings else "") + "</p>")
    total = sum(len(s.summary) for s in sweeps)
    intro = (f"<p>{len(sweeps)} sweeps, {total} runs, read from the stored results only "
             "(nothing is re-run).</p>")
    return page("moebench results", intro + "\n".join(parts), "")


# --------------------------------------------------------------------------- sweep page
def _report_tables(sweep: Sweep) -> list[str]:
    from moebench.sweep.views import call, get_view

    parts = []
    try:
        text = call(get_view("table", "summary"), {"summary": sweep.summary})
        parts.append("<h3>summary (<code>moebench report</code>)</h3>" + markdown(text))
    except (ValueError, KeyError) as exc:
        parts.append(note(f"summary table: not written ({exc})"))
    for md in sorted(sweep.path.glob("*.md")):
        try:
            body = markdown(md.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            body = note(f"could not be read ({exc})")
        parts.append(f"<h3>{esc(md.name)} (committed)</h3>{body}")
    return parts


def cells_table(sweep: Sweep, stuck: pd.Series) -> str:
    """One row per cell: runs, failures, success rate, stuck, median error; linked."""
    rows = []
    for cell in sweep.cells:
        runs = sweep.cell_runs(cell)
        ok = runs["status"].isin(OK_STATUSES)
        succ = int(runs["success"].fillna(False).astype(bool).sum()) \
            if "success" in runs.columns else 0
        err = runs.loc[ok, "expert_error"].astype(float) if "expert_error" in runs else \
            pd.Series(dtype=float)
        rows.append((f'<a href="cells/{cell.key}.html">{esc(cell.title())}</a>', len(runs),
                     int((~ok).sum()), succ, int(stuck.loc[cell.rows].sum()),
                     _fmt(err.median()), runs["label"].nunique()))
    return table(("cell", "runs", "failed", "success", "stuck / local max", "median error",
                  "variants"), rows, raw=(0,))


def sweep_page(drawn: Drawn, references: list[str], figures: Sequence[str], stuck: pd.Series
               ) -> str:
    """The page of one sweep (``figures``: the committed PNGs copied beside it; ``stuck``:
    :func:`classes_and_stuck`'s)."""
    sweep, colors = drawn.sweep, drawn.colors
    prov = provenance(sweep.summary)
    status = ", ".join(f"{k} {v}" for k, v in sweep.status_counts().items())
    meta = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in (
        ("runs", f"{len(sweep.summary)} ({status}) in {len(sweep.cells)} cells, "
                 f"{sweep.summary['label'].nunique()} variants"),
        ("varying", ", ".join(sweep.axes) or "nothing (one setting)"), *prov.items(),
        ("folder", str(sweep.path))) if v)
    parts = [f"<p>{esc(sweep.description)}</p><ul class=\"meta\">{meta}</ul>"]
    parts += [note(n) for n in sweep.notes]
    if sweep.config_text:
        parts.append(details("config.toml", f"<pre>{esc(sweep.config_text)}</pre>"))
    parts.append("<h2>Figures</h2>")
    links = {tuple(c.setting.values()): f"cells/{c.key}.html" for c in sweep.cells}
    specs: list[tuple[str, dict[str, Any] | None, str]] = [
        ("curves_iteration", curves_figure(drawn, "iteration"), ""),
        ("curves_time", curves_figure(drawn, "time"), ""),
        ("sample_complexity", sample_complexity_figure(sweep, colors), "")]
    specs += [(f"gridlock_{i}", spec, "") for i, spec in
              enumerate(gridlock_figures(sweep, references, links))]
    for fig_id, spec, caption in specs:
        if spec is not None and spec["panels"]:
            parts.append(figure_slot(fig_id, spec, caption))
    parts.append("<h2>Cells</h2>" + cells_table(sweep, stuck))
    parts.append("<h2>Report tables</h2>" + "".join(_report_tables(sweep)))
    if figures:
        imgs = "".join(f'<figure><img src="figures/{esc(f)}" alt="{esc(f)}" loading="lazy">'
                       f"<figcaption>{esc(f)}</figcaption></figure>" for f in figures)
        parts.append("<h2>Committed figures</h2>" + details(
            f"{len(figures)} PNG figure(s) of the folder (moebench plot)", imgs))
    return page(sweep.name, "\n".join(parts), "../..", [(sweep.name, "")])


# --------------------------------------------------------------------------- cell page
def rerun_command(sweep: Sweep, cell: Cell) -> str:
    """The command that re-runs the cell's runs into a fresh folder (same seeds, so the
    same runs)."""
    config = sweep.path / "config.toml"
    out = Path("rerun") / sweep.name
    return " ".join(["moebench run", shlex.quote(str(config)), "--out", shlex.quote(str(out)),
                     *cell.filters()])


def cell_page(drawn: Drawn, cell: Cell, classes: pd.Series) -> str:
    """The page of one data setting across seeds."""
    sweep, metric = drawn.sweep, drawn.metric
    runs = sweep.cell_runs(cell).assign(run_class=classes.loc[cell.rows])
    ok = runs["status"].isin(OK_STATUSES)
    parts = [f"<p>{len(runs)} runs ({int(ok.sum())} ok, {int((~ok).sum())} failed) of "
             f'<a href="../index.html">{esc(sweep.name)}</a>, {runs["label"].nunique()} '
             f"variants.</p>"]
    setting = {c: runs[c].iloc[0] for c in ("n", "d", "k", "activation", "sigma", "gating",
                                            "gating_scale", "expert_angle", "dataset")
               if c in runs.columns and runs[c].notna().any()}
    setting.update(cell.setting)
    parts.append('<ul class="meta">' + "".join(
        f"<li><b>{esc(k)}</b> = {esc(format_value(v))}</li>" for k, v in setting.items())
        + "</ul>")
    if (sweep.path / "config.toml").is_file():
        parts.append("<h2>Re-run</h2><p>The same runs (the config's seeds), into a fresh "
                     "folder; <code>moebench verify RESULTS --run-id RUN_ID</code> re-runs one "
                     "stored run and compares it:</p>"
                     f'<pre class="command">{esc(rerun_command(sweep, cell))}</pre>')
    else:
        parts.append("<h2>Re-run</h2>" + note(f"{sweep.path} holds no config.toml: its runs "
                                               "cannot be re-run from the folder"))
    by = []
    for label, g in runs.groupby("label", sort=False):
        gok = g["status"].isin(OK_STATUSES)
        counts = g["run_class"].value_counts()
        by.append((label, len(g), int((~gok).sum()),
                   int(g["success"].fillna(False).astype(bool).sum()) if "success" in g else "",
                   "; ".join(f"{k} {v}" for k, v in counts.items() if k),
                   _fmt(g.loc[gok, "expert_error"].astype(float).median())
                   if "expert_error" in g else "",
                   _fmt(g.loc[gok, "fit_time"].astype(float).median())
                   if "fit_time" in g else ""))
    parts.append("<h2>Variants</h2>" + table(
        ("variant", "runs", "failed", "success", "classes", "median error",
         "median fit time (s)"), by))
    bands = drawn.cell_bands(cell, "iteration")
    if bands:
        parts.append(figure_slot("cell_bands", {
            "title": "median and IQR band over the cell's seeds", "x": "iteration + 1",
            "y": metric.replace("_", " "), "xlog": True, "ylog": metric != "log_likelihood",
            "panels": [{"title": cell.title(), "series": bands}]}))
    traj = trajectories_figure(drawn, cell)
    if traj["panels"][0]["series"]:
        parts.append(figure_slot("trajectories", traj))
    cols = [(c, h) for c, h in RUN_COLUMNS if c in runs.columns]
    rows = [[_fmt(v) for v in r] for r in runs[[c for c, _ in cols]].itertuples(index=False)]
    parts.append("<h2>Runs</h2>" + table([h for _, h in cols], rows))
    return page(cell.title(), "\n".join(parts), "../../..",
                [(sweep.name, "../index.html"), (cell.title(), "")])
