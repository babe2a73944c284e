"""Label transforms S2, S3 of the tensor method, for any activation.

With Z ~ N(0, 1) and eps ~ N(0, sigma^2), the paper's transforms are

    S3(y) = y^3 + alpha y^2 + beta y,        S2(y) = y^2 + gamma y,

and, averaging over the noise,

    h3(t) = E_eps[S3(g(t) + eps)] = g^3 + 3 sigma^2 g + alpha (g^2 + sigma^2) + beta g,
    h2(t) = E_eps[S2(g(t) + eps)] = g^2 + sigma^2 + gamma g.

The coefficients solve E[h3'(Z)] = E[h3''(Z)] = 0 and E[h2'(Z)] = 0, which makes
the cross-moments with the Gaussian score functions rank-one sums,

    E[S2(y)(x x^T - I)] = c2 sum_i p_i a_i a_i^T,      c2 = E[h2''(Z)],
    E[S3(y)(x^{⊗3} - sym(x ⊗ I))] = c3 sum_i p_i a_i^{⊗3},   c3 = E[h3'''(Z)],

under orthogonal gating (p_i the mixing weights). By Stein's identity
E[h^(m)(Z)] = E[h(Z) He_m(Z)] (probabilists' Hermite polynomials), so only the
Gaussian moments E[g(Z)^p He_m(Z)], p = 1, 2, 3, m = 0..3 are needed. They are
computed by composite Gauss-Legendre quadrature on [-L, L] with panel edges at
the activation's ``kinks`` (and on a fixed grid), so kinked activations such as
relu are integrated to ~1e-13 (plain Gauss-Hermite across a kink is ~1% off).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from moebench.activations import Activation, get_activation

#: half-width of the integration range; phi(38) ~ 1e-314, below float64's range
INTEGRATION_LIMIT = 38.0
#: Gauss-Legendre nodes per panel
GL_ORDER = 48
#: relative size of c2 or c3 (against its Cauchy-Schwarz bound) below which it "vanishes"
VANISHING_TOL = 1e-6
#: floor of the estimated noise variance, relative to mean(y^2)
SIGMA2_FLOOR = 1e-6

_HERMITE: tuple[Callable[[np.ndarray], np.ndarray], ...] = (
    lambda t: np.ones_like(t),
    lambda t: t,
    lambda t: t * t - 1.0,
    lambda t: t * t * t - 3.0 * t,
)


@dataclass(frozen=True)
class TransformCoefficients:
    """Coefficients of S3(y) = y^3 + alpha y^2 + beta y and S2(y) = y^2 + gamma y.

    Attributes
    ----------
    alpha, beta, gamma : float
        Transform coefficients.
    c2 : float
        E[h2''(Z)]: T2 = c2 sum_i p_i a_i a_i^T.
    c3 : float
        E[h3'''(Z)]: T3 = c3 sum_i p_i a_i^{⊗3}.
    sigma : float
        The noise level the coefficients were computed for.
    activation : str
        Name of the activation.
    """

    alpha: float
    beta: float
    gamma: float
    c2: float
    c3: float
    sigma: float
    activation: str


@lru_cache(maxsize=4)
def _gauss_legendre(order: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(order)


def _panel_edges(kinks: tuple[float, ...], limit: float, width: float) -> np.ndarray:
    grid = np.arange(-limit, limit + 0.5 * width, width)
    inner = [float(c) for c in kinks if -limit < float(c) < limit]
    return np.unique(np.concatenate([grid, inner, [-limit, limit]]))


def _quadrature_nodes(
    kinks: tuple[float, ...], width: float = 1.0, order: int = GL_ORDER,
    limit: float = INTEGRATION_LIMIT,
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes t and weights w with sum w f(t) ~ E[f(Z)], panels split at ``kinks``."""
    x, w = _gauss_legendre(order)
    edges = _panel_edges(tuple(kinks), limit, width)
    lo, hi = edges[:-1, None], edges[1:, None]
    half = 0.5 * (hi - lo)
    t = (lo + half * (x[None, :] + 1.0)).ravel()
    wt = (half * w[None, :]).ravel() * np.exp(-0.5 * t * t) / np.sqrt(2.0 * np.pi)
    return t, wt


def _moment_table(g: Callable[[np.ndarray], np.ndarray], t: np.ndarray, w: np.ndarray
                  ) -> np.ndarray:
    """M[p, m] = E[g(Z)^p He_m(Z)] for p = 0..6, m = 0..3."""
    with np.errstate(all="ignore"):
        gv = np.asarray(g(t), dtype=float)
        if gv.shape != t.shape:
            raise ValueError("the activation must be vectorised (same output shape as input)")
        # weights are exactly 0 far out; drop those nodes so overflow there is harmless
        keep = w > 0
        gv, t, w = gv[keep], t[keep], w[keep]
        if not np.all(np.isfinite(gv)):
            raise ValueError(
                "the activation returned NaN or inf inside the Gaussian integration range "
                f"[-{INTEGRATION_LIMIT}, {INTEGRATION_LIMIT}]; it must be finite there"
            )
        powers = np.stack([gv**p for p in range(7)])  # (7, n)
        herm = np.stack([h(t) for h in _HERMITE])  # (4, n)
        table = (powers * w) @ herm.T
    if not np.all(np.isfinite(table)):
        raise ValueError("the Gaussian moments of the activation are not finite")
    return table


def gaussian_moments(activation: str | Activation | Callable, width: float = 1.0,
                     order: int = GL_ORDER) -> np.ndarray:
    """Table of Gaussian moments M[p, m] = E[g(Z)^p He_m(Z)], p = 0..6, m = 0..3.

    Parameters
    ----------
    activation : str, Activation or callable
        The activation g; its ``kinks`` split the quadrature panels.
    width : float
        Panel width of the composite Gauss-Legendre rule.
    order : int
        Nodes per panel.

    Returns
    -------
    ndarray of shape (7, 4)
    """
    act = get_activation(activation)
    t, w = _quadrature_nodes(act.kinks, width, order)
    return _moment_table(act.func, t, w)


def _checked_moments(act: Activation) -> np.ndarray:
    """Moments on two panel widths; warn if they disagree (an undeclared kink)."""
    fine = gaussian_moments(act, width=0.5)
    coarse = gaussian_moments(act, width=1.0)
    rows = slice(1, 4)  # g, g^2, g^3: |E[g^p He_m]| <= sqrt(m! E[g^2p])
    scale = np.sqrt(6.0 * np.abs(fine[2:7:2, :1])) + 1e-300
    if np.max(np.abs(fine[rows] - coarse[rows]) / scale) > 1e-8:
        warnings.warn(
            f"Gaussian moments of activation {act.name!r} change with the quadrature grid; "
            "if it has kinks or jumps, declare them (get_activation(f, kinks=(...)))",
            RuntimeWarning, stacklevel=3,
        )
    return fine


def transform_coefficients(activation: str | Activation | Callable, sigma: float,
                           tol: float = VANISHING_TOL) -> TransformCoefficients:
    """Coefficients alpha, beta, gamma and constants c2, c3 for activation g and noise sigma.

    Solves the 2x2 system E[h3'] = E[h3''] = 0 for (alpha, beta) and E[h2'] = 0 for
    gamma using E[h^(m)(Z)] = E[h(Z) He_m(Z)]. A singular system (e.g. an even g,
    for which E[h3'] = 0 for every alpha, beta) is solved by least squares with the
    minimum-norm solution, and the conditions are checked afterwards.

    Parameters
    ----------
    activation : str, Activation or callable
    sigma : float
        Noise standard deviation (>= 0).
    tol : float
        |c| below ``tol`` times its Cauchy-Schwarz scale sqrt(m! Var h(Z)) counts as 0.

    Returns
    -------
    TransformCoefficients

    Raises
    ------
    ValueError
        When c2 or c3 vanishes: the tensor method cannot identify the experts then
        (e.g. an even activation has c3 = 0; a constant one has c2 = c3 = 0).
    """
    act = get_activation(activation)
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite float >= 0; got {sigma!r}")
    s2 = sigma * sigma
    if act.is_linear:
        alpha, beta, gamma, c2, c3 = 0.0, -3.0 * (1.0 + s2), 0.0, 2.0, 6.0
        return TransformCoefficients(alpha, beta, gamma, c2, c3, sigma, act.name)
    M = _checked_moments(act)

    # h3 = (g^3 + 3 s2 g) + alpha g^2 + beta g + const; Hermite projections m = 1, 2
    base3 = M[3, 1:] + 3.0 * s2 * M[1, 1:]  # (3,) for m = 1, 2, 3
    A = np.array([[M[2, 1], M[1, 1]], [M[2, 2], M[1, 2]]])
    rhs = -base3[:2]
    (alpha, beta), *_ = np.linalg.lstsq(A, rhs, rcond=1e-12)
    resid = A @ np.array([alpha, beta]) - rhs
    scale3 = np.sqrt(max(M[6, 0], 1e-300))
    if np.max(np.abs(resid)) > 1e-8 * max(scale3, 1.0):
        raise ValueError(
            f"no label transform S3 exists for activation {act.name!r}: E[h3'] = E[h3''] = 0 "
            "has no solution, so tensor_em cannot identify the experts with this activation"
        )
    c3 = base3[2] + alpha * M[2, 3] + beta * M[1, 3]

    if abs(M[1, 1]) > 1e-14 * np.sqrt(max(M[2, 0], 1e-300)):
        gamma = -M[2, 1] / M[1, 1]
    elif abs(M[2, 1]) <= 1e-10 * np.sqrt(max(M[4, 0], 1e-300)):
        gamma = 0.0
    else:
        raise ValueError(
            f"no label transform S2 exists for activation {act.name!r}: E[g'(Z)] = 0 but "
            "E[(g^2)'(Z)] != 0, so tensor_em cannot identify the experts with this activation"
        )
    c2 = M[2, 2] + gamma * M[1, 2]

    # Cauchy-Schwarz scales: |E[h He_m]| <= sqrt(m!) sd(h)
    var_h2 = _variance_of_polynomial_in_g(M, [gamma, 1.0])
    var_h3 = _variance_of_polynomial_in_g(M, [beta + 3.0 * s2, alpha, 1.0])
    bad = _first_vanishing(M, (("c2", c2, var_h2, 2.0, "E[h2''(Z)]"),
                               ("c3", c3, var_h3, 6.0, "E[h3'''(Z)]")), tol)
    if bad is not None:
        name, c, bound, fact, expr = bad
        order = {"c2": "second", "c3": "third"}[name]
        raise ValueError(
            f"tensor_em cannot identify the experts with activation {act.name!r}: "
            f"{name} = {expr} = {c:.3g} vanishes (relative to its scale "
            f"sqrt({fact:g} Var h) = {bound:.3g}; tolerance {tol:g}), so the {order}-order "
            "moment tensor carries no information about the experts (an even activation "
            "has c3 = 0, a constant one c2 = c3 = 0)"
        )
    return TransformCoefficients(float(alpha), float(beta), float(gamma), float(c2), float(c3),
                                 sigma, act.name)


