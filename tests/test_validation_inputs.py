"""Input checks and degenerate-fit checks of ``MoEEstimator.fit`` (issue 11, items 3 and 7)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from fast_estimators import ALGORITHMS, estimator

import moebench
from moebench.activations import get_activation
from moebench.degenerate import (
    ABSURD_LL_MARGIN,
    DegenerateFitError,
    absurd_log_likelihood,
    check_min_samples,
    n_parameters,
    null_log_likelihood,
)
from moebench.sweep.data_sources import fold_split
from moebench.validation import check_feature_names, power_of_two_scale, rms


@pytest.fixture(scope="module")
def data():
    return moebench.make_moe(2000, 4, 2, activation="linear", sigma=0.1, random_state=2)


def test_degenerate_fit_error_is_a_value_error_and_exported():
    assert issubclass(DegenerateFitError, ValueError)
    assert moebench.DegenerateFitError is DegenerateFitError


# --------------------------------------------------------------------------- scales
def test_rms_and_power_of_two_scale_without_overflow():
    assert rms(np.full(4, 1e300)) == pytest.approx(1e300)
    assert rms(np.full(4, 1e-300)) == pytest.approx(1e-300)
    assert rms(np.zeros(3)) == 0.0
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((500, 3))
    assert power_of_two_scale(Z) == 0  # unit-scale data is never rescaled
    assert power_of_two_scale(Z * 2.0**-700) == -700
    assert power_of_two_scale(Z * 2.0**900) == 900


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("k", [-40, 30])
def test_power_of_two_scaling_of_X_is_exactly_equivariant(data, name, k):
    c = 2.0**k
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = estimator(name).fit(data.X, data.y)
        scaled = estimator(name).fit(data.X * c, data.y)
    np.testing.assert_array_equal(scaled.experts_ * c, base.experts_)
    np.testing.assert_array_equal(scaled.gating_ * c, base.gating_)
    assert scaled.sigma_ == base.sigma_
    assert scaled.n_iter_ == base.n_iter_


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("c", [1e-300, 1e150, 1e300])
def test_extreme_X_scale_is_approximately_equivariant(data, name, c):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = estimator(name).fit(data.X, data.y)
        scaled = estimator(name).fit(data.X * c, data.y)
    assert np.all(np.isfinite(scaled.experts_)) and np.all(scaled.experts_ != 0)
    assert scaled.sigma_ == pytest.approx(base.sigma_, rel=0.02)
    diff = np.abs(scaled.predict(data.X * c) - base.predict(data.X))
    assert diff.max() < 0.05 and diff.mean() < 0.01


def test_history_errors_use_the_truth_in_the_rescaled_units(data):
    c = 2.0**-50
    est = estimator("joint_em").fit(data.X * c, data.y, truth=moebench.MoEModel(
        data.experts / c, data.gating / c, data.sigma))
    base = estimator("joint_em").fit(data.X, data.y, truth=data)
    assert [r["expert_error"] for r in est.history_] == [r["expert_error"]
                                                          for r in base.history_]
    assert est.history_[-1]["expert_error"] < 0.1


def test_tiny_or_identically_zero_y_is_refused(data):
    with pytest.raises(ValueError, match=r"y has scale rms\(y\) = .*e-201"):
        estimator("joint_em").fit(data.X, data.y * 1e-200)
    with pytest.raises(ValueError, match="y is identically 0"):
        estimator("joint_em").fit(data.X, np.zeros(len(data.y)))
    with pytest.raises(ValueError, match="X is identically 0"):
        estimator("joint_em").fit(np.zeros_like(data.X), data.y)


# --------------------------------------------------------------------------- degenerate fits
def test_number_of_parameters_and_minimum_n():
    assert n_parameters(5, 2) == 2 * 5 + 5 + 1
    assert n_parameters(5, 3, estimate_sigma=False) == 3 * 5 + 2 * 5
    check_min_samples(16, 5, 2)  # exactly enough
    with pytest.raises(DegenerateFitError, match="at least n = 16 rows.*got n = 15"):
        check_min_samples(15, 5, 2, who="joint_em")
    check_min_samples(15, 5, 2, estimate_sigma=False)  # a given sigma is not a parameter


def test_minimum_n_is_checked_before_any_work(data, monkeypatch):
    est = estimator("joint_em")
    monkeypatch.setattr(type(est), "_fit", lambda *a, **k: pytest.fail("_fit ran"))
    with pytest.raises(DegenerateFitError, match="joint_em needs at least n = 13 rows"):
        est.fit(data.X[:12], data.y[:12])


def test_null_and_absurd_log_likelihood():
    y = np.array([1.0, -1.0, 1.0, -1.0])
    assert null_log_likelihood(y) == pytest.approx(-0.5 - 0.5 * np.log(2 * np.pi))
    null = null_log_likelihood(y)
    assert absurd_log_likelihood(null - ABSURD_LL_MARGIN + 1.0, y) is None
    assert "nats per sample below" in absurd_log_likelihood(null - ABSURD_LL_MARGIN - 1.0, y)
    assert "log-likelihood is nan" in absurd_log_likelihood(float("nan"), y)
    # held-out labels judged against the training labels' scale
    null_100 = null_log_likelihood(y * 100.0, scale=1.0)  # N(0, 1) on labels of size 100
    assert null_100 == pytest.approx(-5000.0 - 0.5 * np.log(2 * np.pi))
    assert absurd_log_likelihood(null_100 - 50.0, y * 100.0, scale=1.0) is None
    assert absurd_log_likelihood(null_100 - 150.0, y * 100.0, scale=1.0) is not None


def test_degenerate_fit_keeps_its_history_for_inspection(data):
    est = estimator("sgd")
    # labels constant up to 1e-9 noise (exactly constant ones are refused before any work)
    y = 1.0 + 1e-9 * np.random.default_rng(0).standard_normal(len(data.y))
    with pytest.raises(DegenerateFitError, match="sigma_ = .* fell below"):
        est.fit(data.X, y)
    assert est.history_  # the sweep records these checkpoints with the status


def test_a_good_fit_with_small_noise_is_not_degenerate():
    tight = moebench.make_moe(3000, 4, 2, sigma=1e-3, random_state=5)
    est = estimator("joint_em", max_iter=100).fit(tight.X, tight.y)
    assert est.sigma_ == pytest.approx(1e-3, rel=0.2)


# --------------------------------------------------------------------------- DataFrames
def test_dataframe_names_checked_only_against_named_input(data):
    frame = pd.DataFrame(data.X, columns=["a", "b", "c", "d"])
    est = estimator("joint_em").fit(frame, data.y)
    # a plain array is taken positionally (as scikit-learn, without the warning)
    assert est.score(data.X, data.y) == est.score(frame, data.y)
    np.testing.assert_array_equal(est.predict(frame.to_numpy()), est.predict(frame))
    refit = estimator("joint_em").fit(frame, data.y).fit(data.X, data.y)
    assert not hasattr(refit, "feature_names_in_") and refit.n_features_in_ == 4
    refit.score(frame[["d", "c", "b", "a"]], data.y)  # no names recorded: nothing to check
    # integer column labels are not names (scikit-learn's rule)
    est2 = estimator("joint_em").fit(pd.DataFrame(data.X), data.y)
    assert not hasattr(est2, "feature_names_in_")


def test_check_feature_names_messages():
    fitted = np.array(["a", "b"], dtype=object)
    check_feature_names(fitted, pd.DataFrame(np.ones((2, 2)), columns=["a", "b"]))
    check_feature_names(None, pd.DataFrame(np.ones((2, 2)), columns=["b", "a"]))
    with pytest.raises(ValueError, match=r"columns reordered: got \['b', 'a'\]"):
        check_feature_names(fitted, pd.DataFrame(np.ones((2, 2)), columns=["b", "a"]))
    with pytest.raises(ValueError, match="missing column.*'b'"):
        check_feature_names(fitted, pd.DataFrame(np.ones((2, 1)), columns=["a"]))


# --------------------------------------------------------------------------- activations
def test_user_activation_is_checked_on_every_call():
    act = get_activation(lambda t: np.log1p(np.exp(t)))
    out = act.func(np.zeros((4, 2)))
    assert out.shape == (4, 2)
    np.testing.assert_allclose(act.derivative(np.zeros(3)), 0.5, atol=1e-6)
    assert np.isinf(act.func(np.array([np.inf])))[0]  # non-finite in, non-finite out: fine

    def sometimes_nan(t):
        t = np.asarray(t)
        return np.where(t > 10.0, np.nan, t)

    act = get_activation(sometimes_nan)  # the probes on [-2, 2] pass
    with pytest.raises(ValueError, match=r"'custom:sometimes_nan' returned NaN or inf for 1 "
                                         r"of 2 finite inputs \(e.g. at t = 11"):
        act.func(np.array([1.0, 11.0]))

    def flat(t):
        return np.asarray(t).ravel()

    with pytest.raises(ValueError, match=r"'custom:flat' returned shape \(6,\) for an input "
                                         r"of shape \(3, 2\)"):
        get_activation(flat)


# --------------------------------------------------------------------------- sweeps
def test_degenerate_is_a_failed_status():
    from moebench.sweep.plots import OK_STATUSES
    from moebench.sweep.runner import FAILED

    assert "degenerate" in FAILED and "error" in FAILED
    assert "degenerate" not in OK_STATUSES


def test_fold_split_refuses_more_folds_than_rows():
    seed = np.random.SeedSequence(0)
    train, test = fold_split(10, 10, 9, seed)
    assert len(test) == 1 and len(train) == 9
    with pytest.raises(ValueError, match="data.folds = 11 must be between 2 and the number of "
                                         r"rows \(10\)"):
        fold_split(10, 11, 0, seed)


def test_absurd_held_out_log_likelihood_is_degenerate(tmp_path):
    from moebench.reference import REFERENCE
    from moebench.sweep.config import validate_config
    from moebench.sweep.worker import run_cell

    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 3))
    y = X @ np.array([1.0, -0.5, 0.2]) + 0.1 * rng.standard_normal(200)
    y[7] = 1e4  # one wild label: absurd on the fold that holds it out
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["t"] = y
    path = tmp_path / "wild.csv"
    frame.to_csv(path, index=False)
    cfg = validate_config({"data": {"source": {"csv": str(path), "target": "t"}, "folds": 2},
                           "algorithm": [{"name": "joint_em", "params": {"n_init": 1}}]})
    statuses = {}
    for cell in cfg.cells():
        s = run_cell(cell, str(tmp_path / "out"), write=False)
        statuses[(cell.variant.label, cell.data["fold"])] = (s["status"], s["message"])
    held_out = [key for key, (status, msg) in statuses.items()
                if status == "degenerate" and msg.startswith("held-out data:")]
    # the fold whose test rows hold the wild label, for the mixture and the reference
    assert {label for label, _ in held_out} == {"joint_em", REFERENCE}
    assert len({fold for _, fold in held_out}) == 1
