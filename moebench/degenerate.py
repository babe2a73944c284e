"""Degenerate data and fits: the thresholds, :class:`DegenerateFitError` and the checks.

:meth:`moebench.MoEEstimator.fit` refuses data no mixture can be fitted to before any
work (:func:`check_scales`, :func:`check_degenerate_data`, :func:`check_min_samples`)
and a fit that must not be used as a result after it (a collapsed noise level, an absurd
log-likelihood: :data:`SIGMA_COLLAPSE_RTOL`, :func:`absurd_log_likelihood`); sweeps
record such a run with status ``"degenerate"``.
"""

from __future__ import annotations

import numpy as np

from moebench.validation import rms

#: largest |y| accepted by ``fit``: the tensor method cubes y (S3) and multiplies it by
#: cubic terms of x, and the likelihood squares residuals; 1e100 keeps both far from
#: float64 overflow (~1.8e308)
Y_MAX_ABS = 1e100
#: smallest root-mean-square of y accepted by ``fit`` (cubes of y below ~1e-108 underflow)
Y_MIN_RMS = 1e-100
#: a fit whose sigma_ is below this fraction of rms(y) has collapsed onto the data
SIGMA_COLLAPSE_RTOL = 1e-5
#: a mean log-likelihood more than this many nats per sample below the null model
#: N(0, rms(y)^2) (see :func:`null_log_likelihood`) is absurd
ABSURD_LL_MARGIN = 100.0

LOG_2PI = float(np.log(2.0 * np.pi))


class DegenerateFitError(ValueError):
    """A fit that must not be used as a result, with the reason in its message.

    Raised by :meth:`moebench.MoEEstimator.fit` when there are fewer rows than the
    model has parameters or the data are degenerate (constant labels, identical rows:
    :func:`check_degenerate_data`), both checked before any work, when the fitted noise level
    collapses towards 0 relative to the scale of y (``sigma_ <``
    :data:`SIGMA_COLLAPSE_RTOL` ``* rms(y)``), or when the training log-likelihood is
    absurd (more than :data:`ABSURD_LL_MARGIN` nats per sample below the null model
    N(0, rms(y)^2)). Sweeps record such a run with status ``"degenerate"``.
    A subclass of ValueError, so ``except ValueError`` still catches it.
    """


def check_scales(X: np.ndarray, y: np.ndarray) -> None:
    """Refuse an identically-zero X or y and a y whose magnitude is outside the float range.

    X of any (nonzero) scale is accepted: ``fit`` rescales it by a power of two.
    y is not rescaled (nonlinear experts are not equivariant in y's scale), so its
    magnitude must lie in [:data:`Y_MIN_RMS`, :data:`Y_MAX_ABS`].
    """
    if not np.any(X):
        raise ValueError("X is identically 0; the experts and the gating are not identifiable")
    if not np.any(y):
        raise ValueError("y is identically 0 (noiseless and constant): there is nothing to fit "
                         "and the likelihood is unbounded")
    top, r = float(np.max(np.abs(y))), rms(y)
    if top > Y_MAX_ABS or r < Y_MIN_RMS:
        raise ValueError(
            f"y has scale rms(y) = {r:.3g} (max |y| = {top:.3g}), outside the supported range "
            f"[{Y_MIN_RMS:g}, {Y_MAX_ABS:g}]: its cube (label transform S3) and squared residuals "
            f"would overflow or underflow float64; rescale y, e.g. y / y.std()"
        )


def n_parameters(n_features: int, n_experts: int, estimate_sigma: bool = True) -> int:
    """Free parameters of a mixture of experts: k d experts, (k - 1) d gating, sigma.

    The gating's last row is fixed at 0 (only row differences are identifiable);
    sigma counts when it is estimated.
    """
    return n_experts * n_features + (n_experts - 1) * n_features + int(estimate_sigma)


#: rows compared per block by :func:`check_degenerate_data` (it stops at the first
#: block that differs: one block for ordinary data)
DEGENERATE_CHECK_ROWS = 65_536


