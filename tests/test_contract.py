"""One contract suite over every registered algorithm (like scikit-learn's check_estimator).

A new baseline is tested here the moment it is registered.
"""

import numpy as np
import pytest

import moebench
from moebench import registry
from moebench.base import MoEEstimator
from moebench.constraints import Interval, Options, validate_parameter
from moebench.metrics import expert_error
from moebench.sweep.config import ConfigError, validate_config
from moebench.testing import check_algorithm


@pytest.mark.parametrize("name", moebench.available_algorithms())
def test_registered_algorithm_meets_the_contract(name):
    check_algorithm(name)


class _FixedOutput(MoEEstimator):
    """A placeholder that ignores the data: the contract must reject it."""

    description = "placeholder"

    def _fit(self, X, y, k, activation, sigma, history):
        d = X.shape[1]
        self.experts_ = np.eye(k, d)
        self.gating_ = np.zeros((k, d))
        self.sigma_ = 1.0
        self.n_iter_ = 0
        self.converged_, self.stop_reason_ = True, "converged"
        self.log_likelihood_ = self.model_.mean_log_likelihood(X, y)
        history.record("fit", 0, 0.0, experts=self.experts_, gating=self.gating_)


class _NoHistory(_FixedOutput):
    def _fit(self, X, y, k, activation, sigma, history):
        coef = np.linalg.lstsq(X, y, rcond=None)[0]
        self.experts_ = np.vstack([coef, -coef])[:k]
        self.gating_ = np.zeros((k, X.shape[1]))
        self.sigma_ = 1.0
        self.n_iter_ = 0
        self.converged_, self.stop_reason_ = True, "converged"
        self.log_likelihood_ = self.model_.mean_log_likelihood(X, y)


def test_check_algorithm_rejects_a_placeholder():
    with pytest.raises(AssertionError, match="placeholder must not be registered"):
        check_algorithm(_FixedOutput)


def test_check_algorithm_rejects_missing_history():
    with pytest.raises(AssertionError, match="history_ must be a non-empty list"):
        check_algorithm(_NoHistory)


def test_check_algorithm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="registered name or a MoEEstimator subclass"):
        check_algorithm(3.5)


def _softplus(t):
    return np.logaddexp(0.0, t)


@pytest.mark.parametrize("name", moebench.available_algorithms())
def test_user_callable_activation_works_in_every_algorithm(name):
    """A plain numpy callable (derivative taken numerically) is usable by every method
    that is not restricted to named activations."""
    cls = moebench.registry.algorithm_class(name)
    data = moebench.make_moe(4000, 5, 2, activation=_softplus, sigma=0.1, random_state=0)
    est = moebench.get_algorithm(name, n_experts=2, activation=_softplus, random_state=0)
    if cls.supported_activations is not None:
        with pytest.raises(ValueError, match="does not support activation 'custom:_softplus'"):
            est.fit(data.X, data.y)
        return
    est.fit(data.X, data.y)
    assert np.all(np.isfinite(est.experts_)) and est.experts_.shape == (2, 5)
    # measured: joint_em, sgd 0.015 and tensor_em (moments only) 0.18 at this n
    assert expert_error(est.experts_, data.experts) < 0.3
    assert est.score(data.X, data.y) > data.model.mean_log_likelihood(data.X, data.y) - 0.25


# --------------------------------------------------------------------------- declarations


class _Declared(MoEEstimator):
    """A small genuine estimator (one least-squares line per expert, split by sign of y)."""

    description = "test-only: declared options"
    budget_parameters = {"max_iter": "n_steps"}
    iteration_unit = "step"
    _parameter_constraints = {"n_steps": [Interval(int, 1)], "shrink": [Interval(float, 0, 1)]}

    def __init__(self, n_experts=2, activation="linear", sigma=None, random_state=None,
                 n_steps=5, shrink=0.0):
        super().__init__(n_experts, activation, sigma, random_state)
        self.n_steps = n_steps
        self.shrink = shrink

    def _fit(self, X, y, k, activation, sigma, history):
        experts = np.vstack([np.linalg.lstsq(X[part], y[part], rcond=None)[0]
                             for part in np.array_split(np.argsort(y), k)])
        gating = np.zeros_like(experts)
        s = float(np.std(y))
        ll = moebench.MoEModel(experts, gating, s, activation).mean_log_likelihood(X, y)
        history.record("fit", 0, ll, experts=experts, gating=gating)
        self._set_fit(experts * (1 - self.shrink), gating, s, self.n_steps, ll, "max_iter")


