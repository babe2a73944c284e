"""The restart loop owned by :class:`moebench.restarts.RestartedEstimator`, and the shared starts.

joint_em, sgd and alt_min keep only their single-start fit; the loop (``n_init``, the
budgets as totals across restarts through one stopping criterion, keeping the best start,
summing iterations, tagging records with the restart index) is checked here once on a toy
estimator, and on the baselines against a frozen loop of the documented semantics.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

import moebench
from moebench.constraints import Interval
from moebench.em import run_em
from moebench.history import History, StartFit, TaggedHistory
from moebench.model import MoEModel
from moebench.registry import algorithm_class
from moebench.restarts import RestartedEstimator
from moebench.starts import random_start, random_unit_experts


class Toy(RestartedEstimator):
    """One random draw per start; optionally sleeps after deciding how the start ended."""

    _parameter_constraints = {"sleep": [Interval(float, 0, None)],
                              "diverge_first": ["boolean"]}

    def __init__(self, n_experts=2, activation="linear", sigma=None, random_state=None,
                 n_init=3, max_time=None, sleep=0.0, diverge_first=False):
        super().__init__(n_experts, activation, sigma, random_state)
        self.n_init = n_init
        self.max_time = max_time
        self.sleep = sleep
        self.diverge_first = diverge_first

    def _fit_single(self, X, y, k, activation, sigma, history, rng, stop, context):
        experts = rng.standard_normal((k, X.shape[1]))
        gating = np.zeros((k, X.shape[1]))
        s = float(np.std(y))
        n_iter = int(rng.integers(1, 10))
        ll = MoEModel(experts, gating, s, activation).mean_log_likelihood(X, y)
        if self.diverge_first and self._starts == 0:
            experts, ll = np.full_like(experts, np.nan), -math.inf
        self._starts += 1
        history.record("toy", n_iter, ll, a00=float(experts[0, 0]))
        over = stop.out_of_time()
        time.sleep(self.sleep)
        stop = "max_time" if over else "converged"
        return StartFit(experts, gating, s, n_iter, ll, stop == "converged", stop)

    def _restart_context(self, X, y, k, activation, sigma, rng):
        self._starts = 0  # starts run so far in this fit


@pytest.fixture(scope="module")
def data():
    return moebench.make_moe(600, 4, 2, activation="linear", sigma=0.2, random_state=5)


def test_best_start_is_kept_iterations_summed_records_tagged(data):
    est = Toy(n_init=4, random_state=0).fit(data.X, data.y)
    assert [r["restart"] for r in est.history_] == [0, 1, 2, 3]
    lls = [r["log_likelihood"] for r in est.history_]
    best = int(np.argmax(lls))
    assert len(set(lls)) == 4 and best != 0  # the pick is not trivially the first start
    assert est.log_likelihood_ == lls[best]
    assert est.experts_[0, 0] == est.history_[best]["a00"]
    assert est.n_iter_ == sum(r["iteration"] for r in est.history_)
    assert est.stop_reason_ == "converged" and est.converged_


def test_starts_draw_in_turn_from_one_generator(data):
    one = Toy(n_init=1, random_state=3).fit(data.X, data.y).history_
    three = Toy(n_init=3, random_state=3).fit(data.X, data.y).history_
    assert one[0]["a00"] == three[0]["a00"]
    assert len({r["a00"] for r in three}) == 3


def test_budget_spent_leaves_starts_unrun_and_says_max_time(data):
    # start 0 ends "converged" before the budget, then the budget runs out: no start 1
    est = Toy(n_init=3, max_time=0.5, sleep=0.6, random_state=0).fit(data.X, data.y)
    assert [r["restart"] for r in est.history_] == [0]
    assert est.stop_reason_ == "max_time"
    assert est.converged_  # the kept start converged; the fit was still cut by the budget
    assert est.n_iter_ == est.history_[0]["iteration"]


def test_start_cut_by_the_budget_says_max_time(data):
    est = Toy(n_init=1, max_time=1e-9, random_state=0).fit(data.X, data.y)
    assert est.stop_reason_ == "max_time" and not est.converged_


def test_finite_start_replaces_a_diverged_one(data):
    est = Toy(n_init=2, diverge_first=True, random_state=0).fit(data.X, data.y)
    assert est.log_likelihood_ == est.history_[1]["log_likelihood"]
    assert np.all(np.isfinite(est.experts_))


@pytest.mark.parametrize("name", ["joint_em", "sgd", "alt_min"])
def test_n_init_and_max_time_are_declared_once_in_the_loop(name):
    cls = algorithm_class(name)
    assert issubclass(cls, RestartedEstimator)
    own = vars(cls)["_parameter_constraints"]
    assert "n_init" not in own and "max_time" not in own
    declared = cls.parameter_constraints()
    assert declared["n_init"] is RestartedEstimator._parameter_constraints["n_init"]
    with pytest.raises(ValueError, match="n_init"):
        cls.check_params({"n_init": 0})


# -- the baselines against a frozen loop of the documented semantics ----------------------
def _total_budget_joint_em_loop(est, X, y, k, act, sigma):
    """joint_em's restarts as documented since issue 26 (frozen copy): ``max_iter`` is a
    total over the restarts (each start gets what the earlier ones left; none runs once it
    is spent), and a start cut by the budget makes the fit's stop reason "max_iter"."""
    history = History()
    rng = est._rng()
    best, total_iter, cut, left = None, 0, None, est.max_iter
    for j in range(est.n_init):
        if j > 0 and left == 0:
            cut = cut or "max_iter"
            break
        experts, gating, s0 = est._initial(X, y, k, act, sigma, rng)
        result = run_em(X, y, experts, gating, s0, act, update_experts=True,
                        update_sigma=sigma is None, mstep=est.mstep, max_iter=left,
                        tol=est.tol, ridge=est.ridge,
                        gating_newton_steps=est.gating_newton_steps,
                        expert_max_iter=est.expert_max_iter, step_size=est.step_size,
                        history=TaggedHistory(history, restart=j), phase="em")
        total_iter += result.n_iter
        left -= result.n_iter
        if result.stop_reason == "max_iter":
            cut = cut or "max_iter"
        if best is None or result.log_likelihood > best.log_likelihood:
            best = result
    return best, total_iter, cut or best.stop_reason, history.records


