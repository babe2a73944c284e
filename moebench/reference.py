"""The reference every mixture is compared with on real data: one linear regression.

A Gaussian linear model fitted by least squares is a "mixture" with a single
linear expert (k = 1). It is a registered estimator like the others, so a sweep
fits, scores and records it through the same code path; it is marked
``reference = True``, which makes it

- left out of :func:`moebench.registry.available_algorithms` (unless asked for
  with ``references=True``): it is no mixture, so the mixture contract
  (``n_experts >= 2``) and the tests over every mixture do not apply;
- added by the sweep config checker to every real-data sweep, once per fold
  and repetition, with the data setting it declares in :attr:`fixed_setting`
  (k = 1, linear);
- checked by :func:`moebench.testing.check_algorithm` against the parts of the
  contract that apply to a one-expert model.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from moebench.activations import Activation, get_activation
from moebench.base import MoEEstimator
from moebench.constraints import Interval
from moebench.history import History
from moebench.model import LOG_2PI
from moebench.registry import register
from moebench.validation import check_array, check_X_y

#: registry name of the linear-regression reference (also its label in sweeps)
REFERENCE = "linear_regression"


@register(REFERENCE)
class LinearRegression(MoEEstimator):
    """Least-squares Gaussian linear model: the k = 1 reference of real-data sweeps.

    Parameters
    ----------
    n_experts : int
        Must be 1 (one linear expert).
    activation : str
        Must be ``"linear"``.
    sigma : float or None
        Noise level; None estimates it as the residual root mean square.
    random_state : int or None
        Accepted for the common constructor; the fit is deterministic.

    Attributes
    ----------
    experts_ : ndarray of shape (1, d)
        The least-squares coefficients.
    gating_ : ndarray of shape (1, d)
        Zeros (one expert needs no gating).
    sigma_ : float
        The residual root mean square (or the given ``sigma``).
    n_iter_ : int
        1 (one least-squares solve).
    converged_, stop_reason_, log_likelihood_
        True, ``"converged"`` and the mean training log-likelihood.
    history_ : list
        Empty: a closed-form fit has no iterations to record.
    """

    description = "reference: one Gaussian linear model fitted by least squares (k = 1)"
    assumes = ("k = 1", "linear g")
    #: not a mixture: listed apart, added to every real-data sweep by the config checker
    reference: ClassVar[bool] = True
    #: the data-setting keys a sweep fixes for this estimator (whatever the grid's k)
    fixed_setting: ClassVar[dict[str, Any]] = {"k": 1, "activation": "linear"}
    supported_activations = ("linear",)
    local_search = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_experts": [Interval(int, 1, 1)],
    }

    def __init__(self, n_experts: int = 1, activation: str | Activation = "linear",
                 sigma: float | None = None, random_state: int | None = None) -> None:
        super().__init__(n_experts, activation, sigma, random_state)

    @classmethod
    def check_setting(cls, n_experts: Any, n_features: int | None = None,
                      activation: Any = "linear", *, params: dict[str, Any] | None = None
                      ) -> tuple[int, Activation]:
        """Accept k = 1 with the linear activation only.

        Raises
        ------
        ValueError
            ``n_experts`` is not 1, or the activation is not linear.
        """
        if isinstance(n_experts, bool) or not isinstance(n_experts, (int, np.integer)) \
                or n_experts != 1:
            raise ValueError(f"n_experts = {n_experts!r} is not valid for {REFERENCE}: it is a "
                             f"single linear model; valid: 1")
        act = get_activation(activation)
        if act.name != "linear":
            raise ValueError(f"{REFERENCE} does not support activation {act.name!r}; valid "
                             f"choices: linear")
        return 1, act

    def _check_activation(self) -> Activation:
        return self.check_setting(1, None, self.activation)[1]

    def _fit(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
             sigma: float | None, history: History) -> None:
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ coef
        s = float(np.sqrt(np.mean(resid**2))) if sigma is None else float(sigma)
        self._set_fit(coef[None, :], np.zeros((1, X.shape[1])), s, 1,
                      _mean_log_density(resid, s), "converged")

    # -- using the fit: a one-expert model, not a MoEModel (which needs k >= 2) --
    @property
    def model_(self) -> Any:
        """Not available: a single linear model is no mixture; use predict and score."""
        raise ValueError(f"{REFERENCE} is a single linear model, not a mixture (MoEModel "
                         f"needs k >= 2): use predict and score")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """X @ w, shape (n,)."""
        self._check_fitted()
        self._check_features(X)
        return check_array(X, "X", 2) @ self.experts_[0]

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean Gaussian log-likelihood of (X, y) under N(X @ w, sigma_^2)."""
        self._check_fitted()
        self._check_features(X)
        X, y = check_X_y(X, y)
        return _mean_log_density(y - X @ self.experts_[0], self.sigma_)


def _mean_log_density(resid: np.ndarray, sigma: float) -> float:
    """Mean log N(resid; 0, sigma^2)."""
    return float(np.mean(-0.5 * resid**2 / sigma**2 - np.log(sigma) - 0.5 * LOG_2PI))


def linear_regression(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray
                      ) -> dict[str, float]:
    """Fit :class:`LinearRegression` on (X, y) and score it on both sets.

    Returns
    -------
    dict
        train_log_likelihood, test_log_likelihood, test_mse, train_mse, sigma_hat.
    """
    est = LinearRegression().fit(X, y)
    return {"train_log_likelihood": est.score(X, y),
            "test_log_likelihood": est.score(X_test, y_test),
            "test_mse": float(np.mean((np.asarray(y_test, float) - est.predict(X_test)) ** 2)),
            "train_mse": est.sigma_**2, "sigma_hat": est.sigma_}