class _Undeclared(_Declared):
    def __init__(self, n_experts=2, activation="linear", sigma=None, random_state=None,
                 n_steps=5, shrink=0.0, window=3):
        super().__init__(n_experts, activation, sigma, random_state, n_steps, shrink)
        self.window = window


class _ForgetsOutcome(_Declared):
    def _fit(self, X, y, k, activation, sigma, history):
        super()._fit(X, y, k, activation, sigma, history)
        del self.stop_reason_


def test_declarations_merge_along_the_class_hierarchy():
    cons = _Declared.parameter_constraints()
    assert list(cons) == ["n_experts", "activation", "sigma", "random_state", "n_steps",
                          "shrink"]
    assert _Undeclared.undeclared_parameters() == ["window"]


def test_check_algorithm_rejects_an_undeclared_parameter():
    with pytest.raises(AssertionError, match="check_declarations: no declared valid values for "
                       "constructor parameter.* window: add them to _Undeclared"):
        check_algorithm(_Undeclared)


def test_check_algorithm_rejects_a_default_outside_the_declaration():
    class BadDefault(_Declared):
        _parameter_constraints = {"shrink": [Interval(float, 0.5, 1)]}

    with pytest.raises(AssertionError, match="default parameters fail their own declaration: "
                       "shrink must be a finite real number in \\[0.5, 1\\]; got 0.0"):
        check_algorithm(BadDefault)


def test_check_algorithm_wants_the_iteration_unit_of_an_iteration_budget():
    class NoUnit(_Declared):
        iteration_unit = None

    with pytest.raises(AssertionError, match="declares a max_iter budget but no "
                       "iteration_unit"):
        check_algorithm(NoUnit)

    class TimeOnlyWithUnit(_Declared):
        budget_parameters = {}

    with pytest.raises(AssertionError, match="iteration_unit = 'step' but no max_iter budget"):
        check_algorithm(TimeOnlyWithUnit)


def test_check_algorithm_wants_the_iteration_budget_as_a_total():
    class PerRestart(_Declared):
        """Reports n_steps per start times three starts: the budget is not a total."""

        def _fit(self, X, y, k, activation, sigma, history):
            super()._fit(X, y, k, activation, sigma, history)
            self.n_iter_ = 3 * self.n_steps

    with pytest.raises(AssertionError, match="check_budgets: with n_steps=2 n_iter_ is 6: the "
                       "iteration budget is a total"):
        check_algorithm(PerRestart)


def test_fit_that_forgets_its_outcome_fails_clearly(small_data):
    with pytest.raises(TypeError, match="_ForgetsOutcome._fit did not set stop_reason_"):
        _ForgetsOutcome().fit(small_data.X, small_data.y)
    with pytest.raises(AssertionError, match="check_fit_contract: .*did not set stop_reason_"):
        check_algorithm(_ForgetsOutcome)


def test_fit_refuses_every_declared_constraint_before_fitting(small_data):
    for bad, needle in ((0, "n_steps must be an integer >= 1; got 0"),
                        (2.0, "n_steps must be an integer >= 1; got 2.0")):
        with pytest.raises(ValueError, match=needle):
            _Declared(n_steps=bad).fit(small_data.X, small_data.y)
    with pytest.raises(ValueError, match=r"shrink must be a finite real number in \[0, 1\]; "
                       "got 1.5"):
        _Declared(n_experts=3, shrink=1.5).fit(small_data.X, small_data.y)