@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("n_init", [1, 2, 3])
@pytest.mark.parametrize("init", ["random", "responsibilities"])
@pytest.mark.parametrize("max_iter", [12, 60])
def test_joint_em_equals_the_total_budget_loop(activation, n_init, init, max_iter):
    d = moebench.make_moe(500, 4, 2, activation=activation, sigma=0.2, random_state=n_init)
    est = moebench.get_algorithm("joint_em", n_experts=2, activation=activation, init=init,
                                 n_init=n_init, max_iter=max_iter, random_state=40 + n_init)
    est.fit(d.X, d.y)
    best, total, stop, records = _total_budget_joint_em_loop(
        est, d.X, d.y, 2, est._check_activation(), None)
    assert np.array_equal(est.experts_, best.experts)
    assert np.array_equal(est.gating_, best.gating - best.gating[-1])
    assert (est.sigma_, est.log_likelihood_, est.n_iter_, est.stop_reason_, est.converged_) \
        == (best.sigma, best.log_likelihood, total, stop, best.converged)
    assert est.n_iter_ <= max_iter
    strip = [[(r["phase"], r["iteration"], r["log_likelihood"], r["restart"]) for r in h]
             for h in (est.history_, records)]
    assert strip[0] == strip[1]


@pytest.mark.parametrize("max_iter, cap, iters, reason", [
    (100, 4, [4, 4, 4], "max_iter_per_start"),  # every try ends on its own cap
    (10, 4, [4, 4, 2], "max_iter"),             # the total cuts the third try
])
def test_joint_em_per_start_cap_within_the_total(max_iter, cap, iters, reason):
    """max_iter_per_start caps each restart's EM iterations; max_iter stays the total."""
    d = moebench.make_moe(500, 4, 2, sigma=0.2, random_state=5)
    est = moebench.get_algorithm("joint_em", n_experts=2, n_init=3, max_iter=max_iter,
                                 max_iter_per_start=cap, tol=0.0, random_state=7).fit(d.X, d.y)
    em = [r for r in est.history_ if r["phase"] == "em" and r["iteration"] > 0]
    per_start = [sum(r["restart"] == j for r in em) for j in range(3)]
    assert per_start == iters and est.n_iter_ == sum(iters) and est.stop_reason_ == reason


