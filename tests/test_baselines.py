"""The baselines: joint_em, sgd, alt_min (recovery, options, errors)."""

from __future__ import annotations

import numpy as np
import pytest

import moebench
from moebench.metrics import parameter_errors

ACCEPT_SEEDS = range(10)


@pytest.fixture(scope="module")
def easy_sets():
    """The acceptance case: d=5, k=2, linear, sigma=0.1, n=5e4, orthogonal gating; 10 seeds."""
    return [moebench.make_moe(50_000, 5, 2, activation="linear", sigma=0.1,
                              gating="orthogonal", random_state=100 + s) for s in ACCEPT_SEEDS]


@pytest.fixture(scope="module")
def small():
    return moebench.make_moe(4000, 5, 2, activation="linear", sigma=0.1, random_state=3)


def _error(est, data) -> float:
    return parameter_errors(est.experts_, est.gating_, data.model)["expert_error"]


@pytest.mark.parametrize("name", ["joint_em", "sgd"])
def test_recovers_easy_case_in_9_of_10_seeds(name, easy_sets):
    errors = [
        _error(moebench.get_algorithm(name, n_experts=2, random_state=s).fit(d.X, d.y), d)
        for s, d in zip(ACCEPT_SEEDS, easy_sets)
    ]
    assert sum(e < 0.05 for e in errors) >= 9, errors


def test_alt_min_recovers_linear_experts():
    data = moebench.make_moe(20_000, 6, 3, activation="linear", sigma=0.1, random_state=11)
    est = moebench.get_algorithm("alt_min", n_experts=3, random_state=0).fit(
        data.X, data.y, truth=data)
    assert _error(est, data) < 0.05
    assert est.gating_.shape == (3, 6) and np.allclose(est.gating_[-1], 0)
    assert 0.05 < est.sigma_ < 0.2
    assert {"expert_error", "restart", "mse"} <= set(est.history_[0])
    # the fitted gating is learned, not left at 0: it beats uniform gating
    uniform = moebench.MoEModel(est.experts_, np.zeros((3, 6)), est.sigma_)
    assert est.score(data.X, data.y) > uniform.mean_log_likelihood(data.X, data.y)


def test_alt_min_rejects_nonlinear_and_k_gt_d(small):
    with pytest.raises(ValueError, match="sigmoid.*valid choices: linear"):
        moebench.get_algorithm("alt_min", activation="sigmoid").fit(small.X, small.y)
    with pytest.raises(ValueError, match="n_experts <= d"):
        moebench.get_algorithm("alt_min", n_experts=6).fit(small.X, small.y)


def test_gradient_em_improves_likelihood(small):
    """Gradient EM: the likelihood rises from the start to the end, and never falls by more
    than 1e-3 in one iteration (gradient EM is not exactly monotone)."""
    est = moebench.get_algorithm("joint_em", n_experts=2, mstep="gradient", step_size=1.0,
                                 n_init=1, max_iter=60, tol=0.0, random_state=1)
    est.fit(small.X, small.y)
    ll = np.array([r["log_likelihood"] for r in est.history_])
    assert len(ll) == 61
    assert ll[-1] > ll[0] + 0.1
    assert np.min(np.diff(ll)) > -1e-3


def test_full_em_is_monotone(small):
    est = moebench.get_algorithm("joint_em", n_experts=2, n_init=1, random_state=2)
    est.fit(small.X, small.y)
    ll = np.array([r["log_likelihood"] for r in est.history_])
    assert np.all(np.diff(ll) > -1e-9)


def _final_ll_per_restart(history) -> dict[int, float]:
    out: dict[int, float] = {}
    for rec in history:
        out[rec["restart"]] = rec["log_likelihood"]
    return out


@pytest.mark.parametrize("name, options", [
    # (max_iter is a total over the restarts: a loose tol ends each start early, so all run)
    ("joint_em", dict(init="random", max_iter=400, tol=1e-2)),
    ("sgd", dict(max_epochs=2, lr=0.01)),
])
def test_n_init_keeps_the_best_likelihood(name, options, small):
    est = moebench.get_algorithm(name, n_experts=2, n_init=4, random_state=5, **options)
    est.fit(small.X, small.y)
    finals = _final_ll_per_restart(est.history_)
    assert sorted(finals) == [0, 1, 2, 3]
    assert len(set(np.round(list(finals.values()), 9))) > 1  # the restarts differ
    assert est.log_likelihood_ == pytest.approx(max(finals.values()), abs=1e-12)
    assert est.score(small.X, small.y) == pytest.approx(max(finals.values()), abs=1e-8)


