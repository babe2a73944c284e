"""Sphinx configuration of the moebench docs.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (from the repository root).

Pages are MyST Markdown (like the README); the API reference is generated from the
numpydoc docstrings by autodoc + numpydoc; ``_ext/moebench_docs.py`` generates the
config reference, the algorithm options and the API pages from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import moebench  # noqa: E402

project = "moebench"
author = "the moebench authors"
copyright = "moebench authors, BSD-3-Clause"
version = release = moebench.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "numpydoc",
    "moebench_docs",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_extra", "examples", "README.md"]

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_mock_imports: list[str] = []
numpydoc_show_class_members = False
numpydoc_attributes_as_param_list = False
numpydoc_xref_param_type = False

html_theme = "alabaster"
html_title = f"moebench {release}"
html_static_path: list[str] = []
# A results site built into docs/_extra/site (`moebench site results --out docs/_extra/site`,
# git-ignored; docs/site.md) is copied into the built docs as site/; without one the docs
# build as before (no network, nothing slow).
html_extra_path = ["_extra"] if (DOCS / "_extra" / "site" / "index.html").is_file() else []
