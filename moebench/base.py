"""The estimator contract shared by every algorithm.

Like scikit-learn: the constructor stores parameters, :meth:`MoEEstimator.fit`
learns, fitted attributes end in ``_``. Subclasses implement ``_fit``, or, for a
method fitted from ``n_init`` random starts, subclass
:class:`moebench.restarts.RestartedEstimator` and implement ``_fit_single`` (one start):
the restart loop lives there. The parameter protocol (``get_params``, ``set_params``,
declared constraints) is :class:`moebench.params.ParamsMixin`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from moebench.activations import Activation, get_activation
from moebench.chunked import is_out_of_core
from moebench.constraints import Interval
from moebench.degenerate import (
    SIGMA_COLLAPSE_RTOL,
    DegenerateFitError,
    absurd_log_likelihood,
    check_degenerate_data,
    check_min_samples,
    check_scales,
)
from moebench.generator import as_seed_sequence
from moebench.history import History
from moebench.model import MoEModel
from moebench.params import ParamsMixin
from moebench.stopping import StoppingCriterion
from moebench.validation import (
    check_array,
    check_feature_names,
    check_n_experts,
    check_sigma,
    check_X_y,
    feature_names,
    input_scale,
    rms,
)

#: the sweep budgets an estimator class can declare it honours (``budget_parameters``)
BUDGETS = ("max_iter", "max_time")
#: fitted attributes every ``_fit`` must set, besides experts_, gating_, sigma_, n_iter_
FIT_OUTCOME = ("converged_", "stop_reason_", "log_likelihood_")


def scaled_truth(truth: MoEModel | None, e: int, s: float = 1.0) -> MoEModel | None:
    """``truth`` in the units of X / 2**e / s (its experts and gating times 2**e s)."""
    if truth is None or (not e and s == 1.0):
        return truth
    experts, gating = np.ldexp(truth.experts, e), np.ldexp(truth.gating, e)
    if s != 1.0:
        experts, gating = experts * s, gating * s
    # biases and noise do not change with the units of X
    return MoEModel(experts, gating, truth.sigma, truth.activation,
                    expert_bias=truth.expert_bias, gating_bias=truth.gating_bias)


def to_input_units(a: np.ndarray, e: int, s: float) -> np.ndarray:
    """Parameters fitted on X / 2**e / s, in the units of X (exact when s = 1)."""
    a = np.asarray(a, dtype=float)
    return np.ldexp(a / s if s != 1.0 else a, -e)


def as_truth(truth: Any) -> MoEModel | None:
    """Accept a MoEModel, anything with a ``.model`` (MoEData), or None."""
    if truth is None or isinstance(truth, MoEModel):
        return truth
    model = getattr(truth, "model", None)
    if isinstance(model, MoEModel):
        return model
    raise ValueError(f"truth must be a MoEModel or MoEData; got {type(truth).__name__}")


class LocalSearchWhen:
    """``local_search`` that one boolean option decides: False on the class (what the class
    is by default, e.g. a moment method), and on an instance the option's value (e.g.
    tensor_em's ``refine``: its fit then ends in joint EM, a local search).

    Parameters
    ----------
    option : str
        The constructor parameter that makes the fit a local search.
    """

    def __init__(self, option: str) -> None:
        self.option = option

    def __get__(self, obj: Any, owner: type | None = None) -> bool:
        return False if obj is None else bool(getattr(obj, self.option))


class NeedsTruthWhen:
    """``needs_truth`` that one option value decides: False on the class (the estimator is
    no oracle by default), and on an instance whether ``option`` has ``value`` (joint_em's
    and sgd's ``init="near_truth"`` starts from the truth)."""

    def __init__(self, option: str, value: Any) -> None:
        self.option, self.value = option, value

    def __get__(self, obj: Any, owner: type | None = None) -> bool:
        return False if obj is None else getattr(obj, self.option) == self.value


class MoEEstimator(ParamsMixin):
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
    converged_ : bool
        Whether the convergence criterion ended the fit (of the kept restart).
    stop_reason_ : str
        What ended the fit: "converged", "max_iter", "max_time", "max_epochs", or the
        method's own criterion.
    log_likelihood_ : float
        Final mean training log-likelihood.
    grad_norm_, hessian_min_eig_ : float
        Set by :meth:`stationarity` (not by ``fit``; the sweep calls it for local-search
        methods, ``local_search = True``): the norm of the gradient of
        the mean log-likelihood at the final parameters and the smallest eigenvalue of the
        Hessian of the negative mean log-likelihood (> 0 at a local maximum, < 0 at a
        saddle; a Lanczos estimate for large models), in the scaled coordinates of
        :mod:`moebench.stationarity`. Stationary: ``grad_norm_ <= STATIONARY_TOL``.

    Notes
    -----
    Subclasses declare the valid values of their own constructor parameters in
    ``_parameter_constraints`` and the parameters that carry the sweep budgets in
    ``budget_parameters``; ``fit``, the sweep config checker and
    :func:`moebench.testing.check_algorithm` read those declarations.
    """

    #: registry name, set by :func:`moebench.registry.register`
    name: ClassVar[str] = ""
    #: one line for ``moebench list``
    description: ClassVar[str] = ""
    #: whether the method needs n_experts <= n_features
    requires_k_le_d: ClassVar[bool] = False
    #: whether the method's model has no gating biases or expert intercepts (the tensor
    #: step): the sweep config checker refuses it on a truth with biases
    assumes_no_biases: ClassVar[bool] = False
    #: activations the method supports (None: any)
    supported_activations: ClassVar[tuple[str, ...] | None] = None
    #: whether ``fit`` climbs the likelihood to a local maximum, so that ending below the
    #: best one is a local optimum ("stuck"); False for moment or hard-assignment methods
    local_search: ClassVar[bool] = True
    #: whether this is a reference model (e.g. k = 1 least squares) rather than a mixture
    #: method: listed by ``available_algorithms(references=True)`` only
    reference: ClassVar[bool] = False
    #: whether ``fit`` needs the true parameters (``fit(X, y, truth=...)``): an *oracle*
    #: such as ``oracle_gating_em`` (the true experts fixed). Fit without a truth raises
    #: ValueError; the sweep config checker refuses it on real (CSV) data; it is listed by
    #: ``available_algorithms(oracles=True)`` only
    needs_truth: ClassVar[bool] = False
    #: whether the method fits the regression MoE y = f_G(x) + noise
    #: (:class:`moebench.regression_moe.RegressionMoE`, e.g. ``lse_moe``): only such a
    #: method runs on a ``data.truth`` with a ``gate`` (the sweep config checker)
    fits_regression: ClassVar[bool] = False
    #: what the method assumes of the data to be consistent, as short tags ("Gaussian
    #: inputs", "gating orthogonal to experts", "constant mixing", "linear g", "k <= d", ...);
    #: shown by ``moebench list`` and the README's algorithm table
    assumes: ClassVar[tuple[str, ...]] = ()
    #: valid values of each constructor parameter (scikit-learn style): name -> list of
    #: constraints (see :mod:`moebench.constraints`), any one of which makes a value valid.
    #: Declarations merge along the class hierarchy: a subclass declares its own options.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_experts": [Interval(int, 2, None)],
        "activation": ["activation"],
        "sigma": [Interval(float, 0, None, closed="neither"), None],
        "random_state": ["random_state"],
    }
    #: sweep budget ("max_iter", "max_time") -> the constructor parameter that carries it;
    #: the sweep passes a budget only to the parameter declared here
    budget_parameters: ClassVar[dict[str, str]] = {}
    #: what one iteration of the ``max_iter`` budget is ("EM iteration", "alternating
    #: step", ...); None for a method whose budget is time only (it declares no
    #: ``max_iter`` budget). The budget is a total over the fit: every restart and phase
    #: it counts (:class:`moebench.stopping.StoppingCriterion`)
    iteration_unit: ClassVar[str | None] = None

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


    # -- scikit-learn protocol (scikit-learn itself stays an optional extra) --
    #: scikit-learn < 1.6 reads the estimator type from this attribute
    _estimator_type: ClassVar[str] = "regressor"

    def __sklearn_tags__(self) -> Any:
        """Estimator tags for scikit-learn >= 1.6 (imported only when sklearn asks).

        A regressor (``predict`` gives E[y | x]) on dense 2-D float input without
        NaN and a required 1-D target; ``score`` is the mean log-likelihood, not
        R^2, hence ``poor_score``.
        """
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(
            estimator_type="regressor",
            target_tags=TargetTags(required=True, one_d_labels=False, two_d_labels=False,
                                   single_output=True, multi_output=False),
            regressor_tags=RegressorTags(poor_score=True),
            input_tags=InputTags(two_d_array=True, allow_nan=False, sparse=False),
            requires_fit=True,
        )

    def _more_tags(self) -> dict[str, Any]:
        """Estimator tags for scikit-learn < 1.6."""
        return {"poor_score": True, "requires_y": True, "allow_nan": False,
                "multioutput": False}

    def __sklearn_is_fitted__(self) -> bool:
        """Whether ``fit`` has run (scikit-learn's ``check_is_fitted`` asks this)."""
        return hasattr(self, "experts_")


    @classmethod
    def budget_options(cls, max_iter: int | None = None, max_time: float | None = None
                       ) -> dict[str, Any]:
        """Constructor options that carry the given sweep budgets, as the class declares.

        Returns
        -------
        dict
            ``{parameter: value}`` for each budget in :attr:`budget_parameters` whose
            value is not None.
        """
        given = {"max_iter": max_iter, "max_time": max_time}
        return {param: given[budget] for budget, param in cls.budget_parameters.items()
                if given.get(budget) is not None}

    @classmethod
    def check_setting(cls, n_experts: Any, n_features: int | None = None,
                      activation: Any = "linear", *, params: dict[str, Any] | None = None
                      ) -> tuple[int, Activation]:
        """Whether this class can run k experts on d features with this activation.

        Used by ``fit`` and by the sweep config checker (before anything runs).
        ``params`` are the constructor options given (``fit`` passes all of them, the
        config checker a variant's ``params``): a subclass whose capability depends on an
        option (e.g. tensor_em's ``label_transform``) reads it there; the base ignores it.

        Returns
        -------
        (k, Activation)

        Raises
        ------
        ValueError
            k < 2, k > d for a class with ``requires_k_le_d``, an unknown activation or
            one outside ``supported_activations``.
        """
        k = check_n_experts(n_experts, n_features, require_k_le_d=cls.requires_k_le_d)
        act = get_activation(activation)
        if cls.supported_activations is not None and act.name not in cls.supported_activations:
            raise ValueError(
                f"{cls.name or cls.__name__} does not support activation {act.name!r}; "
                f"valid choices: {', '.join(cls.supported_activations)}"
            )
        return k, act

    @classmethod
    def excludes_biases(cls, params: dict[str, Any]) -> bool:
        """Whether this class, with these options, cannot have a truth with biases (default:
        :attr:`assumes_no_biases`; joint_em's moment starts run the tensor step)."""
        return cls.assumes_no_biases

    def fits_plain_model(self) -> bool:
        """Whether this estimator, with its options, fits the plain model (no biases, one
        noise level): the model that ``moebench classify``'s polisher continues (default
        True; joint_em with ``intercepts`` or per-expert noise says False)."""
        return True

    @classmethod
    def check_out_of_core(cls, activation: Activation, params: dict[str, Any]) -> None:
        """Whether this class, with these options, can fit X on disk (a numpy.memmap).

        ``fit`` calls it before any work when X is a memmap, so a setting whose steps need
        X in memory fails at once, not after the stages before that step. The base accepts
        every setting; a subclass raises ValueError naming the option and the valid choices
        (e.g. :func:`moebench.em.check_expert_step_out_of_core`).
        """

    # -- fitting ----------------------------------------------------------
    def _check_activation(self) -> Activation:
        return self.check_setting(2, None, self.activation)[1]

    def stopping(self, history: History, tol: float | None = None) -> StoppingCriterion:
        """The fit's :class:`~moebench.stopping.StoppingCriterion`: the budgets this class
        declares in ``budget_parameters`` (their current values; totals over the fit), the
        clock of ``history``, the tolerance ``tol`` and the class's ``iteration_unit``.

        Every loop of the fit (every restart and phase that the iteration budget counts)
        asks this one object whether to stop, so that ``stop_reason_`` names what ended
        the fit by one rule and a budget is never spent twice.
        """
        params = self.budget_parameters
        max_iter = getattr(self, params["max_iter"]) if "max_iter" in params else None
        max_time = getattr(self, params["max_time"]) if "max_time" in params else None
        return StoppingCriterion(max_iter=max_iter, max_time=max_time, tol=tol, clock=history,
                                 unit=self.iteration_unit)

    def _set_fit(self, experts: np.ndarray, gating: np.ndarray, sigma: float, n_iter: int,
                 log_likelihood: float, stop_reason: str, converged: bool | None = None
                 ) -> None:
        """Set every fitted attribute at once (``converged_`` defaults to the stop reason)."""
        self.experts_, self.gating_, self.sigma_, self.n_iter_ = experts, gating, sigma, n_iter
        self.log_likelihood_ = log_likelihood
        self.stop_reason_ = stop_reason
        self.converged_ = stop_reason == "converged" if converged is None else converged

    def _check_fit_outcome(self) -> None:
        """The fit set converged_ (bool), stop_reason_ (str), log_likelihood_ (finite float)."""
        missing = [a for a in FIT_OUTCOME if not hasattr(self, a)]
        if missing:
            raise TypeError(
                f"{type(self).__name__}._fit did not set {', '.join(missing)}: every fit must "
                "set converged_, stop_reason_ (the budget or criterion that ended it) and "
                "log_likelihood_ (final mean training log-likelihood), e.g. with self._set_fit"
            )
        if not isinstance(self.converged_, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}.converged_ must be a bool; got "
                            f"{self.converged_!r}")
        if not isinstance(self.stop_reason_, str) or not self.stop_reason_:
            raise TypeError(f"{type(self).__name__}.stop_reason_ must be a non-empty str; got "
                            f"{self.stop_reason_!r}")
        self.converged_ = bool(self.converged_)
        self.log_likelihood_ = float(self.log_likelihood_)
        if not np.isfinite(self.log_likelihood_):
            raise FloatingPointError(
                f"{type(self).__name__} produced a non-finite log_likelihood_ "
                f"({self.log_likelihood_}); the fit diverged"
            )

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
        # every option against the class's declaration, before touching the data
        self.check_params({name: getattr(self, name) for name in self._get_param_names()})
        names = feature_names(X)
        X, y = check_X_y(X, y)
        k, act = self.check_setting(self.n_experts, X.shape[1], self.activation,
                                    params=self.get_params(deep=False))
        if is_out_of_core(X):
            self.check_out_of_core(act, self.get_params(deep=False))
        sigma = check_sigma(self.sigma)
        check_scales(X, y)
        check_degenerate_data(X, y, self.name or type(self).__name__)
        check_min_samples(*X.shape, k, sigma is None, self.name or type(self).__name__)
        truth = as_truth(truth)
        # the truth may have another number of experts (over- or under-specified fits);
        # its inputs must be X's
        if truth is not None and truth.n_features != X.shape[1]:
            raise ValueError(
                f"truth has d = {truth.n_features} inputs, X has {X.shape[1]} features"
            )
        # fit in standardised coordinates: X / 2**e (exact; e = 0 for unit-scale X), then
        # divided by the rest of its rms s unless that is 1 within sampling noise
        # (input_scale: unit-scale X is used as given, bit for bit), so scaling X by c
        # scales the fit by 1/c up to rounding; parameters mapped back below. X on disk (a
        # memmap) is fitted as it is: scaling it would copy it into memory
        e, s = 0, 1.0
        if not is_out_of_core(X):
            r = rms(X)  # one pass: power_of_two_scale's rule, then input_scale's
            e = int(np.round(np.log2(r))) if r > 0 else 0
            X_fit = np.ldexp(X, -e) if e else X
            s = input_scale(float(np.ldexp(r, -e)), X.size)
            if s != 1.0:
                X_fit = X_fit / s
        else:
            X_fit = X
        truth = scaled_truth(truth, e, s)
        #: X_fit = X / fit_scale: a start built from the truth (near_truth) scales its noise
        self._fit_scale = float(np.ldexp(s, e))
        history = History(truth, count_passes=is_out_of_core(X))
        self._fit(X_fit, y, k, act, sigma, history)
        self.history_ = history.records
        if e or s != 1.0:
            self.experts_ = to_input_units(self.experts_, e, s)
            self.gating_ = to_input_units(self.gating_, e, s)
        for attr in ("experts_", "gating_", "sigma_"):
            value = np.asarray(getattr(self, attr))
            if not np.all(np.isfinite(value)):
                raise FloatingPointError(
                    f"{type(self).__name__} produced non-finite {attr}; the fit diverged"
                )
        self.gating_ = self.gating_ - self.gating_[-1]
        # the fitted gating's Frobenius norm (X's units), and where each phase ended when the
        # fit records it (``phase_gating_norms_``, in the units of the X given to _fit)
        self.gating_norm_ = float(np.linalg.norm(self.gating_))
        if (e or s != 1.0) and isinstance(getattr(self, "phase_gating_norms_", None), dict):
            self.phase_gating_norms_ = {p: float(to_input_units(v, e, s))
                                        for p, v in self.phase_gating_norms_.items()}
        # one noise level, or one per expert (a fit that learns per-expert noise)
        self.sigma_ = (float(self.sigma_) if np.ndim(self.sigma_) == 0
                       else np.asarray(self.sigma_, dtype=float))
        self.n_iter_ = int(self.n_iter_)
        self._check_fit_outcome()
        self.n_features_in_ = X.shape[1]
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._check_degenerate(X, y, act, sigma)
        return self

    def stationarity(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Is the fit at a stationary point of the likelihood of (X, y)? Sets two attributes.

        Not part of ``fit`` (it costs about one more pass over the data and, for small
        models, a Hessian), so that timings of ``fit`` stay the algorithm's own; the sweep
        calls it for every local-search estimator when it evaluates a run.

        Parameters
        ----------
        X : ndarray of shape (n, d)
        y : ndarray of shape (n,)
            Normally the training data the estimator was fitted on.

        Returns
        -------
        grad_norm_, hessian_min_eig_ : float
            The norm of the gradient of the mean log-likelihood at the fitted parameters,
            in scaled coordinates, and the smallest eigenvalue of the Hessian of the
            negative mean log-likelihood (exact up to ``HESSIAN_MAX_PARAMS`` parameters, a
            Lanczos estimate above; NaN only where it cannot be computed); see
            :mod:`moebench.stationarity`. Also stored as the attributes of those names.
        """
        self._check_fitted()
        self._check_features(X)
        X, y = check_X_y(X, y)
        with np.errstate(all="ignore"):
            self.grad_norm_, self.hessian_min_eig_ = self._stationarity(
                X, y, self._check_activation())
        return self.grad_norm_, self.hessian_min_eig_

    def _stationarity(self, X: np.ndarray, y: np.ndarray,
                      activation: Activation) -> tuple[float, float]:
        """Gradient norm and smallest Hessian eigenvalue at the fit, on checked (X, y).

        The likelihood of every fitted parameter (sigma too when it was learnt); a
        subclass whose fit moves fewer parameters measures the function of those alone.
        """
        from moebench.stationarity import stationarity

        return stationarity(X, y, self.experts_, self.gating_, self.sigma_, activation,
                            learn_sigma=self.sigma is None)

    def _check_degenerate(self, X: np.ndarray, y: np.ndarray, act: Activation,
                          sigma: float | None) -> None:
        """Raise :class:`DegenerateFitError` for a collapsed sigma or an absurd likelihood."""
        who = self.name or type(self).__name__
        scale = rms(y)
        low = float(np.min(self.sigma_))
        if sigma is None and low < SIGMA_COLLAPSE_RTOL * scale:
            raise DegenerateFitError(
                f"{who} fit is degenerate: its fitted noise level sigma_ = {low:.3g} "
                f"fell below {SIGMA_COLLAPSE_RTOL:g} rms(y) = "
                f"{SIGMA_COLLAPSE_RTOL * scale:.3g} (rms(y) = {scale:.3g}): some expert fits "
                f"its rows almost exactly, where the likelihood has no maximum"
            )
        # log_likelihood_ is the final mean training log-likelihood (scale-invariant)
        reason = absurd_log_likelihood(float(self.log_likelihood_), y)
        if reason is not None:
            given = "" if sigma is None else f" with the given sigma = {sigma:g}"
            raise DegenerateFitError(f"{who} fit is degenerate{given}: {reason} on the "
                                     f"training data")

    def _fit(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
             sigma: float | None, history: History) -> None:
        """Set experts_, gating_, sigma_, n_iter_, converged_, stop_reason_, log_likelihood_
        (e.g. with :meth:`_set_fit`) and record into ``history``."""
        raise NotImplementedError

    # -- using the fit ----------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "experts_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) first")

    @property
    def model_(self) -> MoEModel:
        """The fitted :class:`MoEModel`."""
        self._check_fitted()
        return MoEModel(self.experts_, self.gating_, self.sigma_, self._check_activation(),
                        expert_bias=getattr(self, "expert_bias_", None),
                        gating_bias=getattr(self, "gating_bias_", None))

    def _check_features(self, X: Any) -> None:
        """Refuse a DataFrame whose columns differ from those seen at fit (as scikit-learn)."""
        check_feature_names(getattr(self, "feature_names_in_", None), X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """E[y | x] under the fitted model, shape (n,).

        A DataFrame must have the columns seen by ``fit``, in the same order.
        """
        self._check_fitted()
        self._check_features(X)
        return self.model_.predict(check_array(X, "X", 2))

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean conditional log-likelihood of (X, y) under the fitted model.

        A DataFrame must have the columns seen by ``fit``, in the same order.
        """
        self._check_fitted()
        self._check_features(X)
        return self.model_.mean_log_likelihood(*check_X_y(X, y))
