"""Building the results site: every folder read once, every page written, nothing re-run.

:func:`build_site` writes the site into a temporary folder beside ``out`` and moves it into
place at the end, so an interrupted build leaves no half-written site; it replaces only a
folder that is empty or holds an earlier site (marked by :data:`MARKER`). A folder whose
pages fail to build becomes a one-line message on the index, like an unreadable one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from moebench.site.compare import compare_data, compare_page, compare_script
from moebench.site.figures import Drawn, curve_metric, hex_colors, run_curves
from moebench.site.pages import (
    cell_page,
    classes_and_stuck,
    find_verdict,
    index_page,
    sweep_page,
    verdict_table,
)
from moebench.site.sources import Skipped, Sweep, discover, load_sweep
from moebench.site.timings import TIMINGS_FILE, find_timings, timings_page

#: file that marks a folder as a site this command wrote (and may replace)
MARKER = ".moebench-site"
#: the package's own assets, copied into ``assets/``
PACKAGE_ASSETS = ("site.css", "site.js")
#: a script or stylesheet loaded from the network (never allowed in a page)
NETWORK_REF = re.compile(r"""<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""",
                         re.IGNORECASE)


@dataclass
class SiteOutcome:
    """What :func:`build_site` wrote."""

    out: Path
    sweeps: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    pages: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        """One line: sweeps, pages, size, time."""
        return (f"wrote {self.out}: {len(self.sweeps)} sweep(s), {self.pages} pages, "
                f"{self.bytes / 2**20:.1f} MiB in {self.seconds:.1f} s"
                + (f"; {len(self.skipped)} folder(s) not drawn (named on the index)"
                   if self.skipped else ""))


def check_requirements() -> None:
    """Raise ValueError naming what ``moebench site`` needs and lacks (the ``site`` extra:
    plotly for its plotly.js bundle, markdown-it-py for the tables)."""
    missing = [name for module, name in (("plotly", "plotly"), ("markdown_it", "markdown-it-py"))
               if importlib.util.find_spec(module) is None]
    if missing:
        raise ValueError(f"moebench site needs {' and '.join(missing)}: "
                         "pip install 'moebench[site]'")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def write_assets(out: Path) -> None:
    """``assets/``: plotly.js (bundled once), the site's CSS and glue JavaScript."""
    (out / "assets").mkdir(parents=True, exist_ok=True)
    (out / "assets" / "plotly.min.js").write_text(_plotly_js(), encoding="utf-8")
    for name in PACKAGE_ASSETS:
        text = resources.files("moebench.site").joinpath("assets", name).read_text("utf-8")
        (out / "assets" / name).write_text(text, encoding="utf-8")


def _figures_of(path: Path) -> list[Path]:
    return sorted(path.glob("figure*.png")) + sorted((path / "figures").glob("*.png"))


def build_sweep(sweep: Sweep, out: Path) -> str:
    """Write one sweep's pages under ``out/sweeps/<name>/``; returns its compare script."""
    from moebench.sweep.style import derive_style, folder_style

    try:
        style = folder_style(sweep.summary, sweep.path)
    except ValueError as exc:
        sweep.notes.append(f"config [report] table not used ({exc})")
        style = derive_style(sweep.summary)
    metric = curve_metric(sweep.checkpoints)
    drawn = Drawn(sweep, run_curves(sweep.checkpoints, metric), metric, hex_colors(style.colors))
    classes, stuck = classes_and_stuck(sweep.summary)
    folder = out / "sweeps" / sweep.name
    (folder / "cells").mkdir(parents=True, exist_ok=True)
    pngs = _figures_of(sweep.path)
    if pngs:
        (folder / "figures").mkdir(exist_ok=True)
        for p in pngs:
            shutil.copyfile(p, folder / "figures" / p.name)
    (folder / "index.html").write_text(
        sweep_page(drawn, list(style.references), [p.name for p in pngs], stuck),
        encoding="utf-8")
    for cell in sweep.cells:
        (folder / "cells" / f"{cell.key}.html").write_text(
            cell_page(drawn, cell, classes), encoding="utf-8")
    return compare_script(compare_data(drawn, stuck))


