"""Input checks shared by every estimator, generator and command.

Each failure raises ``ValueError`` with a message that names the problem and
what would be valid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg


def check_array(a: Any, name: str, ndim: int, dtype: type = np.float64) -> np.ndarray:
    """Return ``a`` as a finite array of ``ndim`` dimensions.

    A ``numpy.memmap`` of ``dtype`` is returned as it is (no copy: its data stay on disk)
    and checked for NaN/inf row block by row block (:mod:`moebench.chunked`); the error
    then also names the first row block holding one.

    Raises
    ------
    ValueError
        Wrong number of dimensions, an empty array, a non-numeric array, NaN/inf,
        complex values (never silently truncated to their real part) or a masked
        array (the mask is not honoured, so it is refused rather than ignored).
    """
    check_real_input(a, name)
    if isinstance(a, np.memmap) and a.dtype == np.dtype(dtype):
        arr = a  # data on disk: kept a memmap (no copy), visited in row blocks
    else:
        try:
            arr = np.asarray(a, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != ndim:
        shape = "(n_samples, n_features)" if ndim == 2 else "(n_samples,)"
        raise ValueError(
            f"{name} must be {ndim}-dimensional with shape {shape}; got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); at least one sample is needed")
    if isinstance(arr, np.memmap):  # block by block: no full-size temporary
        from moebench.chunked import count_nonfinite

        bad, first = count_nonfinite(arr)
        if bad:
            raise ValueError(
                f"{name} contains {bad} NaN or infinite value(s); only finite values are "
                f"valid (the first in rows {first.start} to {first.stop - 1})"
            )
    elif not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s); only finite values are valid"
        )
    return arr


def check_X_y(X: Any, y: Any, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Validate a design matrix and label vector of the same length."""
    X = check_array(X, "X", 2, dtype)
    y = check_array(y, "y", 1, dtype)
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y have mismatched lengths: X has {X.shape[0]} rows, y has {y.shape[0]} values"
        )
    return X, y


