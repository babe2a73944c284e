"""Declared constraints: the valid values of estimator options and sweep config keys.

Each estimator class declares the valid values of every constructor parameter once, as
``_parameter_constraints = {"n_init": [Interval(int, 1, None)], ...}`` (scikit-learn's
style), and :mod:`moebench.sweep.config_keys` declares every sweep config key with the
same types. A value is valid when it satisfies at least one of its constraints. The same
declarations are read by ``fit``, by the sweep config checker, by ``check_algorithm``,
by the docs and by the command line (:func:`argparse_type`), so a bad value reads the
same wherever it is given. A constraint is a :class:`Constraint` or one of the
shorthands of :func:`make_constraint`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moebench.validation import check_choice


class Constraint:
    """A set of valid values of one parameter, with a description for error messages."""

    def is_satisfied_by(self, value: Any) -> bool:
        """Whether ``value`` is valid under this constraint."""
        raise NotImplementedError

    def __str__(self) -> str:
        raise NotImplementedError

    def valid_examples(self) -> list[Any]:
        """A few values this constraint accepts (used by ``check_algorithm``)."""
        return []

    def invalid_examples(self) -> list[Any]:
        """Values just outside this constraint (boundaries, wrong types)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self})"


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


class Interval(Constraint):
    """Integers or finite real numbers in an interval; never a bool, NaN or inf.

    Parameters
    ----------
    kind : int or float
        ``int`` accepts Python and numpy integers; ``float`` accepts any finite real
        number (integers included).
    left, right : number or None
        Bounds; None leaves that side unbounded (``right`` defaults to None).
    closed : {"both", "left", "right", "neither"}
        Which of the given bounds belong to the interval.
    """

    def __init__(self, kind: type, left: float | None, right: float | None = None,
                 closed: str = "both") -> None:
        if kind not in (int, float):
            raise ValueError(f"Interval kind must be int or float; got {kind!r}")
        check_choice(closed, "closed", ("both", "left", "right", "neither"))
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def _type_ok(self, value: Any) -> bool:
        if _is_bool(value):
            return False
        types: tuple[type, ...] = (int, np.integer) if self.kind is int else \
            (int, float, np.integer, np.floating)
        return isinstance(value, types) and bool(np.isfinite(float(value)))

    def is_satisfied_by(self, value: Any) -> bool:
        if not self._type_ok(value):
            return False
        left_closed = self.closed in ("both", "left")
        right_closed = self.closed in ("both", "right")
        if self.left is not None and (value < self.left or (value == self.left
                                                           and not left_closed)):
            return False
        return not (self.right is not None and (value > self.right or (value == self.right
                                                                      and not right_closed)))

    def __str__(self) -> str:
        what = "an integer" if self.kind is int else "a finite real number"
        lc, rc = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.left is not None and self.right is not None:
            lb, rb = "[" if lc else "(", "]" if rc else ")"
            return f"{what} in {lb}{self.left:g}, {self.right:g}{rb}"
        if self.left is not None:
            return f"{what} {'>=' if lc else '>'} {self.left:g}"
        if self.right is not None:
            return f"{what} {'<=' if rc else '<'} {self.right:g}"
        return what

    def valid_examples(self) -> list[Any]:
        lo = self.left if self.left is not None else (self.right if self.right is not None
                                                      else 0)
        step = 1 if self.kind is int else 0.5
        candidates = [lo, lo + step, lo - step, lo + 2 * step]
        if self.kind is int:
            candidates = [int(c) for c in candidates]
        return [c for c in candidates if self.is_satisfied_by(c)][:2]

    def invalid_examples(self) -> list[Any]:
        out: list[Any] = []
        if self.left is not None:
            out += [self.left - 1, self.left] if self.kind is int else \
                [self.left - 1.0, float(self.left)]
        if self.right is not None:
            out += [self.right + 1, self.right]
        if self.kind is int:
            inside = self.valid_examples()
            out += [inside[0] + 0.5] if inside else []
        out += [True, float("nan"), float("inf"), "1"]
        return [v for v in out if not self.is_satisfied_by(v)]


class Options(Constraint):
    """One of a fixed set of values (compared by type and value: ``True`` is not ``1``)."""

    def __init__(self, options: Any) -> None:
        self.options = tuple(options)

    def is_satisfied_by(self, value: Any) -> bool:
        return any(type(value) is type(o) and value == o for o in self.options)

    def __str__(self) -> str:
        return f"one of {', '.join(map(repr, self.options))}"

    def valid_examples(self) -> list[Any]:
        return list(self.options)

    def invalid_examples(self) -> list[Any]:
        strings = [o for o in self.options if isinstance(o, str)]
        return [(strings[0] + "_typo") if strings else "no_such_option", 3.5]


