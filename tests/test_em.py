"""The shared EM pieces (moebench.em) used by tensor_em and joint_em."""

import numpy as np
import pytest
from scipy.special import softmax

import moebench
from moebench.em import e_step, expert_m_step, gating_m_step, run_em, sigma_m_step
from moebench.history import History
from moebench.metrics import parameter_errors


@pytest.fixture(scope="module")
def data():
    return moebench.make_moe(20000, 6, 3, activation="linear", sigma=0.1, random_state=0)


def test_e_step_matches_model(data):
    resp, ll = e_step(data.model, data.X, data.y)
    # the posterior P(z = i | x, y) from the model's log joint density
    assert np.allclose(resp, softmax(data.model.log_joint(data.X, data.y), axis=1))
    assert ll == pytest.approx(data.model.mean_log_likelihood(data.X, data.y))


@pytest.mark.parametrize("method", ["newton", "lbfgs"])
def test_gating_m_step_recovers_gating_from_true_labels(data, method):
    resp = np.eye(3)[data.z]
    W = gating_m_step(data.X, resp, np.zeros((3, 6)), max_iter=50, method=method, tol=1e-10)
    assert np.allclose(W[-1], 0.0)
    assert np.linalg.norm(W - data.gating) < 0.1


def test_expert_m_step_least_squares_and_lm(data):
    resp = np.eye(3)[data.z]
    A = expert_m_step(data.X, data.y, resp, np.zeros((3, 6)), data.activation)
    assert np.linalg.norm(A - data.experts) < 0.01
    relu = moebench.make_moe(20000, 6, 3, activation="relu", sigma=0.1, random_state=1)
    resp = np.eye(3)[relu.z]
    start = relu.experts + 0.2 * np.random.default_rng(0).standard_normal((3, 6))
    A = expert_m_step(relu.X, relu.y, resp, start, relu.activation, max_iter=20)
    assert np.linalg.norm(A - relu.experts) < 0.02
    s = sigma_m_step(relu.X, relu.y, resp, relu.experts, relu.activation)
    assert s == pytest.approx(0.1, rel=0.03)


def test_gating_only_em_with_true_experts_recovers_gating(data):
    h = History(data.model)
    res = run_em(data.X, data.y, data.experts, np.zeros((3, 6)), 0.1, data.activation,
                 update_experts=False, update_sigma=False, history=h)
    assert res.converged and np.array_equal(res.experts, data.experts)
    assert parameter_errors(res.experts, res.gating, data.model)["gating_error"] < 0.15
    lls = [r["log_likelihood"] for r in h.records]
    assert all(b >= a - 1e-9 for a, b in zip(lls, lls[1:])), "EM must not decrease the likelihood"


@pytest.mark.parametrize("mstep", ["full", "gradient"])
def test_joint_em_likelihood_is_monotone(data, mstep):
    rng = np.random.default_rng(3)
    A0 = rng.standard_normal((3, 6))
    h = History()
    run_em(data.X, data.y, A0, 0.01 * rng.standard_normal((3, 6)), 1.0, data.activation,
           mstep=mstep, max_iter=30, history=h, step_size=0.5)
    lls = np.array([r["log_likelihood"] for r in h.records])
    assert lls[-1] > lls[0] + 0.1
    if mstep == "full":
        assert np.all(np.diff(lls) > -1e-8)


def test_bad_mstep_name(data):
    with pytest.raises(ValueError, match="valid choices are 'full', 'gradient'"):
        run_em(data.X, data.y, data.experts, data.gating, 0.1, data.activation, mstep="newton")


def _count_calls(monkeypatch, module, name):
    """Wrap ``module.name`` so that its calls are counted; returns the counter list."""
    calls = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_lm_expert_step_stops_at_rounding_level(monkeypatch):
    """From a converged expert, Levenberg-Marquardt evaluates no candidate whose predicted
    decrease is below LM_FTOL (before: up to ten evaluations of rounding noise), and the
    rule leaves the converged error where the rule-free iteration puts it."""
    from moebench import em

    relu = moebench.make_moe(20000, 6, 3, activation="relu", sigma=0.1, random_state=1)
    resp = np.eye(3)[relu.z]
    start = relu.experts + 0.2 * np.random.default_rng(0).standard_normal((3, 6))
    converged = expert_m_step(relu.X, relu.y, resp, start, relu.activation, max_iter=50)
    calls = _count_calls(monkeypatch, em, "_sse")
    again = expert_m_step(relu.X, relu.y, resp, converged, relu.activation, max_iter=5)
    assert len(calls) == 3  # one error evaluation of the start per expert, no candidate
    np.testing.assert_array_equal(again, converged)
    monkeypatch.setattr(em, "LM_FTOL", 0.0)
    calls.clear()
    free = expert_m_step(relu.X, relu.y, resp, converged, relu.activation, max_iter=5)
    assert len(calls) > 3
    for i in range(3):
        r = resp[:, i]
        sse = [em._sse(r, relu.y, relu.activation.func(relu.X @ a[i])) for a in (again, free)]
        assert sse[0] == pytest.approx(sse[1], rel=1e-11)


def test_gating_newton_stops_on_the_newton_decrement(monkeypatch):
    """The gating Newton steps stop when the decrement (last step's Hessian) predicts a
    relative increase below NEWTON_FTOL: fewer Hessians than iterating to the gradient
    tolerance, and the same objective to 1e-12."""
    from moebench import em

    data = moebench.make_moe(20000, 6, 3, activation="linear", sigma=0.5, random_state=2)
    resp, _ = e_step(data.model, data.X, data.y)
    start = np.zeros((3, 6))
    hessians = _count_calls(monkeypatch, em, "_gating_hessian")
    W = gating_m_step(data.X, resp, start, max_iter=20, method="newton", tol=1e-14)
    with_rule = len(hessians)
    monkeypatch.setattr(em, "NEWTON_FTOL", 0.0)
    hessians.clear()
    W_free = gating_m_step(data.X, resp, start, max_iter=20, method="newton", tol=1e-14)
    assert 1 <= with_rule < len(hessians)

    def objective(W):
        return em._gating_objective((W[:2] - W[2]).ravel(), data.X, resp, 0.0)[0]

    assert objective(W) == pytest.approx(objective(W_free), rel=1e-12, abs=0)
