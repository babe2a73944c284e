"""The regression MoE with a softmax or sigmoid gate, its least squares and its loss."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import expit

import moebench
from moebench.gate_voronoi import gate_voronoi_loss
from moebench.generator import iter_moe_blocks, truth_model
from moebench.least_squares import LeastSquaresMoE
from moebench.regression_moe import (
    GATES,
    RegressionMoE,
    equivalent_truth,
    two_expert_truth,
)
from moebench.sweep.worker import voronoi_losses
from moebench.testing import check_algorithm

#: a sigmoid truth on x in [0, 1]: gate 1 opens above x = 0.3, gate 2 below x = 0.7
SIGMOID_TRUTH = RegressionMoE([[4.0], [-3.0]], [-2.0, 2.0], [[20.0], [-20.0]], [-6.0, 14.0],
                              0.05, "sigmoid")


def _data(model: RegressionMoE, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, (n, model.n_features))
    return X, model.sample(X, rng)


# ----------------------------------------------------------------------------- the model
def test_regression_function_values_for_both_gates():
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((3, 2)), rng.standard_normal(3)
    W, c = rng.standard_normal((3, 2)), rng.standard_normal(3)
    X = rng.standard_normal((50, 2))
    h = X @ A.T + b
    sig = RegressionMoE(A, b, W, c, 0.3, "sigmoid")
    np.testing.assert_allclose(sig.predict(X), np.sum(expit(X @ W.T + c) * h, axis=1),
                               rtol=1e-13)
    soft = RegressionMoE(A, b, W, c, 0.3, "softmax")
    logits = X @ W.T + c
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(soft.predict(X), np.sum(p * h, axis=1), rtol=1e-13)
    # softmax gates are stored with the last as reference; sigmoid gates as given
    np.testing.assert_array_equal(soft.gating[-1], 0.0)
    assert soft.gating_bias[-1] == 0.0
    np.testing.assert_array_equal(sig.gating, W)
    assert sig.gates(X).shape == (50, 3) and sig.expert_outputs(X).shape == (50, 3)
    relu = RegressionMoE(A, b, W, c, 0.3, "sigmoid", "relu")
    np.testing.assert_allclose(relu.predict(X), np.sum(expit(logits) * np.maximum(h, 0), 1),
                               rtol=1e-13)


def test_sample_is_the_function_plus_gaussian_noise():
    X = np.random.default_rng(1).uniform(0, 1, (200_000, 1))
    y = SIGMOID_TRUTH.sample(X, 5)
    np.testing.assert_array_equal(y, SIGMOID_TRUTH.sample(X, 5))
    resid = y - SIGMOID_TRUTH.predict(X)
    assert abs(np.mean(resid)) < 4 * 0.05 / np.sqrt(len(y))
    assert abs(np.std(resid) / 0.05 - 1) < 0.01
    ll = SIGMOID_TRUTH.log_likelihood(X[:3], y[:3])
    np.testing.assert_allclose(
        ll, -0.5 * (resid[:3] / 0.05) ** 2 - np.log(0.05 * np.sqrt(2 * np.pi)))


@pytest.mark.parametrize("gate", GATES)
def test_two_expert_truth_is_one_function_under_both_gates(gate):
    X = np.linspace(0, 1, 101)[:, None]
    truth = two_expert_truth(10.0, -5.0, (2.0, -1.0), (-1.0, 1.0), 0.1, gate)
    other = two_expert_truth(10.0, -5.0, (2.0, -1.0), (-1.0, 1.0), 0.1,
                             "sigmoid" if gate == "softmax" else "softmax")
    np.testing.assert_allclose(truth.predict(X), other.predict(X), atol=1e-14)
    np.testing.assert_allclose(equivalent_truth(truth, other.gate).predict(X), truth.predict(X),
                               atol=1e-14)


def test_equivalent_truth_drops_a_zero_expert_and_adds_it_back():
    soft = RegressionMoE([[4.0], [0.0]], [-1.0, 0.0], [[10.0], [0.0]], [-3.0, 0.0], 0.1,
                         "softmax")
    sig = equivalent_truth(soft, "sigmoid")
    assert sig.n_experts == 1 and sig.gate == "sigmoid"
    np.testing.assert_array_equal(sig.gating_bias, [-3.0])
    X = np.linspace(0, 1, 51)[:, None]
    np.testing.assert_allclose(sig.predict(X), soft.predict(X), atol=1e-15)
    back = equivalent_truth(sig, "softmax")
    np.testing.assert_array_equal(back.experts, soft.experts)
    np.testing.assert_array_equal(back.gating_bias, soft.gating_bias)
    assert equivalent_truth(soft, "softmax") is soft
    # three softmax experts, or a sigmoid pair, have no counterpart of the other gate here
    assert equivalent_truth(SIGMOID_TRUTH, "softmax") is None
    three = RegressionMoE(np.ones((3, 1)), np.zeros(3), np.ones((3, 1)), np.zeros(3), 0.1,
                          "softmax")
    assert equivalent_truth(three, "sigmoid") is None


def test_bad_input_names_the_valid_choices():
    with pytest.raises(ValueError,
                       match="unknown gate 'tanh'; valid choices are 'softmax', 'sigmoid'"):
        RegressionMoE([[1.0]], [0.0], [[1.0]], [0.0], 0.1, "tanh")
    with pytest.raises(ValueError, match=r"gating_bias must have shape \(2,\)"):
        RegressionMoE([[1.0], [2.0]], [0.0, 0.0], [[1.0], [0.0]], [0.0], 0.1, "sigmoid")
    with pytest.raises(ValueError, match="same shape"):
        RegressionMoE([[1.0], [2.0]], [0.0, 0.0], [[1.0]], [0.0, 0.0], 0.1, "sigmoid")
    X, y = _data(SIGMOID_TRUTH, 200, 0)
    with pytest.raises(ValueError, match="gate.*'softmax'.*'sigmoid'"):
        LeastSquaresMoE(gate="gaussian").fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features"):
        SIGMOID_TRUTH.predict(np.zeros((3, 2)))
    soft = equivalent_truth(two_expert_truth(1.0, 0.0, (1.0, 2.0), (0.0, 0.0), 0.1, "sigmoid"),
                            "softmax")
    with pytest.raises(ValueError, match="fitted has a softmax gate, truth a sigmoid gate"):
        gate_voronoi_loss(soft, SIGMOID_TRUTH)
    with pytest.raises(ValueError, match="fitted must be a RegressionMoE"):
        gate_voronoi_loss(moebench.make_moe(50, 3, 2, random_state=0).model, SIGMOID_TRUTH)
    with pytest.raises(ValueError, match="r must be a positive finite number"):
        gate_voronoi_loss(SIGMOID_TRUTH, SIGMOID_TRUTH, r=0.0)


# ------------------------------------------------------------------------------ the loss
def _direct(fit: RegressionMoE, true: RegressionMoE, r: float = 2.0) -> float:
    """The module docstring's formula, written out with loops over atoms and cells."""
    def one(beta0, beta1):
        w = (lambda t: 1 / (1 + np.exp(-t))) if fit.gate == "sigmoid" else np.exp
        cells = {j: [] for j in range(true.n_experts)}
        for i in range(fit.n_experts):
            dist = [np.linalg.norm(beta1[i] - true.gating[j])
                    + abs(fit.expert_bias[i] - true.expert_bias[j])
                    + np.linalg.norm(fit.experts[i] - true.experts[j])
                    for j in range(true.n_experts)]
            cells[int(np.argmin(dist))].append(i)
        total = 0.0
        for j, atoms in cells.items():
            total += abs(sum(w(beta0[i]) for i in atoms) - w(true.gating_bias[j]))
            for i in atoms:
                parts = (np.linalg.norm(beta1[i] - true.gating[j]),
                         abs(fit.expert_bias[i] - true.expert_bias[j]),
                         np.linalg.norm(fit.experts[i] - true.experts[j]))
                total += w(beta0[i]) * (sum(parts) if len(atoms) == 1
                                        else sum(p**r for p in parts))
        return total

    if fit.gate == "sigmoid":
        return one(fit.gating_bias, fit.gating)
    return min(one(fit.gating_bias - fit.gating_bias[m], fit.gating - fit.gating[m])
               for m in range(fit.n_experts))


