"""Label transforms S2, S3: coefficients, constants, sigma estimate."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.integrate import quad

from moebench.activations import get_activation
from moebench.generator import make_moe
from moebench.tensor.label_transforms import (
    apply_transforms,
    estimate_sigma,
    gaussian_moments,
    transform_coefficients,
)

HERMITE = {
    1: lambda t: t,
    2: lambda t: t * t - 1.0,
    3: lambda t: t**3 - 3.0 * t,
}


def _phi(t: float) -> float:
    return float(np.exp(-0.5 * t * t) / np.sqrt(2.0 * np.pi))


def _quad_expect(h, m: int, kinks: tuple[float, ...]) -> float:
    """E[h(Z) He_m(Z)] by adaptive quadrature on infinite pieces split at the kinks."""
    edges = [-np.inf, *sorted(kinks), np.inf] if kinks else [-np.inf, 0.0, np.inf]
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        val, _ = quad(lambda t: h(t) * HERMITE[m](t) * _phi(t), lo, hi,
                      epsabs=1e-13, epsrel=1e-12, limit=500)
        total += val
    return total


def _h_functions(name: str, sigma: float):
    act = get_activation(name)
    c = transform_coefficients(act, sigma)
    s2 = sigma * sigma

    def g(t: float) -> float:
        return float(act.func(np.array([t]))[0])

    def h3(t: float) -> float:
        v = g(t)
        return v**3 + 3 * s2 * v + c.alpha * (v * v + s2) + c.beta * v

    def h2(t: float) -> float:
        v = g(t)
        return v * v + s2 + c.gamma * v

    return act, c, h2, h3


@pytest.mark.parametrize("sigma", [0.0, 0.1, 0.5, 2.0])
def test_linear_closed_form(sigma):
    c = transform_coefficients("linear", sigma)
    assert (c.alpha, c.gamma) == (0.0, 0.0)
    assert c.beta == pytest.approx(-3.0 * (1.0 + sigma**2), abs=1e-15)
    assert (c.c2, c.c3) == (2.0, 6.0)
    # the quadrature path agrees with the closed form
    q = transform_coefficients(lambda t: t, sigma)
    assert q.alpha == pytest.approx(0.0, abs=1e-10)
    assert q.gamma == pytest.approx(0.0, abs=1e-10)
    assert q.beta == pytest.approx(-3.0 * (1.0 + sigma**2), abs=1e-10)
    assert q.c2 == pytest.approx(2.0, abs=1e-10)
    assert q.c3 == pytest.approx(6.0, abs=1e-10)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "leaky_relu"])
@pytest.mark.parametrize("sigma", [0.1, 0.7])
def test_stein_conditions_hold_by_independent_quadrature(name, sigma):
    act, c, h2, h3 = _h_functions(name, sigma)
    kinks = act.kinks
    # E[h3'] = E[h3''] = 0 and E[h2'] = 0, checked with scipy's adaptive quad
    assert abs(_quad_expect(h3, 1, kinks)) < 1e-8
    assert abs(_quad_expect(h3, 2, kinks)) < 1e-8
    assert abs(_quad_expect(h2, 1, kinks)) < 1e-8
    # the constants agree with the independent integration
    assert c.c3 == pytest.approx(_quad_expect(h3, 3, kinks), abs=1e-8)
    assert c.c2 == pytest.approx(_quad_expect(h2, 2, kinks), abs=1e-8)
    assert abs(c.c2) > 1e-3 and abs(c.c3) > 1e-3


def test_relu_moments_match_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    M = gaussian_moments("relu")
    for p in (1, 2, 3):
        for m, He in ((1, lambda t: t), (2, lambda t: t * t - 1), (3, lambda t: t**3 - 3 * t)):
            exact = mpmath.quad(
                lambda t, p=p, He=He: t**p * He(t) * mpmath.exp(-t * t / 2), [0, mpmath.inf]
            ) / mpmath.sqrt(2 * mpmath.pi)
            assert M[p, m] == pytest.approx(float(exact), abs=1e-12)


def test_plain_gauss_hermite_is_off_for_relu():
    """Gauss-Hermite across the kink misses the relu constants by ~0.5%; ours does not."""
    c = transform_coefficients("relu", 0.1)
    x, w = np.polynomial.hermite_e.hermegauss(40)
    w = w / np.sqrt(2 * np.pi)
    g = np.maximum(x, 0.0)
    h3 = g**3 + 3 * 0.01 * g + c.alpha * (g * g + 0.01) + c.beta * g
    gh_c3 = float(np.sum(w * h3 * (x**3 - 3 * x)))
    gh_cond = float(np.sum(w * h3 * (x * x - 1)))
    assert abs(gh_c3 - c.c3) / c.c3 > 1e-3
    assert abs(gh_cond) > 1e-3


def test_undeclared_kink_warns_and_declared_kink_is_accurate():
    def shifted(t):
        return np.maximum(np.asarray(t) - 0.3, 0.0)

    with pytest.warns(RuntimeWarning, match="declare them"):
        transform_coefficients(shifted, 0.1)
    act = get_activation(shifted, kinks=(0.3,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = transform_coefficients(act, 0.1)
    s2 = 0.01

    def h3(t):
        v = max(t - 0.3, 0.0)
        return v**3 + 3 * s2 * v + c.alpha * (v * v + s2) + c.beta * v

    assert abs(_quad_expect(h3, 2, (0.3,))) < 1e-8
    assert c.c3 == pytest.approx(_quad_expect(h3, 3, (0.3,)), abs=1e-8)


@pytest.mark.parametrize(
    "func, which",
    [
        (lambda t: np.asarray(t) ** 2 - 1.0, "c3"),  # even: c3 = 0
        (lambda t: np.abs(np.asarray(t)), "c3"),  # even with a kink
        (lambda t: np.ones_like(np.asarray(t, dtype=float)), "c2"),  # constant
    ],
)
def test_vanishing_constant_raises(func, which):
    with pytest.raises(ValueError, match=f"cannot identify the experts.*{which} ="):
        transform_coefficients(func, 0.1)


def test_negative_sigma_rejected():
    with pytest.raises(ValueError, match="sigma"):
        transform_coefficients("relu", -1.0)


def test_apply_transforms_formula():
    c = transform_coefficients("relu", 0.2)
    y = np.array([-1.5, 0.0, 0.3, 2.0])
    s2, s3 = apply_transforms(y, c)
    np.testing.assert_allclose(s2, y**2 + c.gamma * y, rtol=1e-15)
    np.testing.assert_allclose(s3, y**3 + c.alpha * y**2 + c.beta * y, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name, sigma", [("linear", 0.3), ("relu", 0.3), ("sigmoid", 0.2)])
def test_estimate_sigma_orthogonal_gating(name, sigma):
    data = make_moe(100_000, 6, 3, activation=name, sigma=sigma, random_state=5)
    est = estimate_sigma(data.y, name)
    assert est == pytest.approx(sigma, abs=0.03)


def test_estimate_sigma_floor_is_positive():
    y = np.full(1000, 1e-3)  # mean(y^2) far below E[g(Z)^2] = 1
    est = estimate_sigma(y, "linear")
    assert 0.0 < est < 1e-4
    with pytest.raises(ValueError, match="finite"):
        estimate_sigma(np.array([np.nan, 1.0]), "linear")
