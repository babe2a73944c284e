"""The quasi-Newton gating EM (moebench.acceleration) against the plain Newton EM."""

from __future__ import annotations

import numpy as np
import pytest

import moebench
from moebench import acceleration, em
from moebench.activations import get_activation
from moebench.history import History


def _problem(n, d, k, activation="linear", seed=0, noise=0.05):
    data = moebench.make_moe(n, d, k, activation=activation, sigma=0.1, gating="orthogonal",
                             random_state=seed)
    rng = np.random.default_rng(seed + 100)
    experts = data.experts + noise * rng.standard_normal(data.experts.shape)
    return data, experts, get_activation(activation)


SETTINGS = [
    pytest.param(20_000, 30, 5, "linear", False, 0.0, id="d30-k5-sigma-given"),
    pytest.param(20_000, 30, 5, "linear", True, 0.0, id="d30-k5-sigma-fitted"),
    pytest.param(10_000, 10, 3, "sigmoid", True, 0.0, id="d10-k3-sigmoid-sigma-fitted"),
    pytest.param(10_000, 10, 4, "relu", False, 1e-3, id="d10-k4-relu-ridge"),
]


@pytest.mark.parametrize("n, d, k, activation, update_sigma, ridge", SETTINGS)
def test_same_fixed_point_as_plain_newton_em(n, d, k, activation, update_sigma, ridge):
    data, experts, act = _problem(n, d, k, activation)
    sigma0 = 0.13 if update_sigma else 0.1
    zero = np.zeros((k, d))
    qn = acceleration.gating_em_quasi_newton(data.X, data.y, experts, zero, sigma0, act,
                                             update_sigma=update_sigma, ridge=ridge)
    tight = em.run_em(data.X, data.y, experts, zero, sigma0, act, update_experts=False,
                      update_sigma=update_sigma, ridge=ridge, gating_method="newton",
                      max_iter=3000, tol=1e-13)
    plain = em.run_em(data.X, data.y, experts, zero, sigma0, act, update_experts=False,
                      update_sigma=update_sigma, ridge=ridge, gating_method="newton",
                      max_iter=200, tol=1e-8)
    assert qn.converged and qn.stop_reason == "converged"
    assert tight.converged
    # at the default tol: the plain EM's log-likelihood to 1e-6 per sample, and at least as
    # close to the fixed point (the tightly converged plain EM) as the plain EM is
    assert abs(qn.log_likelihood - plain.log_likelihood) < 1e-6
    assert abs(qn.log_likelihood - tight.log_likelihood) < 1e-6
    err_qn = np.max(np.abs(qn.gating - tight.gating))
    err_plain = np.max(np.abs(plain.gating - tight.gating))
    assert err_qn <= max(err_plain, 2e-5)
    assert np.all(qn.gating[-1] == 0.0)
    np.testing.assert_array_equal(qn.experts, experts)
    # converged further: the fixed point's gating to 1e-4 and sigma to 1e-5
    qn = acceleration.gating_em_quasi_newton(data.X, data.y, experts, zero, sigma0, act,
                                             update_sigma=update_sigma, ridge=ridge, tol=1e-10)
    assert np.max(np.abs(qn.gating - tight.gating)) < 1e-4
    assert abs(qn.log_likelihood - tight.log_likelihood) < 1e-8
    assert abs(qn.sigma - tight.sigma) < 1e-5


@pytest.mark.parametrize("update_sigma", [False, True], ids=["sigma-given", "sigma-fitted"])
def test_log_likelihood_is_monotone(update_sigma):
    data, experts, act = _problem(20_000, 30, 5, seed=3)
    hist = History()
    res = acceleration.gating_em_quasi_newton(data.X, data.y, experts, np.zeros((5, 30)),
                                              0.3 if update_sigma else 0.1, act,
                                              update_sigma=update_sigma, history=hist)
    lls = np.array([r["log_likelihood"] for r in hist.records])
    its = [r["iteration"] for r in hist.records]
    assert its == list(range(res.n_iter + 1))
    assert lls.size >= 5 and np.all(np.isfinite(lls))
    assert np.all(np.diff(lls) >= -1e-12 * np.abs(lls[1:]))
    assert lls[-1] == pytest.approx(res.log_likelihood, abs=0)