class _Boolean(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return _is_bool(value)

    def __str__(self) -> str:
        return "True or False"

    def valid_examples(self) -> list[Any]:
        return [True, False]

    def invalid_examples(self) -> list[Any]:
        return ["yes", 1, 0.0]


class _NoneConstraint(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"

    def valid_examples(self) -> list[Any]:
        return [None]

    def invalid_examples(self) -> list[Any]:
        return ["None"]


class _CallableConstraint(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return callable(value) and not isinstance(value, type)

    def __str__(self) -> str:
        return "a callable"

    def valid_examples(self) -> list[Any]:
        return [np.tanh]

    def invalid_examples(self) -> list[Any]:
        return [3.5]


class InstanceOf(Constraint):
    """An instance of a type (described as ``description``)."""

    def __init__(self, kind: type, description: str | None = None) -> None:
        self.kind = kind
        self.description = description or f"an instance of {kind.__name__}"

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, self.kind)

    def __str__(self) -> str:
        return self.description


class ActivationName(Constraint):
    """The name of a registered activation, an ``Activation`` or a callable g."""

    def is_satisfied_by(self, value: Any) -> bool:
        from moebench.activations import Activation, available_activations

        if isinstance(value, str):
            return value in available_activations()
        return isinstance(value, Activation) or (callable(value) and not isinstance(value, type))

    def __str__(self) -> str:
        from moebench.activations import available_activations

        return (f"one of {', '.join(map(repr, available_activations()))}, an Activation or a "
                "callable")

    def valid_examples(self) -> list[Any]:
        return ["linear"]

    def invalid_examples(self) -> list[Any]:
        return ["no_such_activation", 3]


class RandomState(Constraint):
    """None, an integer >= 0, a numpy ``SeedSequence`` or ``Generator``."""

    def is_satisfied_by(self, value: Any) -> bool:
        if value is None or isinstance(value, (np.random.SeedSequence, np.random.Generator)):
            return True
        return Interval(int, 0, None).is_satisfied_by(value)

    def __str__(self) -> str:
        return "None, an integer >= 0, a numpy SeedSequence or Generator"

    def valid_examples(self) -> list[Any]:
        return [None, 0, np.random.SeedSequence(0)]

    def invalid_examples(self) -> list[Any]:
        return [-1, 1.5, True, "0"]


class _NoValidation(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return True

    def __str__(self) -> str:
        return "anything"


#: shorthand constraints accepted in ``_parameter_constraints``
SHORTHANDS: dict[Any, Constraint] = {
    "boolean": _Boolean(),
    "activation": ActivationName(),
    "random_state": RandomState(),
    "no_validation": _NoValidation(),
}


def make_constraint(spec: Any) -> Constraint:
    """The :class:`Constraint` for a declaration entry.

    Parameters
    ----------
    spec : Constraint, None, callable, type or str
        A constraint object; ``None`` (the value None); the builtin ``callable`` (any
        callable); a type (its instances); or one of the strings "boolean",
        "activation", "random_state", "no_validation".
    """
    if isinstance(spec, Constraint):
        return spec
    if spec is None:
        return _NoneConstraint()
    if spec is callable:
        return _CallableConstraint()
    if isinstance(spec, str) and spec in SHORTHANDS:
        return SHORTHANDS[spec]
    if isinstance(spec, type):
        return InstanceOf(spec)
    raise ValueError(
        f"unknown parameter constraint {spec!r}; valid: a Constraint (Interval, Options, ...), "
        f"None, callable, a type or one of {', '.join(map(repr, SHORTHANDS))}"
    )


def describe_constraints(constraints: list[Any]) -> str:
    """``"an integer >= 1 or None"``: the valid values of a declaration, in words."""
    parts = [str(make_constraint(c)) for c in constraints]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def validate_parameter(name: str, value: Any, constraints: list[Any]) -> Any:
    """Check one parameter against its declared constraints; return it unchanged.

    Raises
    ------
    ValueError
        ``"<name> must be <valid values>; got <value>"`` (for a set of options alone:
        ``"unknown <name> <value>; valid choices are ..."``).
    """
    cons = [make_constraint(c) for c in constraints]
    if any(c.is_satisfied_by(value) for c in cons):
        return value
    if len(cons) == 1 and isinstance(cons[0], Options):
        check_choice(value, name, cons[0].options)
    raise ValueError(f"{name} must be {describe_constraints(constraints)}; got {value!r}")


def validate_params(constraints: dict[str, list[Any]], params: dict[str, Any],
                    owner: str = "") -> None:
    """Check every entry of ``params`` against ``constraints`` (name -> list of constraints).

    Parameters
    ----------
    constraints : dict
        The declaration, e.g. an estimator's ``parameter_constraints()``.
    params : dict
        Parameter values; a name absent from ``constraints`` raises.
    owner : str
        Named in the message about an unknown parameter (e.g. the algorithm).

    Raises
    ------
    ValueError
        Naming the first invalid parameter, its value and the valid values.
    """
    for name, value in params.items():
        if name not in constraints:
            where = f" for {owner}" if owner else ""
            raise ValueError(f"unknown parameter {name!r}{where}; valid: "
                             f"{', '.join(constraints)}")
        validate_parameter(name, value, constraints[name])