@pytest.mark.parametrize("gate", GATES)
def test_loss_equals_the_formula_on_random_parameter_sets(gate):
    rng = np.random.default_rng(29)
    sizes = set()
    for k_true, extra, d in itertools.product((2, 3), (0, 1, 2), (1, 2)):
        for _ in range(5):
            k = k_true + extra

            def draw(m, d=d):
                return (rng.standard_normal((m, d)), rng.standard_normal(m),
                        2 * rng.standard_normal((m, d)), rng.standard_normal(m))

            true = RegressionMoE(*draw(k_true), 0.1, gate)
            # fitted atoms near random true atoms: singleton and multi-atom cells both occur
            A, b, W, c = draw(k)
            pick = rng.integers(0, k_true, size=k)
            fit = RegressionMoE(true.experts[pick] + 0.3 * A, true.expert_bias[pick] + 0.3 * b,
                                true.gating[pick] + 0.3 * W, true.gating_bias[pick] + 0.3 * c,
                                0.1, gate)
            for r in (2.0, 3.0):
                assert gate_voronoi_loss(fit, true, r=r) == pytest.approx(
                    _direct(fit, true, r), rel=1e-12, abs=1e-14)
            sizes.update(np.bincount(pick).tolist())
    assert 1 in sizes and max(sizes) >= 2  # both kinds of cell were exercised


