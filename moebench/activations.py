"""Expert activations g: the built-in ones and user callables.

An :class:`Activation` bundles the function, its first derivative (exact, or a
central difference when the user gives none), the points where it is not
smooth (used to split quadrature), and an optional torch version for the
gradient-based baselines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

ArrayFn = Callable[[np.ndarray], np.ndarray]

LEAKY_SLOPE = 0.1


@dataclass(frozen=True)
class Activation:
    """An expert activation g.

    Parameters
    ----------
    name : str
        Identifier (``"linear"``, ``"relu"``, ... or the callable's name).
    func : callable
        Vectorised numpy function g(t).
    derivative : callable
        Vectorised g'(t).
    description : str
        One line for ``moebench list``.
    kinks : tuple of float
        Points where g is not differentiable (quadrature is split there).
    torch_func : callable or None
        The same function on torch tensors (autograd-differentiable). ``None``
        means: wrap ``func``/``derivative`` in an autograd function.
    """

    name: str
    func: ArrayFn
    derivative: ArrayFn
    description: str = ""
    kinks: tuple[float, ...] = ()
    torch_func: Callable | None = field(default=None, compare=False)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return self.func(t)

    @property
    def is_linear(self) -> bool:
        """True for the identity activation (closed-form paths apply)."""
        return self.name == "linear"


def _sigmoid(t: np.ndarray) -> np.ndarray:
    # scipy's expit is the numerically stable logistic (and several times faster than
    # a masked numpy version): it is on the hot path of every EM iteration.
    return expit(np.asarray(t, dtype=float))


def _sigmoid_deriv(t: np.ndarray) -> np.ndarray:
    s = _sigmoid(t)
    return s * (1.0 - s)


def _torch_builtin(name: str) -> Callable:
    def f(t):
        import torch

        if name == "linear":
            return t
        if name == "sigmoid":
            return torch.sigmoid(t)
        if name == "relu":
            return torch.relu(t)
        if name == "tanh":
            return torch.tanh(t)
        if name == "leaky_relu":
            return torch.nn.functional.leaky_relu(t, LEAKY_SLOPE)
        raise AssertionError(name)

    return f


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation(
            "linear",
            lambda t: np.asarray(t, dtype=float),
            lambda t: np.ones_like(np.asarray(t, dtype=float)),
            "g(t) = t: mixture of linear regressions",
            torch_func=_torch_builtin("linear"),
        ),
        Activation(
            "sigmoid",
            _sigmoid,
            _sigmoid_deriv,
            "g(t) = 1 / (1 + exp(-t)): logistic experts",
            torch_func=_torch_builtin("sigmoid"),
        ),
        Activation(
            "relu",
            lambda t: np.maximum(np.asarray(t, dtype=float), 0.0),
            lambda t: (np.asarray(t) > 0).astype(float),
            "g(t) = max(t, 0): rectified linear experts (kink at 0)",
            kinks=(0.0,),
            torch_func=_torch_builtin("relu"),
        ),
        Activation(
            "tanh",
            lambda t: np.tanh(np.asarray(t, dtype=float)),
            lambda t: 1.0 - np.tanh(np.asarray(t, dtype=float)) ** 2,
            "g(t) = tanh(t): odd saturating experts",
            torch_func=_torch_builtin("tanh"),
        ),
        Activation(
            "leaky_relu",
            lambda t: np.where(np.asarray(t) > 0, t, LEAKY_SLOPE * np.asarray(t, dtype=float)),
            lambda t: np.where(np.asarray(t) > 0, 1.0, LEAKY_SLOPE),
            f"g(t) = max(t, {LEAKY_SLOPE} t): leaky rectified experts (kink at 0)",
            kinks=(0.0,),
            torch_func=_torch_builtin("leaky_relu"),
        ),
    )
}


def available_activations() -> list[str]:
    """Names of the built-in activations."""
    return list(ACTIVATIONS)


def numerical_derivative(func: ArrayFn, step: float = 1e-6) -> ArrayFn:
    """Central-difference derivative of a vectorised function."""

    def deriv(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        h = step * np.maximum(1.0, np.abs(t))
        return (func(t + h) - func(t - h)) / (2.0 * h)

    return deriv


def checked_callable(func: Callable, name: str, what: str = "activation") -> ArrayFn:
    """Wrap a user function g (or g') so that every call checks its output.

    The output must be numeric, have the shape of the input (g is applied elementwise)
    and be finite wherever the input is; otherwise a ValueError names the activation,
    instead of a broadcast error, a torch RuntimeError or a diverged fit later on.
    """

    def call(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        raw = func(t)
        try:
            out = np.asarray(raw, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} of {name!r} returned a non-numeric value: {exc}") from None
        if out.shape != t.shape:
            raise ValueError(
                f"{what} of {name!r} returned shape {out.shape} for an input of shape "
                f"{t.shape}; it must be vectorised and elementwise (output shape = input shape)"
            )
        finite = np.isfinite(out)
        if not finite.all():
            bad = ~finite & np.isfinite(t)
            if bad.any():
                first = float(t[bad].flat[0])
                raise ValueError(
                    f"{what} of {name!r} returned NaN or inf for {int(bad.sum())} of {t.size} "
                    f"finite inputs (e.g. at t = {first:.6g}: {float(out[bad].flat[0])}); it "
                    f"must be finite wherever its input is finite"
                )
        return out

    return call


def get_activation(
    activation: str | Activation | Callable,
    derivative: ArrayFn | None = None,
    kinks: tuple[float, ...] = (),
) -> Activation:
    """Resolve an activation by name, or wrap a user callable.

    Parameters
    ----------
    activation : str, Activation or callable
        A built-in name (see :func:`available_activations`), an
        :class:`Activation`, or a vectorised numpy function g.
    derivative : callable, optional
        g' for a user callable; a central difference is used when omitted.
    kinks : tuple of float
        Non-smooth points of a user callable.

    Returns
    -------
    Activation

    Raises
    ------
    ValueError
        For an unknown name or an object that is not callable.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation]
        except KeyError:
            raise ValueError(
                f"unknown activation {activation!r}; valid choices are "
                f"{', '.join(ACTIVATIONS)} or a callable"
            ) from None
    if callable(activation):
        name = getattr(activation, "__name__", "custom")
        func = checked_callable(activation, f"custom:{name}")
        # one 1-d and one 2-d probe (fits call g on (n,) and (n, k) arrays)
        for probe in (np.linspace(-2.0, 2.0, 5), np.linspace(-2.0, 2.0, 6).reshape(3, 2)):
            try:
                func(probe)
            except ValueError:
                raise
            except Exception as exc:  # noqa: BLE001 - report any failure of a user function
                raise ValueError(
                    f"activation callable {name!r} failed on a numpy array: {exc}"
                ) from exc
        deriv = derivative if derivative is not None else numerical_derivative(activation)
        return Activation(
            name=f"custom:{name}",
            func=func,
            derivative=checked_callable(deriv, f"custom:{name}", "derivative"),
            description=f"user callable {name}",
            kinks=tuple(kinks),
        )
    raise ValueError(
        f"activation must be a name ({', '.join(ACTIVATIONS)}), an Activation or a callable; "
        f"got {type(activation).__name__}"
    )
