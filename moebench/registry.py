"""The algorithm registry.

Algorithms register with the :func:`register` decorator. The built-in
``tensor_em``, every module of the in-repo ``baselines/`` folder (installed as
``moebench.baselines``) and third-party packages declaring an entry point in the
group ``moebench.algorithms`` are loaded the first time the registry is asked.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from moebench.base import MoEEstimator

ENTRY_POINT_GROUP = "moebench.algorithms"
BUILTIN_MODULES = ("moebench.tensor.estimator", "moebench.reference", "moebench.oracle",
                   "moebench.least_squares")

_REGISTRY: dict[str, type[MoEEstimator]] = {}
_loaded = False


def register(name: str, description: str | None = None) -> Callable[[type], type]:
    """Class decorator that registers an estimator under ``name``.

    Parameters
    ----------
    name : str
        The name used by :func:`get_algorithm`, configs and the CLI.
    description : str, optional
        One line for ``moebench list`` (defaults to the class attribute).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"algorithm name must be an identifier-like string; got {name!r}")

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, MoEEstimator)):
            raise ValueError(f"{cls!r} must subclass moebench.base.MoEEstimator to be registered")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"algorithm name {name!r} is already registered by {existing!r}")
        cls.name = name
        if description is not None:
            cls.description = description
        _REGISTRY[name] = cls
        return cls

    return decorator


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    # the algorithms sit above the registry (they register into it): loaded by name, as
    # plugins are, so that the registry imports none of them
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    baselines = importlib.import_module("moebench.baselines")
    for info in pkgutil.iter_modules(baselines.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"moebench.baselines.{info.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the registry
            warnings.warn(f"moebench: could not load algorithm plugin {ep.name!r}: {exc}",
                          stacklevel=2)
            continue
        if isinstance(obj, type) and issubclass(obj, MoEEstimator) and ep.name not in _REGISTRY:
            register(ep.name)(obj)


def is_reference(algorithm: str | type) -> bool:
    """Whether a registered name or class is a reference model, not a mixture.

    A reference (such as ``linear_regression``, k = 1) sets the class attribute
    ``reference = True``: it is left out of :func:`available_algorithms` and added
    by the sweep config checker to every real-data sweep.
    """
    cls = algorithm_class(algorithm) if isinstance(algorithm, str) else algorithm
    return bool(cls.reference)


def available_algorithms(references: bool = False, oracles: bool = False) -> list[str]:
    """Sorted names of every registered mixture algorithm (and references, oracles if asked).

    Parameters
    ----------
    references : bool
        Also list the reference models (see :func:`reference_algorithms`).
    oracles : bool
        Also list the oracles (``needs_truth = True``, e.g. ``oracle_gating_em``): they
        fit only with the true parameters, so the checks over every algorithm that fit
        without them (scikit-learn's, user activations) leave them out.
    """
    _load_all()
    return sorted(name for name, cls in _REGISTRY.items()
                  if (references or not cls.reference) and (oracles or not cls.needs_truth))


def oracle_algorithms() -> list[str]:
    """Sorted names of the registered oracles (``needs_truth = True``)."""
    _load_all()
    return sorted(name for name, cls in _REGISTRY.items() if cls.needs_truth)


def reference_algorithms() -> list[str]:
    """Sorted names of the registered reference models (``reference = True``)."""
    _load_all()
    return sorted(name for name, cls in _REGISTRY.items() if cls.reference)


def algorithm_class(name: str) -> type[MoEEstimator]:
    """The estimator class registered under ``name``."""
    _load_all()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown algorithm {name!r}; valid choices are {', '.join(sorted(_REGISTRY))}"
        ) from None


def get_algorithm(name: str, **params: Any) -> MoEEstimator:
    """An unfitted estimator of algorithm ``name`` with the given parameters.

    Raises
    ------
    ValueError
        For an unknown algorithm or parameter.
    """
    cls = algorithm_class(name)
    valid = cls._get_param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for algorithm {name!r}; valid: "
            f"{', '.join(valid)}"
        )
    return cls(**params)


def algorithm_descriptions(references: bool = False) -> dict[str, str]:
    """Name -> one-line description for every registered algorithm (references if asked)."""
    return {name: _REGISTRY[name].description for name in available_algorithms(references)}
