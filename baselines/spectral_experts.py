"""Spectral Experts (Chaganty and Liang, ICML 2013) for mixtures of linear regressions.

"Spectral Experts for Estimating Mixtures of Linear Regressions". The model is
y = beta_h^T x + eps with h ~ Multinomial(pi) independent of x: the mixing weights are
constant. With M_p = sum_h pi_h beta_h^{⊗p}:

1. **Three regressions** (the noise has mean zero given x in each):

   * y on x: ``y = <M1, x> + eta1`` (least squares);
   * y^2 on x⊗x: ``y^2 = <M2, x⊗x> + sigma^2 + eta2`` -- with sigma unknown the
     intercept estimates sigma^2 (the paper's footnote; x must hold no constant column),
     with sigma given it is subtracted;
   * y^3 on x⊗x⊗x: ``y^3 = <M3, x^{⊗3}> + 3 sigma^2 <M1, x> + eta3`` -- the bias is
     subtracted with the estimates of the first two regressions (the paper's plug-in;
     a symmetric noise has E[eps^3] = 0).

   M2 and M3 are symmetric of rank k, and are regressed on the distinct monomials of x
   (d(d+1)/2 and d(d+1)(d+2)/6 of them; a monomial's feature carries its multiplicity so
   that the coefficients are the tensor's entries). The regulariser is selectable:
   ``"nuclear"`` (the paper's): ``lambda ||M||_*``, for M3 the nuclear norm of its mode-1
   unfolding (d × d^2). The paper cites the overlapped Schatten-1 norm of Tomioka et al.
   2011 (the mean of the nuclear norms of the mode unfoldings); for a *symmetric* tensor
   the three unfoldings are permutations of each other, so it equals the nuclear norm of
   one unfolding -- the same convex problem. It is solved exactly by ADMM over symmetric
   tensors (a linear solve with the cached Gram matrix, then singular-value soft
   thresholding of the unfolding). ``"ridge"``: ``lambda/2 ||M||_F^2`` (closed form).
   ``lambda = reg_strength * sd(target) / sqrt(n)`` (the paper's c / sqrt(n));
   ``reg_strength = 0`` is plain least squares.
2. **Tensor factorisation**: whitening by the k leading eigenpairs of M2
   (:func:`moebench.tensor.whitening.whiten`), T = M3(W, W, W) = sum_h pi_h^{-1/2} v_h^{⊗3}
   with v_h = sqrt(pi_h) W^T beta_h orthonormal, decomposed by the project's robust tensor
   power method (:func:`moebench.tensor.decomposition.decompose`); then
   beta_h = (W^T)^+ (lambda_h v_h) and pi_h = lambda_h^{-2}. Unlike tensor_em, the
   experts' norms are identified.
3. **Gating**: an MoE gating softmax(W x) has no intercept, so constant non-uniform weights
   pi cannot be expressed; ``mixing_weights_`` holds the estimated pi and ``gating_`` is
   fitted afterwards by the gating EM shared with tensor_em (:func:`moebench.gating_em.gating_em`,
   ridge-bounded): the experts fixed, from a zero gating (equal weights), which stays near
   zero when the mixing really is constant. ``refine=True`` is
   ``joint_em(init="spectral_experts")``: joint EM from that start, exactly as tensor_em's
   ``refine``.

Assumptions: linear experts, constant mixing weights (under input-dependent gating the
regressions are misspecified: E[y^2 | x] is then not <M2, x⊗x> + sigma^2), k <= d,
and the inputs need *not* be Gaussian. The cubic regression is dense in d^3
(a Gram matrix of side d(d+1)(d+2)/6): d above :data:`MAX_D` is refused.
"""

from __future__ import annotations

import time
from itertools import combinations_with_replacement
from typing import Any, ClassVar

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from moebench.activations import Activation
from moebench.base import LocalSearchWhen, MoEEstimator
from moebench.constraints import Interval, Options
from moebench.degenerate import DegenerateFitError
from moebench.em import EMResult
from moebench.gating_em import GATING_EM_CONSTRAINTS, GATING_EM_RIDGE, gating_em
from moebench.history import History
from moebench.moment_fit import fit_moment_estimator
from moebench.registry import register
from moebench.stopping import StoppingCriterion
from moebench.tensor.decomposition import DECOMPOSITIONS, decompose, multilinear
from moebench.tensor.whitening import whiten

