"""The ``site`` verb of the ``moebench`` command."""

from __future__ import annotations

import argparse
from pathlib import Path

from moebench.cli.checks import check_out_dir, check_out_file

#: asv's results folder (asv.conf.json's results_dir), read when it exists
DEFAULT_ASV = ".asv/results"


def cmd_site(args: argparse.Namespace) -> int:
    """Build the static results site; optionally screenshot a page of it."""
    from moebench.site.build import build_site

    check_out_dir(args.out)
    if args.screenshot:
        check_out_file(args.screenshot, "--screenshot")
    asv = args.asv if args.asv is not None else \
        ([DEFAULT_ASV] if Path(DEFAULT_ASV).is_dir() else [])
    outcome = build_site(args.results, args.out, verdict=args.verdict, asv=asv)
    print(outcome.line())
    for item in outcome.skipped:
        print(f"  not drawn: {item.name}: {item.reason}")
    print(f"open {Path(args.out) / 'index.html'}")
    if args.screenshot:
        from moebench.site.screenshot import screenshot

        page = Path(args.out) / args.screenshot_page
        if not page.is_file():
            raise ValueError(f"--screenshot-page {args.screenshot_page!r} is not a page of the "
                             f"site (no {page})")
        print(f"wrote {screenshot(page, args.screenshot)}")
    return 0


def add_site_parser(sub: argparse._SubParsersAction) -> None:
    """The ``site`` verb."""
    p = sub.add_parser(
        "site", help="build a static, offline HTML site of stored results",
        description="Build a static HTML site from stored results only (nothing is re-run): "
        "an index with every sweep and the verdict table, a page per sweep (its report "
        "tables, sortable and filterable, and interactive figures), a page per cell (one "
        "data setting across seeds: every run, its class and trajectory, the command that "
        "re-runs it), a compare view and the asv timings. It works from file:// with no "
        "network: plotly.js is bundled once in the site. A folder that cannot be read is "
        "named on the index with the reason; the others still build.")
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="results folders of `moebench run`, or folders of them (results)")
    p.add_argument("--out", "-o", required=True,
                   help="the site's folder: new, empty, or an earlier site (replaced)")
    p.add_argument("--verdict", default=None, metavar="MARKDOWN",
                   help="a Markdown file whose first table with a 'claim' heading is the "
                   "verdict table of the index (default: the README.md beside or above RESULTS)")
    p.add_argument("--asv", action="append", default=None, metavar="DIR",
                   help="an asv results folder whose newest run per machine the timings page "
                   f"shows, with the asv results found in RESULTS (repeatable; default: "
                   f"{DEFAULT_ASV} where it exists)")
    p.add_argument("--screenshot", default=None, metavar="PNG",
                   help="also write a PNG of a page (needs playwright and Chromium)")
    p.add_argument("--screenshot-page", default="index.html", metavar="PAGE",
                   help="the page of --screenshot, relative to --out (default: index.html)")
    p.set_defaults(func=cmd_site)
