"""Joint EM for the mixture of experts (Jordan and Jacobs 1994), with restarts.

Every parameter is learned by EM: E-step responsibilities; M-step the Newton
multinomial-logistic gating step, weighted least squares (linear g) or
Levenberg-Marquardt (other g) for the experts, and the closed-form sigma. The EM loop
itself is :func:`moebench.em.run_em`, shared with tensor_em's gating EM. The default
starts do not use a moment method; ``init="tensor"`` (tensor_em's tensor step and gating
EM) is the one EM behind ``tensor_em(refine=True)``, and ``init="spectral_experts"`` the
one behind ``spectral_experts(refine=True)``. The budgets are totals over the restarts,
enforced by the fit's :class:`~moebench.stopping.StoppingCriterion`.

``mstep="gradient"`` replaces the M-step by one gradient step on the expected
complete-data log-likelihood ("gradient EM", Fruytier, Mokhtari and Sanghavi 2025);
``mstep="newton1"`` takes one Newton (IRLS) step per M-step.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from moebench.activations import Activation
from moebench.backend import BACKENDS, to_backend
from moebench.base import NeedsTruthWhen
from moebench.constraints import Interval, Options
from moebench.em import (
    MSTEPS,
    NOISE_MODELS,
    EMResult,
    check_expert_step_out_of_core,
    expert_m_step,
    gating_m_step,
    run_em,
    sigma_m_step,
)
from moebench.history import History, StartFit
from moebench.intercepts import fitted_stationarity, split_biases, with_ones
from moebench.model import MoEModel
from moebench.registry import algorithm_class, register
from moebench.restarts import RestartedEstimator
from moebench.starts import (
    data_scale_start,
    near_truth_fit_start,
    random_start,
    random_unit_experts,
    search_in_subspace,
)
from moebench.stopping import StoppingCriterion

from ._spectral import spectral_subspace

#: deterministic starts from a moment method: init -> (the registered estimator whose
#: ``start`` computes it, whether its gating EM runs). One start each (``n_init`` is not
#: used): the estimator's moment step (and gating EM), charged to the time budget, not to
#: the iteration budget
MOMENT_INITS = {"tensor": ("tensor_em", True), "tensor_experts": ("tensor_em", False),
                "spectral_experts": ("spectral_experts", True)}
INITS = ("random", "responsibilities", "spectral", "data_scale", "near_truth", *MOMENT_INITS)
#: M-steps: the shared ones of :func:`moebench.em.run_em`, and "newton1" (one Newton gating
#: step and one least-squares / Levenberg-Marquardt expert step per M-step)
JOINT_MSTEPS = (*MSTEPS, "newton1")


@register("joint_em")
class JointEM(RestartedEstimator):
    """Joint EM over experts, gating and noise, with ``n_init`` restarts.

    Parameters
    ----------
    n_experts, activation, sigma, random_state
        See :class:`moebench.MoEEstimator`; a given ``sigma`` stays fixed.
    init : {"random", "responsibilities", "spectral", "data_scale", "tensor", \
"tensor_experts", "spectral_experts"}
        ``"random"``: random unit experts, gating N(0, 0.01^2) entries, sigma = std(y);
        ``"data_scale"``: experts and gating drawn at the scale of the data
        (:func:`moebench.starts.data_scale_start`), sigma = std(y);
        ``"responsibilities"``: random Dirichlet(1) responsibilities followed by one
        M-step; ``"spectral"`` (data-driven): experts chosen inside the span of the
        top-k eigenvectors of mean(S2(y)(x x^T - I)) by a greedy k-medoids search on
        the min-residual score (see ``baselines/_spectral.py``), zero gating.
        Deterministic starts from a moment method (one start, ``n_init`` not used):
        ``"tensor"``: the experts of tensor_em's tensor step and the gating (and sigma) of
        its gating EM with those experts fixed (:meth:`moebench.tensor.estimator.TensorEM.start`;
        ``tensor_em(refine=True)`` is this fit); ``"tensor_experts"``: the tensor step's
        experts, a zero gating and its moment estimate of sigma (no gating EM);
        ``"spectral_experts"``: the Spectral Experts regressions and their gating EM
        (``spectral_experts(refine=True)`` is this fit). The start's work is charged to
        ``max_time`` and reported apart (``phase_times_``, history phases "moments",
        "decomposition", "gating_em"); ``max_iter`` counts the joint-EM iterations only.
        ``"near_truth"``: every fitted atom a noisy copy of a true atom (Nguyen et al.
        2023's protocol, :func:`moebench.starts.near_truth_start`); it needs the truth,
        ``fit(X, y, truth=...)``, like an oracle; with ``intercepts`` it copies the
        biases, with ``noise="per_expert"`` the per-expert noise levels.
    init_options : dict or None
        Options of the moment estimator that computes a moment start (tensor_em's
        ``decomposition``, ``n_starts``, ``whitening``, ``gating_em_iter``, ``gating_tol``,
        ``ridge`` of the gating EM, ...); None: its defaults (``backend`` defaults to this
        estimator's). Only with a moment ``init``.
    n_init : int
        Restarts; the one with the best final mean log-likelihood is kept.
    max_iter : int
        EM iterations in all: a total over the restarts (the fit's
        :class:`~moebench.stopping.StoppingCriterion`).
    tol : float
        Stop a restart when the mean log-likelihood changes by <= tol * max(1, |ll|).
    mstep : {"full", "gradient", "newton1"}
        Full M-step (``gating_newton_steps`` Newton and ``expert_max_iter`` LM steps),
        one gradient step of size ``step_size`` (gradient EM), or one Newton (IRLS) gating
        step with line search and one expert step (weighted least squares, exact for
        linear g; one LM step otherwise) per M-step ("newton1").
    step_size : float
        Step of the gradient M-step.
    ridge : float
        L2 penalty of the gating M-step.
    gating_newton_steps, expert_max_iter : int
        Newton steps of the gating M-step; Levenberg-Marquardt steps of the expert
        M-step (nonlinear g). The defaults (1 and 2, a generalised EM: each M-step only
        climbs its objective) reach the same points in as many EM iterations as 3 and 3
        did, at 0.3-0.5x their time (n = 10^5, d = 10, k = 3; docs/performance.md).
    max_time : float or None
        Wall-clock budget in seconds of the whole fit (all restarts, a moment start's work).
    backend : {"numpy", "torch"}
        Array library of the EM iterations (torch: on CUDA when available, float64);
        the data move to the device once per fit, the starts are drawn with numpy.
    intercepts : bool
        Also fit expert intercepts and gating biases (``expert_bias_``, ``gating_bias_``;
        the last gating bias 0): EM on X with a column of ones appended.
    noise : {"shared", "per_expert"}
        One noise level, or one per expert (``sigma_`` a (k,) array; numpy backend, X in
        memory). A given ``sigma`` stays fixed either way.
    max_iter_per_start : int or None
        A cap on each restart's EM iterations, within the total ``max_iter`` (a protocol
        that gives every try the same budget, e.g. "best of 5 tries of at most 2000
        iterations"); a restart it ends stops with reason "max_iter_per_start". None: each
        restart may use what the total leaves.

    Attributes
    ----------
    phase_times_ : dict
        Seconds per phase, summed over restarts: "start" (drawing the start) and "em";
        with a moment start "moments", "decomposition", "gating_em" (the start) and "em".
    phase_gating_norms_ : dict
        ||gating||_F of the kept start where each phase ended ("start" or "gating_em",
        then "em").
    """

    description = "joint EM (Jordan-Jacobs): Newton gating, LS/LM experts; n_init restarts"
    assumes = ("none beyond the model (local search: a good start)",)
    budget_parameters: ClassVar[dict[str, str]] = {"max_iter": "max_iter",
                                                   "max_time": "max_time"}
    iteration_unit: ClassVar[str | None] = "EM iteration"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "init": [Options(INITS)],
        "init_options": [dict, None],
        "max_iter": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None)],
        "mstep": [Options(JOINT_MSTEPS)],
        "step_size": [Interval(float, 0, None, closed="neither")],
        "ridge": [Interval(float, 0, None)],
        "gating_newton_steps": [Interval(int, 1, None)],
        "expert_max_iter": [Interval(int, 1, None)],
        "backend": [Options(BACKENDS)],
        "intercepts": ["boolean"],
        "noise": [Options(NOISE_MODELS)],
        "max_iter_per_start": [Interval(int, 1, None), None],
    }
    needs_truth = NeedsTruthWhen("init", "near_truth")  # type: ignore[assignment]

    def __init__(
        self,
        n_experts: int = 2,
        activation: str | Activation = "linear",
        sigma: float | None = None,
        random_state: int | None = None,
        init: str = "random",
        init_options: dict[str, Any] | None = None,
        n_init: int = 2,
        max_iter: int = 100,
        tol: float = 1e-6,
        mstep: str = "full",
        step_size: float = 1.0,
        ridge: float = 1e-6,
        gating_newton_steps: int = 1,
        expert_max_iter: int = 2,
        max_time: float | None = None,
        backend: str = "numpy",
        intercepts: bool = False,
        noise: str = "shared",
        max_iter_per_start: int | None = None,
    ) -> None:
        super().__init__(n_experts, activation, sigma, random_state)
        self.init = init
        self.init_options = init_options
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.mstep = mstep
        self.step_size = step_size
        self.ridge = ridge
        self.gating_newton_steps = gating_newton_steps
        self.expert_max_iter = expert_max_iter
        self.max_time = max_time
        self.backend = backend
        self.intercepts = intercepts
        self.noise = noise
        self.max_iter_per_start = max_iter_per_start

    @classmethod
    def check_setting(cls, n_experts: Any, n_features: int | None = None,
                      activation: Any = "linear", *, params: dict[str, Any] | None = None
                      ) -> tuple[int, Activation]:
        """The base checks; a moment ``init`` also needs what its estimator needs (k <= d,
        its activations, valid ``init_options``), and ``init_options`` needs a moment
        ``init``."""
        k, act = super().check_setting(n_experts, n_features, activation, params=params)
        params = params or {}
        init, options = params.get("init", "random"), params.get("init_options")
        if params.get("noise") == "per_expert" and params.get("backend", "numpy") != "numpy":
            raise ValueError("joint_em: noise='per_expert' runs on backend 'numpy' only; got "
                             f"backend={params.get('backend')!r}")
        if init in MOMENT_INITS and (params.get("intercepts") or
                                     params.get("noise") == "per_expert"):
            raise ValueError(f"joint_em: init={init!r} (a moment start) has no biases or "
                             f"per-expert noise; valid with intercepts=True or "
                             f"noise='per_expert': init in random, responsibilities, "
                             f"data_scale, near_truth")
        if init in MOMENT_INITS:
            start_cls = algorithm_class(MOMENT_INITS[init][0])
            if isinstance(options, dict):
                unknown = sorted(set(options) - set(start_cls.START_OPTIONS))
                if unknown:
                    raise ValueError(
                        f"init_options {', '.join(map(repr, unknown))} are not start options of "
                        f"{start_cls.name} (init={init!r}); valid: "
                        f"{', '.join(start_cls.START_OPTIONS)}")
                start_cls.check_params(options)
            start_cls.check_setting(k, n_features, act, params=options or {})
        elif options:
            raise ValueError(f"init_options={options!r} needs a moment start; got init={init!r} "
                             f"(valid with init_options: {', '.join(MOMENT_INITS)})")
        return k, act

    @classmethod
    def excludes_biases(cls, params: dict[str, Any]) -> bool:
        """A moment start runs a method without biases (its tensor or spectral step)."""
        return params.get("init", "random") in MOMENT_INITS

    def fits_plain_model(self) -> bool:
        """Intercepts and per-expert noise are beyond the plain model."""
        return not self.intercepts and self.noise == "shared"

    def _n_starts(self) -> int:
        """A moment start is deterministic: it runs once."""
        return 1 if self.init in MOMENT_INITS else int(self.n_init)

    def start_estimator(self) -> Any:
        """The moment estimator that computes this fit's moment start (``init`` in
        :data:`MOMENT_INITS`), with ``init_options`` and this fit's seed and setting."""
        name, _ = MOMENT_INITS[self.init]
        options = {"backend": self.backend, **(self.init_options or {})}
        if name != "tensor_em":
            options.pop("backend")
        return algorithm_class(name)(n_experts=self.n_experts, activation=self.activation,
                                     sigma=self.sigma, random_state=self.random_state,
                                     **options)

    @classmethod
    def check_out_of_core(cls, activation: Activation, params: dict[str, Any]) -> None:
        """On X on disk, the expert M-step (mstep="full", and the first M-step of
        init="responsibilities") needs linear experts."""
        asks = []
        if params.get("noise") == "per_expert" or params.get("intercepts"):
            raise ValueError("joint_em: intercepts=True and noise='per_expert' need X in "
                             "memory; got X on disk (a numpy.memmap): load it (np.asarray(X))")
        if params.get("mstep", "full") == "full":
            asks.append("mstep='full'")
        if params.get("init", "random") == "responsibilities":
            asks.append("init='responsibilities'")
        if asks:
            check_expert_step_out_of_core(
                activation, f"joint_em with {' and '.join(asks)} (valid on disk for "
                "nonlinear experts: mstep='gradient' and an init other than 'responsibilities')")

    def _initial(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                 sigma: float | None, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, float]:
        n, d = X.shape
        s0 = float(np.std(y)) + 1e-12 if sigma is None else sigma
        if self.noise == "per_expert" and sigma is None:
            s0 = np.full(k, s0)
        if self.init == "near_truth":
            return self._near_truth(X, k, sigma, rng)
        if self.init == "random":
            experts, gating = random_start(rng, k, d)
            return experts, gating, s0
        if self.init == "data_scale":
            experts, gating = data_scale_start(rng, X, y, k)
            return experts, gating, s0
        if self.init == "spectral":
            basis = spectral_subspace(X, y, k, activation)
            experts = search_in_subspace(X, y, basis, k, activation, rng)
            return experts, np.zeros((k, d)), s0
        # "responsibilities": random soft labels, then one M-step
        resp = rng.dirichlet(np.ones(k), size=n)
        start = random_unit_experts(rng, k, d)
        experts = expert_m_step(X, y, resp, start, activation, max_iter=self.expert_max_iter)
        gating = gating_m_step(X, resp, np.zeros((k, d)), ridge=self.ridge,
                               max_iter=self.gating_newton_steps)
        s = sigma_m_step(X, y, resp, experts, activation) if sigma is None else sigma
        if self.noise == "per_expert" and sigma is None:
            s = np.full(k, s)
        return experts, gating, s

    def _near_truth(self, X: np.ndarray, k: int, sigma: float | None,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Any]:
        """:func:`~moebench.starts.near_truth_fit_start` in the fit's coordinates (the bias
        columns last when ``intercepts``); noise per expert, or their rms when shared."""
        return near_truth_fit_start(rng, self._truth, k, X.shape[0], self._fit_scale,
                                    intercepts=self.intercepts,
                                    per_expert=self.noise == "per_expert", sigma=sigma,
                                    fit="joint_em")

    def _stop_tol(self) -> float | None:
        """The EM's tolerance ``tol`` (the fit's stopping criterion applies it)."""
        return float(self.tol)

    def _restart_context(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                         sigma: float | None, rng: np.random.Generator) -> tuple[Any, Any]:
        """X and y on the backend's device, moved once for every restart."""
        return to_backend(X, y, self.backend)

    def _fit(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
             sigma: float | None, history: History) -> None:
        self._times: dict[str, float] = {}
        self._truth = history.truth
        if self.intercepts:  # biases: EM on [X, 1]; the last column holds them
            X = with_ones(X)
        super()._fit(X, y, k, activation, sigma, history)
        if self.intercepts:
            split_biases(self)
        self.phase_times_ = self._times

    def _stationarity(self, X: np.ndarray, y: np.ndarray,
                      activation: Activation) -> tuple[float, float]:
        """The base check on every fitted parameter
        (:func:`moebench.intercepts.fitted_stationarity`)."""
        return fitted_stationarity(self, X, y, activation)

    def _finish_restarts(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                         sigma: float | None, history: History, best: StartFit,
                         n_iter: int) -> StartFit:
        self.phase_gating_norms_ = best.extra.get("gating_norms", {})
        for name, value in best.extra.get("start_attributes", {}).items():
            setattr(self, name, value)
        return best

    def _moment_start(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                      sigma: float | None, history: History, stop: StoppingCriterion
                      ) -> tuple[Any, dict[str, Any]]:
        """The moment start (its estimator's ``start``: the time budget's clock, not the
        iteration budget) and the start estimator's fitted attributes."""
        est = self.start_estimator()
        with_gating = MOMENT_INITS[self.init][1]
        res = est.start(X, y, k, activation, sigma, history,
                        stop.uncounted(tol=float(est.gating_tol)), gating=with_gating)
        own = {"experts_", "gating_", "sigma_", "n_iter_", "converged_", "stop_reason_",
               "log_likelihood_", "phase_times_", "phase_gating_norms_", "history_"}
        attributes = {name: value for name, value in vars(est).items()
                      if name.endswith("_") and not name.startswith("_") and name not in own}
        self._times.update(est.phase_times_)
        return res, {"start_attributes": attributes,
                     "gating_norms": dict(est.phase_gating_norms_)}

    def _fit_single(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                    sigma: float | None, history: History, rng: np.random.Generator,
                    stop: StoppingCriterion, context: tuple[Any, Any]) -> EMResult:
        tick = time.perf_counter()
        if self.init in MOMENT_INITS:
            start, extra = self._moment_start(X, y, k, activation, sigma, history, stop)
            experts, gating, s0 = start.experts, start.gating, start.sigma
            if stop.out_of_time():  # the start spent the time budget: no EM iteration
                ll = MoEModel(experts, gating, s0, activation).mean_log_likelihood(X, y)
                extra["gating_norms"]["em"] = float(np.linalg.norm(gating))
                stop.reason = "max_time"
                return EMResult(experts, gating, s0, 0, ll, False, "max_time", extra=extra)
        else:
            experts, gating, s0 = self._initial(X, y, k, activation, sigma, rng)
            extra = {"gating_norms": {"start": float(np.linalg.norm(gating - gating[-1]))}}
            self._times["start"] = self._times.get("start", 0.0) + time.perf_counter() - tick
        tick = time.perf_counter()
        one_step = self.mstep == "newton1"
        Xb, yb = context
        res = run_em(
            Xb, yb, experts, gating, s0, activation,
            update_experts=True, update_sigma=sigma is None,
            mstep="full" if one_step else self.mstep,
            max_iter=self.max_iter if self.max_iter_per_start is None
            else self.max_iter_per_start,
            limit_name="max_iter" if self.max_iter_per_start is None else "max_iter_per_start",
            ridge=self.ridge,
            gating_newton_steps=1 if one_step else self.gating_newton_steps,
            expert_max_iter=1 if one_step else self.expert_max_iter,
            step_size=self.step_size, history=history, phase="em",
            backend=self.backend, stopping=stop, noise=self.noise,
        )
        self._times["em"] = self._times.get("em", 0.0) + time.perf_counter() - tick
        extra["gating_norms"]["em"] = float(np.linalg.norm(res.gating))
        res.extra = extra
        return res