def _count_x_products(monkeypatch):
    """Count products with X: 2 per quasi-Newton evaluation (W X^T, R X) plus its sigma
    step; 1 per plain E-step and 2 per gating-objective evaluation of the plain EM."""
    counts = {"qn": 0, "plain": 0}
    ev = acceleration._MarginalLikelihood.evaluate
    sig = acceleration._MarginalLikelihood.sigma_step
    obj, est = em._gating_objective, em._e_step_gate

    def count(key, fn, c):
        def wrapped(*a, **kw):
            counts[key] += c
            return fn(*a, **kw)
        return wrapped

    monkeypatch.setattr(acceleration._MarginalLikelihood, "evaluate", count("qn", ev, 2))
    monkeypatch.setattr(acceleration._MarginalLikelihood, "sigma_step", count("qn", sig, 1))
    monkeypatch.setattr(em, "_gating_objective", count("plain", obj, 2))
    monkeypatch.setattr(em, "_e_step_gate", count("plain", est, 1))
    return counts


def test_x_products_to_convergence_are_bounded(monkeypatch):
    """d = 100, k = 10, sigma given (the issue-13 setting, smaller n): the quasi-Newton
    gating EM converges in at most 60 products with X (plus one for the experts' means),
    at least 2.5x fewer than the plain EM's, at the same log-likelihood (at n = 2e5 the
    plain EM needs more iterations: 6x fewer there, see docs/performance.md)."""
    data, experts, act = _problem(20_000, 100, 10, seed=1, noise=0.1)
    counts = _count_x_products(monkeypatch)
    zero = np.zeros((10, 100))
    qn = acceleration.gating_em_quasi_newton(data.X, data.y, experts, zero, 0.1, act,
                                             update_sigma=False)
    plain = em.run_em(data.X, data.y, experts, zero, 0.1, act, update_experts=False,
                      update_sigma=False, max_iter=200, tol=1e-8)
    assert qn.converged and plain.converged
    assert abs(qn.log_likelihood - plain.log_likelihood) < 1e-6
    assert counts["qn"] <= 60
    assert counts["plain"] >= 2.5 * counts["qn"]


@pytest.mark.parametrize("sigma", [0.1, None], ids=["sigma-given", "sigma-fitted"])
def test_tensor_em_default_matches_plain_gating_em(sigma):
    data = moebench.make_moe(20_000, 10, 3, activation="linear", sigma=0.1,
                             gating="orthogonal", random_state=4)
    fits = {}
    for acc in ("quasi_newton", "none"):
        est = moebench.get_algorithm("tensor_em", n_experts=3, sigma=sigma, random_state=0,
                                     gating_acceleration=acc, gating_tol=1e-10)
        fits[acc] = est.fit(data.X, data.y)
    a, b = fits["quasi_newton"], fits["none"]
    np.testing.assert_array_equal(a.experts_, b.experts_)  # the tensor step is untouched
    assert abs(a.log_likelihood_ - b.log_likelihood_) < 1e-6
    assert np.max(np.abs(a.gating_ - b.gating_)) < 1e-4
    assert a.gating_converged_ and b.gating_converged_
    assert a.get_params()["gating_acceleration"] == "quasi_newton"


def test_small_iteration_budget_runs_the_plain_em():
    data = moebench.make_moe(5_000, 10, 3, activation="linear", sigma=0.1, random_state=5)
    fits = [moebench.get_algorithm("tensor_em", n_experts=3, random_state=0,
                                   gating_em_iter=acceleration.QN_MIN_ITER - 1,
                                   gating_acceleration=acc).fit(data.X, data.y)
            for acc in ("quasi_newton", "none")]
    np.testing.assert_array_equal(fits[0].gating_, fits[1].gating_)
    assert fits[0].n_iter_ == fits[1].n_iter_


def test_bad_acceleration_is_refused():
    data = moebench.make_moe(5_000, 10, 3, random_state=0)
    est = moebench.get_algorithm("tensor_em", n_experts=3, gating_acceleration="squarem")
    with pytest.raises(ValueError, match="gating_acceleration.*squarem"):
        est.fit(data.X, data.y)


def test_non_finite_log_likelihood_raises():
    data, experts, act = _problem(2_000, 10, 3)
    with pytest.raises(FloatingPointError, match="non-finite"):
        acceleration.gating_em_quasi_newton(data.X, data.y, experts, np.zeros((3, 10)),
                                            1e-170, act, update_sigma=False)


def test_max_time_stops_with_max_time():
    data, experts, act = _problem(20_000, 30, 5)
    res = acceleration.gating_em_quasi_newton(data.X, data.y, experts, np.zeros((5, 30)),
                                              0.1, act, update_sigma=False, max_time=1e-9,
                                              history=History())
    assert res.stop_reason == "max_time" and not res.converged and res.n_iter == 1