#: largest d accepted: the cubic regression has d(d+1)(d+2)/6 features (1540 at d = 20) and
#: its Gram matrix costs O(n p^2) (about 2.4e11 flops at n = 1e5, d = 20)
MAX_D = 20
REGULARIZATIONS = ("nuclear", "ridge")
#: rows per chunk of the Gram accumulation, in feature-matrix entries
CHUNK_ENTRIES = 4_000_000


def n_cubic_features(d: int) -> int:
    """Distinct monomials of degree 3 in d variables: d(d+1)(d+2)/6."""
    return d * (d + 1) * (d + 2) // 6


class _SymmetricBasis:
    """The distinct entries of a symmetric order-``order`` tensor on R^d.

    ``index`` (p, order): one sorted multi-index per distinct entry; ``mult`` (p,): how
    many entries of the full tensor it stands for; ``inverse`` (d^order,): the distinct
    entry of each full-tensor entry.
    """

    def __init__(self, d: int, order: int) -> None:
        self.d, self.order = d, order
        self.index = np.array(list(combinations_with_replacement(range(d), order)), dtype=int)
        full = np.indices((d,) * order).reshape(order, -1).T
        key = np.sort(full, axis=1) @ (d ** np.arange(order - 1, -1, -1))
        own = self.index @ (d ** np.arange(order - 1, -1, -1))
        self.inverse = np.searchsorted(own, key)
        self.mult = np.bincount(self.inverse, minlength=len(own)).astype(float)

    @property
    def size(self) -> int:
        return int(self.index.shape[0])

    def features(self, X: np.ndarray) -> np.ndarray:
        """mult_m prod_j x_{m_j}: <T, x^{⊗order}> = features(x) @ distinct(T)."""
        F = self.mult * X[:, self.index[:, 0]]
        for j in range(1, self.order):
            F = F * X[:, self.index[:, j]]
        return F

    def full(self, t: np.ndarray) -> np.ndarray:
        """The symmetric tensor with distinct entries ``t``."""
        return t[self.inverse].reshape((self.d,) * self.order)

    def project(self, A: np.ndarray) -> np.ndarray:
        """D sym(A): the distinct entries of the symmetric part of A, times ``mult``."""
        return np.bincount(self.inverse, weights=np.ravel(A), minlength=self.size)