def _first_vanishing(M: np.ndarray, constants: tuple, tol: float
                     ) -> tuple[str, float, float, float, str] | None:
    """The first ``(name, c, bound, fact, expr)`` whose constant ``c`` vanishes, else None.

    ``constants`` holds ``(name, c, var, fact, expr)``: ``c`` = E[h He_m] is compared with
    its Cauchy-Schwarz scale ``bound = sqrt(fact Var h)`` (``fact`` = m!); a ``bound``
    below 1e-12 of the sd-scale of g itself (a constant g) also counts as vanishing.
    """
    spread = np.sqrt(max(M[2, 0], 1e-300))
    for name, c, var, fact, expr in constants:
        bound = float(np.sqrt(fact * max(var, 0.0)))
        if not np.isfinite(c) or bound <= 1e-12 * spread or abs(c) <= tol * bound:
            return name, c, bound, fact, expr
    return None


def _variance_of_polynomial_in_g(M: np.ndarray, coefs: list[float]) -> float:
    """Var of sum_j coefs[j] g^(j+1)(Z) from the moment column M[:, 0]."""
    q = np.zeros(len(coefs) + 1)
    q[1:] = coefs
    mean = sum(q[p] * M[p, 0] for p in range(len(q)))
    second = sum(q[p] * q[r] * M[p + r, 0] for p in range(len(q)) for r in range(len(q)))
    return float(second - mean * mean)