@pytest.mark.parametrize("gate", GATES)
def test_loss_is_zero_at_the_truth_and_ignores_the_order_of_atoms(gate):
    truth = RegressionMoE([[4.0], [-3.0], [1.0]], [-2.0, 2.0, 0.5], [[20.0], [-20.0], [3.0]],
                          [-6.0, 14.0, 1.0], 0.05, gate)
    assert gate_voronoi_loss(truth, truth) == 0.0
    order = [2, 0, 1]
    shuffled = RegressionMoE(truth.experts[order], truth.expert_bias[order],
                             truth.gating[order], truth.gating_bias[order], 0.05, gate)
    # a softmax fit with another reference expert is the same model (best reference choice)
    assert gate_voronoi_loss(shuffled, truth) == pytest.approx(0.0, abs=1e-12)
    moved = RegressionMoE(truth.experts, truth.expert_bias + [0.1, 0.0, 0.0], truth.gating,
                          truth.gating_bias, 0.05, gate)
    w = expit(-6.0) if gate == "sigmoid" else np.exp(-6.0 - 1.0)  # softmax: relative to atom 3
    assert gate_voronoi_loss(moved, truth) == pytest.approx(w * 0.1, rel=1e-12)


# ------------------------------------------------------------------------- least squares
def test_least_squares_recovers_an_exactly_specified_sigmoid_truth():
    # measured: losses 1.66, 0.049, 1.20, 0.47 for data and start seeds 0-3 (n = 2000)
    X, y = _data(SIGMOID_TRUTH, 2000, 1)
    est = LeastSquaresMoE(n_experts=2, gate="sigmoid", random_state=1).fit(X, y)
    assert gate_voronoi_loss(est.model_, SIGMOID_TRUTH) < 0.5
    assert abs(est.mse_ / 0.05**2 - 1) < 0.1
    assert est.sigma_ == pytest.approx(np.sqrt(est.mse_))
    assert est.score(X, y) == pytest.approx(est.log_likelihood_, rel=1e-12)
    np.testing.assert_allclose(est.predict(X), est.model_.predict(X))
    grad, _ = est.stationarity(X, y)
    assert grad < 1e-3


def test_least_squares_fits_the_softmax_gate_and_records_its_fit():
    truth = equivalent_truth(two_expert_truth(10.0, -3.0, (4.0, -3.0), (-1.0, 2.0), 0.1,
                                              "sigmoid"), "softmax")
    X, y = _data(truth, 2000, 2)
    est = LeastSquaresMoE(n_experts=2, gate="softmax", random_state=0).fit(X, y, truth=truth)
    assert gate_voronoi_loss(est.model_, truth) < 0.5
    assert not hasattr(est, "sigmoid_gating_")
    assert est.history_[-1]["mse"] == pytest.approx(est.mse_)
    assert est.stop_reason_ == "converged" and est.converged_