def test_joint_em_without_a_per_start_cap_is_unchanged():
    d = moebench.make_moe(500, 4, 2, sigma=0.2, random_state=5)
    fits = [moebench.get_algorithm("joint_em", n_experts=2, n_init=3, max_iter=30,
                                   random_state=7, **extra).fit(d.X, d.y)
            for extra in ({}, {"max_iter_per_start": None}, {"max_iter_per_start": 30})]
    assert all(np.array_equal(f.experts_, fits[0].experts_) for f in fits[1:])
    assert fits[0].n_iter_ == fits[2].n_iter_
    with pytest.raises(ValueError, match="max_iter_per_start"):
        moebench.get_algorithm("joint_em", max_iter_per_start=0).fit(d.X, d.y)


def _per_restart(history, key="log_likelihood"):
    out: dict[int, list] = {}
    for r in history:
        out.setdefault(r["restart"], []).append(r[key])
    return out


@pytest.mark.parametrize("name, options", [
    ("sgd", {"max_epochs": 5, "device": "cpu"}),
    ("sgd", {"max_epochs": 8, "optimizer": "gd", "tol": 1e-3, "device": "cpu"}),
    ("joint_em", {"max_iter": 300, "tol": 1e-4}),
])
def test_first_start_does_not_depend_on_n_init_and_best_is_kept(name, options, data):
    one = moebench.get_algorithm(name, n_experts=2, random_state=9, n_init=1, **options)
    three = moebench.get_algorithm(name, n_experts=2, random_state=9, n_init=3, **options)
    one.fit(data.X, data.y)
    three.fit(data.X, data.y)
    strip = [[(r["phase"], r["iteration"], r["log_likelihood"]) for r in h
              if r["restart"] == 0] for h in (one.history_, three.history_)]
    assert strip[0] == strip[1]
    finals = {j: lls[-1] for j, lls in _per_restart(three.history_).items()}
    assert sorted(finals) == [0, 1, 2]
    assert three.log_likelihood_ == max(finals.values())
    iters = _per_restart(three.history_, "iteration")
    assert three.n_iter_ == sum(its[-1] for its in iters.values())


def test_alt_min_keeps_the_smallest_residual_and_fits_the_gating_last(data):
    est = moebench.get_algorithm("alt_min", n_experts=2, random_state=2, n_init=3,
                                 n_candidates=4, max_iter=100).fit(data.X, data.y)
    *starts, last = est.history_
    assert (last["phase"], last["restart"]) == ("gating", -1)
    mse = {j: m[-1] for j, m in _per_restart(starts, "mse").items()}
    assert sorted(mse) == [0, 1, 2]
    assert est.sigma_ == pytest.approx(math.sqrt(min(mse.values())), rel=1e-12)
    iters = _per_restart(starts, "iteration")
    assert est.n_iter_ == sum(its[-1] for its in iters.values())
    assert last["iteration"] == est.n_iter_ + 1
    assert est.log_likelihood_ == last["log_likelihood"]


@pytest.mark.parametrize("name", ["joint_em", "sgd", "alt_min"])
def test_spent_budget_stops_the_baselines_after_the_first_start(name, data):
    est = moebench.get_algorithm(name, n_experts=2, random_state=0, n_init=3, max_time=1e-9)
    est.fit(data.X, data.y)
    assert {r["restart"] for r in est.history_} <= {0, -1}
    assert est.stop_reason_ == "max_time"


# -- shared starting points --------------------------------------------------------------
def test_random_start_draws_experts_then_gating():
    experts, gating = random_start(np.random.default_rng(4), 3, 5)
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 5))
    g = 0.01 * rng.standard_normal((3, 5))
    assert np.array_equal(experts, a / np.linalg.norm(a, axis=1, keepdims=True))
    assert np.array_equal(gating, g - g[-1]) and not gating[-1].any()
    assert np.allclose(np.linalg.norm(random_unit_experts(rng, 4, 3), axis=1), 1.0)