def estimate_sigma(y: np.ndarray, activation: str | Activation | Callable,
                   floor: float = SIGMA2_FLOOR) -> float:
    """Moment estimate of the noise level: sigma^2 = mean(y^2) - E[g(Z)^2], floored.

    Under the model, E[y^2] = sum_i E[p_i(x) g(a_i . x)^2] + sigma^2. With unit-norm
    experts, a_i . x ~ N(0, 1); under orthogonal gating p_i(x) is independent of
    a_i . x, so the sum is sum_i E[p_i] E[g(Z)^2] = E[g(Z)^2]. (Under generic gating
    this is only approximate; the gating EM of tensor_em then refines sigma by
    maximum likelihood.) The estimate is clipped below at ``floor * mean(y^2)``
    (and at 1e-12 absolute) so that it stays positive.

    Parameters
    ----------
    y : ndarray of shape (n,)
    activation : str, Activation or callable
    floor : float
        Relative floor of the variance estimate.

    Returns
    -------
    float
        The estimated sigma (> 0).
    """
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or y.size == 0 or not np.all(np.isfinite(y)):
        raise ValueError("y must be a non-empty finite 1-d array to estimate sigma")
    return sigma_from_mean_square(float(np.mean(y * y)), activation, floor)


def sigma_from_mean_square(m2: float, activation: str | Activation | Callable,
                           floor: float = SIGMA2_FLOOR) -> float:
    """:func:`estimate_sigma` from ``m2 = mean(y^2)`` (e.g. reduced from chunk sums).

    The parameters and the result are those of :func:`estimate_sigma`, with the mean
    of the squared labels ``m2`` in place of ``y``.
    """
    act = get_activation(activation)
    eg2 = 1.0 if act.is_linear else float(gaussian_moments(act)[2, 0])
    var = max(m2 - eg2, floor * m2, 1e-12)
    return float(np.sqrt(var))