@pytest.mark.parametrize("gate, atol", [("softmax", 1e-7), ("sigmoid", 1e-5)])
def test_least_squares_is_scale_equivariant(gate, atol):
    # run to the end of L-BFGS-B (tol = 0): measured 5e-9 (softmax) and 3e-7 (sigmoid)
    # relative differences between the fits of X * c
    truth = RegressionMoE([[4.0], [-3.0]], [-1.0, 2.0], [[10.0], [0.0]], [-3.0, 0.0], 0.1,
                          "softmax")
    X, y = _data(truth, 500, 3)

    def fit(c):
        return LeastSquaresMoE(n_experts=2, gate=gate, n_init=2, tol=0.0,
                               random_state=0).fit(X * c, y)

    ref = fit(1e-6)
    for c in (0.37, 1.08, 1e6):
        est = fit(c)
        scale = np.abs(ref.experts_ * 1e-6).max()
        np.testing.assert_allclose(est.experts_ * c, ref.experts_ * 1e-6, rtol=0,
                                   atol=atol * scale)
        np.testing.assert_allclose(est.model_.gating * c, ref.model_.gating * 1e-6, rtol=0,
                                   atol=atol * np.abs(ref.model_.gating * 1e-6).max())
        np.testing.assert_allclose(est.gating_bias_, ref.gating_bias_, rtol=0,
                                   atol=atol * max(1.0, np.abs(ref.gating_bias_).max()))


def test_sigmoid_gate_passes_the_contract():
    check_algorithm(LeastSquaresMoE, gate="sigmoid")


# ------------------------------------------------------------------------------ the sweep
def test_a_truth_with_a_gate_is_a_regression_moe_and_draws_its_rows():
    table = {"gate": "sigmoid", "experts": [[4.0], [-3.0]], "expert_bias": [-2.0, 2.0],
             "gating": [[20.0], [-20.0]], "gating_bias": [-6.0, 14.0], "sigma": 0.05}
    model = truth_model(table, 1, 2, "linear")
    assert isinstance(model, RegressionMoE) and model.gate == "sigmoid"
    np.testing.assert_array_equal(model.gating, SIGMOID_TRUTH.gating)
    def rows():
        return next(iter_moe_blocks(model, 3000, np.random.SeedSequence(7),
                                    input_distribution="uniform", input_interval=(0.0, 1.0)))

    X, y, z = rows()
    assert X.min() >= 0.0 and X.max() <= 1.0 and np.all(z == -1)
    np.testing.assert_array_equal(y, rows()[1])
    resid = y - model.predict(X)  # y = f_G(x) + N(0, 0.05^2): no latent expert
    assert abs(np.std(resid) / 0.05 - 1) < 0.05 and abs(np.mean(resid)) < 4 * 0.05 / 50
    with pytest.raises(ValueError, match="d = 1, k = 2; the setting has d = 1, k = 3"):
        truth_model(table, 1, 3, "linear")


def test_the_sweep_scores_each_gate_against_the_truth_in_that_gate():
    soft = RegressionMoE([[4.0], [0.0]], [-1.0, 0.0], [[10.0], [0.0]], [-3.0, 0.0], 0.1,
                         "softmax")
    sig = equivalent_truth(soft, "sigmoid")
    assert voronoi_losses(sig, soft)["voronoi_loss"] == pytest.approx(0.0, abs=1e-15)
    assert voronoi_losses(soft, soft)["voronoi_loss"] == 0.0
    out = voronoi_losses(soft, SIGMOID_TRUTH)  # a sigmoid pair has no softmax form here
    assert np.isnan(out["voronoi_loss"]) and np.isnan(out["voronoi_loss_translated"])


def test_config_refuses_a_density_method_on_a_regression_truth(tmp_path):
    from moebench.sweep.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text(
        'name = "c"\nrepetitions = 1\n[data]\nn = [100]\nd = 1\nk = 2\n'
        'input_distribution = "uniform"\ninput_interval = [0.0, 1.0]\n'
        '[data.truth]\ngate = "sigmoid"\nexperts = [[1.0], [2.0]]\ngating = [[1.0], [-1.0]]\n'
        'sigma = 0.1\n[[algorithm]]\nname = "joint_em"\n')
    with pytest.raises(ConfigError, match="only a regression fit"):
        load_config(str(path))
