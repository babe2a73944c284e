"""The regression mixture of experts f_G with a softmax or a sigmoid gate.

Nguyen, Ho and Rinaldo ("Sigmoid gating is more sample efficient than softmax gating in
mixture of experts", NeurIPS 2024, arXiv 2405.13997) study a *regression* function::

    Y = f_G(X) + eps,    f_G(x) = sum_i gate_i(x) h(x, eta_i),    h(x, (a, b)) = g(a . x + b)

with the sigmoid gate ``gate_i(x) = sigmoid(beta1_i . x + beta0_i)`` (not normalised:
the gates need not sum to 1) or the softmax gate ``softmax(beta1 . x + beta0)_i``, fitted by
least squares. This is a separate class from :class:`moebench.model.MoEModel` because the
two are different objects: ``MoEModel`` is a conditional *density* (a latent expert
drawn by a softmax gate, then Gaussian noise around that expert), whose gates must be
probabilities; ``RegressionMoE`` is a mean function plus one Gaussian noise level, whose
gates are weights (the sigmoid ones need not sum to 1) and whose only randomness is the
additive noise. The two agree in mean, not in law, for a softmax gate (``MoEModel``'s
labels are mixtures; these are not).

Softmax gates are stored with the last expert as reference (its gate 0), as in
``MoEModel``; sigmoid gates are identifiable as given and stored unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit, softmax

from moebench.activations import Activation, get_activation
from moebench.validation import (
    check_array,
    check_choice,
    check_model_input,
    check_n_experts,
    check_sigma,
)

#: the gates of :class:`RegressionMoE`
GATES = ("softmax", "sigmoid")
LOG_2PI = float(np.log(2.0 * np.pi))


def check_gate(gate: Any) -> str:
    """``gate`` if it is one of :data:`GATES`, else ValueError naming the valid choices."""
    if not isinstance(gate, str):
        raise ValueError(f"unknown gate {gate!r}; valid choices are "
                         f"{', '.join(map(repr, GATES))}")
    return check_choice(gate, "gate", GATES)


def gate_weights(logits: np.ndarray, gate: str) -> np.ndarray:
    """The (n, k) gate values of (n, k) gating logits: softmax over experts, or sigmoid each."""
    return softmax(logits, axis=1) if check_gate(gate) == "softmax" else expit(logits)


@dataclass(frozen=True, eq=False)
class RegressionMoE:
    """f_G(x) = sum_i gate_i(x) g(a_i . x + b_i), and y = f_G(x) + N(0, sigma^2).

    Parameters
    ----------
    experts : ndarray of shape (k, d)
        Expert weights a_i.
    expert_bias : ndarray of shape (k,)
        Expert intercepts b_i (inside the activation).
    gating : ndarray of shape (k, d)
        Gating weights beta1_i (softmax: stored with the last row shifted to 0).
    gating_bias : ndarray of shape (k,)
        Gating biases beta0_i (softmax: stored with the last one shifted to 0).
    sigma : float
        Standard deviation of the additive noise.
    gate : {"softmax", "sigmoid"}
        The gating function.
    activation : str or Activation
        Expert activation g.
    """

    experts: np.ndarray
    expert_bias: np.ndarray
    gating: np.ndarray
    gating_bias: np.ndarray
    sigma: float
    gate: str = "sigmoid"
    activation: Activation | str = "linear"

    def __post_init__(self) -> None:
        gate = check_gate(self.gate)
        experts = check_array(self.experts, "experts", 2)
        gating = check_array(self.gating, "gating", 2)
        if experts.shape != gating.shape:
            raise ValueError(f"experts and gating must have the same shape (k, d); got "
                             f"{experts.shape} and {gating.shape}")
        k = check_n_experts(experts.shape[0]) if gate == "softmax" else experts.shape[0]
        if k < 1:
            raise ValueError("a RegressionMoE needs at least one expert")
        biases = {}
        for name in ("expert_bias", "gating_bias"):
            value = check_array(getattr(self, name), name, 1)
            if value.shape != (k,):
                raise ValueError(f"{name} must have shape ({k},) (one per expert); got "
                                 f"{value.shape}")
            biases[name] = value
        if gate == "softmax":  # only differences between softmax gates are identifiable
            gating = gating - gating[-1]
            biases["gating_bias"] = biases["gating_bias"] - biases["gating_bias"][-1]
        object.__setattr__(self, "experts", experts)
        object.__setattr__(self, "gating", gating)
        for name, value in biases.items():
            object.__setattr__(self, name, value)
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
        return check_model_input(X, self.n_features, type(self).__name__)

    def gates(self, X: np.ndarray) -> np.ndarray:
        """gate_i(x) for every row and expert, shape (n, k)."""
        X = self._check_X(X)
        return gate_weights(X @ self.gating.T + self.gating_bias, self.gate)

    def expert_outputs(self, X: np.ndarray) -> np.ndarray:
        """h(x, eta_i) = g(a_i . x + b_i) for every row and expert, shape (n, k)."""
        X = self._check_X(X)
        return self.activation.func(X @ self.experts.T + self.expert_bias)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The regression function f_G(x), shape (n,)."""
        return np.sum(self.gates(X) * self.expert_outputs(X), axis=1)

    def log_likelihood(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-row log N(y; f_G(x), sigma^2), shape (n,)."""
        y = check_array(y, "y", 1)
        resid = (y - self.predict(X)) / self.sigma
        return -0.5 * resid**2 - np.log(self.sigma) - 0.5 * LOG_2PI

    def mean_log_likelihood(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean of :meth:`log_likelihood`."""
        return float(np.mean(self.log_likelihood(X, y)))

    def sample(self, X: np.ndarray, random_state: int | np.random.Generator | None = None
               ) -> np.ndarray:
        """Labels y = f_G(x) + sigma eps, eps ~ N(0, 1) i.i.d., shape (n,)."""
        rng = np.random.default_rng(random_state)
        mean = self.predict(X)
        return mean + self.sigma * rng.standard_normal(mean.shape[0])

    def with_gate(self, gate: str) -> RegressionMoE:
        """The same parameters under another gate (a different regression function)."""
        return RegressionMoE(self.experts, self.expert_bias, self.gating, self.gating_bias,
                             self.sigma, gate, self.activation)


def two_expert_truth(gating: float, gating_bias: float, experts: tuple[float, float],
                     expert_bias: tuple[float, float], sigma: float, gate: str,
                     activation: str = "linear") -> RegressionMoE:
    """A d = 1 two-expert truth that is the *same function* under either gate.

    With k = 2, softmax(t, 0) = (sigmoid(t), sigmoid(-t)), so::

        sigmoid(w x + c) h_1(x) + sigmoid(-w x - c) h_2(x)

    is a softmax-gated MoE with atoms (c, w, eta_1), (0, 0, eta_2) (reference last) and a
    sigmoid-gated MoE with atoms (c, w, eta_1), (-c, -w, eta_2). Both fits of a sweep then
    see the same data, and each is compared with the truth in its own parametrisation.

    Parameters
    ----------
    gating, gating_bias : float
        w and c.
    experts, expert_bias : pair of float
        (a_1, a_2) and (b_1, b_2).
    sigma : float
        Noise standard deviation.
    gate : {"softmax", "sigmoid"}
        The parametrisation returned.
    activation : str
        Expert activation g.
    """
    check_gate(gate)
    w, c = float(gating), float(gating_bias)
    if gate == "softmax":
        beta1, beta0 = [[w], [0.0]], [c, 0.0]
    else:
        beta1, beta0 = [[w], [-w]], [c, -c]
    return RegressionMoE(np.asarray(experts, float).reshape(2, 1), np.asarray(expert_bias, float),
                         np.asarray(beta1, float), np.asarray(beta0, float), sigma, gate,
                         activation)


def equivalent_truth(truth: RegressionMoE, gate: str) -> RegressionMoE | None:
    """The same regression function written with ``gate``, where this module knows one.

    - the same gate: ``truth`` itself;
    - softmax, k = 2 (reference last) -> sigmoid: ``softmax(t, 0) = (sigmoid(t),
      sigmoid(-t))``, so the atoms are (c, w, eta_1) and (-c, -w, eta_2); an expert that is
      identically zero (a = 0, b = 0 and g(0) = 0) is dropped with its gate;
    - sigmoid, k = 2 with opposite gates (c, w) and (-c, -w) -> softmax: (c, w, eta_1) and
      the reference (0, 0, eta_2);
    - sigmoid, k = 1 -> softmax: the atom and a zero reference expert (a = 0, b = 0) with
      gate 0, when g(0) = 0.

    Returns None for any other case (the two gates then define different function classes
    for these k).
    """
    if check_gate(gate) == truth.gate:
        return truth
    zero_at_0 = float(truth.activation.func(np.zeros(1))[0]) == 0.0
    if truth.gate == "softmax" and truth.n_experts == 2:
        keep = [i for i in range(2) if not (zero_at_0 and not np.any(truth.experts[i])
                                             and truth.expert_bias[i] == 0.0)]
        sign = np.array([1.0, -1.0])[keep]
        w, c = truth.gating[0], truth.gating_bias[0]
        return RegressionMoE(truth.experts[keep], truth.expert_bias[keep],
                             sign[:, None] * w[None, :], sign * c, truth.sigma, "sigmoid",
                             truth.activation)
    if (truth.gate == "sigmoid" and truth.n_experts == 2
            and np.array_equal(truth.gating[1], -truth.gating[0])
            and truth.gating_bias[1] == -truth.gating_bias[0]):
        return RegressionMoE(truth.experts, truth.expert_bias,
                             np.vstack([truth.gating[:1], np.zeros_like(truth.gating[:1])]),
                             np.array([truth.gating_bias[0], 0.0]), truth.sigma, "softmax",
                             truth.activation)
    if truth.gate == "sigmoid" and truth.n_experts == 1 and zero_at_0:
        d = truth.n_features
        return RegressionMoE(np.vstack([truth.experts, np.zeros((1, d))]),
                             np.append(truth.expert_bias, 0.0),
                             np.vstack([truth.gating, np.zeros((1, d))]),
                             np.append(truth.gating_bias, 0.0), truth.sigma, "softmax",
                             truth.activation)
    return None


def regression_truth(table: dict[str, Any], d: int, k: int, activation: str | Activation
                     ) -> RegressionMoE:
    """The :class:`~moebench.regression_moe.RegressionMoE` of a ``data.truth`` table with a
    ``gate`` (absent biases are 0; ``sigma`` one float)."""
    experts = np.asarray(table["experts"], dtype=float)
    kk = experts.shape[0] if experts.ndim == 2 else 0
    model = RegressionMoE(experts, np.asarray(table.get("expert_bias", np.zeros(kk)), float),
                          np.asarray(table["gating"], dtype=float),
                          np.asarray(table.get("gating_bias", np.zeros(kk)), float),
                          table["sigma"], table["gate"], activation)
    if (model.n_features, model.n_experts) != (d, k):
        raise ValueError(f"data.truth has d = {model.n_features}, k = {model.n_experts}; the "
                         f"setting has d = {d}, k = {k}")
    return model
