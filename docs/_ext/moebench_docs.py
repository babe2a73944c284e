"""Sphinx extension of the moebench docs: pages generated from the code, so they cannot drift.

Directives (usable from MyST pages as ```` ```{config-reference} ````):

``config-reference``
    The sweep config keys, their defaults, valid values and one-line docs, rendered from
    their one declaration (:mod:`moebench.sweep.config_keys`), the one the config
    validator checks through.
``algorithm-options``
    One table per registered algorithm: what it assumes, its budgets and every
    constructor option with its default and valid values, read from the registry and
    each class's ``_parameter_constraints``; the option texts come from the class
    docstring's Parameters section.
``run-statuses``
    The run statuses of :mod:`moebench.sweep.columns` with what each means.

The API reference: at ``builder-inited`` one page per public module is written to
``docs/api/`` (generated, git-ignored), documenting every public function and class
(:func:`public_api`); at ``env-check-consistency`` every one of them must be a
documented Python object, or the build warns (an error under ``-W``).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- public API
#: packages whose modules make up the API (moebench.baselines lives in baselines/)
API_PACKAGES = ("moebench", "moebench.baselines")


#: modules never imported for the API: entry scripts whose import has side effects and
#: that define no function or class (tests/test_docs.py checks that they define none)
SCRIPT_MODULES = ("moebench.sweep.preload",)


def is_public_module(name: str) -> bool:
    """A module is public when no part of its dotted name starts with ``_``."""
    return not any(part.startswith("_") for part in name.split(".")) \
        and name not in SCRIPT_MODULES


def public_modules() -> list[str]:
    """Every public module of moebench (including the installed ``moebench.baselines``)."""
    names: set[str] = set()
    for pkg_name in API_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        names.add(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
            names.add(info.name)
    return sorted(n for n in names if is_public_module(n))


def public_names(module: ModuleType) -> list[str]:
    """The public functions and classes of a module.

    Public: listed in the module's ``__all__`` when it has one; otherwise every
    function or class *defined in that module* (not imported into it) whose name
    does not start with ``_``. Only functions and classes are returned (constants and
    submodules are not API entries).
    """
    if hasattr(module, "__all__"):
        candidates = list(module.__all__)
    else:
        candidates = [n for n, obj in vars(module).items() if not n.startswith("_")
                      and getattr(obj, "__module__", None) == module.__name__]
    return [n for n in candidates
            if inspect.isclass(getattr(module, n, None))
            or inspect.isfunction(getattr(module, n, None))]


def public_api() -> dict[str, list[tuple[str, str]]]:
    """``{module: [(name, where documented), ...]}`` for every public module.

    An object is documented once, in the module that defines it when that module is
    public and lists it; a re-export (``moebench.make_moe``) points there.
    """
    modules = {name: importlib.import_module(name) for name in public_modules()}
    listed = {name: set(public_names(mod)) for name, mod in modules.items()}
    out: dict[str, list[tuple[str, str]]] = {}
    for name, mod in modules.items():
        entries = []
        for attr in public_names(mod):
            obj = getattr(mod, attr)
            home = getattr(obj, "__module__", name)
            qual = getattr(obj, "__qualname__", attr)
            if home in listed and qual in listed[home]:
                target = f"{home}.{qual}"
            else:  # defined in a private module: documented where it is public first
                first = next(m for m in sorted(modules) if attr in listed[m]
                             and getattr(modules[m], attr) is obj)
                target = f"{first}.{attr}"
            entries.append((attr, target))
        out[name] = entries
    return out


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ") if doc else ""


def module_page(module: str, entries: list[tuple[str, str]]) -> str:
    """reST source of one API page: the module docstring, then each object it owns."""
    lines = [module, "=" * len(module), "", f".. automodule:: {module}", "   :no-members:", ""]
    own = [(a, t) for a, t in entries if t == f"{module}.{a}"]
    reexported = [(a, t) for a, t in entries if t != f"{module}.{a}"]
    if reexported:
        lines += ["Re-exported here (documented where they are defined):", ""]
        lines += [f"- ``{module}.{a}``: :py:obj:`{t}`" for a, t in reexported]
        lines.append("")
    for attr, _ in own:
        obj = getattr(importlib.import_module(module), attr)
        kind = "autoclass" if inspect.isclass(obj) else "autofunction"
        lines += [f".. {kind}:: {module}.{attr}"]
        if kind == "autoclass":
            lines += ["   :members:"]
        lines.append("")
    if not entries:
        lines += ["This module has no public functions or classes.", ""]
    return "\n".join(lines)


def write_api_pages(app: Sphinx) -> None:
    """Write ``docs/api/<module>.rst`` for every public module (only when changed)."""
    folder = Path(app.srcdir) / "api"
    folder.mkdir(exist_ok=True)
    wanted = {}
    for module, entries in public_api().items():
        wanted[f"{module}.rst"] = module_page(module, entries)
    for path in folder.glob("*.rst"):
        if path.name not in wanted:
            path.unlink()
    for name, text in wanted.items():
        path = folder / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def check_api_documented(app: Sphinx, env: Any) -> None:
    """Warn for every public function or class that is not a documented Python object."""
    objects = env.get_domain("py").objects
    for module, entries in public_api().items():
        for attr, target in entries:
            if target not in objects:
                logger.warning(f"API reference: {module}.{attr} ({target}) is public but not "
                               f"documented", type="moebench", subtype="api")


# --------------------------------------------------------------------------- docstrings
_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")


def escape_bars(line: str) -> str:
    """Escape ``|`` outside literals and roles: the docstrings write |x| and ||a|| as maths.

    reST would read ``|x|`` as a substitution reference; moebench's docstrings never
    use substitutions, so every bar outside ````literal```` and ```role``` text is
    meant literally. Grid-table lines (``+---``, ``| ... |``) are left alone.
    """
    stripped = line.strip()
    if "|" not in line or stripped.startswith(("+-", "+=")) or (
            len(stripped) > 1 and stripped[0] == stripped[-1] == "|"):
        return line
    parts = _LITERAL.split(line)
    return "".join(part if i % 2 else part.replace("|", "\\|") for i, part in enumerate(parts))


def process_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                      lines: list[str]) -> None:
    """autodoc-process-docstring: :func:`escape_bars` on every docstring line."""
    lines[:] = [escape_bars(line) for line in lines]


# --------------------------------------------------------------------------- tables
def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown pipe table (the directives run in MyST pages; cells are MyST inline text)."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join((c or " ").replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *map(line, rows), ""]


class _GeneratedDirective(SphinxDirective):
    """A directive whose content is generated MyST Markdown (it is used in .md pages)."""

    has_content = False
    optional_arguments = 1

    def generate(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(StringList(self.generate(), source="<moebench-docs>"),
                                self.content_offset, container)
        return container.children


# --------------------------------------------------------------------------- config reference
class ConfigReference(_GeneratedDirective):
    """Tables of every config key, rendered from their declarations
    (:func:`moebench.sweep.config_keys.reference_markdown`)."""

    def generate(self) -> list[str]:
        from moebench.sweep.config_keys import reference_markdown

        return reference_markdown()


# --------------------------------------------------------------------------- algorithms
#: a reST role (``:class:`x```) in a docstring text, rewritten as a MyST role
_REST_ROLE = re.compile(r":((?:py:)?\w+):`")


def algorithm_rows(name: str) -> dict[str, Any]:
    """What the options table of one algorithm shows, from its class declarations."""
    from numpydoc.docscrape import NumpyDocString

    from moebench.constraints import describe_constraints
    from moebench.registry import algorithm_class

    cls = algorithm_class(name)
    try:
        params = NumpyDocString(inspect.getdoc(cls) or "")["Parameters"]
    except Exception:  # noqa: BLE001 - a docstring numpydoc cannot parse: no texts
        params = []
    texts: dict[str, str] = {}
    for p in params:
        for pname in p.name.replace(" ", "").split(","):
            texts[pname] = _REST_ROLE.sub(r"{\1}`", " ".join(p.desc).strip())
    constraints = cls.parameter_constraints()
    instance = cls()
    budgets = {param: budget for budget, param in cls.budget_parameters.items()}
    rows = []
    for pname in cls._get_param_names():
        valid = describe_constraints(constraints[pname]) if pname in constraints else "any"
        text = texts.get(pname, "")
        if pname in budgets:
            text = (text + " " if text else "") + f"(carries the sweep's `{budgets[pname]}`)"
        rows.append([f"`{pname}`", f"`{getattr(instance, pname)!r}`", valid, text])
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "description": cls.description,
            "assumes": list(cls.assumes), "requires_k_le_d": cls.requires_k_le_d,
            "activations": cls.supported_activations, "local_search": cls.local_search,
            "iteration_unit": getattr(cls, "iteration_unit", None), "rows": rows}


class AlgorithmOptions(_GeneratedDirective):
    """The options table of one registered algorithm (argument: its name)."""

    required_arguments = 1
    optional_arguments = 0

    def generate(self) -> list[str]:
        from moebench.registry import available_algorithms

        name = self.arguments[0]
        valid = available_algorithms(references=True, oracles=True)
        if name not in valid:
            raise ExtensionError(f"algorithm-options: unknown algorithm {name!r}; registered: "
                                 f"{', '.join(valid)}")
        info = algorithm_rows(name)
        acts = ", ".join(info["activations"]) if info["activations"] else "any"
        out = [f"Class {{py:class}}`{info['class']}`. *{info['description']}*", "",
               f"- assumes: {'; '.join(info['assumes']) or '-'}",
               f"- k <= d required: {'yes' if info['requires_k_le_d'] else 'no'}; "
               f"activations: {acts}; local search: "
               f"{'yes' if info['local_search'] else 'no'}",
               f"- iteration budget: "
               f"{info['iteration_unit'] + 's' if info['iteration_unit'] else 'none (time only)'}"
               " (budgets are totals over the fit: restarts and phases)", ""]
        out += _table(["option", "default", "valid values", "meaning"], info["rows"])
        return out


class RunStatuses(_GeneratedDirective):
    """The run statuses of :mod:`moebench.sweep.columns`, each with its meaning."""

    def generate(self) -> list[str]:
        from moebench.sweep.columns import OK_STATUSES, STATUSES

        missing = sorted(set(STATUSES) - set(STATUS_DOCS))
        extra = sorted(set(STATUS_DOCS) - set(STATUSES))
        if missing or extra:
            raise ExtensionError(f"run-statuses: statuses without a description in "
                                 f"STATUS_DOCS: {missing}; described but unknown: {extra}")
        rows = [[f"`{s}`", "result" if s in OK_STATUSES else "failed", STATUS_DOCS[s]]
                for s in STATUSES]
        return _table(["status", "counts as", "meaning"], rows)


class ResultColumns(_GeneratedDirective):
    """The setting and metric columns of the summary table (:mod:`moebench.sweep.columns`)."""

    def generate(self) -> list[str]:
        from moebench.sweep.columns import METRIC_COLUMNS, SETTING_COLUMNS

        return ["- data-setting columns: " + ", ".join(f"`{c}`" for c in SETTING_COLUMNS),
                "- final-metric columns (NaN where a run or an estimator has none): "
                + ", ".join(f"`{c}`" for c in METRIC_COLUMNS), ""]


#: what each run status means ("ok" and the failed ones of moebench.sweep.columns)
STATUS_DOCS = {
    "ok": "the run finished and its numbers are trustworthy",
    "error": "an exception; the message names it and where it happened",
    "nan": "the fit or its scores were not finite",
    "timeout": "killed at the hard timeout",
    "degenerate": "the fit finished but must not be used as a result (fewer training rows "
                  "than parameters, collapsed sigma, absurd likelihood)",
}


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives and the API page generation and check."""
    app.add_directive("config-reference", ConfigReference)
    app.add_directive("algorithm-options", AlgorithmOptions)
    app.add_directive("run-statuses", RunStatuses)
    app.add_directive("result-columns", ResultColumns)
    app.connect("builder-inited", write_api_pages)
    # before numpydoc (priority 500) reads the docstring
    app.connect("autodoc-process-docstring", process_docstring, priority=400)
    app.connect("env-check-consistency", check_api_documented)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
