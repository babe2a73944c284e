"""Tensor algebra helpers and orthogonal decompositions."""

from __future__ import annotations

import numpy as np
import pytest

from moebench.tensor.decomposition import (
    apply_vv,
    compose,
    decompose,
    jennrich,
    joint_diagonalize,
    multilinear,
    rank_one,
    robust_power_method,
    slice_matrix,
    symmetrize,
    value,
)


def _planted(k: int, seed: int, negative: bool = False):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((k, k)))
    V = Q.T  # rows orthonormal
    lam = rng.uniform(0.5, 3.0, k)
    if negative:
        lam = -lam
    return compose(lam, V), lam, V


def _match(V_hat: np.ndarray, V: np.ndarray) -> np.ndarray:
    return np.argmax(np.abs(V_hat @ V.T), axis=1)


def test_contractions_agree_with_einsum():
    rng = np.random.default_rng(0)
    T = symmetrize(rng.standard_normal((4, 4, 4)))
    v = rng.standard_normal(4)
    M = rng.standard_normal((4, 3))
    np.testing.assert_allclose(apply_vv(T, v), np.einsum("ijk,j,k->i", T, v, v), atol=1e-13)
    np.testing.assert_allclose(apply_vv(T, M), np.einsum("ijk,jm,km->im", T, M, M), atol=1e-13)
    assert value(T, v) == pytest.approx(float(np.einsum("ijk,i,j,k->", T, v, v, v)), abs=1e-12)
    np.testing.assert_allclose(value(T, M), np.einsum("ijk,im,jm,km->m", T, M, M, M), atol=1e-12)
    np.testing.assert_allclose(slice_matrix(T, v), np.einsum("ijk,k->ij", T, v), atol=1e-13)
    A = rng.standard_normal((4, 2))
    np.testing.assert_allclose(multilinear(T, A), np.einsum("ijk,ia,jb,kc->abc", T, A, A, A),
                               atol=1e-12)
    np.testing.assert_allclose(symmetrize(T), T, atol=1e-15)
    np.testing.assert_allclose(rank_one(v), np.multiply.outer(np.multiply.outer(v, v), v))


@pytest.mark.parametrize("method", ["power", "jennrich"])
@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_recovers_planted_orthogonal_decomposition(method, k):
    T, lam, V = _planted(k, seed=k)
    dec = decompose(T, method, rng=np.random.default_rng(1))
    perm = _match(dec.eigenvectors, V)
    assert sorted(perm) == list(range(k))
    np.testing.assert_allclose(dec.eigenvectors, V[perm], atol=1e-8)
    np.testing.assert_allclose(dec.eigenvalues, lam[perm], atol=1e-8)
    assert dec.residual < 1e-8


@pytest.mark.parametrize("method", ["power", "jennrich"])
def test_negative_weights_come_back_as_flipped_pairs(method):
    """(lambda, v) ~ (-lambda, -v) for an odd tensor: lambda >= 0 is returned."""
    T, lam, V = _planted(4, seed=11, negative=True)
    dec = decompose(T, method, rng=np.random.default_rng(0))
    perm = _match(dec.eigenvectors, V)
    assert np.all(dec.eigenvalues > 0)
    np.testing.assert_allclose(dec.eigenvectors, -V[perm], atol=1e-8)
    np.testing.assert_allclose(dec.eigenvalues, -lam[perm], atol=1e-8)


@pytest.mark.parametrize("method", ["power", "jennrich"])
def test_robust_to_small_perturbation(method):
    T, lam, V = _planted(5, seed=3)
    rng = np.random.default_rng(9)
    eps = 1e-4
    noisy = T + eps * symmetrize(rng.standard_normal(T.shape))
    dec = decompose(noisy, method, rng=np.random.default_rng(0))
    perm = _match(dec.eigenvectors, V)
    assert np.max(np.abs(dec.eigenvectors - V[perm])) < 50 * eps
    assert np.max(np.abs(dec.eigenvalues - lam[perm])) < 50 * eps


def test_power_method_is_deterministic_given_the_generator():
    T, _, _ = _planted(6, seed=2)
    noisy = T + 1e-3 * symmetrize(np.random.default_rng(4).standard_normal(T.shape))
    a = robust_power_method(noisy, rng=np.random.default_rng(5))
    b = robust_power_method(noisy, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.eigenvectors, b.eigenvectors)
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)


def test_fewer_components_than_dimension():
    rng = np.random.default_rng(8)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    V = Q.T[:3]
    lam = np.array([3.0, 2.0, 1.0])
    T = compose(lam, V)
    for method in ("power", "jennrich"):
        dec = decompose(T, method, n_components=3, rng=np.random.default_rng(0))
        perm = _match(dec.eigenvectors, V)
        np.testing.assert_allclose(dec.eigenvectors, V[perm], atol=1e-8)
        np.testing.assert_allclose(np.sort(dec.eigenvalues), np.sort(lam), atol=1e-8)


def test_jennrich_non_orthogonal_components():
    rng = np.random.default_rng(12)
    V = rng.standard_normal((4, 4))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    lam = np.array([1.0, 2.0, 1.5, 0.7])
    dec = jennrich(compose(lam, V), orthogonal=False, rng=np.random.default_rng(0))
    perm = _match(dec.eigenvectors, V)
    assert sorted(perm) == list(range(4))
    np.testing.assert_allclose(np.abs(np.sum(dec.eigenvectors * V[perm], axis=1)), 1.0, atol=1e-8)


def test_joint_diagonalize_finds_common_eigenvectors():
    rng = np.random.default_rng(21)
    Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    mats = np.stack([(Q * rng.standard_normal(5)) @ Q.T for _ in range(4)])
    V = joint_diagonalize(mats)
    np.testing.assert_allclose(V.T @ V, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(np.abs(V.T @ Q).max(axis=1), 1.0, atol=1e-10)
    for M in mats:
        D = V.T @ M @ V
        assert np.max(np.abs(D - np.diag(np.diag(D)))) < 1e-10


def test_bad_input():
    with pytest.raises(ValueError, match=r"shape \(k, k, k\)"):
        robust_power_method(np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        jennrich(np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError, match="n_components"):
        robust_power_method(np.ones((3, 3, 3)), n_components=4)
    with pytest.raises(ValueError, match="valid choices are 'power', 'jennrich'"):
        decompose(np.ones((2, 2, 2)), "svd")
    with pytest.raises(ValueError, match="n_starts"):
        robust_power_method(np.ones((2, 2, 2)), n_starts=0)