def _all_rows_equal(a: np.ndarray) -> bool:
    """Whether every row of ``a`` (n, ...) equals its first, compared block by block."""
    first = np.asarray(a[0])
    for start in range(0, a.shape[0], DEGENERATE_CHECK_ROWS):
        if not np.array_equal(np.asarray(a[start:start + DEGENERATE_CHECK_ROWS]),
                              np.broadcast_to(first, (min(DEGENERATE_CHECK_ROWS,
                                                          a.shape[0] - start), *first.shape))):
            return False
    return True


def check_degenerate_data(X: np.ndarray, y: np.ndarray, who: str = "this estimator") -> None:
    """Refuse data no mixture can be fitted to, before any work (:class:`DegenerateFitError`).

    The one rule every registered algorithm applies (``fit`` calls it after the
    checks of shapes, values and scales):

    - zero-variance labels (every ``y`` equal): nothing for the experts to explain, and
      the likelihood is unbounded as sigma goes to 0;
    - all rows of ``X`` identical: the inputs carry no information on the experts or the
      gating (only their value at that one point), so no parameter is identifiable.

    Raises
    ------
    DegenerateFitError
        Naming what is degenerate and what would be needed.
    """
    n = X.shape[0]
    if n >= 2 and _all_rows_equal(np.asarray(y).reshape(n, 1)):
        raise constant_labels_error(who, n, float(y[0]))
    if n >= 2 and _all_rows_equal(X):
        raise identical_rows_error(who, n)


def constant_labels_error(who: str, n: int, value: float) -> DegenerateFitError:
    """The error of :func:`check_degenerate_data` for zero-variance labels."""
    return DegenerateFitError(
        f"{who} cannot fit this data: y is constant (all {n} labels equal {value:.6g}, zero "
        f"variance), so there is nothing for the experts to explain and the likelihood is "
        f"unbounded as sigma goes to 0; give labels that vary")


def identical_rows_error(who: str, n: int) -> DegenerateFitError:
    """The error of :func:`check_degenerate_data` for an X whose rows are all the same."""
    return DegenerateFitError(
        f"{who} cannot fit this data: every row of X is the same (all {n} rows equal the "
        f"first, zero variance in every column), so neither the experts nor the gating are "
        f"identifiable; give inputs that vary")


def check_min_samples(n: int, d: int, k: int, estimate_sigma: bool = True,
                      who: str = "this estimator") -> None:
    """Refuse fewer rows than parameters, before any work (:class:`DegenerateFitError`)."""
    p = n_parameters(d, k, estimate_sigma)
    if n < p:
        raise DegenerateFitError(
            f"{who} needs at least n = {p} rows (the number of parameters: k d = {k * d} "
            f"experts + (k - 1) d = {(k - 1) * d} gating + {int(estimate_sigma)} sigma, "
            f"for k = {k}, d = {d}); got n = {n}: with fewer rows than parameters the fit "
            f"interpolates the data and its sigma collapses"
        )


def null_log_likelihood(y: np.ndarray, scale: float | None = None) -> float:
    """Mean log-density of ``y`` under N(0, scale^2); ``scale`` defaults to rms(y).

    The reference of :func:`check_log_likelihood`: a model that predicts 0 with the
    data's own spread, attainable by every linear mixture (all experts 0).
    """
    y = np.asarray(y, dtype=float)
    s = rms(y) if scale is None else float(scale)
    return float(-0.5 * np.mean(np.square(y / s)) - np.log(s) - 0.5 * LOG_2PI)


def absurd_log_likelihood(log_likelihood: float, y: np.ndarray,
                          scale: float | None = None) -> str | None:
    """Why a mean log-likelihood on ``y`` is absurd, or None when it is plausible.

    Absurd: not finite, or more than :data:`ABSURD_LL_MARGIN` nats per sample below
    :func:`null_log_likelihood` (``scale``: the rms of the training labels; default
    rms(y)), i.e. residuals of order 14 times the labels' own scale.
    """
    ll = float(log_likelihood)
    null = null_log_likelihood(y, scale)
    if not np.isfinite(ll):
        return f"the mean log-likelihood is {ll}"
    if ll < null - ABSURD_LL_MARGIN:
        return (f"the mean log-likelihood {ll:.4g} is more than {ABSURD_LL_MARGIN:g} nats per "
                f"sample below {null:.4g}, that of the null model N(0, rms(y)^2)")
    return None
