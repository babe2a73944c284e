"""Sphinx extension of the moebench docs: pages generated from the code, so they cannot drift.

Directives (usable from MyST pages as ```` ```{config-reference} ````):

``config-reference``
    The sweep config keys, their defaults and valid choices, read from the config
    validator's own schema (:mod:`moebench.sweep.config`: ``TOP_KEYS``,
    ``SYNTHETIC_DATA_KEYS``, ``DATA_DEFAULTS``, ...). Every key needs a one-line
    description in :data:`KEY_DOCS` below; a key the validator accepts without a
    description, or a description of a key it does not accept, fails the build.
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


def _lit(value: Any) -> str:
    """A value as a TOML-ish literal in code."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


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
#: one line per key the config validator accepts, "table.key" -> text; checked both ways
KEY_DOCS: dict[str, str] = {
    # top level
    "top.name": "results go to `results/<name>/`; a plain name (1-100 letters, digits, "
                "`_ - .`, not starting with `.` or `-`); default: the file name",
    "top.description": "free text, shown nowhere but kept with the results",
    "top.seed": "base seed of every per-run seed (an integer >= 0)",
    "top.repetitions": "data sets (and algorithm seeds) per data setting (an integer >= 1)",
    "top.success_threshold": "a run succeeds when its matched expert error is below this "
                             "(a number > 0)",
    "top.data": "the `[data]` table: a synthetic grid or a CSV source (below)",
    "top.budget": "the `[budget]` table: defaults for every algorithm (below)",
    "top.algorithm": "one `[[algorithm]]` table per variant (below); at least one",
    "top.report": "the `[report]` table: colours and references of the figures and tables "
                  "(below); optional",
    # synthetic [data]
    "data.n": "training rows (an integer >= 1)",
    "data.d": "input dimension (an integer >= 1)",
    "data.k": "number of experts (an integer >= 2; k <= d where an algorithm needs it)",
    "data.activation": "the experts' activation g (`moebench list`)",
    "data.sigma": "label noise standard deviation (a number > 0)",
    "data.gating": "gating rows orthogonal to every expert (the paper's assumption) or "
                   "isotropic",
    "data.gating_scale": "norm of the gating rows (a number >= 0; 0: constant mixing)",
    "data.min_angle": "minimum pairwise angle between experts, degrees (>= 0)",
    "data.expert_angle": "every pair of experts at exactly this angle, degrees (> 0); "
                         "replaces `min_angle`",
    "data.gating_angle": "tilt of the gating rows into the experts' span, degrees "
                         "(0: orthogonal, 90: inside the span)",
    "data.input_distribution": "law of the (standardised) inputs",
    "data.k_fit": "experts the estimators fit (an integer >= 2); default: `k`, the truth's. "
                  "A list fits several k to the same data",
    "data.truth": "an explicit true model instead of a random one: a table of `experts` "
                  "and `gating` (k x d lists), optional `expert_bias`, `gating_bias` (k) and "
                  "`sigma` (a number or k standard deviations); `d`, `k` must match it",
    "data.input_interval": "`[low, high]` of `input_distribution = \"uniform\"` (default "
                           "[-sqrt 3, sqrt 3]) or `\"grid\"` (the fixed design "
                           "linspace(low, high, n), d = 1; default [0, 1])",
    "data.n_test": "held-out rows drawn from the same true model (an integer >= 2)",
    "data.cells": "explicit cells instead of one product grid: a list of tables of data "
                  "keys (e.g. `[{k = 2, sigma = 0.05}, {k = 4, sigma = 0.5}]`), each a grid "
                  "over the other `[data]` values; the sweep runs their union once",
    # CSV [data]
    "csv.source": "`{csv = \"path\", target = \"column\", ...}`: read a CSV/TSV file "
                  "(keys below)",
    "csv.k": "number of experts (an integer >= 2)",
    "csv.activation": "the experts' activation g",
    "csv.folds": "k-fold cross-validation folds (2 to the number of rows)",
    # data.source
    "source.csv": "path of the CSV or TSV file (relative: from the current directory); "
                  "required",
    "source.target": "name of the target column; required",
    "source.features": "the input columns (default: every column but the target)",
    "source.sep": "the separator; `\"auto\"` sniffs it",
    # [budget]
    "budget.max_iter": "passed to estimators that declare an iteration budget "
                       "(an integer >= 1)",
    "budget.max_time": "seconds, passed to estimators that declare a time budget (> 0)",
    "budget.timeout": "hard limit in seconds: the run is killed and recorded as "
                      "`timeout` (default: 2 * max_time + 30)",
    # [[algorithm]]
    "algorithm.name": "a registered algorithm; required",
    "algorithm.label": "the variant's name in tables and figures (default: name)",
    "algorithm.params": "fixed estimator options, checked against the class's "
                        "`_parameter_constraints` (see [Algorithms](algorithms.md))",
    "algorithm.grid": "options to sweep: `{option = [values]}`, one variant per value "
                      "(`label[option=value]`)",
    "algorithm.known_sigma": "`true`: pass the true noise level instead of estimating it",
    "algorithm.activations": "run this variant only on these data activations",
    "algorithm.only": "run this variant only where these data keys take these values, e.g. "
                      "`{n = [100000], k = 3}`",
    "algorithm.max_iter": "this variant's iteration budget (overrides `[budget]`)",
    "algorithm.max_time": "this variant's time budget (overrides `[budget]`)",
    "algorithm.timeout": "this variant's hard limit (overrides `[budget]`)",
    # [report]
    "report.references": "the variants the gridlock rule needs to succeed (`moebench report "
                         "--phase`, `moebench plot --kind gridlock`), a list of labels "
                         "(default: the variants that start from the tensor step, "
                         "refinements first)",
    "report.colors": "`{label = \"colour\"}`: a matplotlib colour per variant label (default: "
                     "[derived from the variant list](plots_reports.md#colours-and-references))",
}


