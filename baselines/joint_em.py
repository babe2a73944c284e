"""Joint EM for the mixture of experts (Jordan and Jacobs 1994), with restarts.

Every parameter is learned by EM from an initialisation that does not use the
tensor method: E-step responsibilities; M-step the Newton multinomial-logistic
gating step, weighted least squares (linear g) or Levenberg-Marquardt (other g)
for the experts, and the closed-form sigma. The EM loop itself is
:func:`moebench.em.run_em`, shared with tensor_em's gating EM.

``mstep="gradient"`` replaces the M-step by one gradient step on the expected
complete-data log-likelihood ("gradient EM", Fruytier, Mokhtari and Sanghavi 2025);
``mstep="newton1"`` takes one Newton (IRLS) step per M-step.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from moebench.activations import Activation
from moebench.base import History, RestartedEstimator
from moebench.em import (
    MSTEPS,
    EMResult,
    check_expert_step_out_of_core,
    expert_m_step,
    gating_m_step,
    run_em,
    sigma_m_step,
)
from moebench.em_torch import to_backend
from moebench.registry import register
from moebench.starts import (
    data_scale_start,
    random_start,
    random_unit_experts,
    search_in_subspace,
)
from moebench.tensor.backend import BACKENDS
from moebench.validation import Interval, Options

from ._spectral import spectral_subspace

INITS = ("random", "responsibilities", "spectral", "data_scale")
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
    init : {"random", "responsibilities", "spectral", "data_scale"}
        ``"random"``: random unit experts, gating N(0, 0.01^2) entries, sigma = std(y);
        ``"data_scale"``: experts and gating drawn at the scale of the data
        (:func:`moebench.starts.data_scale_start`), sigma = std(y);
        ``"responsibilities"``: random Dirichlet(1) responsibilities followed by one
        M-step; ``"spectral"`` (data-driven): experts chosen inside the span of the
        top-k eigenvectors of mean(S2(y)(x x^T - I)) by a greedy k-medoids search on
        the min-residual score (see ``baselines/_spectral.py``), zero gating.
    n_init : int
        Restarts; the one with the best final mean log-likelihood is kept.
    max_iter : int
        EM iterations per restart.
    tol : float
        Stop a restart when the mean log-likelihood changes by < tol * max(1, |ll|).
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
        M-step (nonlinear g).
    max_time : float or None
        Wall-clock budget in seconds across all restarts.
    backend : {"numpy", "torch"}
        Array library of the EM iterations (torch: on CUDA when available, float64);
        the data move to the device once per fit, the starts are drawn with numpy.
    """

    description = "joint EM (Jordan-Jacobs): Newton gating, LS/LM experts; n_init restarts"
    assumes = ("none beyond the model (local search: a good start)",)
    budget_parameters: ClassVar[dict[str, str]] = {"max_iter": "max_iter",
                                                   "max_time": "max_time"}
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "init": [Options(INITS)],
        "max_iter": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None)],
        "mstep": [Options(JOINT_MSTEPS)],
        "step_size": [Interval(float, 0, None, closed="neither")],
        "ridge": [Interval(float, 0, None)],
        "gating_newton_steps": [Interval(int, 1, None)],
        "expert_max_iter": [Interval(int, 1, None)],
        "backend": [Options(BACKENDS)],
    }

    def __init__(
        self,
        n_experts: int = 2,
        activation: str | Activation = "linear",
        sigma: float | None = None,
        random_state: int | None = None,
        init: str = "random",
        n_init: int = 2,
        max_iter: int = 100,
        tol: float = 1e-6,
        mstep: str = "full",
        step_size: float = 1.0,
        ridge: float = 1e-6,
        gating_newton_steps: int = 3,
        expert_max_iter: int = 3,
        max_time: float | None = None,
        backend: str = "numpy",
    ) -> None:
        super().__init__(n_experts, activation, sigma, random_state)
        self.init = init
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

    @classmethod
    def check_out_of_core(cls, activation: Activation, params: dict[str, Any]) -> None:
        """On X on disk, the expert M-step (mstep="full", and the first M-step of
        init="responsibilities") needs linear experts."""
        asks = []
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
        return experts, gating, s

    def _restart_context(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                         sigma: float | None, rng: np.random.Generator) -> tuple[Any, Any]:
        """X and y on the backend's device, moved once for every restart."""
        return to_backend(X, y, self.backend)

    def _fit_single(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                    sigma: float | None, history: History, rng: np.random.Generator,
                    deadline: float | None, context: tuple[Any, Any]) -> EMResult:
        experts, gating, s0 = self._initial(X, y, k, activation, sigma, rng)
        one_step = self.mstep == "newton1"
        Xb, yb = context
        return run_em(
            Xb, yb, experts, gating, s0, activation,
            update_experts=True, update_sigma=sigma is None,
            mstep="full" if one_step else self.mstep,
            max_iter=self.max_iter, tol=self.tol, ridge=self.ridge,
            gating_newton_steps=1 if one_step else self.gating_newton_steps,
            expert_max_iter=1 if one_step else self.expert_max_iter,
            step_size=self.step_size, max_time=deadline, history=history, phase="em",
            backend=self.backend,
        )
