"""The framework owns stopping (issue 26, item 2): one criterion, budgets as totals, one
precedence for the stop reason, and a ridge-bounded gating EM (item 3)."""

from __future__ import annotations

import numpy as np
import pytest

import moebench
from moebench.gating_em import GATING_EM_RIDGE, gating_em, gating_norm_bound
from moebench.history import History
from moebench.registry import algorithm_class, available_algorithms
from moebench.starts import random_unit_experts
from moebench.stopping import StoppingCriterion


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def elapsed(self) -> float:
        return self.t


# -- the criterion ------------------------------------------------------------------------
def test_precedence_criterion_then_iterations_then_time():
    clock = FakeClock(10.0)  # the time budget is spent throughout
    stop = StoppingCriterion(max_iter=1, max_time=1.0, tol=1e-3, clock=clock)
    assert stop.check(-1.0, -1.0, "max_epochs") == "converged"  # the criterion first
    stop = StoppingCriterion(max_iter=1, max_time=1.0, tol=1e-3, clock=clock)
    assert stop.check(-1.0, -2.0, "max_epochs") == "max_epochs"  # then the loop's own limit
    stop = StoppingCriterion(max_iter=1, max_time=1.0, tol=1e-3, clock=clock)
    assert stop.check(-1.0, -2.0) == "max_iter"  # then the fit's iteration budget
    stop = StoppingCriterion(max_iter=5, max_time=1.0, tol=1e-3, clock=clock)
    assert stop.check(-1.0, -2.0) == "max_time" == stop.reason  # then time
    clock.t = 0.5
    stop = StoppingCriterion(max_iter=5, max_time=1.0, tol=None, clock=clock)
    assert [stop.check(-1.0, -1.0) for _ in range(5)] == [None] * 4 + ["max_iter"]
    assert stop.n_iter == 5 and stop.iterations_left() == 0 and stop.spent() == "max_iter"


def test_spent_uncounted_and_validation():
    clock = FakeClock(2.0)
    stop = StoppingCriterion(max_iter=3, max_time=1.0, tol=1e-6, clock=clock)
    assert stop.spent() == "max_time" and stop.iterations_left() == 3
    sub = stop.uncounted(tol=1e-2)
    assert (sub.max_iter, sub.max_time, sub.tol, sub.clock) == (None, 1.0, 1e-2, clock)
    sub.check(-1.0, -2.0)
    assert stop.n_iter == 0  # the start's iterations are not the fit's
    assert StoppingCriterion().spent() is None and StoppingCriterion().iterations_left() is None
    with pytest.raises(ValueError, match="max_time needs a clock|needs a clock"):
        StoppingCriterion(max_time=1.0)
    for kwargs, name in [({"max_iter": -1}, "max_iter"), ({"tol": -1.0}, "tol"),
                         ({"max_time": 0.0, "clock": clock}, "max_time")]:
        with pytest.raises(ValueError, match=name):
            StoppingCriterion(**kwargs)


def test_every_algorithm_declares_its_iteration_unit():
    for name in available_algorithms(references=True, oracles=True):
        cls = algorithm_class(name)
        unit = cls.iteration_unit
        if "max_iter" in cls.budget_parameters:
            assert isinstance(unit, str) and unit, name
        else:
            assert unit is None, name
    assert algorithm_class("joint_em").iteration_unit == "EM iteration"
    assert algorithm_class("sgd").iteration_unit is None  # its budget is time only
    assert algorithm_class("sgd").budget_parameters == {"max_time": "max_time"}


# -- budgets are totals -------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return moebench.make_moe(2000, 4, 2, activation="linear", sigma=0.3, random_state=11)


def _em_iterations(est) -> int:
    return sum(1 for r in est.history_ if r["phase"] == "em" and r["iteration"] > 0)


def test_joint_em_max_iter_is_a_total_across_restarts(data):
    # tol 0: a start runs until its likelihood stops changing at all (19 EM iterations
    # here), so the first one takes the whole budget of 10
    est = moebench.get_algorithm("joint_em", n_experts=2, n_init=3, max_iter=10, tol=0.0,
                                 random_state=0).fit(data.X, data.y)
    assert est.n_iter_ == _em_iterations(est) == 10
    assert {r["restart"] for r in est.history_} == {0} and est.stop_reason_ == "max_iter"
    # a loose tol: the starts end early and share the budget, at most 100 in all
    est = moebench.get_algorithm("joint_em", n_experts=2, n_init=3, max_iter=100, tol=1e-4,
                                 random_state=0).fit(data.X, data.y)
    assert est.n_iter_ == _em_iterations(est) <= 100
    assert {r["restart"] for r in est.history_} == {0, 1, 2}
    one = moebench.get_algorithm("joint_em", n_experts=2, n_init=1, max_iter=100, tol=1e-4,
                                 random_state=0).fit(data.X, data.y)
    assert 0 < one.n_iter_ < est.n_iter_


def test_max_time_is_a_total_across_restarts(data):
    big = moebench.make_moe(40_000, 8, 3, activation="relu", sigma=0.3, random_state=1)
    budget = 0.4
    est = moebench.get_algorithm("joint_em", n_experts=3, activation="relu", n_init=50,
                                 max_iter=100_000, tol=0.0, max_time=budget, random_state=0)
    est.fit(big.X, big.y)
    assert est.stop_reason_ == "max_time"
    times = [r["time"] for r in est.history_]
    steps = np.diff(times)
    # the fit's clock passes the budget by at most the iteration that noticed it
    assert times[-1] <= budget + steps.max() + 1e-3
    assert len({r["restart"] for r in est.history_}) < 50


