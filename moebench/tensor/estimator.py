"""The paper's algorithm: tensor decomposition for the experts, then EM for the gating.

Makkuva, Oh, Kannan and Viswanath, "Breaking the gridlock in Mixture-of-Experts:
consistent and efficient algorithms" (arXiv:1802.07417). Steps of :class:`TensorEM`:

1. **Label transforms** (:mod:`moebench.tensor.label_transforms`): s2 = S2(y), s3 = S3(y)
   with coefficients that make, under orthogonal gating,
   T2 = E[s2 (x x^T - I)] = c2 sum_i p_i a_i a_i^T and
   T3 = E[s3 (x^{⊗3} - sym(x ⊗ I))] = c3 sum_i p_i a_i^{⊗3}  (p_i = E[P(z=i|x)]).
2. **Moments and whitening** (:mod:`moebench.tensor.moments`,
   :mod:`moebench.tensor.whitening`): T2 in one streaming pass; its k eigenpairs of
   largest sign(c2) * eigenvalue (the population T2's k nonzero eigenvalues all have
   c2's sign; c2 comes from the transform's quadrature, so the sign is the theory's, not
   the data's), T2 ~ U D U^T, give W = U |D|^{-1/2}; the whitened third moment
   T3(W, W, W) in one more pass (d×d×d is never built). When fewer than k of them
   clear T2's noise level (:func:`moebench.tensor.whitening.t2_noise_level`, from
   mean(s2^2): no pass over X), the fit records ``below_sample_complexity_``.
3. **Decomposition** (:mod:`moebench.tensor.decomposition`): with
   b_i = sqrt(|c2| p_i) W^T a_i (orthonormal: sum_i b_i b_i^T = sign(c2) W^T T2 W = I),
   T3(W, W, W) = sum_i lambda_i b_i^{⊗3},  lambda_i = c3 / (|c2|^{3/2} sqrt(p_i)).
   The robust tensor power method (or Jennrich) returns pairs (lambda_hat, v) with
   lambda_hat >= 0; an odd tensor only fixes (lambda, v) up to (-lambda, -v), and the
   true lambda_i has the sign of c3, so b_i = sign(c3 lambda_hat_i) v_i.
   Un-whitening: W^T a_i ∝ b_i and a_i lies in span(U), so
   a_i ∝ (W^T)^+ b_i = U |D|^{1/2} b_i; then ||a_i|| = 1. The sign of c2 only
   chooses the kept eigenpairs (|D| is used; D has the sign of c2 in population).
   Every start of the power method runs to convergence and the choice among the fixed
   points keeps a margin (:mod:`moebench.tensor.decomposition`), so rounding-level
   differences of the moments (fused or BLAS kernels, numpy or torch) do not change the
   experts; where the margin (``tensor_eigengap_``) is below
   :data:`~moebench.tensor.decomposition.EIGENGAP_TOL` the fit records
   ``tensor_ill_conditioned_``.
   Sign identifiability: when c3 != 0 the sign of each a_i is identified (linear,
   sigmoid, relu, tanh, ...). An even g (g(-t) = g(t)) makes a_i and -a_i give
   the same model; then h3 is even and c3 = E[h3'''(Z)] = 0 and the fit is refused.
4. **Gating EM** (:func:`moebench.gating_em.gating_em`): from a zero gating (equal gate
   probabilities), E-steps and weighted multinomial logistic-regression M-steps with the
   experts fixed; sigma is re-estimated by its M-step when it was not given. The
   objective carries a ridge (default :data:`moebench.gating_em.GATING_EM_RIDGE`), which bounds
   the gating: ||W||_F <= sqrt(2 log k / ridge) (the maximum of the unpenalised gating
   likelihood may not exist on wrong experts).
5. Optional ``refine=True``: joint EM from this start, which is
   ``joint_em(init="tensor")`` itself (:func:`moebench.moment_fit.fit_from_start`; not the paper's
   algorithm; off by default).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, ClassVar

import numpy as np

from moebench.activations import Activation
from moebench.backend import BACKENDS
from moebench.base import LocalSearchWhen, MoEEstimator
from moebench.constraints import Interval, Options
from moebench.degenerate import DegenerateFitError
from moebench.em import EMResult, check_expert_step_out_of_core
from moebench.gating_em import GATING_EM_CONSTRAINTS, GATING_EM_RIDGE, gating_em
from moebench.history import History
from moebench.model import MoEModel
from moebench.moment_fit import fit_moment_estimator
from moebench.registry import register
from moebench.stopping import StoppingCriterion
from moebench.tensor.decomposition import DECOMPOSITIONS, recover_experts
from moebench.tensor.label_transforms import (
    LABEL_TRANSFORMS,
    ablation_coefficients,
    ablation_labels,
    apply_transforms,
    estimate_sigma,
    transform_coefficients,
)
from moebench.tensor.moments import (
    DTYPES,
    SecondMomentOperator,
    min_samples,
    second_moment,
    whitened_third_moment,
)
from moebench.tensor.whitening import (
    WHITENINGS,
    Whitening,
    t2_noise_level,
    whiten,
    whitening_method,
)
from moebench.validation import (  # noqa: F401 (INPUT_RMS_* re-exported)
    INPUT_RMS_NOISE_SDS,
    INPUT_RMS_TOL,
    input_scale,
    rms,
)


def gating_orthogonality(gating: np.ndarray, experts: np.ndarray) -> float:
    """Max over gating rows of |cos| between the row and the experts' span.

    Rows are taken relative to the reference (last) row, w_i - w_k, the only
    identifiable part; rows of negligible norm are skipped. 0 means every gating
    row is orthogonal to every expert (the paper's assumption), 1 means a row
    lies inside span(a_1, ..., a_k).
    """
    G = np.asarray(gating, float)
    G = G - G[-1]
    Q, _ = np.linalg.qr(np.asarray(experts, float).T)  # (d, k) orthonormal basis of the span
    norms = np.linalg.norm(G, axis=1)
    scale = max(float(norms.max()), 1e-300)
    keep = norms > 1e-8 * scale
    if not np.any(keep) or float(norms.max()) == 0.0:
        return 0.0
    proj = np.linalg.norm(G[keep] @ Q, axis=1) / norms[keep]
    return float(np.clip(np.max(proj), 0.0, 1.0))


@register("tensor_em")
class TensorEM(MoEEstimator):
    """Tensor decomposition for the experts, then EM for the gating (the paper's method).

    Parameters
    ----------
    n_experts : int
        Number of experts k, 2 <= k <= d.
    activation : str, Activation or callable
        Expert activation g (its label-transform constants c2, c3 must not vanish).
    sigma : float or None
        Noise level. None: the moment estimate of
        :func:`moebench.tensor.label_transforms.estimate_sigma` for the transforms, then
        maximum likelihood inside the gating EM (and ``refine``).
    random_state : int or None
        Seeds the random starts of the decomposition and the randomized whitening.
    decomposition : {"power", "jennrich"}
        Robust tensor power method or simultaneous diagonalisation.
    n_starts : int
        L, random starts per component (power) or slices tried (jennrich).
    n_power_iter : int
        N, power iterations per start; a start still moving after them is finished by
        Newton's method (:func:`moebench.tensor.decomposition.robust_power_method`).
    whitening : {"auto", "eigh", "randomized"}
        Eigendecomposition of T2: dense ``eigh`` (O(d^3)), a randomized range finder
        on the implicit T2 (never forms d×d), or ``auto`` (eigh for d <= 1000).
    backend : {"numpy", "torch"}
        Array library of the moment kernels and of the gating EM and refine (torch: on
        CUDA when available; the EM runs in float64 whatever ``dtype``).
    dtype : {"float64", "float32"}
        Compute dtype of the moment kernels (accumulation is float64).
    chunk_size : int or None
        Rows per chunk of the streaming moments (None: automatic).
    gating_em_iter : int
        EM iterations of the gating EM.
    gating_tol : float
        The gating EM stops when the mean log-likelihood changes by less than
        ``gating_tol * max(1, |ll|)``.
    gating_newton_steps : int
        Newton (or L-BFGS) steps of each gating M-step.
    gating_method : {"auto", "newton", "lbfgs"}
        Solver of the gating M-step (of the plain gating EM, ``gating_acceleration="none"``).
    gating_acceleration : {"quasi_newton", "none"}
        ``"quasi_newton"``: the gating EM climbs the observed-data log-likelihood by L-BFGS
        (:func:`moebench.acceleration.gating_em_quasi_newton`; the same fixed point in
        about 5x fewer passes over X at d = 100, k = 10); ``"none"``: the plain EM (E-steps
        and ``gating_newton_steps`` inner Newton or L-BFGS steps per M-step).
    ridge : float
        Ridge lambda of the gating EM's objective (units of standardised X): bounds the
        fitted gating by ||W||_F <= sqrt(2 log k / lambda) (:func:`moebench.gating_em.gating_em`).
    refine : bool
        Fit ``joint_em(init="tensor")`` instead: joint EM from the tensor step and gating
        EM (the same code path, options and budget as ``joint_em``; equal to the bit).
    refine_max_iter : int
        Alias: the joint EM's ``max_iter`` when ``refine`` (capped by ``max_iter``).
    refine_tol : float
        Alias: the joint EM's ``tol`` when ``refine``.
    max_iter : int or None
        The sweep's iteration budget, a total: the gating EM's iterations (stop reason
        "max_iter"; its own limit ``gating_em_iter`` gives "gating_em_iter"); with
        ``refine``, the joint EM's. None: no budget.
    max_time : float or None
        Wall-clock budget in seconds for the whole fit, the tensor step included (the
        moments and the decomposition are not interrupted; the EM loops stop once it is
        spent).
    label_transform : {"paper", "raw", "powers"}
        The labels of the moments (an ablation of the paper's key idea). "paper": the
        paper's S2(y), S3(y), whose correction terms cancel the cross terms of an
        orthogonal input-dependent gating. "raw": S2 = S3 = y, the score-function moments
        of mixtures of GLMs with constant weights (Sedghi, Janzamin and Anandkumar 2016):
        at constant mixing T2 = E[g''(Z)] sum p_i a_i a_i^T and
        T3 = E[g'''(Z)] sum p_i a_i^{⊗3}, which vanish for every built-in activation
        (linear, sigmoid, tanh, relu, leaky_relu), so "raw" is refused for them
        (``check_setting``, hence also by the sweep config checker); it identifies only
        a g with E[g''] != 0 and E[g'''] != 0. "powers": S2 = y^2, S3 = y^3 (the
        paper's transforms less their correction terms; c2 = 2, c3 = 6 for linear g):
        consistent at constant mixing weights, biased under input-dependent gating; the
        ablation that shows what the correction terms buy as the gating grows.

    Attributes
    ----------
    experts_, gating_, sigma_, n_iter_, history_
        See :class:`moebench.base.MoEEstimator`. ``history_`` holds one record for
        "moments" and one for "decomposition" (their log_likelihood is NaN: no model
        exists yet; the decomposition record carries the experts, so with ``truth``
        it has the tensor step's expert_error), then one per iteration of
        "gating_em" (iteration 0 = the zero-gating start; each carries the penalised
        ``objective``) and, with ``refine``, of joint_em's "em".
        ``n_iter_`` counts the gating-EM iterations, or with ``refine`` the joint EM's.
    gating_converged_ : bool
        Whether the gating EM converged.
    gating_n_iter_ : int
        Iterations of the gating EM.
    coefficients_ : TransformCoefficients or AblationCoefficients
        alpha, beta, gamma, c2, c3 used ("paper"); the transform's c2, c3 (ablations).
    t2_eigenvalues_ : ndarray
        The k kept signed eigenvalues of T2 (those of largest sign(c2) * eigenvalue), then
        (when k < d) the largest |eigenvalue| left out.
    t2_eigengap_ : float
        |lambda_k| / |lambda_{k+1}| of those (inf when k = d): large means the experts'
        span is well separated from noise.
    t2_noise_level_ : float
        :func:`moebench.tensor.whitening.t2_noise_level`: 2.5 sqrt(mean(s2^2) d / n), the
        level T2's pure-noise eigenvalues stay below.
    t2_signal_directions_ : int
        Kept eigenvalues with sign(c2) * eigenvalue above the noise level.
    below_sample_complexity_ : bool
        ``t2_signal_directions_ < k``: T2 does not resolve k expert directions from its
        noise; the tensor step still returns experts (and a warning is issued).
    tensor_eigenvalues_ : ndarray of shape (k,)
        lambda_i of the whitened T3, as returned by the decomposition (>= 0).
    mixing_weights_ : ndarray of shape (k,)
        p_i = c3^2 / (|c2|^3 lambda_i^2), normalised to sum 1 (orthogonal gating).
    decomposition_residual_, tensor_residual_ : float
        ||T3w - sum_i lambda_i v_i^{⊗3}|| / ||T3w|| (the same number under both names).
    tensor_eigengap_ : float
        The decomposition's eigengap: power method, the smallest margin between the chosen
        fixed point's T(v, v, v) and the best distinct one's over the deflation steps,
        over the largest eigenvalue; jennrich, the smallest gap between consecutive
        eigenvalues (the last one against 0) over the largest.
    tensor_ill_conditioned_ : bool
        ``tensor_eigengap_ <`` :data:`~moebench.tensor.decomposition.EIGENGAP_TOL`
        (1e-6) or a deflation step without a converged start: rounding-level changes of
        the moments may change the experts.
    assumption_check_ : float
        :func:`gating_orthogonality` of the fitted gating and experts: the largest
        |cos| between a gating row (relative to the reference row) and span(experts);
        ~0 when the paper's orthogonality assumption holds.
    phase_times_ : dict
        Seconds spent in "moments", "decomposition", "gating_em" (and, with ``refine``,
        the joint EM's "em").
    phase_gating_norms_ : dict
        ||gating||_F where each phase ended ("gating_em"; with ``refine`` also "em").
    local_search : bool
        True for an instance with ``refine`` (its fit ends in joint EM), else False (also
        on the class).

    Raises
    ------
    ValueError
        From ``fit``: n_experts > d; fewer than :func:`min_samples` = max(10 d, 10 k^3)
        samples; an activation whose c2 or c3 vanishes (e.g. an even g: the sign of
        the experts, and with it the experts, cannot be identified from T3); T2 of
        rank < k; an unknown option value (the message lists the valid choices).
    """

    description = "Tensor method for the experts, then gating-only EM (Makkuva et al. 2019)"
    assumes_no_biases = True
    assumes = ("Gaussian inputs", "gating orthogonal to experts", "k <= d",
               "unit-norm experts", "c2, c3 of g nonzero (not even g)")
    requires_k_le_d: ClassVar[bool] = True
    #: a moment method (False on the class); an instance with ``refine`` is a local search
    local_search = LocalSearchWhen("refine")
    supported_activations = None
    budget_parameters: ClassVar[dict[str, str]] = {"max_iter": "max_iter",
                                                   "max_time": "max_time"}
    #: gating-EM iterations (with ``refine``: the joint EM's, as ``joint_em(init="tensor")``)
    iteration_unit: ClassVar[str | None] = "EM iteration"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "decomposition": [Options(DECOMPOSITIONS)],
        "n_starts": [Interval(int, 1, None)],
        "n_power_iter": [Interval(int, 1, None)],
        "whitening": [Options(WHITENINGS)],
        "backend": [Options(BACKENDS)],
        "dtype": [Options(tuple(DTYPES))],
        "chunk_size": [Interval(int, 1, None), None],
        **GATING_EM_CONSTRAINTS,
        "label_transform": [Options(LABEL_TRANSFORMS)],
    }

    def __init__(
        self,
        n_experts: int = 2,
        activation: str | Activation = "linear",
        sigma: float | None = None,
        random_state: int | None = None,
        decomposition: str = "power",
        n_starts: int = 30,
        n_power_iter: int = 50,
        whitening: str = "auto",
        backend: str = "numpy",
        dtype: str = "float64",
        chunk_size: int | None = None,
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
        label_transform: str = "paper",
    ) -> None:
        super().__init__(n_experts, activation, sigma, random_state)
        self.decomposition = decomposition
        self.n_starts = n_starts
        self.n_power_iter = n_power_iter
        self.whitening = whitening
        self.backend = backend
        self.dtype = dtype
        self.chunk_size = chunk_size
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
        self.label_transform = label_transform

    @classmethod
    def check_setting(cls, n_experts: Any, n_features: int | None = None,
                      activation: Any = "linear", *, params: dict[str, Any] | None = None
                      ) -> tuple[int, Activation]:
        """The base checks, and: an ablation ``label_transform`` ("raw", "powers") must
        identify the experts for this activation (its c2, c3 must not vanish; "raw" refuses
        every built-in activation, see
        :func:`moebench.tensor.label_transforms.ablation_coefficients`)."""
        k, act = super().check_setting(n_experts, n_features, activation, params=params)
        transform = (params or {}).get("label_transform", "paper")
        if transform in ("raw", "powers"):
            ablation_coefficients(transform, act, 0.0)  # ValueError when c2 or c3 vanishes
        return k, act

    @classmethod
    def check_out_of_core(cls, activation: Activation, params: dict[str, Any]) -> None:
        """On X on disk, ``refine=True`` needs linear experts (the joint EM's expert step)."""
        if params.get("refine"):
            check_expert_step_out_of_core(
                activation, "tensor_em with refine=True (valid on disk for nonlinear "
                "experts: refine=False)")

    # -- the tensor part ----------------------------------------------------------------
    def _whiten(self, X: np.ndarray, s2: np.ndarray, k: int, rng: np.random.Generator,
                c2: float | None = None) -> Whitening:
        """Whiten T2 by its k eigenpairs with the sign of ``c2`` and set the T2 diagnostics
        (eigenvalues, eigengap, noise level, signal directions, below_sample_complexity_)."""
        d = X.shape[1]
        method = whitening_method(self.whitening, d)
        kw = dict(chunk_size=self.chunk_size, backend=self.backend, dtype=DTYPES[self.dtype])
        T2: Any = (second_moment(X, s2, **kw) if method == "eigh"
                   else SecondMomentOperator(X, s2, **kw))
        seed = int(rng.integers(2**31))
        # one extra eigenpair for the eigen-gap diagnostic; the k kept have c2's sign (the
        # population T2 = c2 sum_i p_i a_i a_i^T), noise from mean(s2^2) (an O(n) pass on s2)
        sign = None if c2 is None or c2 == 0 else float(np.sign(c2))
        wh = whiten(T2, k, method, n_extra=1, random_state=seed, sign=sign,
                    noise_level=t2_noise_level(s2, d))
        self.t2_eigenvalues_ = wh.leading_eigvals.copy()
        self.t2_eigengap_ = wh.eigengap
        self.t2_noise_level_ = wh.noise_level
        self.t2_signal_directions_ = wh.n_signal
        self.below_sample_complexity_ = wh.below_sample_complexity
        return wh

    #: the options of the start (tensor step and gating EM) that ``refine=True`` hands to
    #: ``joint_em(init="tensor", init_options=...)``
    START_OPTIONS: ClassVar[tuple[str, ...]] = (
        "decomposition", "n_starts", "n_power_iter", "whitening", "backend", "dtype",
        "chunk_size", "gating_em_iter", "gating_tol", "gating_newton_steps", "gating_method",
        "gating_acceleration", "ridge", "label_transform")

    def start_options(self) -> dict[str, Any]:
        """This estimator's start options (:attr:`START_OPTIONS`), as ``init_options`` of
        ``joint_em(init="tensor")``."""
        return {name: getattr(self, name) for name in self.START_OPTIONS}

    def _fit(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
             sigma: float | None, history: History) -> None:
        # refine: joint EM from the tensor start, i.e. joint_em(init="tensor") itself
        fit_moment_estimator(self, "tensor", X, y, k, activation, sigma, history)

    def start(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
              sigma: float | None, history: History, stop: StoppingCriterion,
              gating: bool = True) -> EMResult:
        """The tensor step, then the gating EM with its experts fixed: tensor_em's fit, and
        the start of ``joint_em(init="tensor")``.

        Parameters
        ----------
        X, y : validated arrays (n, d) and (n,)
        k : int
        activation : Activation
        sigma : float or None
            The given noise level, or None (a moment estimate, then the gating EM's).
        history : History
            Receives the "moments" and "decomposition" records, then the gating EM's.
        stop : StoppingCriterion
            The gating EM's criterion (tolerance ``gating_tol``; the fit's budgets: the
            tensor step's time is charged to its time budget).
        gating : bool
            False skips the gating EM (``joint_em(init="tensor_experts")``): the result
            has a zero gating, the moment estimate of sigma and no log-likelihood (NaN).

        Returns
        -------
        EMResult
            Experts and gating in the units of ``X``. Also sets the tensor step's fitted
            attributes (``coefficients_``, ``t2_eigenvalues_``, ..., ``gating_converged_``,
            ``assumption_check_``, ``phase_times_``, ``phase_gating_norms_``).
        """
        n, d = X.shape
        n_min = min_samples(d, k)
        if n < n_min:
            raise DegenerateFitError(
                f"tensor_em needs at least max(10 d, 10 k^3) = {n_min} samples for its moment "
                f"estimates (d = {d}, k = {k}); got n = {n}"
            )
        # the moments assume E[x x^T] = I: an X whose rms is off 1 by more than its sampling
        # noise is divided by its rms and the parameters mapped back at the end, so the fit
        # is scale-equivariant; unit-scale X is used as is, bit for bit (input_scale). Through
        # MoEEstimator.fit X is standardised already (this is then a no-op); a direct start
        # (joint_em(init="tensor") on its own X) gets the same rule
        truth = history.truth  # restored at the end (the gating EM records in X / x_scale)
        x_scale = input_scale(rms(X), X.size)
        if x_scale != 1.0:
            X = X / x_scale
            if history.truth is not None:
                t = history.truth
                history.truth = MoEModel(t.experts * x_scale, t.gating * x_scale, t.sigma,
                                         t.activation)
        rng = self._rng()
        times = {"moments": 0.0, "decomposition": 0.0}

        # 1-2. transforms, moments, whitening
        tick = time.perf_counter()
        sigma0 = estimate_sigma(y, activation) if sigma is None else sigma
        coef: Any
        if self.label_transform == "paper":
            coef = transform_coefficients(activation, sigma0)  # ValueError if c2/c3 vanishes
            s2, s3 = apply_transforms(y, coef)
        else:  # the ablation: raw label or plain powers (ValueError if c2 or c3 vanishes)
            coef = ablation_coefficients(self.label_transform, activation, sigma0)
            s2, s3 = ablation_labels(y, self.label_transform)
        self.coefficients_ = coef
        wh = self._whiten(X, s2, k, rng, coef.c2)
        if self.below_sample_complexity_:
            warnings.warn(
                f"tensor_em: only {wh.n_signal} of the k = {k} eigenvalues of T2 kept (sign "
                f"of c2 = {coef.c2:.3g}) clear its noise level {wh.noise_level:.3g}; the "
                "tensor step is below its sample complexity (below_sample_complexity_)",
                RuntimeWarning, stacklevel=3,
            )
        T3w = whitened_third_moment(X, s3, wh.W, chunk_size=self.chunk_size,
                                    backend=self.backend, dtype=DTYPES[self.dtype])
        times["moments"] = time.perf_counter() - tick
        history.record("moments", 0, float("nan"), t2_eigengap=self.t2_eigengap_)

        # 3. decomposition and un-whitening
        tick = time.perf_counter()
        experts, dec = recover_experts(T3w, wh, coef.c3, self.decomposition, rng,
                                       n_starts=self.n_starts, n_iter=self.n_power_iter)
        lam = dec.eigenvalues
        self.tensor_eigenvalues_ = lam.copy()
        self.decomposition_residual_ = dec.residual
        self.tensor_residual_ = dec.residual
        self.tensor_eigengap_ = dec.eigengap
        self.tensor_ill_conditioned_ = dec.ill_conditioned
        with np.errstate(divide="ignore"):
            p = coef.c3**2 / (abs(coef.c2) ** 3 * np.maximum(lam, 1e-300) ** 2)
        self.mixing_weights_ = p / p.sum()
        times["decomposition"] = time.perf_counter() - tick
        gating0 = np.zeros((k, d))
        history.record("decomposition", 0, float("nan"), experts=experts, gating=gating0,
                       decomposition_residual=dec.residual)

        # 4. gating EM with the experts fixed, ridge-penalised (bounded gating)
        if gating:
            tick = time.perf_counter()
            res = gating_em(
                X, y, experts, sigma0, activation, history, stop, update_sigma=sigma is None,
                gating_em_iter=self.gating_em_iter,
                gating_newton_steps=self.gating_newton_steps,
                gating_method=self.gating_method, gating_acceleration=self.gating_acceleration,
                ridge=float(self.ridge), backend=self.backend)
            times["gating_em"] = time.perf_counter() - tick
            self.gating_converged_ = res.converged
            self.gating_n_iter_ = res.n_iter
        else:
            res = EMResult(experts, gating0, float(sigma0), 0, float("nan"), False, "start")
        self.assumption_check_ = gating_orthogonality(res.gating, res.experts)
        self.phase_times_ = times
        if x_scale != 1.0:  # back to the units of the X given here
            res.experts = res.experts / x_scale
            res.gating = res.gating / x_scale
            history.truth = truth
        self.phase_gating_norms_ = {"gating_em" if gating else "start":
                                    float(np.linalg.norm(res.gating))}
        return res
