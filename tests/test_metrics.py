import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moebench.metrics import (
    evaluate,
    expert_error,
    expert_max_angle,
    gating_error,
    is_success,
    match_experts,
    parameter_errors,
)
from moebench.model import MoEModel


def _truth(seed=0, k=4, d=6):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((k, d))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    W = rng.standard_normal((k, d))
    return MoEModel(A, W, 0.1, "linear")


def test_truth_scores_zero():
    t = _truth()
    errs = parameter_errors(t.experts, t.gating, t)
    assert errs["expert_error"] == 0.0 and errs["gating_error"] == 0.0
    assert errs["expert_max_angle"] < 1e-6 and errs["success"]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), perm_seed=st.integers(0, 10_000),
       shift_scale=st.floats(-5, 5), noise=st.floats(0.0, 0.3))
def test_permuting_rows_and_gauge_shift_leave_errors_unchanged(seed, perm_seed, shift_scale, noise):
    t = _truth(seed % 50)
    rng = np.random.default_rng(seed)
    A = t.experts + noise * rng.standard_normal(t.experts.shape)
    W = t.gating + noise * rng.standard_normal(t.gating.shape)
    base = parameter_errors(A, W, t)
    perm = np.random.default_rng(perm_seed).permutation(4)
    shift = shift_scale * rng.standard_normal(t.gating.shape[1])
    moved = parameter_errors(A[perm], W[perm] + shift, t)
    for key in ("expert_error", "expert_max_angle", "gating_error"):
        assert moved[key] == pytest.approx(base[key], rel=1e-10, abs=1e-12)


def test_matching_undoes_a_permutation():
    t = _truth()
    perm = np.array([2, 0, 3, 1])
    est = t.experts[perm]
    p = match_experts(est, t.experts)
    assert np.array_equal(est[p], t.experts)
    assert expert_error(est, t.experts) == 0.0
    assert gating_error(t.gating[perm], t.gating, p) == pytest.approx(0.0, abs=1e-12)


def test_known_values():
    t = _truth(k=2, d=2)
    est = t.experts + np.array([[0.3, 0.4], [0.0, 0.0]])
    assert expert_error(est, t.experts) == pytest.approx(0.5)
    A = np.array([[1.0, 0.0], [0.0, 1.0]])
    B = np.array([[np.cos(0.1), np.sin(0.1)], [0.0, 1.0]])
    assert expert_max_angle(B, A) == pytest.approx(np.degrees(0.1))
    assert is_success(0.05) and not is_success(0.2) and not is_success(np.nan)


def test_evaluate_held_out_scores():
    t = _truth(k=2, d=3)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 3))
    y, _ = t.sample(X, rng)
    out = evaluate(t, t, X, y)
    assert out["expert_error"] == 0.0
    assert out["test_log_likelihood"] == pytest.approx(t.mean_log_likelihood(X, y))
    assert out["test_mse"] > 0.01  # at least the noise variance


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="differs from truth shape"):
        match_experts(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        match_experts(np.full((2, 3), np.nan), np.ones((2, 3)))