def _time_runs_out_at(phase: str, n: int):
    """A History.elapsed: the clock passes every budget once the fit has recorded ``n``
    records of ``phase`` (so the time budget ends the same iteration as another)."""
    def elapsed(history: History) -> float:
        done = sum(1 for r in history.records if r["phase"] == phase)
        return 1e6 if done >= n else 0.0

    return elapsed


def test_sgd_epoch_budget_wins_the_race_with_time(data, monkeypatch):
    # the last epoch's record is the third (epochs 0, 1, 2): time runs out exactly then
    monkeypatch.setattr(History, "elapsed", _time_runs_out_at("sgd", 3))
    est = moebench.get_algorithm("sgd", n_experts=2, max_epochs=2, max_time=100.0,
                                 device="cpu", random_state=0).fit(data.X, data.y)
    assert est.stop_reason_ == "max_epochs"
    monkeypatch.setattr(History, "elapsed", _time_runs_out_at("sgd", 2))  # an epoch earlier
    est = moebench.get_algorithm("sgd", n_experts=2, max_epochs=2, max_time=100.0,
                                 device="cpu", random_state=0).fit(data.X, data.y)
    assert est.stop_reason_ == "max_time"


def test_joint_em_iteration_budget_wins_the_race_with_time(data, monkeypatch):
    monkeypatch.setattr(History, "elapsed", _time_runs_out_at("em", 4))  # iterations 0-3
    est = moebench.get_algorithm("joint_em", n_experts=2, n_init=1, max_iter=3, tol=0.0,
                                 max_time=100.0, random_state=0).fit(data.X, data.y)
    assert est.stop_reason_ == "max_iter" and est.n_iter_ == 3


# -- a bounded gating EM --------------------------------------------------------------------
@pytest.mark.parametrize("acceleration", ["quasi_newton", "none"])
def test_gating_em_on_wrong_experts_stays_within_the_ridge_bound(acceleration):
    # k = 4, true gating rows of norm 8 (||W||_F = 13.9); random unit experts (wrong): the
    # unpenalised gating likelihood has no maximum here and its EM runs away
    data = moebench.make_moe(10_000, 10, 4, activation="linear", sigma=0.05,
                             gating_scale=8.0, random_state=2)
    truth = float(np.linalg.norm(data.gating - data.gating[-1]))
    experts = random_unit_experts(np.random.default_rng(2), 4, 10)
    act = moebench.get_activation("linear")

    def run(ridge: float) -> float:
        res = gating_em(data.X, data.y, experts, 0.5, act, History(),
                        StoppingCriterion(tol=1e-8), update_sigma=True, gating_em_iter=200,
                        ridge=ridge, gating_acceleration=acceleration)
        return float(np.linalg.norm(res.gating))

    free = run(0.0)
    bounded = run(GATING_EM_RIDGE)
    bound = gating_norm_bound(4, GATING_EM_RIDGE)
    assert free > 10.0 * truth
    assert np.isfinite(bounded) and bounded <= bound
    assert bounded < 3.0 * truth  # measured 27.7 (quasi-Newton), against 1.3e5 free
    assert bound == pytest.approx(np.sqrt(2.0 * np.log(4) / 1e-5)) and 10 * truth < bound
    assert gating_norm_bound(4, 0.0) == np.inf


def test_the_default_ridge_barely_moves_the_gating_of_the_true_experts():
    # rows of norm 8 saturate the softmax, so the likelihood is flat in the gating's scale
    # and a ridge shrinks it: the default moves the maximum-likelihood gating by ~1%
    # (measured 0.84%), a ridge of 1e-3 by a third (32.6%)
    data = moebench.make_moe(10_000, 10, 4, activation="linear", sigma=0.1, gating_scale=8.0,
                             random_state=0)

    def fit(ridge: float) -> np.ndarray:
        return gating_em(data.X, data.y, data.experts, 0.1, data.activation, History(),
                         StoppingCriterion(tol=1e-10), update_sigma=True,
                         gating_em_iter=1000, ridge=ridge).gating

    mle = fit(0.0)
    shift = {r: float(np.linalg.norm(fit(r) - mle) / np.linalg.norm(mle))
             for r in (GATING_EM_RIDGE, 1e-3)}
    assert shift[GATING_EM_RIDGE] < 0.02 and shift[1e-3] > 0.25


def test_fitted_gating_norms_are_recorded(data):
    est = moebench.get_algorithm("tensor_em", n_experts=2, random_state=0).fit(data.X, data.y)
    assert est.gating_norm_ == pytest.approx(float(np.linalg.norm(est.gating_)), rel=1e-15)
    assert est.phase_gating_norms_ == {"gating_em": est.gating_norm_}
    # every fit records its final norm; X at scale 8 maps the phase norms back too
    X8 = 8.0 * data.X
    scaled = moebench.get_algorithm("joint_em", n_experts=2, n_init=1, random_state=0).fit(
        X8, data.y)
    unit = moebench.get_algorithm("joint_em", n_experts=2, n_init=1, random_state=0).fit(
        data.X, data.y)
    assert scaled.phase_gating_norms_["em"] == pytest.approx(
        unit.phase_gating_norms_["em"] / 8.0, rel=1e-12)
    assert scaled.gating_norm_ == pytest.approx(unit.gating_norm_ / 8.0, rel=1e-12)
