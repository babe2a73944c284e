"""One EM for every variant (issue 26, item 1): refine is joint EM from the tensor start.

``tensor_em(refine=True)`` is ``joint_em(init="tensor")``: the same code path, options and
budget, differing only in the start. These tests pin it to the bit, pin what the start
costs (the time budget, not the iteration budget) and how it is reported, and the
validation of the new inits.
"""

from __future__ import annotations

import numpy as np
import pytest

import moebench
from moebench.gating_em import GATING_EM_RIDGE
from moebench.registry import algorithm_class

OUTCOME = ("experts_", "gating_", "sigma_", "n_iter_", "log_likelihood_", "stop_reason_",
           "converged_", "gating_norm_")


def _same_fit(a, b) -> None:
    for attr in OUTCOME:
        assert np.array_equal(getattr(a, attr), getattr(b, attr)), attr
    strip = [[(r["phase"], r["iteration"], r["restart"]) for r in est.history_]
             for est in (a, b)]
    assert strip[0] == strip[1]
    np.testing.assert_array_equal([r["log_likelihood"] for r in a.history_],
                                  [r["log_likelihood"] for r in b.history_])
    assert a.phase_gating_norms_ == b.phase_gating_norms_
    assert set(a.phase_times_) == set(b.phase_times_) == {"moments", "decomposition",
                                                          "gating_em", "em"}


@pytest.fixture(scope="module")
def linear():
    return moebench.make_moe(20_000, 6, 3, activation="linear", sigma=0.1, random_state=2)


@pytest.mark.parametrize("activation, sigma, options, joint_options", [
    ("linear", None, {}, {"max_iter": 200, "tol": 1e-8}),
    ("linear", 0.1, {"refine_max_iter": 7, "refine_tol": 1e-12},
     {"max_iter": 7, "tol": 1e-12}),
    ("sigmoid", None, {"refine_max_iter": 30, "refine_tol": 1e-7, "max_iter": 12},
     {"max_iter": 12, "tol": 1e-7}),
    ("relu", None, {"refine_tol": 1e-6, "decomposition": "jennrich", "gating_em_iter": 5,
                    "ridge": 1e-2},
     {"max_iter": 200, "tol": 1e-6,
      "init_options": {"decomposition": "jennrich", "gating_em_iter": 5, "ridge": 1e-2}}),
])
def test_refine_equals_joint_em_from_the_tensor_start_to_the_bit(activation, sigma, options,
                                                                  joint_options):
    data = moebench.make_moe(20_000, 6, 3, activation=activation, sigma=0.1,
                             gating_scale=2.0, random_state=3)
    refine = moebench.get_algorithm("tensor_em", n_experts=3, activation=activation,
                                    sigma=sigma, random_state=5, refine=True, **options)
    joint = moebench.get_algorithm("joint_em", n_experts=3, activation=activation,
                                   sigma=sigma, random_state=5, init="tensor", **joint_options)
    refine.fit(data.X, data.y, truth=data)
    joint.fit(data.X, data.y, truth=data)
    _same_fit(refine, joint)
    # the tensor step's diagnostics come with both fits
    assert refine.t2_eigengap_ == joint.t2_eigengap_
    assert np.array_equal(refine.tensor_eigenvalues_, joint.tensor_eigenvalues_)
    assert refine.local_search and joint.local_search


def test_refine_equals_joint_em_on_rescaled_inputs(linear):
    # X at 3x unit scale: the power-of-two scaling (X / 4) leaves rms 0.75, so the tensor
    # start divides by it and maps its estimate back before the joint EM
    X = 3.0 * linear.X
    refine = moebench.get_algorithm("tensor_em", n_experts=3, random_state=1, refine=True,
                                    refine_max_iter=20)
    joint = moebench.get_algorithm("joint_em", n_experts=3, random_state=1, init="tensor",
                                   max_iter=20, tol=1e-8)
    refine.fit(X, linear.y)
    joint.fit(X, linear.y)
    _same_fit(refine, joint)
    # the fit is scale-equivariant: the experts of X are those of 3 X, times 3
    unit = moebench.get_algorithm("joint_em", n_experts=3, random_state=1, init="tensor",
                                  max_iter=20, tol=1e-8).fit(linear.X, linear.y)
    np.testing.assert_allclose(3.0 * joint.experts_, unit.experts_, atol=1e-6)


