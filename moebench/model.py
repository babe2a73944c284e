"""The mixture-of-experts model.

P(z = i | x) = softmax(W x + c)_i with W of shape (k, d) and gating biases c, last
row and last bias 0 (only differences between experts are identifiable);
y | x, z = i  ~  N(g(a_i . x + b_i), sigma_i^2). Without biases (c = b = 0) and with
one sigma for every expert this is the paper's model, computed by the same
operations as before the biases existed. Every density is computed in log space
with log-sum-exp.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_softmax, logsumexp

from moebench.activations import Activation, get_activation
from moebench.validation import (
    check_array,
    check_model_input,
    check_n_experts,
    check_sigma,
    check_X_y,
)

LOG_2PI = float(np.log(2.0 * np.pi))


def canonical_gating(gating: np.ndarray) -> np.ndarray:
    """Shift the gating rows so the last row is 0 (the softmax is unchanged)."""
    gating = np.asarray(gating, dtype=float)
    return gating - gating[-1]


@dataclass(frozen=True, eq=False)
class MoEModel:
    """A mixture of k experts on inputs in R^d.

    Parameters
    ----------
    experts : ndarray of shape (k, d)
        Expert weight vectors a_i.
    gating : ndarray of shape (k, d)
        Gating weights; stored with the last row shifted to 0.
    sigma : float or ndarray of shape (k,)
        Standard deviation of the label noise: one for every expert, or one per expert.
    activation : str, Activation or callable
        Expert activation g.
    expert_bias : ndarray of shape (k,), optional
        Expert intercepts b_i (inside the activation); None: no intercepts.
    gating_bias : ndarray of shape (k,), optional
        Gating biases; stored with the last one shifted to 0. None: no biases.
    """

    experts: np.ndarray
    gating: np.ndarray
    sigma: float | np.ndarray
    activation: Activation | str | Callable = "linear"
    expert_bias: np.ndarray | None = None
    gating_bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        experts = check_array(self.experts, "experts", 2)
        gating = check_array(self.gating, "gating", 2)
        if experts.shape != gating.shape:
            raise ValueError(
                f"experts and gating must have the same shape (k, d); got {experts.shape} "
                f"and {gating.shape}"
            )
        k = check_n_experts(experts.shape[0])
        object.__setattr__(self, "experts", experts)
        object.__setattr__(self, "gating", canonical_gating(gating))
        object.__setattr__(self, "sigma", check_expert_sigma(self.sigma, k))
        object.__setattr__(self, "activation", get_activation(self.activation))
        for name in ("expert_bias", "gating_bias"):
            value = getattr(self, name)
            if value is not None:
                value = check_array(value, name, 1)
                if value.shape != (k,):
                    raise ValueError(f"{name} must have shape ({k},) (one per expert); got "
                                     f"{value.shape}")
                if name == "gating_bias":
                    value = value - value[-1]
                object.__setattr__(self, name, value)

    @property
    def has_biases(self) -> bool:
        """Whether the model has expert intercepts or gating biases."""
        return self.expert_bias is not None or self.gating_bias is not None

    @property
    def per_expert_sigma(self) -> bool:
        """Whether the noise level differs by expert (``sigma`` is an array)."""
        return isinstance(self.sigma, np.ndarray)

    @property
    def n_experts(self) -> int:
        """Number of experts k."""
        return self.experts.shape[0]

    @property
    def n_features(self) -> int:
        """Input dimension d."""
        return self.experts.shape[1]

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        return check_model_input(X, self.n_features, type(self).__name__)

    def gate_log_proba(self, X: np.ndarray) -> np.ndarray:
        """log P(z = i | x), shape (n, k)."""
        return log_softmax(_affine(self._check_X(X), self.gating, self.gating_bias), axis=1)

    def expert_means(self, X: np.ndarray) -> np.ndarray:
        """g(a_i . x + b_i) for every sample and expert, shape (n, k)."""
        return self.activation.func(_affine(self._check_X(X), self.experts, self.expert_bias))

    def log_joint(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """log P(z = i | x) + log N(y; g(a_i . x), sigma^2), shape (n, k)."""
        X, y = check_X_y(X, y)
        self._check_X(X)
        return log_joint(X, y, self.experts, self.gating, self.sigma, self.activation,
                         expert_bias=self.expert_bias, gating_bias=self.gating_bias)

    def log_likelihood(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-sample conditional log-density log p(y | x), shape (n,)."""
        return logsumexp(self.log_joint(X, y), axis=1)

    def mean_log_likelihood(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean of :meth:`log_likelihood`."""
        return float(np.mean(self.log_likelihood(X, y)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """E[y | x] = sum_i P(z = i | x) g(a_i . x), shape (n,)."""
        X = self._check_X(X)
        return np.sum(np.exp(self.gate_log_proba(X)) * self.expert_means(X), axis=1)

    def sample(
        self, X: np.ndarray, random_state: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw labels for the rows of X.

        Returns
        -------
        y : ndarray of shape (n,)
        z : ndarray of shape (n,)
            The index of the expert that generated each label.
        """
        rng = np.random.default_rng(random_state)
        X = self._check_X(X)
        return sample_labels(self, X, rng)


def check_expert_sigma(sigma: Any, k: int) -> float | np.ndarray:
    """A positive finite float, or a (k,) array of them (one standard deviation per expert)."""
    if isinstance(sigma, (list, tuple)) or (isinstance(sigma, np.ndarray) and sigma.ndim > 0):
        arr = check_array(sigma, "sigma", 1)
        if arr.shape != (k,) or np.any(arr <= 0):
            raise ValueError(f"sigma must be a positive float or ({k},) positive standard "
                             f"deviations (one per expert); got {sigma!r}")
        return arr
    return check_sigma(sigma, allow_none=False)


def _affine(X: np.ndarray, weights: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """X W^T, plus the bias when there is one (no extra operation without it)."""
    out = X @ weights.T
    if bias is not None:
        out = out + bias
    return out


def log_joint(
    X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray,
    sigma: float | np.ndarray, activation: Activation, means: np.ndarray | None = None, *,
    expert_bias: np.ndarray | None = None, gating_bias: np.ndarray | None = None,
) -> np.ndarray:
    """log P(z = i | x) + log N(y; g(a_i . x + b_i), sigma_i^2) without input checks, (n, k).

    The hot loop of EM calls this directly on already-validated arrays; ``means``
    (the expert means g(X A^T + b)) can be passed when the experts are fixed. ``sigma``
    is a float or one standard deviation per expert.
    """
    if means is None:
        means = activation.func(_affine(X, experts, expert_bias))
    resid = y[:, None] - means
    log_norm = -0.5 * (resid / sigma) ** 2 - np.log(sigma) - 0.5 * LOG_2PI
    return log_softmax(_affine(X, gating, gating_bias), axis=1) + log_norm


def sample_labels(
    model: MoEModel, X: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sample expert indices by the Gumbel-max trick, then noisy labels."""
    logits = _affine(X, model.gating, model.gating_bias)
    z = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    t = np.take_along_axis(_affine(X, model.experts, model.expert_bias), z[:, None], axis=1)[:, 0]
    sigma = model.sigma[z] if model.per_expert_sigma else model.sigma
    y = model.activation.func(t) + sigma * rng.standard_normal(X.shape[0])
    return y, z
