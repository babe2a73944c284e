"""One contract suite over every registered algorithm (like scikit-learn's check_estimator).

A new baseline is tested here the moment it is registered.
"""

import numpy as np
import pytest

import moebench
from moebench.base import MoEEstimator
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
        history.record("fit", 0, 0.0, experts=self.experts_, gating=self.gating_)


class _NoHistory(_FixedOutput):
    def _fit(self, X, y, k, activation, sigma, history):
        coef = np.linalg.lstsq(X, y, rcond=None)[0]
        self.experts_ = np.vstack([coef, -coef])[:k]
        self.gating_ = np.zeros((k, X.shape[1]))
        self.sigma_ = 1.0
        self.n_iter_ = 0


def test_check_algorithm_rejects_a_placeholder():
    with pytest.raises(AssertionError, match="placeholder must not be registered"):
        check_algorithm(_FixedOutput)


def test_check_algorithm_rejects_missing_history():
    with pytest.raises(AssertionError, match="history_ must be a non-empty list"):
        check_algorithm(_NoHistory)


def test_check_algorithm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="registered name or a MoEEstimator subclass"):
        check_algorithm(3.5)