def _check_target(out: Path) -> None:
    # the verb checks --out first (moebench.cli.checks.check_out_dir: also a path under a
    # file); this layer sits below the command line, so the API call checks here
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is an existing file, not a directory; give a "
                         f"new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ValueError(f"--out {str(out)!r} is a folder that holds other files and no "
                         f"earlier site (no {MARKER}); give a new or empty folder")


def network_references(out: Path) -> list[str]:
    """The pages of a built site that load a script or stylesheet from the network
    (``page: tag``); empty for an offline site."""
    found = []
    for page in sorted(out.rglob("*.html")):
        for m in NETWORK_REF.finditer(page.read_text(encoding="utf-8")):
            found.append(f"{page.relative_to(out)}: {m.group(0)}")
    return found


def build_site(results: Sequence[str | os.PathLike], out: str | os.PathLike,
               verdict: str | os.PathLike | None = None,
               asv: Sequence[str | os.PathLike] = ()) -> SiteOutcome:
    """Build the static results site of ``results`` into ``out``.

    Parameters
    ----------
    results : sequence of paths
        Results folders, or folders of them (``results``).
    out : path
        The site's folder: new, empty, or an earlier site (replaced).
    verdict : path, optional
        A Markdown file whose first table with a "claim" heading is the verdict table
        (default: the README.md beside or above the first of ``results``, if it has one).
    asv : sequence of paths
        asv results folders (``.asv/results``): the newest run of each machine is shown
        on the timings page, with the asv results found in ``results``.

    Returns
    -------
    SiteOutcome

    Raises
    ------
    ValueError
        For a path of ``results`` that is not a directory, an ``out`` that holds other
        files, a ``verdict`` file without such a table, or without plotly or
        markdown-it-py installed.
    """
    start = time.perf_counter()
    check_requirements()
    out = Path(out)
    _check_target(out)
    folders = discover(results)
    for a in asv:
        if not Path(a).is_dir():
            raise ValueError(f"--asv {str(a)!r} is not a directory; give an asv results folder "
                             "(asv.conf.json's results_dir, here .asv/results)")
    if verdict is not None:
        text = Path(verdict).read_text(encoding="utf-8")
        table = verdict_table(text)
        if not table:
            raise ValueError(f"--verdict {str(verdict)!r} holds no Markdown table whose first "
                             "heading names a claim")
        found = (table, Path(verdict))
    else:
        found = find_verdict(Path(results[0])) if results else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_assets(tmp)
        (tmp / "compare").mkdir()
        outcome = SiteOutcome(out)
        items: list[Sweep | Skipped] = []
        for folder in folders:
            item = load_sweep(folder)
            if isinstance(item, Sweep):
                try:
                    script = build_sweep(item, tmp)
                except Exception as exc:  # noqa: BLE001 - one folder never stops the site
                    shutil.rmtree(tmp / "sweeps" / item.name, ignore_errors=True)
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    item = Skipped(item.name, folder, f"could not be drawn: "
                                   f"{type(exc).__name__}: {first}")
                    print(f"moebench site: {item.name}: {item.reason}", file=sys.stderr)
                else:
                    (tmp / "compare" / f"{item.name}.js").write_text(script, encoding="utf-8")
                    outcome.sweeps.append(item.name)
            if isinstance(item, Skipped):
                if (folder / TIMINGS_FILE).is_file():
                    item.reason += f"; its asv timings ({TIMINGS_FILE}) are on the timings page"
                outcome.skipped.append(item)
            items.append(item)
        timings = find_timings(folders, [Path(a) for a in asv])
        (tmp / "index.html").write_text(index_page(items, found, bool(timings)),
                                        encoding="utf-8")
        sweeps = [(s.name, [str(v) for v in dict.fromkeys(s.summary["label"])], len(s.summary))
                  for s in items if isinstance(s, Sweep)]
        (tmp / "compare.html").write_text(compare_page(sweeps), encoding="utf-8")
        (tmp / "timings.html").write_text(timings_page(timings), encoding="utf-8")
        (tmp / MARKER).write_text("a results site written by `moebench site`\n")
        bad = network_references(tmp)
        if bad:  # a bug: the pages are written offline by construction
            raise RuntimeError(f"a page loads from the network: {bad[0]}")
        files = [p for p in tmp.rglob("*") if p.is_file()]
        outcome.pages = sum(p.suffix == ".html" for p in files)
        outcome.bytes = sum(p.stat().st_size for p in files)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    outcome.seconds = time.perf_counter() - start
    return outcome
