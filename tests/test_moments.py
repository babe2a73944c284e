"""Tests of the streaming moment kernels (moebench.tensor.moments), the whitening and the
backend switch."""

from __future__ import annotations

import numpy as np
import pytest

import moebench
from moebench.backend import get_backend
from moebench.tensor.decomposition import multilinear
from moebench.tensor.moments import (
    SecondMomentOperator,
    dense_third_moment,
    second_moment,
    third_moment_products,
    whitened_third_moment,
)
from moebench.tensor.whitening import whiten

#: float32 kernels: relative (max-abs over max-abs) error bound against float64.
F32_RTOL = 1e-4


def _data(n=1003, d=7, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    s2 = rng.standard_normal(n) + 0.3
    s3 = rng.standard_normal(n) ** 3
    W = rng.standard_normal((d, k))
    return X, s2, s3, W


def _relerr(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("chunk_size", [None, 1, 64, 100, 333, 1003, 5000])
def test_whitened_third_moment_matches_dense(chunk_size):
    X, _, s3, W = _data()
    ref = multilinear(dense_third_moment(X, s3), W)
    M = whitened_third_moment(X, s3, W, chunk_size=chunk_size)
    assert M.shape == (3, 3, 3) and M.dtype == np.float64
    np.testing.assert_allclose(M, ref, rtol=0, atol=1e-10 * max(1.0, np.abs(ref).max()))
    # fully symmetric
    np.testing.assert_allclose(M, M.transpose(1, 0, 2), atol=1e-12)
    np.testing.assert_allclose(M, M.transpose(2, 1, 0), atol=1e-12)


def test_dense_third_moment_direct_formula():
    X, _, s3, _ = _data(n=50, d=4)
    n, d = X.shape
    eye = np.eye(d)
    T = np.zeros((d, d, d))
    for x, s in zip(X, s3, strict=True):
        sym = (np.einsum("a,bc->abc", x, eye) + np.einsum("b,ac->abc", x, eye)
               + np.einsum("c,ab->abc", x, eye))
        T += s * (np.einsum("a,b,c->abc", x, x, x) - sym)
    np.testing.assert_allclose(dense_third_moment(X, s3), T / n, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [None, 17, 1003])
def test_second_moment_direct(chunk_size):
    X, s2, _, _ = _data()
    n, d = X.shape
    ref = (X * s2[:, None]).T @ X / n - s2.mean() * np.eye(d)
    np.testing.assert_allclose(second_moment(X, s2, chunk_size=chunk_size), ref, atol=1e-12)
    # all-positive weights (one SYRK), and a few negative ones (SYRK minus a correction)
    for s2p in (np.abs(s2), np.where(np.arange(n) % 10 == 3, -1.0, 1.0) * np.abs(s2)):
        ref = (X * s2p[:, None]).T @ X / n - s2p.mean() * np.eye(d)
        for backend in ("numpy", "torch"):
            out = second_moment(X, s2p, chunk_size=chunk_size, backend=backend)
            np.testing.assert_allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("m", [1, 4])
def test_third_moment_products_match_dense(m):
    X, _, s3, _ = _data()
    V = np.random.default_rng(5).standard_normal((X.shape[1], m))
    T = dense_third_moment(X, s3)
    ref = np.einsum("abc,bm,cm->am", T, V, V)
    out = third_moment_products(X, s3, V, chunk_size=100)
    assert out.shape == (X.shape[1], m)
    np.testing.assert_allclose(out, ref, atol=1e-10)
    if m == 1:  # a 1-d vector is accepted
        np.testing.assert_allclose(third_moment_products(X, s3, V[:, 0]), ref, atol=1e-10)


def test_memmap_input(tmp_path):
    X, s2, s3, W = _data()
    path = tmp_path / "X.npy"
    np.save(path, X)
    Xm = np.load(path, mmap_mode="r")
    np.testing.assert_allclose(whitened_third_moment(Xm, s3, W, chunk_size=100),
                               whitened_third_moment(X, s3, W), atol=1e-12)
    np.testing.assert_allclose(second_moment(Xm, s2, chunk_size=100), second_moment(X, s2),
                               atol=1e-12)


def test_torch_backend_matches_numpy():
    pytest.importorskip("torch")
    X, s2, s3, W = _data()
    V = W[:, :2]
    be = get_backend("torch")
    assert be.name == "torch"
    for chunk_size in (None, 100):
        kw = dict(chunk_size=chunk_size, backend="torch")
        np.testing.assert_allclose(whitened_third_moment(X, s3, W, **kw),
                                   whitened_third_moment(X, s3, W), atol=1e-10)
        np.testing.assert_allclose(second_moment(X, s2, **kw), second_moment(X, s2), atol=1e-10)
        np.testing.assert_allclose(third_moment_products(X, s3, V, **kw),
                                   third_moment_products(X, s3, V), atol=1e-10)
        op = SecondMomentOperator(X, s2, **kw)
        np.testing.assert_allclose(op @ V, second_moment(X, s2) @ V, atol=1e-10)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_float32_error_bounded(backend):
    if backend == "torch":
        pytest.importorskip("torch")
    X, s2, s3, W = _data(n=20_000, d=20, k=5)
    V = W[:, :2]
    kw = dict(backend=backend, dtype=np.float32)
    M32 = whitened_third_moment(X, s3, W, **kw)
    assert _relerr(M32, whitened_third_moment(X, s3, W)) < F32_RTOL
    assert _relerr(second_moment(X, s2, **kw), second_moment(X, s2)) < F32_RTOL
    assert _relerr(third_moment_products(X, s3, V, **kw),
                   third_moment_products(X, s3, V)) < F32_RTOL
    assert whitened_third_moment(X, s3, W, **kw).dtype == np.float64


def _low_rank_plus_noise(d=40, k=4, seed=3):
    rng = np.random.default_rng(seed)
    A, _ = np.linalg.qr(rng.standard_normal((d, k)))
    c = np.array([3.0, -2.0, 1.5, -1.0])[:k]
    E = rng.standard_normal((d, d)) * 1e-3
    return (A * c) @ A.T + 0.5 * (E + E.T), A, c


def test_whitening_eigh_indefinite():
    T2, A, c = _low_rank_plus_noise()
    wh = whiten(T2, 4)
    W, ev, U = wh.W, wh.eigvals, wh.eigvecs
    assert W.shape == (40, 4) and ev.shape == (4,) and U.shape == (40, 4)
    np.testing.assert_allclose(ev, c, atol=1e-2)  # signed, by decreasing |value|
    np.testing.assert_allclose(W.T @ T2 @ W, np.diag(np.sign(ev)), atol=1e-12)
    np.testing.assert_allclose(U.T @ U, np.eye(4), atol=1e-12)


def test_whitening_randomized_same_subspace():
    T2, A, c = _low_rank_plus_noise()
    wh1 = whiten(T2, 4, method="eigh")
    wh2 = whiten(T2, 4, method="randomized", random_state=1)
    ev1, U1 = wh1.eigvals, wh1.eigvecs
    W2, ev2, U2 = wh2.W, wh2.eigvals, wh2.eigvecs
    np.testing.assert_allclose(ev2, ev1, rtol=1e-6)
    # principal angles between the subspaces: cosines all ~ 1
    cos = np.linalg.svd(U1.T @ U2, compute_uv=False)
    assert np.min(cos) > 1 - 1e-8
    np.testing.assert_allclose(W2.T @ T2 @ W2, np.diag(np.sign(ev2)), atol=1e-6)


def test_whitening_randomized_implicit_operator():
    rng = np.random.default_rng(0)
    n, d = 4000, 30
    X = rng.standard_normal((n, d))
    a = np.linalg.qr(rng.standard_normal((d, 3)))[0]
    s2 = 4.0 * (X @ a[:, 0]) ** 2 - 3.0 * (X @ a[:, 1]) ** 2 + 2.0 * (X @ a[:, 2]) ** 2
    op = SecondMomentOperator(X, s2, chunk_size=512)
    T2 = second_moment(X, s2)
    wh1, wh2 = whiten(T2, 3), whiten(op, 3, method="randomized", n_iter=3)
    ev1, U1, ev2, U2 = wh1.eigvals, wh1.eigvecs, wh2.eigvals, wh2.eigvecs
    assert op.n_passes == 2 + 3
    np.testing.assert_allclose(ev2, ev1, rtol=1e-6)
    # largest principal angle below 2e-3 rad (sample noise limits the gap ratio)
    assert np.min(np.linalg.svd(U1.T @ U2, compute_uv=False)) > 1 - 2e-6
    # eigh on the operator densifies it
    ev3 = whiten(op, 3, method="eigh").eigvals
    np.testing.assert_allclose(ev3, ev1, rtol=1e-12)


def test_bad_input():
    X, s2, s3, W = _data()
    with pytest.raises(ValueError, match="mismatched lengths"):
        whitened_third_moment(X, s3[:-1], W)
    with pytest.raises(ValueError, match="mismatched lengths"):
        second_moment(X, s2[:10])
    with pytest.raises(ValueError, match="W must have shape"):
        whitened_third_moment(X, s3, W[:-1])
    with pytest.raises(ValueError, match="V must have shape"):
        third_moment_products(X, s3, np.ones((3, 2)))
    Xn = X.copy()
    Xn[5, 2] = np.nan
    for fn, args in ((whitened_third_moment, (Xn, s3, W)), (second_moment, (Xn, s2)),
                     (third_moment_products, (Xn, s3, W)), (dense_third_moment, (Xn, s3))):
        with pytest.raises(ValueError, match="NaN"):
            fn(*args)
    Xi = X.copy()
    Xi[7, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        whitened_third_moment(Xi, s3, W)
    s3n = s3.copy()
    s3n[0] = np.nan
    with pytest.raises(ValueError, match="s3 contains NaN"):
        whitened_third_moment(X, s3n, W)
    with pytest.raises(ValueError, match="2-dimensional"):
        second_moment(X[:, 0], s2)
    with pytest.raises(ValueError, match="dtype"):
        second_moment(X, s2, dtype=np.float16)
    with pytest.raises(ValueError, match="backend"):
        second_moment(X, s2, backend="jax")
    with pytest.raises(ValueError, match="chunk_size"):
        second_moment(X, s2, chunk_size=0)
    with pytest.raises(ValueError, match="d <= 100"):
        dense_third_moment(np.zeros((3, 101)), np.zeros(3))
    T2 = second_moment(X, s2)
    with pytest.raises(ValueError, match="exceeds the dimension"):
        whiten(T2, 8)
    with pytest.raises(ValueError, match="whitening method"):
        whiten(T2, 2, method="svd")
    with pytest.raises(ValueError, match="square"):
        whiten(T2[:, :3], 2)
    with pytest.raises(ValueError, match="rank"):
        whiten(np.diag([1.0, 0.0, 0.0]), 2)


# ----------------------------------------------------------------- Monte-Carlo population check
def _population(data, n_mc=2_000_000, seed=123):
    """T2 = sum 2 p_i a_i a_i^T and T3 = sum 6 p_i a_i^{⊗3} for linear experts.

    With gating orthogonal to the experts, a_i.x is independent of the gate, so by
    Stein's identity only E[h2''] = 2 and E[h3'''] = 6 survive, weighted by
    p_i = E[softmax(W x)_i] (computed here by a separate large Monte-Carlo sample).
    """
    rng = np.random.default_rng(seed)
    G = data.gating
    logits = rng.standard_normal((n_mc, G.shape[1])) @ G.T
    logits -= logits.max(axis=1, keepdims=True)
    P = np.exp(logits)
    p = (P / P.sum(axis=1, keepdims=True)).mean(axis=0)
    A = data.experts
    T2 = np.einsum("i,ia,ib->ab", 2 * p, A, A)
    T3 = np.einsum("i,ia,ib,ic->abc", 6 * p, A, A, A)
    return T2, T3


def _labels(data):
    y = data.y
    return y**2, y**3 - 3 * (1 + data.sigma**2) * y


def _mc_errors(n, seed, d=5, k=3):
    data = moebench.make_moe(n, d, k, activation="linear", sigma=0.1, gating="orthogonal",
                             random_state=seed)
    s2, s3 = _labels(data)
    T2p, T3p = _population(data)
    e2 = np.linalg.norm(second_moment(data.X, s2) - T2p)
    e3 = np.linalg.norm(dense_third_moment(data.X, s3) - T3p)
    return e2, e3, data, s2, s3, T2p, T3p


def test_monte_carlo_moments_linear_orthogonal_gating():
    n = 200_000
    e2, e3, data, s2, s3, T2p, T3p = _mc_errors(n, seed=0)
    X = data.X
    d = X.shape[1]
    # Monte-Carlo standard error of the Frobenius error: sqrt(E||Z - EZ||^2 / n) with Z the
    # per-sample term; E||Z||^2 estimated from the sample itself.
    z2 = (s2**2) * (np.sum(X**2, axis=1) ** 2 - 2 * np.sum(X**2, axis=1) + d)
    se2 = np.sqrt(max(z2.mean() - np.sum(T2p**2), 0.0) / n)
    r = np.sum(X**2, axis=1)
    # ||x⊗x⊗x - sym(x⊗I)||^2 = r^3 - 6 r^2 + 3 r (d + 2) for r = ||x||^2
    z3 = (s3**2) * (r**3 - 6 * r**2 + 3 * r * (d + 2))
    se3 = np.sqrt(max(z3.mean() - np.sum(T3p**2), 0.0) / n)
    assert e2 < 4 * se2, (e2, se2)
    assert e3 < 4 * se3, (e3, se3)
    # the bound is informative: a factor-2 error in c2, c3 or the weights p_i would fail it
    assert 4 * se2 < 0.5 * np.linalg.norm(T2p) and 4 * se3 < 0.5 * np.linalg.norm(T3p)
    # whitened path agrees with the population tensor after whitening with the true T2
    W = whiten(T2p, 3).W
    M = whitened_third_moment(X, s3, W)
    assert np.linalg.norm(M - multilinear(T3p, W)) < 4 * se3 * np.linalg.norm(W, 2) ** 3


def test_norm_of_sym_term_formula():
    # the closed form of ||x⊗x⊗x - sym(x⊗I)||_F^2 used above
    rng = np.random.default_rng(1)
    d = 4
    x = rng.standard_normal(d)
    T = dense_third_moment(x[None, :], np.ones(1))
    r = x @ x
    assert np.isclose(np.sum(T**2), r**3 - 6 * r**2 + 3 * r * (d + 2))


def test_monte_carlo_error_rate():
    small = [_mc_errors(20_000, seed)[:2] for seed in range(4)]
    large = [_mc_errors(200_000, seed)[:2] for seed in range(4)]
    ratio2 = np.median([s[0] for s in small]) / np.median([b[0] for b in large])
    ratio3 = np.median([s[1] for s in small]) / np.median([b[1] for b in large])
    # n^{-1/2}: a 10x larger sample gives ~sqrt(10) = 3.16x smaller error
    assert 1.8 < ratio2 < 5.5, ratio2
    assert 1.8 < ratio3 < 5.5, ratio3


# ------------------------------------- the same convergence for non-linear experts (issue 3.5)
def _nonlinear_errors(activation, n, seed, d=5, k=3):
    """Errors of the empirical T2, T3 against c2 sum p_i a_i a_i^T and c3 sum p_i a_i^{⊗3},
    with the label transforms of moebench.tensor.label_transforms for ``activation``."""
    from moebench.tensor.label_transforms import apply_transforms, transform_coefficients

    data = moebench.make_moe(n, d, k, activation=activation, sigma=0.1, gating="orthogonal",
                             random_state=seed)
    coef = transform_coefficients(activation, 0.1)
    s2, s3 = apply_transforms(data.y, coef)
    T2lin, T3lin = _population(data)  # built with the linear constants 2 and 6
    T2p, T3p = T2lin * (coef.c2 / 2.0), T3lin * (coef.c3 / 6.0)
    X = data.X
    e2 = np.linalg.norm(second_moment(X, s2) - T2p)
    e3 = np.linalg.norm(dense_third_moment(X, s3) - T3p)
    r = np.sum(X**2, axis=1)
    z2 = (s2**2) * (r**2 - 2 * r + d)
    z3 = (s3**2) * (r**3 - 6 * r**2 + 3 * r * (d + 2))
    se2 = np.sqrt(max(z2.mean() - np.sum(T2p**2), 0.0) / n)
    se3 = np.sqrt(max(z3.mean() - np.sum(T3p**2), 0.0) / n)
    return e2, e3, se2, se3, np.linalg.norm(T2p), np.linalg.norm(T3p)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_monte_carlo_moments_nonlinear_orthogonal_gating(activation):
    large = [_nonlinear_errors(activation, 200_000, seed) for seed in range(3)]
    small = [_nonlinear_errors(activation, 20_000, seed) for seed in range(3)]
    for e2, e3, se2, se3, norm2, norm3 in large:  # within Monte-Carlo error of the population
        assert e2 < 4 * se2, (e2, se2)
        assert e3 < 4 * se3, (e3, se3)
        # and informative: a factor-2 error in c2, c3 or the weights would miss these
        assert e2 < 0.5 * norm2 and e3 < 0.5 * norm3, (e2, norm2, e3, norm3)
    for i in (0, 1):  # and the error falls like n^{-1/2}: 10x the samples, ~3.16x less error
        ratio = np.median([s[i] for s in small]) / np.median([b[i] for b in large])
        assert 1.8 < ratio < 5.5, (i, ratio)