def _gram(X: np.ndarray, target: np.ndarray, basis: _SymmetricBasis, intercept: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    """Mean Gram matrix F^T F / n and F^T s / n of the monomial features (+ a constant)."""
    n = X.shape[0]
    p = basis.size + int(intercept)
    G = np.zeros((p, p))
    b = np.zeros(p)
    step = max(64, CHUNK_ENTRIES // p)
    for start in range(0, n, step):
        F = basis.features(X[start:start + step])
        if intercept:
            F = np.hstack([F, np.ones((F.shape[0], 1))])
        G += F.T @ F
        b += F.T @ target[start:start + step]
    return G / n, b / n


def _soft_threshold_unfolding(A: np.ndarray, tau: float) -> np.ndarray:
    """Singular-value soft thresholding of the mode-1 unfolding of A (folded back)."""
    U, s, Vt = np.linalg.svd(A.reshape(A.shape[0], -1), full_matrices=False)
    return ((U * np.maximum(s - tau, 0.0)) @ Vt).reshape(A.shape)


def low_rank_regression(G: np.ndarray, b: np.ndarray, basis: _SymmetricBasis, lam: float,
                        regularization: str, intercept: bool, max_iter: int = 500,
                        tol: float = 1e-7) -> tuple[np.ndarray, float, int]:
    """Minimise 1/2 t^T G t - b^T t + lam R(T) over symmetric tensors T (distinct entries t).

    R is ``||T_(1)||_*`` ("nuclear", by ADMM) or ``1/2 ||T||_F^2`` ("ridge"); an intercept
    (the last coordinate when ``intercept``) is not penalised.

    Returns
    -------
    T : ndarray of shape (d,) * order
    intercept : float
        0.0 without one.
    n_iter : int
        ADMM iterations (0 for ridge or lam = 0).
    """
    p = basis.size
    D = np.zeros(G.shape[0])
    D[:p] = basis.mult  # ||T||_F^2 = sum_m mult_m t_m^2
    if regularization == "ridge" or lam == 0.0:
        sol = np.linalg.lstsq(G + lam * np.diag(D), b, rcond=None)[0]
        return basis.full(sol[:p]), float(sol[p]) if intercept else 0.0, 0
    # ADMM on T = Z: 1/2 t'Gt - b't + lam ||Z_(1)||_* + rho/2 ||T - Z + U||^2
    rho = float(np.mean(np.diag(G)[:p] / basis.mult)) or 1.0
    factor = cho_factor(G + rho * np.diag(D) + 1e-12 * rho * np.eye(G.shape[0]))
    shape = (basis.d,) * basis.order
    Z = np.zeros(shape)
    U = np.zeros(shape)
    sol = np.zeros(G.shape[0])
    it = 0
    for _ in range(max_iter):
        it += 1
        rhs = b.copy()
        rhs[:p] += rho * basis.project(Z - U)
        sol = cho_solve(factor, rhs)
        T = basis.full(sol[:p])
        Z_old = Z
        Z = _soft_threshold_unfolding(T + U, lam / rho)
        U = U + T - Z
        primal = np.linalg.norm(T - Z)
        dual = rho * np.linalg.norm(Z - Z_old)
        scale = max(np.linalg.norm(T), np.linalg.norm(Z), 1e-12)
        if primal <= tol * scale and dual <= tol * max(rho * np.linalg.norm(U), 1e-12):
            break
    # the low-rank iterate (Z), symmetrised: sym(Z) has the same loss terms as Z's
    T = basis.full(basis.project(Z) / basis.mult)
    return T, float(sol[p]) if intercept else 0.0, it


@register("spectral_experts")
class SpectralExperts(MoEEstimator):
    """Spectral Experts: low-rank regressions of y^2, y^3, then the tensor power method.

    Parameters
    ----------
    n_experts : int
        Number of experts k, 2 <= k <= d.
    activation : "linear"
        Linear experts only.
    sigma : float or None
        Noise level; None estimates sigma^2 as the intercept of the y^2 regression (then
        maximum likelihood inside the gating EM and ``refine``).
    random_state : int or None
        Seeds the random starts of the decomposition.
    regularization : {"nuclear", "ridge"}
        Regulariser of the M2 and M3 regressions (see the module docstring).
    reg_strength : float
        c in lambda = c sd(target) / sqrt(n); 0 is plain least squares.
    admm_max_iter : int
        ADMM iterations of each nuclear-norm regression.
    decomposition : {"power", "jennrich"}
        Decomposition of the whitened M3.
    n_starts, n_power_iter : int
        Random starts and iterations of the robust tensor power method.
    gating_em_iter, gating_tol, gating_newton_steps, gating_method, gating_acceleration, ridge
        The gating EM with the experts fixed (as tensor_em; ``ridge`` bounds its gating).
    refine, refine_max_iter, refine_tol
        ``refine=True`` fits ``joint_em(init="spectral_experts")`` with ``refine_max_iter``
        as its ``max_iter`` and ``refine_tol`` as its ``tol`` (as tensor_em's ``refine``).
    max_iter : int or None
        The sweep's iteration budget, a total: the gating EM's iterations (with
        ``refine``, the joint EM's).
    max_time : float or None
        Wall-clock budget of the whole fit (the regressions are not interrupted).

    Attributes
    ----------
    experts_, gating_, sigma_, n_iter_, history_, converged_, stop_reason_, log_likelihood_
        See :class:`moebench.base.MoEEstimator`; ``history_`` holds one "moments" and one
        "decomposition" record, then the gating EM's and refine's.
    mixing_weights_ : ndarray of shape (k,)
        pi_h = lambda_h^{-2}, normalised to sum 1.
    spectral_experts_ : ndarray of shape (k, d)
        The experts of the tensor step (before refine).
    sigma2_regression_ : float
        The intercept of the y^2 regression (sigma^2 estimate; nan when sigma is given).
    M1_, M2_ : ndarrays
        The regression estimates of M1 (d,) and M2 (d, d) (M3 is not kept: d^3).
    admm_iter_ : tuple of int
        ADMM iterations of the M2 and M3 regressions.
    phase_times_ : dict
        Seconds in "moments", "decomposition", "gating_em" (with ``refine`` also "em").
    phase_gating_norms_ : dict
        ||gating||_F where each phase ended.
    """

    description = ("Spectral Experts (Chaganty & Liang 2013): low-rank regression of y^2, y^3 "
                   "+ tensor power method; assumes constant mixing weights (misspecified "
                   "under input-dependent gating), linear g, d <= 20")
    assumes = ("linear g", "constant mixing", "k <= d", f"d <= {MAX_D}")
    requires_k_le_d: ClassVar[bool] = True
    supported_activations = ("linear",)
    #: a moment method (False on the class); an instance with ``refine`` is a local search
    local_search = LocalSearchWhen("refine")
    budget_parameters: ClassVar[dict[str, str]] = {"max_iter": "max_iter",
                                                   "max_time": "max_time"}
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "regularization": [Options(REGULARIZATIONS)],
        "reg_strength": [Interval(float, 0, None)],
        "admm_max_iter": [Interval(int, 1, None)],
        "decomposition": [Options(DECOMPOSITIONS)],
        "n_starts": [Interval(int, 1, None)],
        "n_power_iter": [Interval(int, 1, None)],
        **GATING_EM_CONSTRAINTS,
    }
    iteration_unit: ClassVar[str | None] = "EM iteration"
    #: the options of the start (regressions, decomposition, gating EM) that
    #: ``refine=True`` hands to ``joint_em(init="spectral_experts", init_options=...)``
    START_OPTIONS: ClassVar[tuple[str, ...]] = (
        "regularization", "reg_strength", "admm_max_iter", "decomposition", "n_starts",
        "n_power_iter", "gating_em_iter", "gating_tol", "gating_newton_steps",
        "gating_method", "gating_acceleration", "ridge")

    def __init__(
        self,
        n_experts: int = 2,
        activation: str | Activation = "linear",
        sigma: float | None = None,
        random_state: int | None = None,
        regularization: str = "nuclear",
        reg_strength: float = 1.0,
        admm_max_iter: int = 500,
        decomposition: str = "power",
        n_starts: int = 30,
        n_power_iter: int = 50,
        gating_em_iter: int = 200,
        gating_tol: float = 1e-8,
        gating_newton_steps: int = 5,
        gating_method: str = "auto",
        gating_acceleration: str = "quasi_newton",
        ridge: float = GATING_EM_RIDGE,
        refine: bool = False,
        refine_max_iter: int = 200,
        refine_tol: float = 1e-8,
        max_iter: int | None = None,
        max_time: float | None = None,
    ) -> None:
        super().__init__(n_experts, activation, sigma, random_state)
        self.regularization = regularization
        self.reg_strength = reg_strength
        self.admm_max_iter = admm_max_iter
        self.decomposition = decomposition
        self.n_starts = n_starts
        self.n_power_iter = n_power_iter
        self.gating_em_iter = gating_em_iter
        self.gating_tol = gating_tol
        self.gating_newton_steps = gating_newton_steps
        self.gating_method = gating_method
        self.gating_acceleration = gating_acceleration
        self.ridge = ridge
        self.refine = refine
        self.refine_max_iter = refine_max_iter
        self.refine_tol = refine_tol
        self.max_iter = max_iter
        self.max_time = max_time

    @classmethod
    def check_setting(cls, n_experts: Any, n_features: int | None = None,
                      activation: Any = "linear", *, params: dict[str, Any] | None = None
                      ) -> tuple[int, Activation]:
        """The base checks, and d <= :data:`MAX_D` (the cubic regression is dense in d^3)."""
        k, act = super().check_setting(n_experts, n_features, activation, params=params)
        if n_features is not None and n_features > MAX_D:
            raise ValueError(
                f"spectral_experts cannot run d = {n_features} features: its y^3 regression "
                f"has d(d+1)(d+2)/6 = {n_cubic_features(int(n_features))} features (a dense "
                f"Gram matrix, O(n d^6) work); valid: d <= {MAX_D}"
            )
        return k, act

    def _regress(self, X: np.ndarray, target: np.ndarray, order: int, intercept: bool
                 ) -> tuple[np.ndarray, float, int]:
        basis = _SymmetricBasis(X.shape[1], order)
        G, b = _gram(X, target, basis, intercept)
        lam = float(self.reg_strength) * float(np.std(target)) / np.sqrt(X.shape[0])
        return low_rank_regression(G, b, basis, lam, self.regularization, intercept,
                                   max_iter=int(self.admm_max_iter))

    def start_options(self) -> dict[str, Any]:
        """This estimator's start options (:attr:`START_OPTIONS`), as ``init_options`` of
        ``joint_em(init="spectral_experts")``."""
        return {name: getattr(self, name) for name in self.START_OPTIONS}

    def _fit(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
             sigma: float | None, history: History) -> None:
        # refine: joint EM from the spectral start, i.e. joint_em(init="spectral_experts")
        fit_moment_estimator(self, "spectral_experts", X, y, k, activation, sigma, history)

    def start(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
              sigma: float | None, history: History, stop: StoppingCriterion,
              gating: bool = True) -> EMResult:
        """The regressions and the decomposition, then the gating EM with the experts
        fixed: spectral_experts' fit, and the start of ``joint_em(init="spectral_experts")``
        (the arguments and the result as
        :meth:`moebench.tensor.estimator.TensorEM.start`)."""
        n, d = X.shape
        n_min = n_cubic_features(d) + 2
        if n < n_min:  # fewer rows than features: the y^3 regression is underdetermined
            raise DegenerateFitError(
                f"spectral_experts needs at least d(d+1)(d+2)/6 + 2 = {n_min} samples for its "
                f"y^3 regression on the cubic monomials of x (d = {d}); got n = {n}"
            )
        rng = self._rng()
        times = {"moments": 0.0, "decomposition": 0.0}

        # 1. the three regressions
        tick = time.perf_counter()
        M1 = np.linalg.lstsq(X, y, rcond=None)[0]
        y2 = y * y
        if sigma is None:
            M2, s2_hat, it2 = self._regress(X, y2, 2, intercept=True)
            self.sigma2_regression_ = s2_hat
            sigma2 = max(s2_hat, 1e-6 * float(np.mean(y2)), 1e-12)
        else:
            M2, _, it2 = self._regress(X, y2 - sigma * sigma, 2, intercept=False)
            self.sigma2_regression_ = float("nan")
            sigma2 = sigma * sigma
        M3, _, it3 = self._regress(X, y2 * y - 3.0 * sigma2 * (X @ M1), 3, intercept=False)
        self.M1_, self.M2_, self.admm_iter_ = M1, M2, (it2, it3)
        times["moments"] = time.perf_counter() - tick
        history.record("moments", 0, float("nan"))

        # 2. whitening by M2, tensor power method on M3(W, W, W)
        tick = time.perf_counter()
        try:
            wh = whiten(M2, k, "eigh", n_extra=1)
        except ValueError as exc:  # rank(M2_hat) < k: too few samples or too strong a penalty
            raise DegenerateFitError(
                f"spectral_experts: the regression estimate of M2 has rank < k = {k}; more "
                f"samples or a smaller reg_strength help ({exc})") from None
        dec = decompose(multilinear(M3, wh.W), self.decomposition, n_components=k, rng=rng,
                        n_starts=int(self.n_starts), n_iter=int(self.n_power_iter))
        lam = np.maximum(dec.eigenvalues, 1e-12)
        experts = (wh.unwhitening @ (dec.eigenvectors * lam[:, None]).T).T
        pi = 1.0 / lam**2
        self.mixing_weights_ = pi / pi.sum()
        self.spectral_experts_ = experts.copy()
        times["decomposition"] = time.perf_counter() - tick
        history.record("decomposition", 0, float("nan"), experts=experts,
                       gating=np.zeros((k, d)), decomposition_residual=dec.residual)

        # 3. gating EM with the experts fixed, ridge-penalised (bounded gating)
        if gating:
            tick = time.perf_counter()
            res = gating_em(
                X, y, experts, float(np.sqrt(sigma2)), activation, history, stop,
                update_sigma=sigma is None, gating_em_iter=int(self.gating_em_iter),
                gating_newton_steps=int(self.gating_newton_steps),
                gating_method=self.gating_method,
                gating_acceleration=self.gating_acceleration, ridge=float(self.ridge))
            times["gating_em"] = time.perf_counter() - tick
            self.gating_converged_ = res.converged
            self.gating_n_iter_ = res.n_iter
        else:
            res = EMResult(experts, np.zeros((k, d)), float(np.sqrt(sigma2)), 0, float("nan"),
                           False, "start")
        self.phase_times_ = times
        self.phase_gating_norms_ = {"gating_em" if gating else "start":
                                    float(np.linalg.norm(res.gating))}
        return res
