"""``moebench site``: a static, offline HTML site of stored results (nothing is re-run).

Modules, one concern each:

* :mod:`~moebench.site.sources`: which folders, read through :mod:`moebench.sweep.store`
  (the only loader), and the one-line reason a folder is not drawn;
* :mod:`~moebench.site.figures`: the interactive figures' data (curves with bands,
  sample complexity, gridlock maps, per-run trajectories);
* :mod:`~moebench.site.encode`: compact JSON of that data, thinning for display;
* :mod:`~moebench.site.html`, :mod:`~moebench.site.pages`: the page frame, the index,
  sweep and cell pages;
* :mod:`~moebench.site.compare`, :mod:`~moebench.site.timings`: the compare view and the
  asv timings;
* :mod:`~moebench.site.build`: :func:`build_site`; :mod:`~moebench.site.screenshot`: a PNG
  of a page in headless Chromium. The verb is :mod:`moebench.cli.site`.

The figures are drawn in the browser by plotly.js, bundled once as
``assets/plotly.min.js`` from the plotly Python package, from the data each page carries
as JSON, by the small glue script ``assets/site.js``. Layer: between the command line and
the sweeps (it imports :mod:`moebench.sweep` and its store; only :mod:`moebench.cli`
imports it).
"""

from moebench.site.build import MARKER, SiteOutcome, build_site, network_references

__all__ = ["MARKER", "SiteOutcome", "build_site", "network_references"]
