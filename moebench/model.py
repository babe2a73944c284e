"""The mixture-of-experts model.

P(z = i | x) = softmax(W x)_i with W of shape (k, d) and last row 0 (only row
differences are identifiable); y | x, z = i  ~  N(g(a_i . x), sigma^2).
Every density is computed in log space with log-sum-exp.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax, logsumexp

from moebench.activations import Activation, get_activation
from moebench.validation import check_array, check_n_experts, check_sigma, check_X_y

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
    sigma : float
        Standard deviation of the label noise.
    activation : str, Activation or callable
        Expert activation g.
    """

    experts: np.ndarray
    gating: np.ndarray
    sigma: float
    activation: Activation | str | Callable = "linear"

    def __post_init__(self) -> None:
        experts = check_array(self.experts, "experts", 2)
        gating = check_array(self.gating, "gating", 2)
        if experts.shape != gating.shape:
            raise ValueError(
                f"experts and gating must have the same shape (k, d); got {experts.shape} "
                f"and {gating.shape}"
            )
        check_n_experts(experts.shape[0])
        object.__setattr__(self, "experts", experts)
        object.__setattr__(self, "gating", canonical_gating(gating))
        object.__setattr__(self, "sigma", check_sigma(self.sigma, allow_none=False))
        object.__setattr__(self, "activation", get_activation(self.activation))

    @property
    def n_experts(self) -> int:
        """Number of experts k."""
        return self.experts.shape[0]

    @property
    def n_features(self) -> int:
        """Input dimension d."""
        return self.experts.shape[1]

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        X = check_array(X, "X", 2)
        if X.shape[1] != self.n_features:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features} features as input (d = {self.n_features})"
            )
        return X

    def gate_log_proba(self, X: np.ndarray) -> np.ndarray:
        """log P(z = i | x), shape (n, k)."""
        return log_softmax(self._check_X(X) @ self.gating.T, axis=1)

    def expert_means(self, X: np.ndarray) -> np.ndarray:
        """g(a_i . x) for every sample and expert, shape (n, k)."""
        return self.activation.func(self._check_X(X) @ self.experts.T)

    def log_joint(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """log P(z = i | x) + log N(y; g(a_i . x), sigma^2), shape (n, k)."""
        X, y = check_X_y(X, y)
        self._check_X(X)
        return log_joint(X, y, self.experts, self.gating, self.sigma, self.activation)

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


def log_joint(
    X: np.ndarray, y: np.ndarray, experts: np.ndarray, gating: np.ndarray, sigma: float,
    activation: Activation, means: np.ndarray | None = None,
) -> np.ndarray:
    """log P(z = i | x) + log N(y; g(a_i . x), sigma^2) without input checks, shape (n, k).

    The hot loop of EM calls this directly on already-validated arrays; ``means``
    (the expert means g(X A^T)) can be passed when the experts are fixed.
    """
    if means is None:
        means = activation.func(X @ experts.T)
    resid = y[:, None] - means
    log_norm = -0.5 * (resid / sigma) ** 2 - np.log(sigma) - 0.5 * LOG_2PI
    return log_softmax(X @ gating.T, axis=1) + log_norm


def sample_labels(
    model: MoEModel, X: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sample expert indices by the Gumbel-max trick, then noisy labels."""
    logits = X @ model.gating.T
    z = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    t = np.take_along_axis(X @ model.experts.T, z[:, None], axis=1)[:, 0]
    y = model.activation.func(t) + model.sigma * rng.standard_normal(X.shape[0])
    return y, z
