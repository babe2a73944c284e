import numpy as np
import pytest
from scipy.stats import norm

from moebench.model import MoEModel


def _model(activation="linear"):
    rng = np.random.default_rng(0)
    return MoEModel(rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), 0.3, activation)


def test_gating_is_stored_with_last_row_zero():
    m = _model()
    assert np.allclose(m.gating[-1], 0.0)


def test_log_likelihood_matches_direct_mixture_density():
    m = _model("sigmoid")
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((50, 4)), rng.standard_normal(50)
    logits = X @ m.gating.T
    pi = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    dens = np.sum(pi * norm.pdf(y[:, None], m.expert_means(X), 0.3), axis=1)
    assert np.allclose(m.log_likelihood(X, y), np.log(dens), rtol=1e-12)


def test_log_likelihood_is_finite_for_extreme_inputs():
    m = MoEModel(np.eye(2), np.array([[500.0, 0.0], [0.0, 0.0]]), 0.01)
    X = np.array([[10.0, -10.0], [-10.0, 10.0]])
    y = np.array([1e3, -1e3])  # far in the tails: naive exp underflows to log(0)
    ll = m.log_likelihood(X, y)
    assert np.all(np.isfinite(ll))


def test_log_joint_sums_to_the_likelihood_and_predict_is_gate_weighted_mean():
    m = _model("relu")
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((20, 4)), rng.standard_normal(20)
    lj = m.log_joint(X, y)
    assert lj.shape == (20, 3)
    assert np.allclose(np.exp(lj - m.log_likelihood(X, y)[:, None]).sum(1), 1.0)
    pi = np.exp(m.gate_log_proba(X))
    assert np.allclose(m.predict(X), np.sum(pi * np.maximum(X @ m.experts.T, 0), axis=1))


def test_sampling_is_seeded_and_matches_gate_frequencies():
    m = _model()
    X = np.zeros((40000, 4))  # uniform gates
    y1, z1 = m.sample(X, 5)
    y2, z2 = m.sample(X, 5)
    assert np.array_equal(y1, y2) and np.array_equal(z1, z2)
    assert np.allclose(np.bincount(z1, minlength=3) / len(z1), 1 / 3, atol=0.01)
    assert abs(np.std(y1) - 0.3) < 0.01  # X = 0: pure noise


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="same shape"):
        MoEModel(np.ones((2, 3)), np.ones((3, 3)), 0.1)
    with pytest.raises(ValueError, match="n_experts must be >= 2"):
        MoEModel(np.ones((1, 3)), np.ones((1, 3)), 0.1)
    with pytest.raises(ValueError, match="sigma"):
        MoEModel(np.ones((2, 3)), np.ones((2, 3)), -1.0)
    with pytest.raises(ValueError, match="features"):
        _model().predict(np.ones((2, 5)))
