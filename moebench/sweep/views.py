"""The registry of views: every figure and every table of stored results, declared once.

A view is one function, registered with a decorator::

    @figure("fit_time", help="median fit time per variant")
    def plot_fit_time(summary: pd.DataFrame, style: Style | None = None) -> Figure:
        ...

    @table("fit_time", help="median fit time per variant")
    def fit_time_table(summary: pd.DataFrame) -> str:
        ...

``moebench plot --kind`` and ``moebench report --table`` take their choices and their
help text from this registry, ``moebench plot --kind all`` draws every figure whose
``applies`` predicate accepts the results, and nothing else dispatches on a view's name.

**Inputs by name.** A view asks for what it needs by naming its parameters from
:data:`INPUTS` (``summary``, ``checkpoints``, ``metric``, ``style``, ...); the command line
fills exactly those (:func:`call`). A parameter with any other name must have a default
and is left at it; a view that needs an input the registry does not know is refused when
it is registered.

**Outputs.** A figure view returns a :class:`matplotlib.figure.Figure`, or a dict of them
keyed by a file-name suffix when it draws several files (the gridlock figure per
reference, the phase maps per variant): key ``""`` is the file itself, key ``"x"`` the file
``<stem>_x``. A table view returns Markdown text.

The built-in views live in :mod:`moebench.sweep.plots`, :mod:`moebench.sweep.plots_finals`,
:mod:`moebench.sweep.plots_maps`, :mod:`moebench.sweep.report`,
:mod:`moebench.sweep.report_time`, :mod:`moebench.sweep.theorem` and
:mod:`moebench.sweep.plots_resources` and :mod:`moebench.sweep.rates`; :func:`views` imports
them on first use (``docs/adding_a_view.md`` shows how to add one).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: the kinds of view
KINDS = ("figure", "table")

#: what a view may ask for, by parameter name (the ``moebench plot`` / ``report`` option
#: each one comes from)
INPUTS: dict[str, str] = {
    "summary": "the summary table (one row per run; certified classes attached)",
    "checkpoints": "the checkpoints table (one row per run and checkpoint)",
    "style": "colours, markers and references of the variants (the config's [report])",
    "x": "--x: the curves' x axis (iteration or time)",
    "metric": "--metric: the metric column",
    "by": "--by: the x axis of the success and diagnostics figures",
    "raw": "--raw: each checkpoint as recorded, not the anytime estimate",
    "axes": "--axes: the data-setting columns of a map or of the panels",
    "variants": "--variants: only these variant labels",
    "reference": "--reference: the reference variant(s) of the gridlock rule",
    "tol": "--stuck-tol: the log-likelihood gap per sample that counts as stuck",
    "targets": "--target-error: the error level(s) to reach",
}

#: the modules that hold the built-in views (imported by :func:`views`)
BUILTIN_MODULES = ("moebench.sweep.plots", "moebench.sweep.plots_finals",
                   "moebench.sweep.plots_maps", "moebench.sweep.report",
                   "moebench.sweep.report_time", "moebench.sweep.theorem",
                   "moebench.sweep.plots_resources", "moebench.sweep.rates")


@dataclass(frozen=True)
class View:
    """One registered figure or table.

    Attributes
    ----------
    name : str
        The ``--kind`` / ``--table`` choice.
    kind : str
        ``"figure"`` or ``"table"``.
    func : callable
        The function that draws or writes it.
    help : str
        One line for ``--help`` (what the view shows).
    applies : callable or None
        Figures: ``applies(summary) -> bool``, whether ``--kind all`` draws it for these
        results (None: never, e.g. a figure that needs ``--axes``).
    stem : str
        Figures: the default file name (without suffix) under ``RESULTS/figures/``; may
        name inputs in braces (``"curves_{x}"``).
    dpi : int
        Figures: resolution of a PNG file.
    needs : tuple of str
        Inputs of :data:`INPUTS` that must be given (not None) on the command line, with
        the message naming them.
    """

    name: str
    kind: str
    func: Callable[..., Any]
    help: str
    applies: Callable[[Any], bool] | None = None
    stem: str = ""
    dpi: int = 130
    needs: tuple[str, ...] = ()

    @property
    def inputs(self) -> tuple[str, ...]:
        """The :data:`INPUTS` this view's function takes."""
        return tuple(p for p in inspect.signature(self.func).parameters if p in INPUTS)


_VIEWS: dict[str, dict[str, View]] = {kind: {} for kind in KINDS}
_loaded = False


