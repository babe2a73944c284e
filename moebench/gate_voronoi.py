"""A Voronoi loss between two regression mixtures of experts with the same gate.

For :class:`moebench.regression_moe.RegressionMoE` fits (softmax or sigmoid gate). Every
expert is an atom ``(beta0, beta1, b, a)``; fitted atom ``i`` falls in the Voronoi cell
``A_j`` of the true atom ``j`` nearest under::

    dist(i, j) = |beta1_i - beta1*_j| + |b_i - b*_j| + |a_i - a*_j|

(Euclidean norms for d > 1; ties go to the lower ``j``). With the gate's *weight*
``w(beta0) = sigmoid(beta0)`` (sigmoid gate) or ``exp(beta0)`` (softmax gate, last atom
the reference) and an exponent ``r`` for cells of two or more atoms, the loss is::

    sum_j |sum_{i in A_j} w(beta0_i) - w(beta0*_j)|
    + sum_{j: |A_j| = 1}  sum_{i in A_j} w(beta0_i) (|d beta1| + |d b| + |d a|)
    + sum_{j: |A_j| >= 2} sum_{i in A_j} w(beta0_i) (|d beta1|^r + |d b|^r + |d a|^r)

with ``r = 2`` by default: modelled on the Voronoi loss of Nguyen, Ho and Rinaldo for
strongly identifiable experts under a softmax gate (ICML 2024, arXiv 2402.02952), as
recalled by the implementer (not checked against that text, which could not be read
here), with the gate's weight in place of ``exp``. **It is this harness's loss, not a
transcription**: the sigmoid paper (arXiv 2405.13997) defines its own losses for its two
regimes, whose text could not be read here (docs/findings/sigmoid_gating.md says what is
public).

A softmax fit is compared at the best of its ``k`` reference choices: its gates are
shifted so that fitted atom ``m`` has gate 0 (the softmax is unchanged), for each ``m``,
and the smallest loss is kept; a fit whose reference expert is not the truth's is then
not charged for that label. Sigmoid gates are identifiable and compared as they are.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from moebench.regression_moe import RegressionMoE


def _loss(beta0: np.ndarray, beta1: np.ndarray, b: np.ndarray, a: np.ndarray,
          true: RegressionMoE, weight: np.ndarray, true_weight: np.ndarray, r: float) -> float:
    dist_beta1 = np.linalg.norm(beta1[:, None, :] - true.gating[None, :, :], axis=-1)
    dist_a = np.linalg.norm(a[:, None, :] - true.experts[None, :, :], axis=-1)
    dist_b = np.abs(b[:, None] - true.expert_bias[None, :])
    cell = np.argmin(dist_beta1 + dist_b + dist_a, axis=1)             # (K,)
    size = np.bincount(cell, minlength=true.n_experts)[cell]
    rows = np.arange(cell.shape[0])
    d1, db, da = dist_beta1[rows, cell], dist_b[rows, cell], dist_a[rows, cell]
    term = np.where(size == 1, d1 + db + da, d1**r + db**r + da**r)
    mass = np.bincount(cell, weights=weight, minlength=true.n_experts)
    return float(np.sum(np.abs(mass - true_weight)) + np.sum(weight * term))


def gate_voronoi_loss(fitted: RegressionMoE, truth: RegressionMoE, *, r: float = 2.0) -> float:
    """The Voronoi loss between a fitted and a true :class:`RegressionMoE` (module docstring).

    Parameters
    ----------
    fitted, truth : RegressionMoE
        Same gate and input dimension; their numbers of experts may differ.
    r : float
        Exponent of the distances in cells of two or more fitted atoms (> 0).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For anything but two RegressionMoE of the same gate and input dimension, or r <= 0.
    """
    for name, obj in (("fitted", fitted), ("truth", truth)):
        if not isinstance(obj, RegressionMoE):
            raise ValueError(f"{name} must be a RegressionMoE; got {type(obj).__name__}")
    if fitted.gate != truth.gate:
        raise ValueError(f"fitted has a {fitted.gate} gate, truth a {truth.gate} gate: the "
                         "loss compares parameters of the same gate")
    if fitted.n_features != truth.n_features:
        raise ValueError(f"fitted has d = {fitted.n_features} inputs, truth "
                         f"d = {truth.n_features}")
    if not (isinstance(r, (int, float)) and np.isfinite(r) and r > 0):
        raise ValueError(f"r must be a positive finite number; got {r!r}")
    if fitted.gate == "sigmoid":
        return _loss(fitted.gating_bias, fitted.gating, fitted.expert_bias, fitted.experts,
                     truth, expit(fitted.gating_bias), expit(truth.gating_bias), float(r))
    true_weight = np.exp(truth.gating_bias)
    best = np.inf
    for m in range(fitted.n_experts):  # every choice of the fitted reference atom
        beta0 = fitted.gating_bias - fitted.gating_bias[m]
        beta1 = fitted.gating - fitted.gating[m]
        with np.errstate(over="ignore", invalid="ignore"):  # exp(beta0) = inf: an inf loss
            loss = _loss(beta0, beta1, fitted.expert_bias, fitted.experts, truth,
                         np.exp(beta0), true_weight, float(r))
        best = min(best, loss if not np.isnan(loss) else np.inf)
    return best
