"""Test-only algorithms for the sweep tests (imported by the tests and by sweep workers).

``sweeptest_em`` is a genuine, small algorithm: joint EM (moebench.em.run_em) from
a random start. ``sleep_after`` and ``fail_below`` exist to exercise the runner's
timeout and failure recording.
"""

from __future__ import annotations

import time

import numpy as np

from moebench.base import MoEEstimator
from moebench.constraints import Interval
from moebench.em import run_em
from moebench.registry import _REGISTRY, register

NAMES = ("sweeptest_em",)


@register("sweeptest_em")
class SweepTestEM(MoEEstimator):
    """Joint EM from a random unit-norm start (sweep tests only)."""

    description = "test-only: joint EM from a random start"
    budget_parameters = {"max_iter": "max_iter", "max_time": "max_time"}
    iteration_unit = "EM iteration"
    #: init_scale <= 0 passes the declaration on purpose: it makes fit fail at run time
    _parameter_constraints = {"max_iter": [Interval(int, 1, None)],
                              "max_time": [Interval(float, 0, None, closed="neither"), None],
                              "init_scale": [Interval(float, None, None)],
                              "sleep_after": [Interval(float, 0, None)]}

    def __init__(self, n_experts=2, activation="linear", sigma=None, random_state=None,
                 max_iter=30, max_time=None, init_scale=1.0, sleep_after=0.0):
        super().__init__(n_experts, activation, sigma, random_state)
        self.max_iter = max_iter
        self.max_time = max_time
        self.init_scale = init_scale
        self.sleep_after = sleep_after

    def _fit(self, X, y, k, activation, sigma, history):
        if not self.init_scale > 0:
            raise ValueError(f"init_scale must be > 0; got {self.init_scale}")
        rng = self._rng()
        A = rng.standard_normal((k, X.shape[1]))
        A /= np.linalg.norm(A, axis=1, keepdims=True)
        W = self.init_scale * rng.standard_normal((k, X.shape[1]))
        res = run_em(X, y, A, W, sigma if sigma is not None else float(np.std(y)), activation,
                     update_sigma=sigma is None, max_iter=self.max_iter, max_time=self.max_time,
                     history=history)
        if self.sleep_after:
            time.sleep(self.sleep_after)
        self._set_fit(res.experts, res.gating, res.sigma, res.n_iter, res.log_likelihood,
                      res.stop_reason)


def unregister() -> None:
    """Remove the test algorithms from this process's registry."""
    for name in NAMES:
        _REGISTRY.pop(name, None)
