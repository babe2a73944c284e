"""HTML pieces of the site: the page frame, tables, Markdown, figure slots.

Every page links ``site.css``, ``site.js`` and ``plotly.min.js`` from the site's
``assets/`` folder by a relative path (no network URL anywhere), so the site works from
``file://`` and from any static server.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Iterable, Sequence
from typing import Any

from moebench.site.encode import dumps

#: the assets every page loads (relative to the site's root)
ASSETS = ("assets/site.css", "assets/plotly.min.js", "assets/site.js")


def esc(value: Any) -> str:
    """``value`` as HTML text."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str, root: str, crumbs: Sequence[tuple[str, str]] = ()) -> str:
    """A whole page: ``root`` is the relative path to the site's root ("" or "../..")."""
    prefix = f"{root}/" if root else ""
    css, plotly, js = (prefix + a for a in ASSETS)
    nav = " › ".join([f'<a href="{prefix}index.html">moebench results</a>',
                      *(f'<a href="{esc(href)}">{esc(text)}</a>' if href else esc(text)
                        for text, href in crumbs)])
    links = (f'<a href="{prefix}index.html">index</a> · <a href="{prefix}compare.html">'
             f'compare</a> · <a href="{prefix}timings.html">timings</a>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title>"
            f'<link rel="stylesheet" href="{css}"><script src="{plotly}"></script>'
            f'<script src="{js}"></script></head>\n<body><header><nav>{nav}</nav>'
            f'<span class="links">{links}</span></header>\n<main>\n<h1>{esc(title)}</h1>\n'
            f"{body}\n</main></body></html>\n")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "data",
          raw: Sequence[int] = ()) -> str:
    """A sortable, filterable table (``site.js`` adds the filter box and the sorting).

    ``raw`` lists the columns whose cells are HTML already (links); the others are escaped.
    """
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(
        f"<td>{v if i in raw else esc(v)}</td>" for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return (f'<table class="{cls} sortable filterable"><thead><tr>{head}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table>")


@functools.lru_cache(maxsize=1)
def _markdown_parser() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown(text: str) -> str:
    """Markdown (the report tables, a verdict table) as HTML, tables made sortable and
    filterable; raw HTML in the text is shown as text."""
    out = _markdown_parser().render(text)
    return out.replace("<table>", '<table class="report sortable filterable">')


def figure_slot(fig_id: str, spec: dict[str, Any], caption: str = "") -> str:
    """A figure: its data as JSON in the page and the ``div`` that ``site.js`` draws it in."""
    note = f'<p class="caption">{esc(caption)}</p>' if caption else ""
    return (f'<figure class="plot"><div class="figure" id="{esc(fig_id)}" '
            f'data-spec="spec-{esc(fig_id)}"></div>{note}'
            f'<script type="application/json" id="spec-{esc(fig_id)}">{dumps(spec)}</script>'
            f"</figure>")


def details(summary: str, body: str, open_: bool = False) -> str:
    """A collapsible section."""
    return (f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body}"
            "</details>")


def note(text: str, cls: str = "note") -> str:
    """A one-line message (a skipped folder, a figure that does not apply)."""
    return f'<p class="{cls}">{esc(text)}</p>'
