"""Expert intercepts and gating biases fitted as the weights of a column of ones.

joint_em and sgd fit ``intercepts=True`` the same way: the fit runs on [X, 1], so the
last column of the fitted experts holds the intercepts b_i (inside the activation,
g(a_i . x + b_i)) and the last column of the gating the gating biases; afterwards
:func:`split_biases` moves them to ``expert_bias_`` and ``gating_bias_`` (the last gating
bias 0). :func:`fitted_stationarity` checks such a fit, and one with per-expert noise, on
every fitted parameter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moebench.activations import Activation


def with_ones(X: np.ndarray) -> np.ndarray:
    """[X, 1]: X (as float) with a column of ones appended (the biases' inputs)."""
    return np.hstack([np.asarray(X, dtype=float), np.ones((X.shape[0], 1))])


def split_biases(est: Any) -> None:
    """Move the last column of a fit on [X, 1] out of ``est.experts_`` and ``est.gating_``
    into ``est.expert_bias_`` and ``est.gating_bias_`` (relative to the last expert's)."""
    est.expert_bias_ = est.experts_[:, -1].copy()
    est.gating_bias_ = est.gating_[:, -1] - est.gating_[-1, -1]
    est.experts_, est.gating_ = est.experts_[:, :-1], est.gating_[:, :-1]


def fitted_stationarity(est: Any, X: np.ndarray, y: np.ndarray,
                        activation: Activation) -> tuple[float, float]:
    """:func:`moebench.stationarity.stationarity` at a fit that may have biases and
    per-expert noise: biases as the weights of a column of ones, per-expert noise by
    :func:`moebench.stationarity.per_expert_stationarity`; a given ``est.sigma`` moves no
    noise parameter."""
    from moebench.stationarity import per_expert_stationarity, stationarity

    experts, gating = est.experts_, est.gating_
    if est.intercepts:
        X = np.hstack([X, np.ones((X.shape[0], 1))])
        experts = np.hstack([experts, est.expert_bias_[:, None]])
        gating = np.hstack([gating, est.gating_bias_[:, None]])
    if np.ndim(est.sigma_) == 1:
        if est.sigma is not None:  # a given sigma: no noise parameter moves
            return stationarity(X, y, experts, gating, float(est.sigma), activation,
                                learn_sigma=False)
        return per_expert_stationarity(X, y, experts, gating, est.sigma_, activation)
    return stationarity(X, y, experts, gating, est.sigma_, activation,
                        learn_sigma=est.sigma is None)
