"""Whitening of T2: the sign rule, the noise level and the canonical eigenvector signs."""

from __future__ import annotations

import numpy as np
import pytest

from moebench.tensor.whitening import (
    NOISE_LEVEL_FACTOR,
    noise_level_from_mean_square,
    t2_noise_level,
    top_eigenpairs,
    whiten,
)

#: the issue's sample T2 spectrum (population: 0.056 and 0.002 x 3, all of c2's sign)
ISSUE_EIGVALS = np.array([0.056, 0.011, -0.0066, -0.0055, 0.005, 0.002, 0.0004, -0.0001])


def _with_spectrum(evals: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    d = evals.size
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return (Q * evals) @ Q.T, Q


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_large_wrong_sign_noise_eigenvalue_is_not_kept(sign):
    T2, Q = _with_spectrum(sign * ISSUE_EIGVALS)
    wh = whiten(T2, 4, sign=sign, n_extra=1)
    np.testing.assert_allclose(wh.eigvals, sign * np.array([0.056, 0.011, 0.005, 0.002]),
                               rtol=1e-10)
    # the kept directions are the eigenvectors of those eigenvalues
    kept = Q[:, [0, 1, 4, 5]]
    np.testing.assert_allclose(np.abs(kept.T @ wh.eigvecs), np.eye(4), atol=1e-10)
    # the eigen-gap compares the k-th kept with the largest |eigenvalue| left out (-0.0066)
    assert wh.leading_eigvals[4] == pytest.approx(-sign * 0.0066, rel=1e-10)
    assert wh.eigengap == pytest.approx(0.002 / 0.0066, rel=1e-8)
    assert wh.sign == sign
    # without a sign the old rule (largest |eigenvalue|) keeps the wrong-sign noise
    old = whiten(T2, 4)
    np.testing.assert_allclose(old.eigvals, sign * ISSUE_EIGVALS[:4], rtol=1e-10)
    assert old.sign == 0.0


def test_fewer_eigenvalues_of_the_sign_than_k_are_topped_up_by_modulus():
    T2, _ = _with_spectrum(np.array([1.0, 0.5, -0.3, -0.01, 0.0, 0.0]))
    wh = whiten(T2, 3, sign=1.0, noise_level=0.1)
    np.testing.assert_allclose(wh.eigvals, [1.0, 0.5, -0.3], atol=1e-12)
    assert wh.n_signal == 2 and wh.below_sample_complexity


def test_signal_directions_count_those_above_the_noise_level():
    T2, _ = _with_spectrum(ISSUE_EIGVALS)
    wh = whiten(T2, 3, sign=1.0, noise_level=0.0067)
    assert wh.n_signal == 2 and wh.below_sample_complexity
    wh = whiten(T2, 3, sign=1.0, noise_level=0.004)
    assert wh.n_signal == 3 and not wh.below_sample_complexity
    # without a sign the modulus counts
    assert whiten(T2, 3, noise_level=0.006).n_signal == 3
    assert whiten(T2, 3).n_signal == 3  # noise level 0: every nonzero eigenvalue


def test_top_eigenpairs_by_sign_and_extra():
    A, Q = _with_spectrum(np.array([0.3, -2.0, 1.0, -0.5]))
    ev, V = top_eigenpairs(A, 2, sign=-1.0, n_extra=2)
    np.testing.assert_allclose(ev, [-2.0, -0.5, 1.0, 0.3], atol=1e-12)
    np.testing.assert_allclose(np.abs(V.T @ Q[:, [1, 3, 2, 0]]), np.eye(4), atol=1e-12)
    ev, _ = top_eigenpairs(A, 2)
    np.testing.assert_allclose(ev, [-2.0, 1.0], atol=1e-12)


def test_eigenvectors_have_a_canonical_sign():
    T2, _ = _with_spectrum(np.array([3.0, 2.0, 1.0, 0.5, 0.1]), seed=4)
    for method in ("eigh", "randomized"):
        U = whiten(T2, 3, method, sign=1.0).eigvecs
        top = U[np.argmax(np.abs(U), axis=0), np.arange(3)]
        assert np.all(top > 0)
    # eigh's sign choice does not reach the result: -T2's eigenvectors are T2's
    a = whiten(T2, 3, sign=1.0)
    b = whiten(-T2, 3, sign=-1.0)
    np.testing.assert_array_equal(np.abs(a.eigvals), np.abs(b.eigvals))
    np.testing.assert_allclose(a.eigvecs, b.eigvecs, atol=1e-12)
    np.testing.assert_allclose(a.W, b.W, atol=1e-12)


def test_population_t2_keeps_its_span_with_or_without_the_sign():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((3, 8))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    T2 = -0.4 * (A.T * np.array([0.2, 0.3, 0.5])) @ A
    for sign in (None, -1.0):
        wh = whiten(T2, 3, sign=sign)
        assert np.all(wh.eigvals < 0)
        P = wh.eigvecs @ wh.eigvecs.T
        np.testing.assert_allclose(P @ A.T, A.T, atol=1e-12)
        np.testing.assert_allclose(wh.W.T @ T2 @ wh.W, -np.eye(3), atol=1e-10)


def test_noise_level_is_the_rule():
    s2 = np.array([1.0, -2.0, 3.0, 0.5])
    expected = NOISE_LEVEL_FACTOR * np.sqrt(np.mean(s2**2) * 7 / 4)
    assert t2_noise_level(s2, 7) == pytest.approx(expected, rel=1e-14)
    assert noise_level_from_mean_square(np.mean(s2**2), 4, 7) == pytest.approx(expected,
                                                                                rel=1e-14)
    assert t2_noise_level(s2, 7, factor=0.0) == 0.0


def test_noise_level_bounds_pure_noise_eigenvalues():
    """s2 independent of x: T2 is pure sampling noise; its eigenvalues stay below the level
    in every one of 40 fixed-seed draws, and the largest reaches at least 55% of it (the
    level is not loose by more than the fluctuation room the constant gives)."""
    rng = np.random.default_rng(12)
    ratios = []
    for d, n in [(5, 400), (10, 2000), (20, 8000), (10, 20000)]:
        for _ in range(10):
            X = rng.standard_normal((n, d))
            s2 = 1.5 + rng.standard_normal(n) * 2.0 + rng.standard_normal(n) ** 2
            T2 = (X * s2[:, None]).T @ X / n - s2.mean() * np.eye(d)
            ratios.append(np.max(np.abs(np.linalg.eigvalsh(T2))) / t2_noise_level(s2, d))
    assert max(ratios) < 1.0
    assert np.median(ratios) > 0.55


@pytest.mark.parametrize("kwargs, match", [
    (dict(sign=0), "sign"), (dict(sign=2.0), "sign"), (dict(noise_level=-1.0), "noise_level"),
    (dict(noise_level=np.nan), "noise_level"),
])
def test_bad_sign_or_noise_level_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        whiten(np.eye(3), 2, **kwargs)


def test_bad_noise_level_inputs_raise():
    with pytest.raises(ValueError, match="s2"):
        t2_noise_level(np.array([]), 3)
    with pytest.raises(ValueError, match="s2"):
        t2_noise_level(np.array([1.0, np.inf]), 3)
    with pytest.raises(ValueError, match="factor"):
        t2_noise_level(np.ones(3), 3, factor=-1.0)
    with pytest.raises(ValueError, match="mean_square"):
        noise_level_from_mean_square(-1.0, 3, 3)
    with pytest.raises(ValueError, match="d"):
        t2_noise_level(np.ones(3), 0)


def test_rank_deficient_t2_still_raises_with_a_sign():
    T2, _ = _with_spectrum(np.array([1.0, 0.5, 0.0, 0.0]))
    with pytest.raises(ValueError, match="fewer than k = 3"):
        whiten(T2, 3, sign=1.0)