def check_n_experts(k: Any, d: int | None = None, *, require_k_le_d: bool = False) -> int:
    """Validate the number of experts.

    Parameters
    ----------
    k : int
        Number of experts; must be an integer >= 2.
    d : int, optional
        Input dimension, for methods that need ``k <= d``.
    require_k_le_d : bool
        Whether ``k <= d`` is required.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"n_experts must be an integer >= 2; got {k!r}")
    if k < 2:
        raise ValueError(f"n_experts must be >= 2 (a mixture needs at least two experts); got {k}")
    if require_k_le_d and d is not None and k > d:
        raise ValueError(
            f"n_experts = {k} exceeds the input dimension d = {d}; this method needs "
            f"n_experts <= d (linearly independent experts)"
        )
    return int(k)


def check_sigma(sigma: Any, allow_none: bool = True) -> float | None:
    """Validate a noise level: a positive finite float, or None (estimate it)."""
    if sigma is None:
        if allow_none:
            return None
        raise ValueError("sigma must be a positive float; got None")
    if isinstance(sigma, np.ndarray) and sigma.ndim == 0 and sigma.dtype.kind in "iuf":
        sigma = sigma.item()
    if isinstance(sigma, (bool, np.bool_)) or not isinstance(
            sigma, (int, float, np.integer, np.floating)):
        raise ValueError(f"sigma must be a positive real number or None (not a bool or a "
                         f"string); got {sigma!r} of type {type(sigma).__name__}")
    s = float(sigma)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"sigma must be a positive finite float or None; got {sigma!r}")
    return s


def check_choice(value: Any, name: str, choices: tuple | list) -> Any:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(
            f"unknown {name} {value!r}; valid choices are {', '.join(map(repr, choices))}"
        )
    return value


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Check an integer option ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- parameter constraints
# Each estimator class declares the valid values of every constructor parameter once, as
# ``_parameter_constraints = {"n_init": [Interval(int, 1, None)], ...}`` (scikit-learn's
# style). A parameter is valid when it satisfies at least one of its constraints. The same
# declaration is read by ``fit``, by the sweep config checker and by ``check_algorithm``.
# A constraint is a :class:`Constraint` or one of the shorthands of :func:`make_constraint`.


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


# --------------------------------------------------------------------------- input hygiene
#: largest |y| accepted by ``fit``: the tensor method cubes y (S3) and multiplies it by
#: cubic terms of x, and the likelihood squares residuals; 1e100 keeps both far from
#: float64 overflow (~1.8e308)
Y_MAX_ABS = 1e100
#: smallest root-mean-square of y accepted by ``fit`` (cubes of y below ~1e-108 underflow)
Y_MIN_RMS = 1e-100
#: a fit whose sigma_ is below this fraction of rms(y) has collapsed onto the data
SIGMA_COLLAPSE_RTOL = 1e-5
#: a mean log-likelihood more than this many nats per sample below the null model
#: N(0, rms(y)^2) (see :func:`null_log_likelihood`) is absurd
ABSURD_LL_MARGIN = 100.0

LOG_2PI = float(np.log(2.0 * np.pi))


class DegenerateFitError(ValueError):
    """A fit that must not be used as a result, with the reason in its message.

    Raised by :meth:`moebench.MoEEstimator.fit` when there are fewer rows than the
    model has parameters or the data are degenerate (constant labels, identical rows:
    :func:`check_degenerate_data`), both checked before any work, when the fitted noise level
    collapses towards 0 relative to the scale of y (``sigma_ <``
    :data:`SIGMA_COLLAPSE_RTOL` ``* rms(y)``), or when the training log-likelihood is
    absurd (more than :data:`ABSURD_LL_MARGIN` nats per sample below the null model
    N(0, rms(y)^2)). Sweeps record such a run with status ``"degenerate"``.
    A subclass of ValueError, so ``except ValueError`` still catches it.
    """


def check_real_input(a: Any, name: str) -> None:
    """Refuse complex values and masked arrays before any conversion to float.

    ``np.asarray(complex_array, dtype=float)`` keeps only the real part (with a
    warning) and a masked array's mask is dropped by ``np.asarray``: both would fit
    something other than what the user passed.

    Raises
    ------
    ValueError
        ``a`` is a masked array, or holds complex numbers.
    """
    if isinstance(a, np.ma.MaskedArray):
        raise ValueError(
            f"{name} is a masked array; masks are not honoured, so masked arrays are refused: "
            f"drop the masked rows (e.g. {name}[~{name}.mask.any(axis=-1)]) or fill them "
            f"({name}.filled(value)) and pass a plain ndarray"
        )
    dtypes = getattr(a, "dtypes", None)  # a pandas DataFrame (or Series: dtype)
    kinds: list[str] = []
    if dtypes is not None and hasattr(dtypes, "__iter__"):
        kinds = [getattr(t, "kind", "") for t in dtypes]
    elif hasattr(a, "dtype"):
        kinds = [getattr(a.dtype, "kind", "")]
    elif isinstance(a, (list, tuple, complex)):
        try:
            kinds = [np.asarray(a).dtype.kind]
        except (TypeError, ValueError):
            kinds = []
    if "c" in kinds:
        raise ValueError(
            f"{name} has complex values; only real numbers are valid (it is not truncated to "
            f"its real part: pass {name}.real or abs({name}) explicitly if that is meant)"
        )


def rms(a: np.ndarray) -> float:
    """Root mean square of a finite array, without overflow or underflow of the squares.

    BLAS ``nrm2`` (through :func:`scipy.linalg.norm`) scales as it sums, in one pass and
    without a temporary the size of ``a``: this runs on every ``fit``'s X.
    """
    a = np.asarray(a, dtype=float)
    if a.size == 0:
        return 0.0
    return float(scipy.linalg.norm(a.ravel(), check_finite=False)) / float(np.sqrt(a.size))


def power_of_two_scale(a: np.ndarray) -> int:
    """The exponent e with 2**e closest (in log) to rms(a); 0 for unit-scale data.

    Dividing by 2**e (``np.ldexp(a, -e)``) is exact in floating point, so data whose
    rms lies in [2**-0.5, 2**0.5) is left untouched bit for bit.
    """
    r = rms(a)
    if r == 0.0:
        return 0
    return int(np.round(np.log2(r)))


#: X (after the power-of-two rescale) whose rms is off 1 by more than this is always
#: divided by its rms by ``fit`` (:func:`input_scale`); the fit is mapped back to X's units
INPUT_RMS_TOL = 0.1
#: ... and X whose rms is off 1 by more than this many standard deviations of the rms of
#: n d standard normal values (1 / sqrt(2 n d)) too: only an X whose scale is 1 as far as
#: its own sampling noise can tell is used as given (see :func:`input_scale`)
INPUT_RMS_NOISE_SDS = 10.0


def input_scale(x_rms: float, n_values: int) -> float:
    """What ``fit`` divides X by after the power of two: its rms, or 1 when that is 1 up
    to noise.

    :meth:`moebench.MoEEstimator.fit` divides X by the power of two nearest its rms
    (exact), so ``x_rms`` lies in [2**-0.5, 2**0.5), then by this. An X whose rms is
    1 within its sampling noise (``|x_rms - 1| <=`` :data:`INPUT_RMS_NOISE_SDS` ``/
    sqrt(2 n_values)``, never more than :data:`INPUT_RMS_TOL`) is used as given, bit for
    bit (every committed result); any other is divided by its rms, so that every
    algorithm works in standardised coordinates (random starts, ridges, step sizes and
    tensor_em's moments, which assume E[x x^T] = I, defined there) and scaling X by
    c > 0 scales the experts by 1/c up to rounding. The band where X is used as given
    is the sampling noise of the rms itself (0.009 for n d = 6e5), so the fit is
    continuous up to noise at its edge; tensor_em's former fixed band of +-0.1 made a
    cliff (an X of rms 1.08 was used as given, its moments 17% off, one of rms 1.12 was
    standardised).

    Parameters
    ----------
    x_rms : float
        The rms of X (after the power-of-two rescale).
    n_values : int
        The number of entries of X, n d.

    Returns
    -------
    float
        The divisor (1.0: X as given).
    """
    if x_rms <= 0.0:
        return 1.0
    tol = min(INPUT_RMS_TOL, INPUT_RMS_NOISE_SDS / math.sqrt(2.0 * max(n_values, 1)))
    return 1.0 if abs(x_rms - 1.0) <= tol else float(x_rms)


def check_scales(X: np.ndarray, y: np.ndarray) -> None:
    """Refuse an identically-zero X or y and a y whose magnitude is outside the float range.

    X of any (nonzero) scale is accepted: ``fit`` rescales it by a power of two.
    y is not rescaled (nonlinear experts are not equivariant in y's scale), so its
    magnitude must lie in [:data:`Y_MIN_RMS`, :data:`Y_MAX_ABS`].
    """
    if not np.any(X):
        raise ValueError("X is identically 0; the experts and the gating are not identifiable")
    if not np.any(y):
        raise ValueError("y is identically 0 (noiseless and constant): there is nothing to fit "
                         "and the likelihood is unbounded")
    top, r = float(np.max(np.abs(y))), rms(y)
    if top > Y_MAX_ABS or r < Y_MIN_RMS:
        raise ValueError(
            f"y has scale rms(y) = {r:.3g} (max |y| = {top:.3g}), outside the supported range "
            f"[{Y_MIN_RMS:g}, {Y_MAX_ABS:g}]: its cube (label transform S3) and squared residuals "
            f"would overflow or underflow float64; rescale y, e.g. y / y.std()"
        )


def n_parameters(n_features: int, n_experts: int, estimate_sigma: bool = True) -> int:
    """Free parameters of a mixture of experts: k d experts, (k - 1) d gating, sigma.

    The gating's last row is fixed at 0 (only row differences are identifiable);
    sigma counts when it is estimated.
    """
    return n_experts * n_features + (n_experts - 1) * n_features + int(estimate_sigma)


#: rows compared per block by :func:`check_degenerate_data` (it stops at the first
#: block that differs: one block for ordinary data)
DEGENERATE_CHECK_ROWS = 65_536


def _all_rows_equal(a: np.ndarray) -> bool:
    """Whether every row of ``a`` (n, ...) equals its first, compared block by block."""
    first = np.asarray(a[0])
    for start in range(0, a.shape[0], DEGENERATE_CHECK_ROWS):
        if not np.array_equal(np.asarray(a[start:start + DEGENERATE_CHECK_ROWS]),
                              np.broadcast_to(first, (min(DEGENERATE_CHECK_ROWS,
                                                          a.shape[0] - start), *first.shape))):
            return False
    return True


def check_degenerate_data(X: np.ndarray, y: np.ndarray, who: str = "this estimator") -> None:
    """Refuse data no mixture can be fitted to, before any work (:class:`DegenerateFitError`).

    The one rule every registered algorithm applies (``fit`` calls it after the
    checks of shapes, values and scales):

    - zero-variance labels (every ``y`` equal): nothing for the experts to explain, and
      the likelihood is unbounded as sigma goes to 0;
    - all rows of ``X`` identical: the inputs carry no information on the experts or the
      gating (only their value at that one point), so no parameter is identifiable.

    Raises
    ------
    DegenerateFitError
        Naming what is degenerate and what would be needed.
    """
    n = X.shape[0]
    if n >= 2 and _all_rows_equal(np.asarray(y).reshape(n, 1)):
        raise constant_labels_error(who, n, float(y[0]))
    if n >= 2 and _all_rows_equal(X):
        raise identical_rows_error(who, n)


def constant_labels_error(who: str, n: int, value: float) -> DegenerateFitError:
    """The error of :func:`check_degenerate_data` for zero-variance labels."""
    return DegenerateFitError(
        f"{who} cannot fit this data: y is constant (all {n} labels equal {value:.6g}, zero "
        f"variance), so there is nothing for the experts to explain and the likelihood is "
        f"unbounded as sigma goes to 0; give labels that vary")


def identical_rows_error(who: str, n: int) -> DegenerateFitError:
    """The error of :func:`check_degenerate_data` for an X whose rows are all the same."""
    return DegenerateFitError(
        f"{who} cannot fit this data: every row of X is the same (all {n} rows equal the "
        f"first, zero variance in every column), so neither the experts nor the gating are "
        f"identifiable; give inputs that vary")


def check_min_samples(n: int, d: int, k: int, estimate_sigma: bool = True,
                      who: str = "this estimator") -> None:
    """Refuse fewer rows than parameters, before any work (:class:`DegenerateFitError`)."""
    p = n_parameters(d, k, estimate_sigma)
    if n < p:
        raise DegenerateFitError(
            f"{who} needs at least n = {p} rows (the number of parameters: k d = {k * d} "
            f"experts + (k - 1) d = {(k - 1) * d} gating + {int(estimate_sigma)} sigma, "
            f"for k = {k}, d = {d}); got n = {n}: with fewer rows than parameters the fit "
            f"interpolates the data and its sigma collapses"
        )


def null_log_likelihood(y: np.ndarray, scale: float | None = None) -> float:
    """Mean log-density of ``y`` under N(0, scale^2); ``scale`` defaults to rms(y).

    The reference of :func:`check_log_likelihood`: a model that predicts 0 with the
    data's own spread, attainable by every linear mixture (all experts 0).
    """
    y = np.asarray(y, dtype=float)
    s = rms(y) if scale is None else float(scale)
    return float(-0.5 * np.mean(np.square(y / s)) - np.log(s) - 0.5 * LOG_2PI)


def absurd_log_likelihood(log_likelihood: float, y: np.ndarray,
                          scale: float | None = None) -> str | None:
    """Why a mean log-likelihood on ``y`` is absurd, or None when it is plausible.

    Absurd: not finite, or more than :data:`ABSURD_LL_MARGIN` nats per sample below
    :func:`null_log_likelihood` (``scale``: the rms of the training labels; default
    rms(y)), i.e. residuals of order 14 times the labels' own scale.
    """
    ll = float(log_likelihood)
    null = null_log_likelihood(y, scale)
    if not np.isfinite(ll):
        return f"the mean log-likelihood is {ll}"
    if ll < null - ABSURD_LL_MARGIN:
        return (f"the mean log-likelihood {ll:.4g} is more than {ABSURD_LL_MARGIN:g} nats per "
                f"sample below {null:.4g}, that of the null model N(0, rms(y)^2)")
    return None


def feature_names(X: Any) -> np.ndarray | None:
    """Column names of a DataFrame-like ``X`` when all are strings (scikit-learn's rule).

    Columns that are all non-strings (a frame's default 0, 1, ...) carry no names.

    Raises
    ------
    ValueError
        Some column names are strings and some are not (scikit-learn refuses them too):
        the columns could be neither matched by name nor trusted by position.
    """
    columns = getattr(X, "columns", None)
    if columns is None or getattr(X, "ndim", 2) != 2:
        return None
    names = [c for c in columns]
    strings = [isinstance(c, str) for c in names]
    if any(strings) and not all(strings):
        kinds = sorted({type(c).__name__ for c in names})
        raise ValueError(
            f"X has column names of mixed types ({', '.join(kinds)}): feature names are "
            f"supported only when every column name is a string; convert them all, e.g. "
            f"X.columns = X.columns.astype(str), or none (a plain array)")
    if not names or not all(strings):
        return None
    return np.asarray(names, dtype=object)


def check_feature_names(fitted: np.ndarray | None, X: Any) -> None:
    """Check that a DataFrame ``X`` has the columns seen at fit, in the same order.

    Nothing is checked when the fit saw no names or ``X`` carries none (a plain array
    is taken positionally). Columns are never reordered silently: a model's parameters
    are positional, so a reordered frame is refused, as scikit-learn does.

    Raises
    ------
    ValueError
        Naming the missing, unexpected or reordered columns.
    """
    names = feature_names(X)
    if fitted is None or names is None:
        return
    fitted_list, given = [str(c) for c in fitted], [str(c) for c in names]
    if fitted_list == given:
        return
    missing = [c for c in fitted_list if c not in given]
    extra = [c for c in given if c not in fitted_list]
    parts = []
    if missing:
        parts.append(f"missing column(s) {', '.join(map(repr, missing))}")
    if extra:
        parts.append(f"unexpected column(s) {', '.join(map(repr, extra))}")
    if not parts:
        parts.append(f"columns reordered: got {given}")
    raise ValueError(
        f"X has different feature names than at fit: {'; '.join(parts)}; expected the columns "
        f"{fitted_list} in this order (select them with X[{fitted_list}])"
    )
