"""The moebench.tensor package: one whitening, the compatibility module, shared T2."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import moebench
from moebench.activations import get_activation
from moebench.tensor.estimator import TensorEM
from moebench.tensor.label_transforms import apply_transforms, transform_coefficients
from moebench.tensor.moments import SecondMomentOperator, second_moment
from moebench.tensor.whitening import Whitening, t2_noise_level, whiten


def _t2(seed=0, n=3000, d=7):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    a = np.linalg.qr(rng.standard_normal((d, 3)))[0]
    s2 = 3.0 * (X @ a[:, 0]) ** 2 - 2.0 * (X @ a[:, 1]) ** 2 + (X @ a[:, 2]) ** 2
    return X, s2, second_moment(X, s2)


def test_tensor_em_is_registered_and_its_old_module_is_gone():
    assert type(moebench.get_algorithm("tensor_em", n_experts=2)) is TensorEM
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("moebench.tensor_em")


@pytest.mark.parametrize("old", ["moebench.moments", "moebench.decomposition",
                                 "moebench.tensor.backend", "moebench.label_transforms",
                                 "moebench.em_torch"])
def test_moved_modules_have_no_second_copy(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


@pytest.mark.parametrize("method", ["eigh", "randomized"])
def test_whitening_carries_its_inverse_and_eigengap(method):
    X, s2, T2 = _t2()
    src = T2 if method == "eigh" else SecondMomentOperator(X, s2)
    wh = whiten(src, 3, method, n_extra=1, random_state=4)
    assert isinstance(wh, Whitening) and wh.k == 3
    assert wh.W.shape == (7, 3) and wh.leading_eigvals.shape == (4,)
    np.testing.assert_array_equal(wh.eigvals, wh.leading_eigvals[:3])
    np.testing.assert_allclose(wh.W.T @ T2 @ wh.W, np.diag(np.sign(wh.eigvals)), atol=1e-6)
    # the un-whitening is the pseudo-inverse of W^T
    np.testing.assert_allclose(wh.unwhitening, np.linalg.pinv(wh.W.T), atol=1e-10)
    ev = np.abs(wh.leading_eigvals)
    assert wh.eigengap == pytest.approx(ev[2] / ev[3], rel=1e-12) and wh.eigengap > 5
    assert whiten(T2, 7).eigengap == float("inf")  # k = d: no (k+1)-th eigenvalue


def test_extra_eigenpairs_do_not_change_the_whitening():
    _, _, T2 = _t2(1)
    plain, extra = whiten(T2, 3), whiten(T2, 3, n_extra=2)
    np.testing.assert_array_equal(plain.W, extra.W)
    np.testing.assert_array_equal(plain.eigvals, extra.eigvals)


def test_rank_check_reads_only_the_k_leading_eigenvalues():
    T2 = np.diag([2.0, -1.0, 0.0, 0.0])
    wh = whiten(T2, 2, n_extra=1)  # the zero third eigenvalue only enters the gap
    assert wh.eigengap > 1e200
    with pytest.raises(ValueError, match=r"fewer than k = 3 .*rank >= k"):
        whiten(T2, 3)
    with pytest.raises(ValueError, match="n_extra must be an integer >= 0"):
        whiten(T2, 2, n_extra=-1)


def test_unwhiten_gives_unit_rows_in_the_span():
    _, _, T2 = _t2(2)
    wh = whiten(T2, 3)
    A = wh.unwhiten(np.eye(3))
    np.testing.assert_allclose(np.linalg.norm(A, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(A @ wh.eigvecs @ wh.eigvecs.T, A, atol=1e-12)


def test_estimator_diagnostics_are_the_whitening_of_the_moments():
    data = moebench.make_moe(3000, 6, 3, activation="relu", sigma=0.1, random_state=5)
    est = TensorEM(n_experts=3, activation="relu", sigma=0.1, random_state=0,
                   gating_em_iter=2).fit(data.X, data.y)
    coef = transform_coefficients("relu", 0.1)
    s2, _ = apply_transforms(data.y, coef)
    # the k kept have c2's sign; the noise level is t2_noise_level's rule (issue 26 item 4)
    wh = whiten(second_moment(data.X, s2), 3, n_extra=1, sign=np.sign(coef.c2),
                noise_level=t2_noise_level(s2, 6))
    np.testing.assert_array_equal(est.t2_eigenvalues_, wh.leading_eigvals)
    assert est.t2_eigengap_ == wh.eigengap
    assert est.t2_noise_level_ == wh.noise_level
    assert est.t2_signal_directions_ == wh.n_signal
    assert est.below_sample_complexity_ == wh.below_sample_complexity


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_spectral_start_uses_the_tensor_t2(activation):
    from moebench.baselines._spectral import second_order_label, spectral_subspace

    data = moebench.make_moe(3000, 6, 3, activation=activation, sigma=0.1, random_state=6)
    act = get_activation(activation)
    basis = spectral_subspace(data.X, data.y, 3, act)
    wh = whiten(second_moment(data.X, second_order_label(data.y, act)), 3)
    np.testing.assert_array_equal(np.abs(basis), np.abs(wh.eigvecs))