@pytest.mark.parametrize("constraints, value, message", [
    ([Interval(int, 1)], -2, "n_init must be an integer >= 1; got -2"),
    ([Interval(int, 1)], True, "n_init must be an integer >= 1; got True"),
    ([Interval(float, 0, None, closed="neither"), None], float("inf"),
     "n_init must be a finite real number > 0 or None; got inf"),
    ([Options(("a", "b"))], "c", "unknown n_init 'c'; valid choices are 'a', 'b'"),
    ([Interval(int, 1), Options(("auto",)), None], "big",
     "n_init must be an integer >= 1, one of 'auto' or None; got 'big'"),
    (["boolean"], 1, "n_init must be True or False; got 1"),
])
def test_constraint_messages_name_parameter_value_and_valid_values(constraints, value, message):
    with pytest.raises(ValueError) as info:
        validate_parameter("n_init", value, constraints)
    assert str(info.value) == message


def test_config_checker_uses_the_class_capability_check():
    """The config error carries fit's own message (one rule, written once)."""
    raw = {"data": {"n": 500, "d": 5, "k": 2, "activation": "relu"},
           "algorithm": [{"name": "alt_min"}]}
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    cls = registry.algorithm_class("alt_min")
    with pytest.raises(ValueError) as fit_error:
        cls.check_setting(2, 5, "relu")
    assert str(fit_error.value) in str(info.value)


# --------------------------------------------------------------------------- budgets
def test_budget_options_follow_the_declaration():
    assert registry.algorithm_class("tensor_em").budget_options(300, 60.0) == {
        "max_iter": 300, "max_time": 60.0}
    assert registry.algorithm_class("sgd").budget_options(300, 60.0) == {"max_time": 60.0}
    assert _Declared.budget_options(7, 60.0) == {"n_steps": 7}


def test_worker_passes_budgets_by_asking_the_class(monkeypatch):
    from moebench.sweep.worker import run_cell

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register("declared_test")(_Declared)
    raw = {"data": {"n": 600, "d": 4, "k": 2, "n_test": 200},
           "budget": {"max_iter": 9, "max_time": 20.0},
           "algorithm": [{"name": "declared_test"}, {"name": "tensor_em", "max_iter": 2}]}
    runs = {c.variant.label: run_cell(c, "", write=False) for c in validate_config(raw).cells()}
    assert runs["declared_test"]["status"] == "ok"
    assert runs["declared_test"]["n_iter"] == 9  # the budget went to n_steps
    tensor = runs["tensor_em"]
    assert tensor["status"] == "ok", tensor["message"]
    # the budget reached tensor_em's gating EM; the stop reason is read, not inferred
    assert tensor["n_iter"] == 2 and tensor["stop_reason"] == "max_iter"
    assert tensor["fitted_converged"] is False


def test_dry_run_lists_the_budgets_each_class_takes(tmp_path, capsys):
    from moebench.cli import main as cli_main

    (tmp_path / "c.toml").write_text(
        'name = "b"\n[data]\nn = 500\nd = 4\nk = 2\n[budget]\nmax_iter = 7\nmax_time = 9.0\n'
        '[[algorithm]]\nname = "tensor_em"\n[[algorithm]]\nname = "sgd"\n')
    assert cli_main(["run", str(tmp_path / "c.toml"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:4] == ["tensor_em", "tensor_em", "max_iter=7", "max_time=9"]
               for line in lines)
    assert any(line.split()[:3] == ["sgd", "sgd", "max_time=9"] for line in lines)


def test_tensor_em_stop_reason_names_the_option_that_ended_it(small_data):
    from moebench.tensor.estimator import TensorEM

    X, y = small_data.X, small_data.y
    own = TensorEM(n_experts=3, random_state=0, gating_em_iter=2, max_iter=50).fit(X, y)
    assert (own.stop_reason_, own.n_iter_) == ("gating_em_iter", 2)
    budget = TensorEM(n_experts=3, random_state=0, gating_em_iter=50, max_iter=2).fit(X, y)
    assert (budget.stop_reason_, budget.n_iter_) == ("max_iter", 2)
    full = TensorEM(n_experts=3, random_state=0).fit(X, y)
    assert full.stop_reason_ == "converged" and full.converged_ and full.n_iter_ < 200
    assert full.log_likelihood_ == pytest.approx(full.score(X, y), abs=1e-10)