@pytest.mark.parametrize("init", ["random", "responsibilities", "spectral"])
def test_joint_em_inits(init, small):
    est = moebench.get_algorithm("joint_em", n_experts=2, init=init, random_state=0)
    est.fit(small.X, small.y, truth=small)
    assert _error(est, small) < 0.05
    assert all(r["phase"] == "em" and "expert_error" in r for r in est.history_)


def test_joint_em_nonlinear_and_fixed_sigma():
    data = moebench.make_moe(6000, 4, 2, activation="relu", sigma=0.1, random_state=4)
    est = moebench.get_algorithm("joint_em", n_experts=2, activation="relu", sigma=0.1,
                                 init="spectral", random_state=0).fit(data.X, data.y)
    assert est.sigma_ == 0.1
    assert _error(est, data) < 0.1


@pytest.mark.parametrize("options", [
    dict(optimizer="gd", lr=0.03, momentum=0.9, max_epochs=300, lr_schedule="constant"),
    dict(optimizer="sgd", lr=0.05, batch_size=128, max_epochs=15, lr_schedule="step"),
    dict(optimizer="adam", lr=0.05, batch_size=None, max_epochs=200, lr_schedule="cosine"),
    dict(init="spectral", n_init=1, dtype="float32"),
])
def test_sgd_options(options, small):
    est = moebench.get_algorithm("sgd", n_experts=2, random_state=0, **options)
    est.fit(small.X, small.y, truth=small)
    assert _error(est, small) < 0.05
    assert est.experts_.dtype == np.float64
    hist = est.history_
    assert hist[0]["iteration"] == 0 and "expert_error" in hist[-1]
    assert hist[-1]["log_likelihood"] > hist[0]["log_likelihood"]


def test_sgd_history_has_one_record_per_epoch(small):
    est = moebench.get_algorithm("sgd", n_experts=2, n_init=2, max_epochs=7, random_state=0)
    est.fit(small.X, small.y)
    for j in (0, 1):
        its = [r["iteration"] for r in est.history_ if r["restart"] == j]
        assert its == list(range(8))
    assert est.n_iter_ == 14


def test_sgd_custom_callable_matches_builtin(small):
    tanh = moebench.get_activation(np.tanh, derivative=lambda t: 1.0 - np.tanh(t) ** 2)
    assert tanh.torch_func is None  # exercises the numpy-backed autograd function
    opts = dict(n_experts=2, n_init=1, max_epochs=5, sigma=0.1, random_state=0)
    a = moebench.get_algorithm("sgd", activation="tanh", **opts).fit(small.X, small.y)
    b = moebench.get_algorithm("sgd", activation=tanh, **opts).fit(small.X, small.y)
    np.testing.assert_allclose(a.experts_, b.experts_, atol=1e-8)


def test_max_time_stops_restarts(small):
    est = moebench.get_algorithm("joint_em", n_experts=2, n_init=50, max_iter=500, tol=0.0,
                                 max_time=0.2, random_state=0).fit(small.X, small.y)
    assert 1 <= len({r["restart"] for r in est.history_}) < 50
    assert est.history_[-1]["time"] < 2.0


@pytest.mark.parametrize("name, option, value, valid", [
    ("joint_em", "init", "kmeanz", "'random', 'responsibilities', 'spectral'"),
    ("joint_em", "mstep", "newton", "'full', 'gradient'"),
    ("sgd", "optimizer", "rmsprop", "'gd', 'sgd', 'adam'"),
    ("sgd", "lr_schedule", "linear", "'constant', 'cosine', 'step'"),
    ("sgd", "dtype", "float16", "'float64', 'float32'"),
    ("sgd", "device", "tpu", "'auto', 'cpu', 'cuda'"),
    ("sgd", "batch_size", "big", "'auto'"),
    ("sgd", "lr", -1.0, "> 0"),
    ("joint_em", "n_init", 0, ">= 1"),
])
def test_bad_options_raise(name, option, value, valid, small):
    est = moebench.get_algorithm(name, n_experts=2, **{option: value})
    with pytest.raises(ValueError, match=option) as info:
        est.fit(small.X, small.y)
    assert valid in str(info.value)
