"""The estimator contract shared by every algorithm.

Like scikit-learn: the constructor stores parameters, :meth:`MoEEstimator.fit`
learns, fitted attributes end in ``_``. Subclasses implement ``_fit``.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, ClassVar

import numpy as np

from moebench.activations import Activation, get_activation
from moebench.generator import as_seed_sequence
from moebench.metrics import parameter_errors
from moebench.model import MoEModel
from moebench.validation import check_array, check_n_experts, check_sigma, check_X_y


def as_truth(truth: Any) -> MoEModel | None:
    """Accept a MoEModel, anything with a ``.model`` (MoEData), or None."""
    if truth is None or isinstance(truth, MoEModel):
        return truth
    model = getattr(truth, "model", None)
    if isinstance(model, MoEModel):
        return model
    raise ValueError(f"truth must be a MoEModel or MoEData; got {type(truth).__name__}")


class History:
    """Per-iteration records with a clock that excludes metric evaluation.

    Parameters
    ----------
    truth : MoEModel, optional
        When given, each record carries the matched parameter errors; the time
        spent computing them is not counted in ``time``.
    """

    def __init__(self, truth: MoEModel | None = None) -> None:
        self.truth = truth
        self.records: list[dict[str, Any]] = []
        self._start = time.perf_counter()
        self._excluded = 0.0

    def elapsed(self) -> float:
        """Seconds since creation, less the time spent on metrics."""
        return time.perf_counter() - self._start - self._excluded

    def record(
        self,
        phase: str,
        iteration: int,
        log_likelihood: float,
        experts: np.ndarray | None = None,
        gating: np.ndarray | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Append one record: phase, iteration, time, log_likelihood (+ errors, extras)."""
        now = self.elapsed()
        tick = time.perf_counter()
        rec: dict[str, Any] = {
            "phase": phase,
            "iteration": int(iteration),
            "time": now,
            "log_likelihood": float(log_likelihood),
        }
        if self.truth is not None and experts is not None:
            g = gating if gating is not None else np.zeros_like(experts)
            if np.all(np.isfinite(experts)) and np.all(np.isfinite(g)):
                errs = parameter_errors(experts, g, self.truth)
                rec["expert_error"] = errs["expert_error"]
                rec["gating_error"] = errs["gating_error"] if gating is not None else np.nan
        rec.update(extra)
        self.records.append(rec)
        self._excluded += time.perf_counter() - tick
        return rec


class MoEEstimator:
    """Base class of every mixture-of-experts estimator.

    Parameters
    ----------
    n_experts : int
        Number of experts k >= 2.
    activation : str, Activation or callable
        Expert activation g.
    sigma : float or None
        Noise level; None estimates it.
    random_state : int or None
        Seed for every random choice of the algorithm.

    Attributes
    ----------
    experts_ : ndarray of shape (k, d)
    gating_ : ndarray of shape (k, d), last row 0
    sigma_ : float
    n_iter_ : int
    history_ : list of dict
        One record per iteration: phase, iteration, time, log_likelihood and,
        when ``fit`` got ``truth``, expert_error and gating_error.
    """

    #: registry name, set by :func:`moebench.registry.register`
    name: ClassVar[str] = ""
    #: one line for ``moebench list``
    description: ClassVar[str] = ""
    #: whether the method needs n_experts <= n_features
    requires_k_le_d: ClassVar[bool] = False
    #: activations the method supports (None: any)
    supported_activations: ClassVar[tuple[str, ...] | None] = None
    #: whether ``fit`` climbs the likelihood to a local maximum, so that ending below the
    #: best one is a local optimum ("stuck"); False for moment or hard-assignment methods
    local_search: ClassVar[bool] = True

    def __init__(
        self,
        n_experts: int = 2,
        activation: str | Activation = "linear",
        sigma: float | None = None,
        random_state: int | None = None,
    ) -> None:
        self.n_experts = n_experts
        self.activation = activation
        self.sigma = sigma
        self.random_state = random_state

    # -- parameters -------------------------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self" and
                sig.parameters[p].kind not in (inspect.Parameter.VAR_KEYWORD,
                                               inspect.Parameter.VAR_POSITIONAL)]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters as a dict."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> MoEEstimator:
        """Set constructor parameters; unknown names raise ValueError."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"unknown parameter {key!r} for {type(self).__name__}; "
                    f"valid: {', '.join(valid)}"
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fitting ----------------------------------------------------------
    def _check_activation(self) -> Activation:
        act = get_activation(self.activation)
        if self.supported_activations is not None and act.name not in self.supported_activations:
            raise ValueError(
                f"{self.name or type(self).__name__} does not support activation {act.name!r}; "
                f"valid choices: {', '.join(self.supported_activations)}"
            )
        return act

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(as_seed_sequence(self.random_state))

    def fit(self, X: np.ndarray, y: np.ndarray, truth: Any = None) -> MoEEstimator:
        """Learn experts, gating and noise from (X, y).

        Parameters
        ----------
        X : ndarray of shape (n, d)
        y : ndarray of shape (n,)
        truth : MoEModel or MoEData, optional
            True parameters, only to record matched errors in ``history_``.

        Returns
        -------
        self
        """
        X, y = check_X_y(X, y)
        k = check_n_experts(self.n_experts, X.shape[1], require_k_le_d=self.requires_k_le_d)
        act = self._check_activation()
        sigma = check_sigma(self.sigma)
        truth = as_truth(truth)
        if truth is not None and truth.experts.shape != (k, X.shape[1]):
            raise ValueError(
                f"truth has shape {truth.experts.shape}, expected ({k}, {X.shape[1]})"
            )
        history = History(truth)
        self._fit(X, y, k, act, sigma, history)
        self.history_ = history.records
        for attr in ("experts_", "gating_", "sigma_"):
            value = np.asarray(getattr(self, attr))
            if not np.all(np.isfinite(value)):
                raise FloatingPointError(
                    f"{type(self).__name__} produced non-finite {attr}; the fit diverged"
                )
        self.gating_ = self.gating_ - self.gating_[-1]
        self.sigma_ = float(self.sigma_)
        self.n_iter_ = int(self.n_iter_)
        return self

    def _fit(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
             sigma: float | None, history: History) -> None:
        """Set experts_, gating_, sigma_, n_iter_ (and record into ``history``)."""
        raise NotImplementedError

    # -- using the fit ----------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "experts_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) first")

    @property
    def model_(self) -> MoEModel:
        """The fitted :class:`MoEModel`."""
        self._check_fitted()
        return MoEModel(self.experts_, self.gating_, self.sigma_, self._check_activation())

    def predict(self, X: np.ndarray) -> np.ndarray:
        """E[y | x] under the fitted model, shape (n,)."""
        self._check_fitted()
        return self.model_.predict(check_array(X, "X", 2))

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean conditional log-likelihood of (X, y) under the fitted model."""
        self._check_fitted()
        return self.model_.mean_log_likelihood(*check_X_y(X, y))
