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

import argparse
import math
import re
from collections.abc import Callable
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
    """One of a fixed set of values (compared by type and value: ``True`` is not ``1``).

    Parameters
    ----------
    options : iterable or callable
        The valid values, or a function returning them (a registry's current names, read
        at each check, so that names registered later are valid too).
    """

    def __init__(self, options: Any) -> None:
        self._options = options if callable(options) else tuple(options)

    @property
    def options(self) -> tuple[Any, ...]:
        """The valid values (for a registry: its names now)."""
        return tuple(self._options()) if callable(self._options) else self._options

    def is_satisfied_by(self, value: Any) -> bool:
        return any(type(value) is type(o) and value == o for o in self.options)

    def __str__(self) -> str:
        return f"one of {', '.join(map(repr, self.options))}"

    def valid_examples(self) -> list[Any]:
        return list(self.options)

    def invalid_examples(self) -> list[Any]:
        strings = [o for o in self.options if isinstance(o, str)]
        return [(strings[0] + "_typo") if strings else "no_such_option", 3.5]


class ListOf(Constraint):
    """A list of at least ``min_items`` (and at most ``max_items``) values, each valid
    under ``item``.

    Parameters
    ----------
    item : constraint
        Every element's constraint (any declaration entry of :func:`make_constraint`).
    min_items : int
        The fewest elements accepted (1: a non-empty list).
    max_items : int or None
        The most elements accepted (None: no limit).
    """

    def __init__(self, item: Any, min_items: int = 1, max_items: int | None = None) -> None:
        self.item = make_constraint(item)
        self.min_items = min_items
        self.max_items = max_items

    def is_satisfied_by(self, value: Any) -> bool:
        return (isinstance(value, list) and len(value) >= self.min_items
                and (self.max_items is None or len(value) <= self.max_items)
                and all(self.item.is_satisfied_by(v) for v in value))

    def __str__(self) -> str:
        if self.max_items is not None:
            size = (f"a list of {self.max_items}" if self.max_items == self.min_items
                    else f"a list of {self.min_items} to {self.max_items}")
        else:
            size = "a non-empty list" if self.min_items == 1 else (
                "a list" if self.min_items == 0 else f"a list of at least {self.min_items}")
        return f"{size}, each {self.item}"

    def valid_examples(self) -> list[Any]:
        inside = self.item.valid_examples()
        return [inside[:1] * max(1, self.min_items)] if inside else []

    def invalid_examples(self) -> list[Any]:
        outside = self.item.invalid_examples()
        return ([[]] if self.min_items else []) + ([outside[:1]] if outside else []) + ["x"]


class Matches(Constraint):
    """A string that matches a regular expression in full, described in words.

    Parameters
    ----------
    pattern : str or re.Pattern
        The expression (``fullmatch``).
    description : str
        What a valid string is, for messages (e.g. ``"a plain name ..."``).
    """

    def __init__(self, pattern: str | re.Pattern[str], description: str) -> None:
        self.pattern = re.compile(pattern)
        self.description = description

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and self.pattern.fullmatch(value) is not None

    def __str__(self) -> str:
        return self.description

    def invalid_examples(self) -> list[Any]:
        return [3]


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


# --------------------------------------------------------------------------- command line
def argparse_type(spec: Any) -> Callable[[str], Any]:
    """An argparse ``type=`` callable that checks a value against a declared constraint.

    The command line then refuses a bad value with the constraint's own words, the ones a
    config key or an estimator option with the same constraint gives: ``argument --jobs:
    must be an integer >= 1; got 0`` (the config: ``repetitions must be an integer >= 1;
    got 0``).

    Parameters
    ----------
    spec : constraint
        A declaration entry (:func:`make_constraint`): an :class:`Interval` parses the text
        as its kind (``int`` or ``float``), any other constraint checks the text itself.

    Returns
    -------
    callable
        ``parse(text)``: the value, or :class:`argparse.ArgumentTypeError`.
    """
    constraint = make_constraint(spec)

    def parse(text: str) -> Any:
        value: Any = text
        if isinstance(constraint, Interval):
            try:
                value = constraint.kind(text)
            except ValueError:  # not a number of that kind: the text is what was given
                raise argparse.ArgumentTypeError(f"must be {constraint}; got {text!r}") from None
        if not constraint.is_satisfied_by(value):  # the number read; the text if it overflowed
            shown = text if isinstance(value, float) and not math.isfinite(value) else value
            raise argparse.ArgumentTypeError(f"must be {constraint}; got {shown!r}")
        return value

    parse.__name__ = str(constraint)
    return parse