def config_schema() -> dict[str, dict[str, Any]]:
    """``{table: {key: default}}`` as the validator defines them.

    Defaults of the top-level keys are read back from what :func:`validate_config`
    makes of a config that leaves them out.
    """
    from moebench.sweep import config as c
    from moebench.sweep.style import REPORT_KEYS

    probe = c.validate_config({"algorithm": [{"name": "joint_em"}]}, name="probe")
    top = {"name": None, "description": probe.description or None, "seed": probe.seed,
           "repetitions": probe.repetitions, "success_threshold": probe.success_threshold,
           "data": None, "budget": None, "algorithm": None, "report": None}
    assert set(top) == set(c.TOP_KEYS), "TOP_KEYS changed: update config_schema"
    defaults_budget = dict(c.BUDGET_DEFAULTS)
    return {
        "top": {key: top[key] for key in c.TOP_KEYS},
        "data": {**{key: c.DATA_DEFAULTS.get(key) for key in c.SYNTHETIC_DATA_KEYS},
                 c.CELLS_KEY: None},
        "csv": {key: c.CSV_DEFAULTS.get(key) for key in c.CSV_DATA_KEYS},
        "source": {key: {"sep": "auto"}.get(key) for key in c.SOURCE_KEYS},
        "budget": {key: defaults_budget.get(key) for key in c.BUDGET_KEYS},
        "algorithm": {key: {"known_sigma": False}.get(key) for key in c.ALGORITHM_KEYS},
        "report": {key: None for key in REPORT_KEYS},
    }


def config_choices() -> dict[str, list[str]]:
    """``{"table.key": valid values}`` for the keys the validator checks against a list."""
    from moebench.activations import available_activations
    from moebench.generator import GATING_KINDS, INPUT_DISTRIBUTIONS
    from moebench.registry import available_algorithms

    acts = list(available_activations())
    return {"data.activation": acts, "csv.activation": acts, "algorithm.activations": acts,
            "data.gating": list(GATING_KINDS),
            "data.input_distribution": list(INPUT_DISTRIBUTIONS),
            "algorithm.name": list(available_algorithms(references=True, oracles=True))}


def undocumented_config_keys() -> tuple[list[str], list[str]]:
    """(keys the validator accepts without a description, described keys it refuses)."""
    schema = {f"{table}.{key}" for table, keys in config_schema().items() for key in keys}
    return sorted(schema - set(KEY_DOCS)), sorted(set(KEY_DOCS) - schema)


TABLE_TITLES = {
    "top": "Top-level keys",
    "data": "`[data]`: synthetic data (any key may be a list: the grid is their product)",
    "csv": "`[data]`: real data from a CSV file (`source` present)",
    "source": "`[data] source = {...}`",
    "budget": "`[budget]`: defaults for every algorithm",
    "algorithm": "`[[algorithm]]`: one table per variant",
    "report": "`[report]`: how figures and tables show the variants (optional)",
}


class ConfigReference(_GeneratedDirective):
    """Tables of every config key, generated from :mod:`moebench.sweep.config`."""

    def generate(self) -> list[str]:
        missing, extra = undocumented_config_keys()
        if missing or extra:
            raise ExtensionError(f"config reference: keys without a description in "
                                 f"docs/_ext/moebench_docs.py KEY_DOCS: {missing}; described "
                                 f"but not accepted by the validator: {extra}")
        choices = config_choices()
        out: list[str] = []
        for table, keys in config_schema().items():
            out += [f"**{TABLE_TITLES[table]}**", ""]
            rows = []
            for key, default in keys.items():
                valid = choices.get(f"{table}.{key}")
                text = KEY_DOCS[f"{table}.{key}"]
                if valid:
                    text += "; one of " + ", ".join(_lit(v) for v in valid)
                rows.append([f"`{key}`", _lit(default) if default is not None else "",
                             text])
            out += _table(["key", "default", "meaning"], rows)
        return out


# --------------------------------------------------------------------------- algorithms
#: a reST role (``:class:`x```) in a docstring text, rewritten as a MyST role
_REST_ROLE = re.compile(r":((?:py:)?\w+):`")


def algorithm_rows(name: str) -> dict[str, Any]:
    """What the options table of one algorithm shows, from its class declarations."""
    from numpydoc.docscrape import NumpyDocString

    from moebench.registry import algorithm_class
    from moebench.validation import describe_constraints

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
