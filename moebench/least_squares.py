"""Least squares for the regression mixture of experts, softmax or sigmoid gate.

``lse_moe`` minimises the mean squared error of f_G (:class:`moebench.regression_moe.
RegressionMoE`) over the gates (weights and biases) and the experts (weights and
intercepts): the least-squares estimator of Nguyen, Ho and Rinaldo (arXiv 2402.02952 for
the softmax gate, 2405.13997 for the sigmoid gate). It is the maximum-likelihood estimator
of y = f_G(x) + N(0, sigma^2), so its ``log_likelihood_`` and ``score`` are that model's
(``sigma_`` = the root mean squared residual unless ``sigma`` is given).

Optimiser: scipy's L-BFGS-B on the squared error and its gradient by torch autograd, in
float64, one L-BFGS iteration per counted iteration, from ``n_init`` data-anchored random
starts (the one of least squared error is kept,
:class:`moebench.restarts.RestartedEstimator`); each start stops by the fit's
:class:`moebench.stopping.StoppingCriterion` (relative change of the mean log-likelihood
at most ``tol``, or a budget).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize

from moebench.activations import ACTIVATIONS, Activation
from moebench.base import as_truth
from moebench.constraints import Interval, Options
from moebench.history import History, StartFit
from moebench.registry import register
from moebench.regression_moe import GATES, LOG_2PI, RegressionMoE
from moebench.restarts import RestartedEstimator
from moebench.stopping import StoppingCriterion

#: smallest residual variance used in the log-likelihood (a perfect fit stays finite)
MIN_VARIANCE = 1e-300


def _split(theta: Any, k: int, d: int, gate: str) -> tuple[Any, Any, Any, Any]:
    """(experts, expert_bias, gating, gating_bias) from the flat torch vector ``theta``;
    a softmax gate's last row and bias are the fixed 0 of the reference."""
    import torch

    g = k if gate == "sigmoid" else k - 1
    sizes = [k * d, k, g * d, g]
    A, b, W, c = torch.split(theta, sizes)
    A, W = A.reshape(k, d), W.reshape(g, d)
    if gate == "softmax":
        W = torch.cat([W, torch.zeros((1, d), dtype=theta.dtype)])
        c = torch.cat([c, torch.zeros(1, dtype=theta.dtype)])
    return A, b, W, c


def _regression(theta: Any, X: Any, k: int, gate: str, g: Any) -> Any:
    """f_G(X) in torch."""
    import torch

    A, b, W, c = _split(theta, k, X.shape[1], gate)
    logits = X @ W.T + c
    gates = torch.softmax(logits, dim=1) if gate == "softmax" else torch.sigmoid(logits)
    return torch.sum(gates * g(X @ A.T + b), dim=1)


def _pack(A: np.ndarray, b: np.ndarray, W: np.ndarray, c: np.ndarray, gate: str) -> np.ndarray:
    if gate == "softmax":
        W, c = W[:-1] - W[-1], c[:-1] - c[-1]
    return np.concatenate([A.ravel(), b, W.ravel(), c])


