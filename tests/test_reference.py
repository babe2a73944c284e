"""The linear-regression reference: a registered k = 1 estimator with no special case."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import moebench
from moebench import registry
from moebench.reference import REFERENCE, LinearRegression
from moebench.sweep.config import ConfigError, validate_config
from moebench.testing import check_algorithm


def _data(n: int = 400, d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X @ np.arange(1.0, d + 1) + 0.3 * rng.standard_normal(n)
    return X, y


def test_registered_as_a_reference_not_a_mixture():
    assert registry.algorithm_class(REFERENCE) is LinearRegression
    assert registry.is_reference(REFERENCE) and not registry.is_reference("joint_em")
    assert REFERENCE not in moebench.available_algorithms()
    assert REFERENCE in registry.available_algorithms(references=True)
    assert registry.reference_algorithms() == [REFERENCE]
    assert REFERENCE in registry.algorithm_descriptions(references=True)


def test_meets_the_contract_that_applies_to_k_1():
    check_algorithm(REFERENCE)


def test_fit_is_least_squares_with_residual_rms_sigma():
    X, y = _data()
    est = moebench.get_algorithm(REFERENCE).fit(X, y)
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    resid = y - X @ coef
    assert est.experts_.shape == (1, 3) and np.allclose(est.experts_[0], coef, rtol=1e-12)
    assert np.array_equal(est.gating_, np.zeros((1, 3)))
    assert est.sigma_ == pytest.approx(np.sqrt(np.mean(resid**2)), rel=1e-12)
    assert est.n_iter_ == 1 and est.converged_ and est.stop_reason_ == "converged"
    assert est.log_likelihood_ == pytest.approx(est.score(X, y), rel=1e-12)
    assert est.history_ == []
    assert np.allclose(est.predict(X[:5]), X[:5] @ coef)
    with pytest.raises(ValueError, match="single linear model, not a mixture"):
        est.model_  # noqa: B018


@pytest.mark.parametrize("params, needle", [
    ({"n_experts": 2}, r"n_experts must be an integer in \[1, 1\]; got 2"),
    ({"activation": "relu"}, "does not support activation 'relu'; valid choices: linear"),
], ids=["k2", "relu"])
def test_refuses_settings_other_than_one_linear_expert(params, needle):
    X, y = _data()
    with pytest.raises(ValueError, match=needle):
        LinearRegression(**params).fit(X, y)


def test_capability_check_names_the_valid_setting():
    assert LinearRegression.check_setting(1, 5, "linear")[0] == 1
    with pytest.raises(ValueError, match="n_experts = 3 is not valid for linear_regression.*"
                                         "valid: 1"):
        LinearRegression.check_setting(3, 5, "linear")


def _csv(path: Path) -> Path:
    X, y = _data(120, 3, seed=1)
    lines = ["a,b,c,t"] + [",".join(f"{v:.10g}" for v in (*r, t)) for r, t in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sweep_adds_it_to_real_data_only_and_reserves_its_name(tmp_path):
    path = _csv(tmp_path / "lin.csv")
    real = {"data": {"source": {"csv": str(path), "target": "t"}, "k": [2, 3],
                     "activation": ["linear", "relu"], "folds": 2},
            "algorithm": [{"name": "joint_em"}]}
    cells = validate_config(real).cells()
    refs = [c for c in cells if c.variant.algorithm == REFERENCE]
    assert len(refs) == 2  # once per fold, whatever k and activation
    assert all(c.data["k"] == 1 and c.data["activation"] == "linear" for c in refs)
    assert all(c.variant.max_iter == 1 and c.variant.params == {} for c in refs)
    synthetic = validate_config({"data": {"n": 200, "d": 3, "k": 2},
                                 "algorithm": [{"name": "joint_em"}]})
    assert all(v.algorithm != REFERENCE for v in synthetic.variants)
    with pytest.raises(ConfigError, match="label 'linear_regression' is reserved"):
        validate_config({**real, "algorithm": [{"name": "joint_em",
                                                "label": REFERENCE}]})
    with pytest.raises(ConfigError, match="unknown algorithm\\[0\\].name 'linear_regression'"):
        validate_config({**real, "algorithm": [{"name": REFERENCE}]})


def test_worker_runs_it_through_the_common_path(tmp_path):
    from moebench.sweep.worker import run_cell

    path = _csv(tmp_path / "lin.csv")
    cfg = validate_config({"data": {"source": {"csv": str(path), "target": "t"}, "folds": 2},
                           "algorithm": [{"name": "joint_em", "params": {"n_init": 1}}]})
    cell = next(c for c in cfg.cells() if c.variant.algorithm == REFERENCE)
    s = run_cell(cell, str(tmp_path / "out"), write=False)
    assert s["status"] == "ok" and s["stop_reason"] == "converged" and s["n_iter"] == 1
    assert s["k"] == 1 and s["label"] == REFERENCE
    for key in ("train_log_likelihood", "test_log_likelihood", "test_mse", "sigma_hat"):
        assert np.isfinite(s[key]), key
    # no truth on real data: the metrics that need one stay NaN
    for key in ("expert_error", "gating_error", "true_test_log_likelihood"):
        assert math.isnan(s[key]), key
    # standardised units: noise variance 0.09 over var(y) ~ 14.1, i.e. ~0.0064
    assert 0.003 < s["test_mse"] < 0.012
