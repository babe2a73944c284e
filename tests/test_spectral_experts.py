"""Spectral Experts (Chaganty and Liang 2013) and the label-transform ablation of tensor_em."""

from __future__ import annotations

import numpy as np
import pytest

import moebench
from moebench import registry
from moebench.gating_em import gating_em
from moebench.metrics import parameter_errors
from moebench.sweep.config import ConfigError, validate_config
from moebench.tensor.label_transforms import ablation_coefficients
from moebench.testing import check_algorithm

# expert errors measured at n = 1e5, d = 5, sigma = 0.1, gating_scale = 0, data seed 1,
# random_state 0: k = 2 -> 0.036 (gaussian), 0.015 (uniform); k = 3 -> 0.090, 0.047;
# with refine: <= 0.002. Bounds are about twice the measured values.
BOUNDS = {(2, "gaussian"): 0.08, (2, "uniform"): 0.04, (3, "gaussian"): 0.18,
          (3, "uniform"): 0.10}


def _mlr(k: int, inputs: str = "gaussian", n: int = 100_000, seed: int = 1):
    return moebench.make_moe(n, 5, k, sigma=0.1, gating_scale=0.0, random_state=seed,
                             input_distribution=inputs)


def _expert_error(experts, data) -> float:
    return parameter_errors(experts, np.zeros_like(experts), data.model)["expert_error"]


def test_check_algorithm_passes():
    check_algorithm("spectral_experts")


def test_registered_with_its_declarations():
    cls = registry.algorithm_class("spectral_experts")
    assert cls.supported_activations == ("linear",)
    assert cls.requires_k_le_d and not cls.local_search
    assert "constant mixing" in cls.description and "misspecified" in cls.description
    assert cls.budget_parameters == {"max_iter": "max_iter", "max_time": "max_time"}


@pytest.mark.parametrize("k,inputs", [(2, "gaussian"), (3, "gaussian"), (3, "uniform")],
                         ids=["k2-gaussian", "k3-gaussian", "k3-uniform"])
def test_recovers_mixed_linear_regression(k, inputs):
    data = _mlr(k, inputs)
    est = moebench.get_algorithm("spectral_experts", n_experts=k, random_state=0)
    est.fit(data.X, data.y)
    assert _expert_error(est.spectral_experts_, data) < BOUNDS[k, inputs]
    # the norms are identified too (unlike tensor_em): mixing weights near 1/k, sigma near 0.1
    np.testing.assert_allclose(est.mixing_weights_, 1.0 / k, atol=0.08)
    assert 0.0 < est.sigma2_regression_ < 0.05  # the y^2 intercept: sigma^2 = 0.01, noisy
    assert abs(est.sigma_ - 0.1) < 0.03


def test_refine_improves_the_error():
    data = _mlr(3)
    plain = moebench.get_algorithm("spectral_experts", n_experts=3, random_state=0)
    refined = moebench.get_algorithm("spectral_experts", n_experts=3, random_state=0,
                                     refine=True)
    plain.fit(data.X, data.y)
    refined.fit(data.X, data.y)
    e_plain = _expert_error(plain.experts_, data)
    e_refined = _expert_error(refined.experts_, data)
    assert e_refined < 0.01 < e_plain
    # refine is joint EM from the spectral start: joint_em's phase "em"
    assert any(r["phase"] == "em" for r in refined.history_)
    assert not any(r["phase"] == "em" for r in plain.history_)


@pytest.mark.parametrize("regularization", ["nuclear", "ridge"])
def test_regularizations_agree_at_large_n(regularization):
    data = _mlr(2, n=20_000)
    est = moebench.get_algorithm("spectral_experts", n_experts=2, random_state=0,
                                 regularization=regularization)
    est.fit(data.X, data.y)
    assert _expert_error(est.spectral_experts_, data) < 0.2


def test_nuclear_norm_lowers_the_rank_of_m2():
    """A strong nuclear-norm penalty shrinks M2's trailing singular values to 0."""
    data = _mlr(2, n=20_000)
    strong = moebench.get_algorithm("spectral_experts", n_experts=2, random_state=0,
                                    reg_strength=30.0).fit(data.X, data.y)
    ls = moebench.get_algorithm("spectral_experts", n_experts=2, random_state=0,
                                regularization="ridge", reg_strength=0.0).fit(data.X, data.y)
    sv_strong = np.linalg.svd(strong.M2_, compute_uv=False)
    sv_ls = np.linalg.svd(ls.M2_, compute_uv=False)
    assert np.all(sv_strong[2:] < 1e-6 * sv_strong[0])
    assert np.all(sv_ls[2:] > 1e-6 * sv_ls[0])


def test_refuses_d_above_the_limit():
    cls = registry.algorithm_class("spectral_experts")
    with pytest.raises(ValueError, match=r"d = 21 .*valid: d <= 20"):
        cls.check_setting(2, 21, "linear")
    X = np.random.default_rng(0).standard_normal((3000, 21))
    with pytest.raises(ValueError, match=r"valid: d <= 20"):
        moebench.get_algorithm("spectral_experts").fit(X, X[:, 0])
    raw = {"data": {"n": 5000, "d": 21, "k": 2, "activation": "linear"},
           "algorithm": [{"name": "spectral_experts"}]}
    with pytest.raises(ConfigError, match=r"valid: d <= 20"):
        validate_config(raw)