def _register(kind: str, name: str, help: str, **options: Any) -> Callable:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a {kind} view's name must be an identifier (letters, digits, _); "
                         f"got {name!r}")
    if not help:
        raise ValueError(f"the {kind} view {name!r} needs a help text (one line for --help)")

    def decorate(func: Callable) -> Callable:
        params = inspect.signature(func).parameters.values()
        unknown = [p.name for p in params if p.name not in INPUTS
                   and p.default is inspect.Parameter.empty
                   and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if unknown:
            raise ValueError(f"{kind} view {name!r}: parameter(s) {', '.join(unknown)} are not "
                             f"inputs the registry fills and have no default; valid inputs: "
                             f"{', '.join(INPUTS)}")
        bad = [n for n in options.get("needs", ()) if n not in INPUTS]
        if bad:
            raise ValueError(f"{kind} view {name!r}: needs {', '.join(bad)}; valid inputs: "
                             f"{', '.join(INPUTS)}")
        current = _VIEWS[kind].get(name)
        if current is not None and current.func.__qualname__ != func.__qualname__:
            raise ValueError(f"a {kind} view named {name!r} is already registered "
                             f"({current.func.__module__}.{current.func.__qualname__})")
        _VIEWS[kind][name] = View(name, kind, func, help, **options)
        return func

    return decorate


def figure(name: str, *, help: str, applies: Callable[[Any], bool] | None = None,
           stem: str | None = None, dpi: int = 130, needs: tuple[str, ...] = ()) -> Callable:
    """Register a figure under ``name`` (a ``moebench plot --kind`` choice).

    Parameters
    ----------
    name : str
        The choice; an identifier.
    help : str
        What the figure shows, one line (the ``--kind`` help).
    applies : callable, optional
        ``applies(summary) -> bool``: whether ``--kind all`` draws it (default: never).
    stem : str, optional
        Default file name without suffix (default: ``name``); ``{input}`` fields are
        filled from the command line.
    dpi : int
        PNG resolution.
    needs : tuple of str
        Inputs the command line must give (e.g. ``("axes",)``).

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.

    Raises
    ------
    ValueError
        For a name that is not an identifier, an empty help, a parameter that is not in
        :data:`INPUTS` and has no default, or a name taken by another function.
    """
    return _register("figure", name, help, applies=applies, stem=stem or name, dpi=dpi,
                     needs=tuple(needs))


def table(name: str, *, help: str, needs: tuple[str, ...] = ()) -> Callable:
    """Register a Markdown table under ``name`` (a ``moebench report --table`` choice).

    Parameters and errors as :func:`figure` (no ``applies``, ``stem`` or ``dpi``).
    """
    return _register("table", name, help, needs=tuple(needs))


def unregister(kind: str, name: str) -> None:
    """Remove a registered view (tests and notebooks that register their own)."""
    _check_kind(kind)
    _VIEWS[kind].pop(name, None)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown view kind {kind!r}; valid choices: {', '.join(KINDS)}")


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def _rank(view: View) -> int:
    """A built-in view's module's place in :data:`BUILTIN_MODULES`; any other view after."""
    module = view.func.__module__
    return BUILTIN_MODULES.index(module) if module in BUILTIN_MODULES else len(BUILTIN_MODULES)


def views(kind: str) -> dict[str, View]:
    """The registered views of ``kind`` (``"figure"`` or ``"table"``): the built-in ones
    first, module by module in :data:`BUILTIN_MODULES` order (whichever module was imported
    first), each module's and then the other views in registration order."""
    _check_kind(kind)
    _load_builtin()
    return dict(sorted(_VIEWS[kind].items(), key=lambda item: _rank(item[1])))


def get_view(kind: str, name: str) -> View:
    """The view of ``kind`` registered as ``name``; ValueError naming the valid choices."""
    known = views(kind)
    if name not in known:
        option = "--kind" if kind == "figure" else "--table"
        raise ValueError(f"unknown {option} {name!r}; valid choices: {', '.join(known)}")
    return known[name]


def choices_help(kind: str, extra: Mapping[str, str] | None = None) -> str:
    """The ``--kind`` / ``--table`` help: ``name: help`` per view, ``extra`` last (argparse
    %-escaped)."""
    parts = [f"{v.name}: {v.help}" for v in views(kind).values()]
    parts += [f"{name}: {text}" for name, text in (extra or {}).items()]
    return "; ".join(parts).replace("%", "%%")


def call(view: View, inputs: Mapping[str, Any]) -> Any:
    """Draw or write ``view`` with the ``inputs`` it names (the others are not passed).

    Raises
    ------
    ValueError
        When an input of ``view.needs`` is None or empty.
    """
    missing = [n for n in view.needs if inputs.get(n) is None
               or (isinstance(inputs[n], (list, tuple)) and not inputs[n])]
    if missing:
        option = {"tol": "--stuck-tol", "targets": "--target-error"}
        names = " ".join(option.get(n, f"--{n}") for n in missing)
        raise ValueError(f"--{'kind' if view.kind == 'figure' else 'table'} {view.name} needs "
                         f"{names} ({'; '.join(INPUTS[n] for n in missing)})")
    return view.func(**{n: inputs[n] for n in view.inputs if n in inputs})


def file_stem(view: View, inputs: Mapping[str, Any]) -> str:
    """The default file name (without suffix) of a figure view for ``inputs``."""
    return view.stem.format(**{n: inputs.get(n) for n in INPUTS})