def test_start_is_tensor_then_gating_em_and_the_iteration_budget_counts_joint_em(linear):
    plain = moebench.get_algorithm("tensor_em", n_experts=3, random_state=0).fit(
        linear.X, linear.y)
    joint = moebench.get_algorithm("joint_em", n_experts=3, random_state=0, init="tensor",
                                   max_iter=3, tol=0.0).fit(linear.X, linear.y)
    # the start is tensor_em's fit (its experts, its gating EM's gating), then 3 EM iterations
    em = [r for r in joint.history_ if r["phase"] == "em"]
    gating_em = [r for r in joint.history_ if r["phase"] == "gating_em"]
    assert em[0]["log_likelihood"] == pytest.approx(plain.log_likelihood_, rel=1e-12, abs=0)
    assert len(gating_em) == plain.n_iter_ + 1 > 4
    assert joint.n_iter_ == 3 == len(em) - 1 and joint.stop_reason_ == "max_iter"
    assert joint.gating_n_iter_ == plain.n_iter_
    assert joint.phase_gating_norms_["gating_em"] == plain.gating_norm_
    assert joint.phase_gating_norms_["em"] == joint.gating_norm_
    assert all(v >= 0.0 for v in joint.phase_times_.values())


def test_tensor_experts_start_has_zero_gating_and_no_gating_em(linear):
    plain = moebench.get_algorithm("tensor_em", n_experts=3, random_state=0).fit(
        linear.X, linear.y, truth=linear)
    joint = moebench.get_algorithm("joint_em", n_experts=3, random_state=0,
                                   init="tensor_experts", max_iter=2, tol=0.0)
    joint.fit(linear.X, linear.y, truth=linear)
    phases = [r["phase"] for r in joint.history_]
    assert phases == ["moments", "decomposition", "em", "em", "em"]
    assert joint.phase_gating_norms_["start"] == 0.0
    assert set(joint.phase_times_) == {"moments", "decomposition", "em"}
    # the same tensor step: its experts' error, and they start the joint EM
    assert joint.history_[1]["expert_error"] == plain.history_[1]["expert_error"]
    assert joint.history_[2]["expert_error"] == plain.history_[1]["expert_error"]


def test_the_start_is_charged_to_the_time_budget(linear):
    est = moebench.get_algorithm("joint_em", n_experts=3, random_state=0, init="tensor",
                                 max_time=1e-9).fit(linear.X, linear.y)
    assert est.stop_reason_ == "max_time" and est.n_iter_ == 0
    assert "em" not in {r["phase"] for r in est.history_}
    assert est.log_likelihood_ == pytest.approx(est.score(linear.X, linear.y), abs=1e-12)
    ref = moebench.get_algorithm("tensor_em", n_experts=3, random_state=0, refine=True,
                                 max_time=1e-9).fit(linear.X, linear.y)
    assert ref.stop_reason_ == "max_time" and np.array_equal(ref.gating_, est.gating_)


def test_a_moment_start_runs_once_whatever_n_init(linear):
    est = moebench.get_algorithm("joint_em", n_experts=3, random_state=0, init="tensor",
                                 n_init=3, max_iter=5).fit(linear.X, linear.y)
    assert {r["restart"] for r in est.history_} == {0}


def test_the_default_gating_em_ridge_and_local_search_flags(linear):
    assert algorithm_class("tensor_em")().ridge == GATING_EM_RIDGE == 1e-5
    assert algorithm_class("spectral_experts")().ridge == GATING_EM_RIDGE
    plain = moebench.get_algorithm("tensor_em", n_experts=3, random_state=0)
    plain.fit(linear.X, linear.y)
    assert not plain.local_search and not algorithm_class("tensor_em").local_search
    # an instance with refine is a local search (the stuck test applies), before and after fit
    assert moebench.get_algorithm("tensor_em", refine=True).local_search is True
    assert moebench.get_algorithm("spectral_experts", refine=True).local_search is True
    assert algorithm_class("spectral_experts").local_search is False


@pytest.mark.parametrize("options, match", [
    ({"init": "tensor", "init_options": {"no_such": 1}}, "no_such.*valid: decomposition"),
    ({"init": "tensor", "init_options": {"decomposition": "svd"}}, "decomposition"),
    ({"init": "random", "init_options": {"n_starts": 3}}, "needs a moment start"),
    ({"init": "tensor", "n_experts": 7}, "7"),
    ({"init": "spectral_experts", "activation": "relu"}, "does not support activation"),
])
def test_moment_inits_are_validated(options, match, linear):
    params = {"n_experts": 3, **options}
    with pytest.raises(ValueError, match=match):
        moebench.get_algorithm("joint_em", **params).fit(linear.X, linear.y)