def apply_transforms(y: np.ndarray, coeffs: TransformCoefficients
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The transformed labels (S2(y), S3(y)).

    Parameters
    ----------
    y : ndarray of shape (n,)
    coeffs : TransformCoefficients

    Returns
    -------
    s2, s3 : ndarrays of shape (n,)
    """
    y = np.asarray(y, dtype=float)
    y2 = y * y
    s2 = y2 + coeffs.gamma * y
    s3 = y * (y2 + coeffs.alpha * y + coeffs.beta)
    return s2, s3


# -- the label-transform ablation -------------------------------------------------------------
#: label transforms of tensor_em: the paper's S2, S3; the raw label (S2 = S3 = y, the
#: score-function moments of mixtures of GLMs with constant weights, Sedghi, Janzamin and
#: Anandkumar 2016); plain powers (S2 = y^2, S3 = y^3: the paper's without its correction terms)
LABEL_TRANSFORMS = ("paper", "raw", "powers")


@dataclass(frozen=True)
class AblationCoefficients:
    """Moment constants of an ablation label transform ("raw" or "powers").

    Attributes
    ----------
    transform : str
        "raw" (S2(y) = S3(y) = y) or "powers" (S2(y) = y^2, S3(y) = y^3).
    c2 : float
        E[h2''(Z)], h2(t) = E_eps[S2(g(t) + eps)]: T2 = c2 sum_i p_i a_i a_i^T at constant
        mixing weights.
    c3 : float
        E[h3'''(Z)]: T3 = c3 sum_i p_i a_i^{⊗3} at constant mixing weights.
    sigma : float
        The noise level the constants were computed for ("raw" does not depend on it).
    activation : str
        Name of the activation.
    """

    transform: str
    c2: float
    c3: float
    sigma: float
    activation: str


def ablation_coefficients(transform: str, activation: str | Activation | Callable,
                          sigma: float = 0.0, tol: float = VANISHING_TOL
                          ) -> AblationCoefficients:
    """Constants c2, c3 of the ablation label transforms; refuse when they vanish.

    With h_m(t) = E_eps[S_m(g(t) + eps)] and Gaussian x, Stein's identity gives, for
    *constant* mixing weights p_i,

        E[S2(y)(x x^T - I)] = E[h2''(Z)] sum_i p_i a_i a_i^T,
        E[S3(y)(x^{⊗3} - sym(x ⊗ I))] = E[h3'''(Z)] sum_i p_i a_i^{⊗3}.

    "raw" (S = y): h2 = h3 = g, so c2 = E[g''(Z)], c3 = E[g'''(Z)]. These vanish for a
    linear g (g'' = 0), for sigmoid and tanh (g - g(0) odd, so E[g''] = 0) and for relu
    and leaky_relu (g'' a point mass at 0, so E[g'''] = -phi'(0) = 0): the raw moments
    identify none of the built-in activations, only a g with E[g''] != 0 and
    E[g'''] != 0 (e.g. exp, a shifted sigmoid, a cubic polynomial).
    "powers" (S2 = y^2, S3 = y^3): h2 = g^2 + sigma^2, h3 = g^3 + 3 sigma^2 g, so
    c2 = E[(g^2)''], c3 = E[(g^3)'''] + 3 sigma^2 E[g''']; for linear g, c2 = 2, c3 = 6.
    Without the paper's correction terms (E[h'] = E[h''] = 0) the cross terms of an
    input-dependent gating, E[p'] E[h'] ..., are not cancelled: both ablations are only
    unbiased at constant mixing weights.

    Parameters
    ----------
    transform : {"raw", "powers"}
    activation : str, Activation or callable
    sigma : float
        Noise standard deviation (>= 0; used by "powers").
    tol : float
        |c| below ``tol`` times its Cauchy-Schwarz scale sqrt(m! Var h(Z)) counts as 0.

    Returns
    -------
    AblationCoefficients

    Raises
    ------
    ValueError
        An unknown transform, or c2 or c3 vanishes (the message names the transform,
        the activation and the vanishing constant).
    """
    if transform not in ("raw", "powers"):
        raise ValueError(f"unknown ablation label_transform {transform!r}; valid choices are "
                         "'raw', 'powers'")
    act = get_activation(activation)
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite float >= 0; got {sigma!r}")
    s2 = sigma * sigma
    M = _checked_moments(act)
    if transform == "raw":
        c2, c3 = M[1, 2], M[1, 3]
        var2 = var3 = _variance_of_polynomial_in_g(M, [1.0])
        what2, what3 = "E[g''(Z)]", "E[g'''(Z)]"
    else:
        c2, c3 = M[2, 2], M[3, 3] + 3.0 * s2 * M[1, 3]
        var2 = _variance_of_polynomial_in_g(M, [0.0, 1.0])
        var3 = _variance_of_polynomial_in_g(M, [3.0 * s2, 0.0, 1.0])
        what2, what3 = "E[(g^2)''(Z)]", "E[(g^3 + 3 sigma^2 g)'''(Z)]"
    hint = ("the raw label identifies only a g with E[g''] != 0 and E[g'''] != 0 (not "
            "linear, sigmoid, tanh, relu or leaky_relu); " if transform == "raw" else "")
    bad = _first_vanishing(M, (("c2", c2, var2, 2.0, what2), ("c3", c3, var3, 6.0, what3)), tol)
    if bad is not None:
        name, c, bound, _, expr = bad
        raise ValueError(
            f"label_transform={transform!r} cannot identify the experts with activation "
            f"{act.name!r}: {name} = {expr} = {c:.3g} vanishes (relative to its scale "
            f"{bound:.3g}; tolerance {tol:g}); {hint}valid choices for this activation: "
            "label_transform='paper'" + (" or 'powers'" if transform == "raw" else "")
        )
    return AblationCoefficients(transform, float(c2), float(c3), sigma, act.name)


def ablation_labels(y: np.ndarray, transform: str) -> tuple[np.ndarray, np.ndarray]:
    """(S2(y), S3(y)) of an ablation transform: (y, y) for "raw", (y^2, y^3) for "powers"."""
    y = np.asarray(y, dtype=float)
    if transform == "raw":
        return y, y
    y2 = y * y
    return y2, y2 * y
