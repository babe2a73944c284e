"""The scikit-learn parameter protocol of every estimator, and its declared constraints.

:class:`ParamsMixin` gives ``get_params``/``set_params``/``repr`` from the constructor's
signature (as scikit-learn's ``BaseEstimator``) and checks parameter values against the
class's ``_parameter_constraints`` (merged along the class hierarchy; the constraint types
live in :mod:`moebench.validation`). :class:`moebench.base.MoEEstimator` inherits it.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from moebench.constraints import validate_params


class ParamsMixin:
    """Constructor parameters as the scikit-learn protocol reads and checks them.

    A subclass stores every constructor argument unchanged under its own name and declares
    the valid values of its own parameters in ``_parameter_constraints``.
    """

    #: valid values of each constructor parameter (scikit-learn style): name -> list of
    #: constraints (see :mod:`moebench.validation`), any one of which makes a value valid.
    #: Declarations merge along the class hierarchy: a subclass declares its own options.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self" and
                sig.parameters[p].kind not in (inspect.Parameter.VAR_KEYWORD,
                                               inspect.Parameter.VAR_POSITIONAL)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters as a dict (the scikit-learn protocol).

        Parameters
        ----------
        deep : bool
            Also return the parameters of parameter values that are estimators
            themselves (anything with ``get_params``), as ``<name>__<parameter>``.

        Returns
        -------
        dict
            Parameter name -> the value stored by the constructor or ``set_params``.
        """
        out: dict[str, Any] = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{key}", val) for key, val in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params: Any) -> ParamsMixin:
        """Set constructor parameters (``<name>__<parameter>`` reaches a nested estimator).

        Values are stored unchanged and checked by ``fit``.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For a name that is not a constructor parameter; the message lists the valid ones.
        """
        valid = self._get_param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"unknown parameter {name!r} for {type(self).__name__}; "
                    f"valid: {', '.join(valid)}"
                )
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            inner = getattr(self, name)
            if not hasattr(inner, "set_params"):
                raise ValueError(
                    f"parameter {name!r} of {type(self).__name__} is {inner!r}, which has no "
                    f"parameters to set ({', '.join(sorted(sub_params))})"
                )
            inner.set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({args})"

    # -- declarations -----------------------------------------------------
    @classmethod
    def parameter_constraints(cls) -> dict[str, list[Any]]:
        """Declared valid values of each constructor parameter (merged along the MRO)."""
        merged: dict[str, list[Any]] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("_parameter_constraints", {}))
        return {name: merged[name] for name in cls._get_param_names() if name in merged}

    @classmethod
    def undeclared_parameters(cls) -> list[str]:
        """Constructor parameters without a declaration (``check_algorithm`` refuses them)."""
        declared = cls.parameter_constraints()
        return [name for name in cls._get_param_names() if name not in declared]

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Check constructor parameter values against the class's declaration.

        Parameters
        ----------
        params : dict
            Some or all constructor parameters. Undeclared ones are not checked.

        Raises
        ------
        ValueError
            For an unknown name, or a value outside the declared valid values; the
            message names the parameter, the value and the valid values.
        """
        owner = getattr(cls, "name", "") or cls.__name__
        valid = cls._get_param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for "
                             f"{owner}; valid: {', '.join(valid)}")
        constraints = cls.parameter_constraints()
        validate_params(constraints, {k: v for k, v in params.items() if k in constraints},
                        owner)
