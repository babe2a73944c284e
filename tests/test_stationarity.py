"""The analytic gradient and Hessian of the mean log-likelihood, and where they are 0."""

import numpy as np
import pytest

from moebench import make_moe
from moebench.metrics import wilson_interval
from moebench.registry import get_algorithm
from moebench.stationarity import (
    STATIONARY_TOL,
    HessianProduct,
    lanczos_min_eigenvalue,
    log_likelihood_gradient,
    log_likelihood_hessian,
    mean_log_likelihood,
    n_parameters,
    pack,
    stationarity,
    unpack,
)


@pytest.fixture
def one_torch_thread():
    """torch on one thread, as in a sweep worker (two threads on a loaded 2-core machine
    spin for tens of ms per small step); restored afterwards."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _point(seed=0, n=1500, d=3, k=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, rng.standard_normal(n), rng.standard_normal((k, d)), rng.standard_normal((k, d))


@pytest.mark.parametrize("learn_sigma", [True, False], ids=["sigma-learned", "sigma-known"])
@pytest.mark.parametrize("activation", ["linear", "sigmoid", "relu", "tanh"])
def test_gradient_matches_finite_differences(activation, learn_sigma):
    X, y, A, W = _point()
    k, d = A.shape
    theta = pack(A, W, 0.7, learn_sigma)
    assert theta.size == n_parameters(k, d, learn_sigma)
    g = log_likelihood_gradient(X, y, A, W, 0.7, activation, learn_sigma)
    fd = np.empty_like(theta)
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = 1e-6
        fd[j] = (mean_log_likelihood(X, y, *unpack(theta + e, k, d, 0.7), activation)
                 - mean_log_likelihood(X, y, *unpack(theta - e, k, d, 0.7), activation)) / 2e-6
    assert np.max(np.abs(g)) > 0.05  # a generic point: the check is not of zeros
    np.testing.assert_allclose(g, fd, atol=1e-7)


@pytest.mark.parametrize("learn_sigma", [True, False], ids=["sigma-learned", "sigma-known"])
@pytest.mark.parametrize("activation", ["linear", "sigmoid", "relu"])
def test_hessian_matches_finite_differences_of_the_gradient(activation, learn_sigma):
    X, y, A, W = _point(1)
    k, d = A.shape
    theta = pack(A, W, 0.7, learn_sigma)
    H = log_likelihood_hessian(X, y, A, W, 0.7, activation, learn_sigma)
    fd = np.empty_like(H)
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = 1e-5
        fd[:, j] = (log_likelihood_gradient(X, y, *unpack(theta + e, k, d, 0.7), activation,
                                            learn_sigma)
                    - log_likelihood_gradient(X, y, *unpack(theta - e, k, d, 0.7), activation,
                                              learn_sigma)) / 2e-5
    np.testing.assert_allclose(H, fd, atol=1e-7)
    np.testing.assert_allclose(H, H.T, atol=1e-12)


def _data(seed=3):
    return make_moe(n=4000, d=4, k=2, sigma=0.1, gating_scale=2.0, random_state=seed)


def spurious_point(X, y, k):
    """Every expert the least-squares fit, zero gating, sigma the rms residual: every
    component is the same, responsibilities equal the gating probabilities (1/k), and
    the gradient of the mean log-likelihood is exactly 0."""
    a = np.linalg.lstsq(X, y, rcond=None)[0]
    sigma = float(np.sqrt(np.mean((y - X @ a) ** 2)))
    return np.tile(a, (k, 1)), np.zeros((k, X.shape[1])), sigma


def test_identical_experts_at_least_squares_are_a_spurious_saddle():
    data = _data()
    A, W, s = spurious_point(data.X, data.y, 2)
    gn, eig = stationarity(data.X, data.y, A, W, s, "linear")
    assert gn < 1e-10  # stationary, exactly
    truth = data.model.mean_log_likelihood(data.X, data.y)
    assert mean_log_likelihood(data.X, data.y, A, W, s, "linear") < truth - 0.1  # a gap
    assert eig < -1e-3  # a saddle of the likelihood: an ascent direction remains


def test_fits_record_stationarity(one_torch_thread):
    data = _data()
    em = get_algorithm("joint_em", n_experts=2, random_state=0).fit(data.X, data.y)
    assert not hasattr(em, "grad_norm_")  # fit itself does not pay for the check
    assert em.stationarity(data.X, data.y) == (em.grad_norm_, em.hessian_min_eig_)
    assert em.converged_ and em.grad_norm_ < STATIONARY_TOL and em.hessian_min_eig_ > 0
    short = get_algorithm("sgd", n_experts=2, max_epochs=2, random_state=0).fit(data.X, data.y)
    short.stationarity(data.X, data.y)
    assert short.stop_reason_ == "max_epochs" and short.grad_norm_ > STATIONARY_TOL
    with pytest.raises(ValueError, match="not fitted"):
        get_algorithm("joint_em", n_experts=2).stationarity(data.X, data.y)


def test_the_sweep_records_stationarity_of_local_search_runs_only():
    from moebench.sweep.data_sources import CellData
    from moebench.sweep.worker import evaluate

    data = _data()
    cell = CellData(data.X, data.y, data.X, data.y, None)
    em = get_algorithm("joint_em", n_experts=2, random_state=0).fit(data.X, data.y)
    assert evaluate(em, cell, 0.1)["fitted_grad_norm"] < STATIONARY_TOL
    tensor = get_algorithm("tensor_em", n_experts=2, random_state=0).fit(data.X, data.y)
    assert "fitted_grad_norm" not in evaluate(tensor, cell, 0.1)  # not a local-search method
    # refine ends in joint EM: it climbs the likelihood and is checked like joint EM
    refine = get_algorithm("tensor_em", n_experts=2, refine=True, random_state=0)
    out = evaluate(refine.fit(data.X, data.y), cell, 0.1)
    assert out["fitted_grad_norm"] < STATIONARY_TOL and out["fitted_hessian_min_eig"] > 0


@pytest.mark.parametrize("learn_sigma", [True, False], ids=["sigma-learned", "sigma-known"])
@pytest.mark.parametrize("activation", ["linear", "sigmoid", "relu"])
def test_hessian_vector_products_equal_the_dense_hessian(activation, learn_sigma):
    """The analytic products (stored weights, and recomputed per chunk) equal H v."""
    X, y, A, W = _point(2, n=1000)
    H = log_likelihood_hessian(X, y, A, W, 0.7, activation, learn_sigma)
    stored = HessianProduct(X, y, A, W, 0.7, activation, learn_sigma)
    for v in np.random.default_rng(0).standard_normal((3, H.shape[0])):
        np.testing.assert_allclose(stored(v), H @ v, rtol=1e-12, atol=1e-12)
    import moebench.stationarity as st

    try:  # weights too many to keep: recomputed in every product, same values
        before, st.HVP_MAX_STORED = st.HVP_MAX_STORED, 0
        again = HessianProduct(X, y, A, W, 0.7, activation, learn_sigma)
    finally:
        st.HVP_MAX_STORED = before
    assert again._weights is None
    np.testing.assert_allclose(again(v), H @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ["linear", "sigmoid"])
def test_lanczos_estimate_equals_the_dense_smallest_eigenvalue(activation):
    """Above the dense limit the eigenvalue is a Lanczos estimate: within 1e-7 of the
    dense one (here it is not skipped any more), at a generic point and at a fit."""
    X, y, A, W = _point(3, n=2000, d=5, k=4)
    dense = stationarity(X, y, A, W, 0.7, activation)
    lanczos = stationarity(X, y, A, W, 0.7, activation, hessian_max_params=5)
    assert lanczos[0] == dense[0] and dense[1] < 0
    assert abs(lanczos[1] - dense[1]) < 1e-7
    assert lanczos_min_eigenvalue(X, y, A, W, 0.7, activation, seed=0) == lanczos[1]
    data = _data()
    em = get_algorithm("joint_em", n_experts=2, random_state=0).fit(data.X, data.y)
    args = (data.X, data.y, em.experts_, em.gating_, em.sigma_, "linear")
    d_eig, l_eig = stationarity(*args)[1], stationarity(*args, hessian_max_params=0)[1]
    assert d_eig > 0 and abs(l_eig - d_eig) < 1e-7


def test_gradient_norm_is_invariant_to_the_scale_of_x():
    X, y, A, W = _point()
    a = stationarity(X, y, A, W, 0.7, "linear")
    b = stationarity(8.0 * X, y, A / 8.0, W / 8.0, 0.7, "linear")
    np.testing.assert_allclose(a, b, rtol=1e-9)


@pytest.mark.parametrize("successes, n, expected", [
    (0, 5, (0.0, 0.4345)), (5, 5, (0.5655, 1.0)), (2, 5, (0.1176, 0.7693)),
    (50, 100, (0.4038, 0.5962)), (1, 270, (0.00065, 0.0207)),
], ids=["0of5", "5of5", "2of5", "50of100", "1of270"])
def test_wilson_interval_known_values(successes, n, expected):
    np.testing.assert_allclose(wilson_interval(successes, n), expected, atol=1e-4)


def test_wilson_interval_refuses_bad_counts():
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(6, 5)
    assert all(np.isnan(wilson_interval(0, 0)))


def test_full_batch_gd_stops_on_the_gradient_tolerance(one_torch_thread):
    data = make_moe(n=600, d=3, k=2, sigma=0.2, gating_scale=1.0, random_state=3)
    est = get_algorithm("sgd", n_experts=2, optimizer="gd", momentum=0.0, lr=0.05,
                        lr_schedule="constant", max_epochs=3000, grad_tol=5e-2,
                        init="data_scale", random_state=0).fit(data.X, data.y)
    assert est.stop_reason_ == "grad_tol" and est.converged_
    # the loop's stopping norm is the checked grad_norm_ (same coordinates, same point)
    est.stationarity(data.X, data.y)
    assert 0 < est.grad_norm_ <= 5e-2 * (1 + 1e-6)
    with pytest.raises(ValueError, match="grad_tol"):
        get_algorithm("sgd", n_experts=2, grad_tol=1e-3).fit(data.X, data.y)


@pytest.mark.parametrize("params", [
    {"mstep": "newton1", "max_iter": 2000, "tol": 1e-9},
    {"mstep": "gradient", "max_iter": 5000, "tol": 1e-9},
    {"init": "data_scale"},
], ids=["newton1", "gradient", "data_scale"])
def test_joint_em_variants_reach_a_stationary_point(params):
    data = _data()
    est = get_algorithm("joint_em", n_experts=2, n_init=1, random_state=0, **params)
    est.fit(data.X, data.y)
    est.stationarity(data.X, data.y)
    assert est.stop_reason_ == "converged" and est.grad_norm_ < STATIONARY_TOL
