"""The fit shared by the moment estimators (tensor_em, spectral_experts).

A moment estimator's ``_fit`` is its start (the moment step, then the gating EM with the
experts fixed) under its stopping criterion, or, with ``refine``, the joint EM from that
start: ``joint_em(init=...)`` itself, by name from the registry, so that
``tensor_em(refine=True)`` and ``joint_em(init="tensor")`` are one code path. It sits
above the estimator contract and the registry and below the algorithms that use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moebench.activations import Activation
from moebench.base import MoEEstimator
from moebench.history import History
from moebench.registry import algorithm_class


def fit_moment_estimator(est: Any, init: str, X: np.ndarray, y: np.ndarray, k: int,
                         activation: Activation, sigma: float | None,
                         history: History) -> None:
    """The ``_fit`` of a moment estimator (tensor_em, spectral_experts): with ``refine``,
    :func:`fit_from_start` (``joint_em(init=init)``); otherwise its ``start`` (the moment
    step, then the gating EM with the experts fixed) under its stopping criterion."""
    if est.refine:
        fit_from_start(est, init, X, y, k, activation, sigma, history)
        return
    stop = est.stopping(history, tol=float(est.gating_tol))
    res = est.start(X, y, k, activation, sigma, history, stop)
    est._set_fit(res.experts, res.gating, res.sigma, res.n_iter, res.log_likelihood,
                 res.stop_reason, converged=res.converged)


def fit_from_start(est: MoEEstimator, init: str, X: np.ndarray, y: np.ndarray, k: int,
                   activation: Activation, sigma: float | None, history: History) -> None:
    """Fit a moment estimator's ``refine=True``: ``joint_em(init=init)`` from its start.

    One EM for every variant: the joint EM is ``joint_em``'s own fit (the registry's
    class), with the moment estimator's start options as ``init_options``, its
    ``refine_max_iter`` (capped by ``max_iter``) as the joint EM's ``max_iter``, its
    ``refine_tol`` as ``tol`` and its ``max_time``; every other joint-EM option is
    ``joint_em``'s default. So ``tensor_em(refine=True)`` equals
    ``joint_em(init="tensor")`` with the same options to the bit. The joint EM's fitted
    attributes become ``est``'s.
    """
    cap = est.refine_max_iter if est.max_iter is None else min(est.refine_max_iter,
                                                                est.max_iter)
    joint = algorithm_class("joint_em")(
        n_experts=est.n_experts, activation=est.activation, sigma=est.sigma,
        random_state=est.random_state, init=init, init_options=est.start_options(),
        n_init=1, max_iter=int(cap), tol=float(est.refine_tol), max_time=est.max_time,
        backend=getattr(est, "backend", "numpy"))
    joint._fit(X, y, k, activation, sigma, history)
    for name, value in vars(joint).items():
        if name.endswith("_") and not name.startswith("_"):
            setattr(est, name, value)