def _start(X: np.ndarray, y: np.ndarray, k: int, gate: str, scale: float,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A data-anchored random start (experts, intercepts, gating, gating biases).

    Gate i has weights N(0, scale^2) and switches on a random training row (its logit is
    0 there); expert i is the least-squares line through the rows its gate favours
    (sigmoid: logit > 0; softmax: the largest logit), or a random one of the data's scale
    when fewer than d + 2 rows are favoured.
    """
    n, d = X.shape
    W = rng.standard_normal((k, d)) * scale
    c = -np.sum(W * X[rng.integers(0, n, size=k)], axis=1)
    logits = X @ W.T + c
    favoured = logits > 0 if gate == "sigmoid" else logits == logits.max(axis=1, keepdims=True)
    y_mean, y_std = float(np.mean(y)), float(np.std(y)) or 1.0
    A = rng.standard_normal((k, d)) * y_std
    b = y_mean + rng.standard_normal(k) * y_std
    design = np.hstack([X, np.ones((n, 1))])
    for i in range(k):
        rows = favoured[:, i]
        if np.count_nonzero(rows) >= d + 2:
            coef = np.linalg.lstsq(design[rows], y[rows], rcond=None)[0]
            A[i], b[i] = coef[:d], coef[d]
    return A, b, W, c


def _log_likelihood(mse: float, sigma: float | None) -> float:
    """Mean log N(y; f, s^2) with s the given sigma, or the root MSE (the profile)."""
    if sigma is None:
        return -0.5 * (np.log(max(mse, MIN_VARIANCE)) + LOG_2PI + 1.0)
    return -0.5 * mse / sigma**2 - np.log(sigma) - 0.5 * LOG_2PI


@register("lse_moe")
class LeastSquaresMoE(RestartedEstimator):
    """Least-squares regression MoE with a softmax or sigmoid gate (L-BFGS-B, float64).

    Parameters
    ----------
    n_experts : int
        Number of experts k >= 2.
    activation : str
        Expert activation g (a built-in with a torch form).
    sigma : float or None
        Noise level; None: the root mean squared residual.
    random_state : int or None
        Seed of the starts.
    gate : {"softmax", "sigmoid"}
        The gating function.
    n_init : int
        Random starts; the one of least squared error is kept.
    max_iter : int
        L-BFGS iterations, in total over the starts.
    tol : float
        Relative change of the mean log-likelihood that ends a start.
    gate_scale : float
        Standard deviation of the starting gating weights and biases (standardised X).
    max_time : float or None
        Wall-clock budget of the fit in seconds.

    Attributes
    ----------
    expert_bias_, gating_bias_ : ndarray of shape (k,)
        Intercepts and gating biases (softmax: last bias 0).
    sigmoid_gating_ : ndarray of shape (k, d)
        The sigmoid gate's weights as fitted (``gating_`` is the contract's view with
        its last row shifted to 0; only the softmax is unchanged by that shift). Set only
        for ``gate="sigmoid"``.
    mse_ : float
        Final mean squared residual on the training data.
    """

    description = "least squares for the regression MoE f_G, softmax or sigmoid gate (L-BFGS-B)"
    assumes = ("regression model y = f_G(x) + noise",)
    fits_regression = True
    supported_activations = tuple(n for n, a in ACTIVATIONS.items() if a.torch_func is not None)
    budget_parameters: ClassVar[dict[str, str]] = {"max_iter": "max_iter",
                                                   "max_time": "max_time"}
    iteration_unit: ClassVar[str | None] = "L-BFGS iteration"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "gate": [Options(GATES)],
        "max_iter": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None)],
        "gate_scale": [Interval(float, 0, None, closed="neither")],
    }

    def __init__(
        self,
        n_experts: int = 2,
        activation: str | Activation = "linear",
        sigma: float | None = None,
        random_state: int | None = None,
        gate: str = "softmax",
        n_init: int = 5,
        max_iter: int = 10000,
        tol: float = 1e-10,
        gate_scale: float = 3.0,
        max_time: float | None = None,
    ) -> None:
        super().__init__(n_experts, activation, sigma, random_state)
        self.gate = gate
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.gate_scale = gate_scale
        self.max_time = max_time

    def _stop_tol(self) -> float | None:
        return float(self.tol)

    def fit(self, X: np.ndarray, y: np.ndarray, truth: Any = None) -> LeastSquaresMoE:
        """Fit by least squares; ``truth`` (a MoEModel or MoEData) only feeds ``history_``.

        A :class:`RegressionMoE` truth is accepted and not used by the fit (its losses are
        computed on the result, :func:`moebench.gate_voronoi.gate_voronoi_loss`).
        """
        self._raw_gating = None
        super().fit(X, y, truth=None if isinstance(truth, RegressionMoE) else as_truth(truth))
        if self._raw_gating is not None:  # the sigmoid gate, back in the units of X
            self.sigmoid_gating_ = self._raw_gating / self._fit_scale
        elif hasattr(self, "sigmoid_gating_"):
            del self.sigmoid_gating_
        return self

    def _fit_single(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                    sigma: float | None, history: History, rng: np.random.Generator,
                    stop: StoppingCriterion, context: Any) -> StartFit:
        import torch

        d = X.shape[1]
        gate = self.gate
        A0, b0, W0, c0 = _start(X, y, k, gate, self.gate_scale, rng)
        theta0 = _pack(A0, b0, W0, c0, gate)
        Xt = torch.as_tensor(X, dtype=torch.float64)
        yt = torch.as_tensor(y, dtype=torch.float64)
        g = activation.torch_func

        def mse_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
            loss = torch.mean((yt - _regression(t, Xt, k, gate, g)) ** 2)
            (grad,) = torch.autograd.grad(loss, t)
            return float(loss.detach()), grad.numpy()

        state = {"theta": theta0, "mse": mse_and_grad(theta0)[0], "it": 0, "stopped": False}

        def record(theta: np.ndarray, mse: float) -> float:
            ll = _log_likelihood(mse, sigma) if np.isfinite(mse) else -np.inf
            A, _, W, _ = (v.numpy() for v in _split(torch.as_tensor(theta), k, d, gate))
            history.record("lbfgs", state["it"], ll, experts=A,
                           gating=W - W[-1] if gate == "softmax" else None, mse=mse)
            return ll

        def callback(intermediate_result: Any) -> None:
            prev = _log_likelihood(state["mse"], sigma)
            state.update(theta=intermediate_result.x.copy(), mse=float(intermediate_result.fun),
                         it=state["it"] + 1)
            ll = record(state["theta"], state["mse"])
            if stop.check(ll, prev) is not None:
                state["stopped"] = True
                raise StopIteration

        record(theta0, state["mse"])
        reason = stop.spent()
        if reason is None:
            left = stop.iterations_left()
            res = minimize(mse_and_grad, theta0, jac=True, method="L-BFGS-B", callback=callback,
                           options={"maxiter": 10**9 if left is None else left, "maxcor": 20,
                                    "ftol": 0.0, "gtol": 0.0, "maxfun": 10**9})
            # the callback's stop ends it (its reason), else L-BFGS-B ended itself: no step
            # decreases the squared error any more
            reason = stop.reason if state["stopped"] else "converged"
            stop.reason = reason
            state.update(theta=np.asarray(res.x, dtype=float), mse=float(res.fun))
            if not np.isfinite(res.fun):
                reason = stop.reason = "diverged"
        it, mse = state["it"], state["mse"]
        ll = _log_likelihood(mse, sigma) if np.isfinite(mse) else -np.inf
        theta = torch.as_tensor(state["theta"])
        A, b, W, c = (v.numpy().copy() for v in _split(theta, k, d, gate))
        s = float(np.sqrt(max(mse, MIN_VARIANCE))) if sigma is None else float(sigma)
        return StartFit(A, W, s, it, ll, reason == "converged", reason,
                        extra={"mse": mse, "expert_bias": b, "gating_bias": c})

    def _restart_score(self, result: StartFit) -> float:
        mse = result.extra["mse"]
        return -mse if np.isfinite(mse) else -np.inf  # the least squared error is kept

    def _finish_restarts(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                         sigma: float | None, history: History, best: StartFit,
                         n_iter: int) -> StartFit:
        self.expert_bias_ = best.extra["expert_bias"]
        self.mse_ = float(best.extra["mse"])
        c = best.extra["gating_bias"]
        if self.gate == "sigmoid":
            self._raw_gating = best.gating.copy()
            self.gating_bias_ = c
        else:
            self.gating_bias_ = c - c[-1]
        return best

    @property
    def model_(self) -> RegressionMoE:  # type: ignore[override]
        """The fitted :class:`RegressionMoE` (with ``sigma_`` as its noise level)."""
        self._check_fitted()
        gating = self.sigmoid_gating_ if self.gate == "sigmoid" else self.gating_
        return RegressionMoE(self.experts_, self.expert_bias_, gating, self.gating_bias_,
                             float(self.sigma_), self.gate, self._check_activation())

    def _stationarity(self, X: np.ndarray, y: np.ndarray,
                      activation: Activation) -> tuple[float, float]:
        """Gradient norm and smallest Hessian eigenvalue of the negative mean
        log-likelihood of y = f_G(x) + N(0, sigma^2) over every fitted parameter (log sigma
        too when it was learnt), by torch autograd in the units of X."""
        import torch

        model = self.model_
        k = model.n_experts
        theta0 = _pack(model.experts, model.expert_bias, model.gating, model.gating_bias,
                       self.gate)
        learn = self.sigma is None
        if learn:
            theta0 = np.append(theta0, np.log(model.sigma))
        Xt = torch.as_tensor(X, dtype=torch.float64)
        yt = torch.as_tensor(y, dtype=torch.float64)
        g = activation.torch_func

        def nll(theta: Any) -> Any:
            p = theta[:-1] if learn else theta
            log_s = theta[-1] if learn else torch.log(torch.tensor(model.sigma, dtype=p.dtype))
            resid = (yt - _regression(p, Xt, k, self.gate, g)) * torch.exp(-log_s)
            return torch.mean(0.5 * resid**2) + log_s + 0.5 * LOG_2PI

        t = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
        grad = torch.autograd.grad(nll(t), t)[0]
        hess = torch.autograd.functional.hessian(nll, t.detach()).numpy()
        eig = np.linalg.eigvalsh(0.5 * (hess + hess.T))
        return float(torch.linalg.vector_norm(grad)), float(eig[0])