def test_refuses_nonlinear_experts():
    with pytest.raises(ValueError, match="does not support activation 'relu'"):
        registry.algorithm_class("spectral_experts").check_setting(2, 5, "relu")


# --------------------------------------------------------------------------- the shared EM stage
def test_refine_is_joint_em_from_the_spectral_start():
    """spectral_experts(refine=True) is joint_em(init="spectral_experts"), to the bit; both
    moment methods fit their gating with the one bounded gating EM."""
    data = _mlr(2, n=5000)
    refined = moebench.get_algorithm("spectral_experts", n_experts=2, random_state=0,
                                     refine=True, refine_max_iter=40, refine_tol=1e-7)
    joint = moebench.get_algorithm("joint_em", n_experts=2, random_state=0,
                                   init="spectral_experts", max_iter=40, tol=1e-7)
    refined.fit(data.X, data.y)
    joint.fit(data.X, data.y)
    for attr in ("experts_", "gating_", "sigma_", "n_iter_", "log_likelihood_",
                 "stop_reason_", "spectral_experts_"):
        assert np.array_equal(getattr(refined, attr), getattr(joint, attr)), attr
    np.testing.assert_array_equal([r["log_likelihood"] for r in refined.history_],
                                  [r["log_likelihood"] for r in joint.history_])
    assert refined.local_search
    import moebench.baselines.spectral_experts as se_module

    import moebench.tensor.estimator as te_module

    assert te_module.gating_em is gating_em
    assert se_module.gating_em is gating_em


# --------------------------------------------------------------------------- label transforms
@pytest.mark.parametrize("activation", ["linear", "sigmoid", "tanh", "relu", "leaky_relu"])
def test_raw_label_identifies_no_builtin_activation(activation):
    cls = registry.algorithm_class("tensor_em")
    with pytest.raises(ValueError, match=r"label_transform='raw' cannot identify"):
        cls.check_setting(2, 5, activation, params={"label_transform": "raw"})
    cls.check_setting(2, 5, activation, params={"label_transform": "paper"})  # accepted


def test_raw_label_refused_by_the_config_checker():
    raw = {"data": {"n": 5000, "d": 5, "k": 2, "activation": "linear"},
           "algorithm": [{"name": "tensor_em", "params": {"label_transform": "raw"}}]}
    with pytest.raises(ConfigError, match=r"label_transform='raw' cannot identify"):
        validate_config(raw)


def test_ablation_constants():
    lin = ablation_coefficients("powers", "linear", 0.1)
    assert lin.c2 == pytest.approx(2.0) and lin.c3 == pytest.approx(6.0)
    exp_g = moebench.get_activation(lambda t: np.exp(0.5 * t))
    raw = ablation_coefficients("raw", exp_g)
    # E[g''(Z)] = e^{1/8} / 4, E[g'''(Z)] = e^{1/8} / 8 for g(t) = exp(t / 2)
    assert raw.c2 == pytest.approx(np.exp(0.125) / 4, rel=1e-8)
    assert raw.c3 == pytest.approx(np.exp(0.125) / 8, rel=1e-8)


def test_raw_label_recovers_experts_where_identifiable():
    """g(t) = t + t^2/4 + t^3/6 has E[g''] = 1/2, E[g'''] = 1: the raw moments find its
    experts (measured error 0.097 at n = 1e5; a wrong direction scores ~1)."""
    g = moebench.get_activation(lambda t: t + 0.25 * t**2 + t**3 / 6)
    data = moebench.make_moe(100_000, 5, 2, activation=g, sigma=0.1, gating_scale=0.0,
                             random_state=3)
    est = moebench.get_algorithm("tensor_em", n_experts=2, activation=g, random_state=0,
                                 label_transform="raw", gating_em_iter=2)
    est.fit(data.X, data.y)
    assert est.coefficients_.transform == "raw"
    assert est.coefficients_.c2 == pytest.approx(0.5)
    assert est.coefficients_.c3 == pytest.approx(1.0)
    assert _expert_error(est.experts_, data) < 0.2


def test_powers_recovers_linear_experts_at_constant_mixing():
    data = _mlr(2)
    est = moebench.get_algorithm("tensor_em", n_experts=2, random_state=0,
                                 label_transform="powers", gating_em_iter=5)
    est.fit(data.X, data.y)
    assert _expert_error(est.experts_, data) < 0.1


def test_default_label_transform_is_the_paper_bit_for_bit():
    data = _mlr(2, n=5000)
    a = moebench.get_algorithm("tensor_em", n_experts=2, random_state=0).fit(data.X, data.y)
    b = moebench.get_algorithm("tensor_em", n_experts=2, random_state=0,
                               label_transform="paper").fit(data.X, data.y)
    assert np.array_equal(a.experts_, b.experts_) and np.array_equal(a.gating_, b.gating_)
    assert a.coefficients_.beta == pytest.approx(-3.0 * (1.0 + a.coefficients_.sigma**2))
