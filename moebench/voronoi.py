"""Voronoi losses between a fitted mixture and the truth (Nguyen et al., NeurIPS 2023).

Every expert is an *atom* ``(beta0, beta1, b, a, v)``: gating bias, gating
weights, expert intercept, expert weights and noise variance ``v = sigma^2``,
gates stored with the last expert as reference (its gate 0). Fitted atom ``i``
falls in the Voronoi cell ``A_j`` of the true atom ``j`` nearest under::

    dist(i, j) = |beta1_i - beta1*_j| + |b_i - b*_j| + |a_i - a*_j| + |v_i - v*_j|

(Euclidean norms for d > 1; ties go to the lower ``j``). With ``D_ij = dist(i, j)``
and ``r = rbar(|A_j|)`` the loss is::

    sum_{j: |A_j| = 1} exp(beta0_i) D_ij
    + sum_{j: |A_j| >= 2} sum_{i in A_j} exp(beta0_i) (|d beta1|^r + |d b|^r
                                                        + |d a|^(r/2) + |d v|^(r/2))
    + sum_j |sum_{i in A_j} exp(beta0_i) - exp(beta0*_j)|

with ``rbar(2) = 4`` and ``rbar(3) = 6`` (the values the paper proves); larger
cells raise ``ValueError`` unless the caller supplies their exponent.

``translation=True`` minimises the loss over a common translation
``(t0, t1)`` of every fitted gate (the softmax is unchanged by it, so this loss is
identifiable). Given ``t1`` the loss is convex and piecewise linear in
``u = exp(t0)``, so ``t0`` is exact: the best of the breakpoints
``u = exp(beta0*_j) / sum_{i in A_j} exp(beta0_i)`` and ``u = 1``. (When the loss
rises in ``u`` from 0 its infimum, ``sum_j exp(beta0*_j)`` as ``t0 -> -inf``, is
not attained by any translation and is not used.) ``t1`` is searched: for d = 1
a grid of :data:`TRANSLATION_GRID` points over the span of the alignment shifts
``beta1*_j - beta1_i`` (widened by 1 on each side), then bounded Brent refinement
around the best :data:`TRANSLATION_STARTS` grid points to ``|dt1| <`` 1e-10; for
d > 1 Nelder–Mead from the :data:`TRANSLATION_NM_STARTS` alignment shifts of lowest loss
(``xatol`` 1e-8, ``fatol`` 1e-13, at most 400 d iterations each).
``t = 0`` is always a candidate, so the translated loss never exceeds the plain
one. Cells change with ``t1``: translations that would make a cell larger than
the known ``rbar`` are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar

RBAR: dict[int, float] = {2: 4.0, 3: 6.0}
"""rbar(m) for a Voronoi cell of m >= 2 fitted atoms (Nguyen et al. 2023)."""

TRANSLATION_GRID = 2001
TRANSLATION_STARTS = 5
TRANSLATION_XTOL = 1e-10
TRANSLATION_NM_STARTS = 3
TRANSLATION_NM_XTOL = 1e-8


@dataclass(frozen=True)
class Atoms:
    """The parameters of k experts as Voronoi atoms.

    Parameters
    ----------
    beta0 : ndarray of shape (k,)
        Gating biases.
    beta1 : ndarray of shape (k, d)
        Gating weights.
    b : ndarray of shape (k,)
        Expert intercepts.
    a : ndarray of shape (k, d)
        Expert weights.
    v : ndarray of shape (k,)
        Noise variances (sigma squared).
    """

    beta0: np.ndarray
    beta1: np.ndarray
    b: np.ndarray
    a: np.ndarray
    v: np.ndarray

    @classmethod
    def from_model(cls, model: Any, name: str = "model") -> Atoms:
        """The atoms of a :class:`~moebench.model.MoEModel` (absent biases are 0)."""
        for attr in ("experts", "gating", "sigma"):
            if not hasattr(model, attr):
                raise ValueError(
                    f"{name} must be an MoEModel or Atoms (with experts, gating, sigma); "
                    f"got {type(model).__name__}"
                )
        a = np.asarray(model.experts, dtype=float)
        k = a.shape[0] if a.ndim == 2 else 0
        beta0 = getattr(model, "gating_bias", None)
        b = getattr(model, "expert_bias", None)
        sigma = np.broadcast_to(np.asarray(model.sigma, dtype=float), (k,))
        return cls(
            beta0=np.zeros(k) if beta0 is None else np.asarray(beta0, dtype=float),
            beta1=np.asarray(model.gating, dtype=float),
            b=np.zeros(k) if b is None else np.asarray(b, dtype=float),
            a=a,
            v=sigma**2,
        ).checked(name)

    def checked(self, name: str = "atoms") -> Atoms:
        """Validated float copies: shapes agree, values finite, variances positive."""
        beta1 = np.asarray(self.beta1, dtype=float)
        a = np.asarray(self.a, dtype=float)
        if beta1.ndim != 2 or a.shape != beta1.shape:
            raise ValueError(
                f"{name}: gating and experts must have the same shape (k, d); got "
                f"{beta1.shape} and {a.shape}"
            )
        k = a.shape[0]
        vecs = {n: np.asarray(getattr(self, n), dtype=float) for n in ("beta0", "b", "v")}
        for n, arr in vecs.items():
            if arr.shape != (k,):
                raise ValueError(f"{name}: {n} must have shape ({k},); got {arr.shape}")
        for n, arr in {"beta1": beta1, "a": a, **vecs}.items():
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name}: {n} contains NaN or infinite values")
        if k < 1:
            raise ValueError(f"{name} has no experts")
        if np.any(vecs["v"] <= 0):
            raise ValueError(f"{name}: variances must be positive; got {vecs['v']}")
        return Atoms(vecs["beta0"], beta1, vecs["b"], a, vecs["v"])

    def canonical(self) -> Atoms:
        """The same atoms with the last gate (bias and weights) shifted to 0."""
        return Atoms(self.beta0 - self.beta0[-1], self.beta1 - self.beta1[-1],
                     self.b, self.a, self.v)


def _as_atoms(obj: Any, name: str) -> Atoms:
    return obj.checked(name) if isinstance(obj, Atoms) else Atoms.from_model(obj, name)


def _rbar_table(k: int, rbar: Mapping[int, float] | None) -> np.ndarray:
    table = dict(RBAR)
    if rbar is not None:
        for m, r in rbar.items():
            if int(m) < 2 or not np.isfinite(r) or r <= 0:
                raise ValueError(f"rbar needs cell sizes >= 2 mapped to positive exponents; "
                                 f"got {m!r}: {r!r}")
            table[int(m)] = float(r)
    out = np.full(k + 1, np.nan)
    for m, r in table.items():
        if m <= k:
            out[m] = r
    return out


def _losses(fit: Atoms, true: Atoms, t1: np.ndarray, rtab: np.ndarray, *,
            optimise_t0: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Loss minimised over t0 for each row of ``t1`` (shape (m, d)); also the best t0.

    With ``optimise_t0=False`` the loss at t0 = 0.

    Rows whose cells include a size without a known rbar get ``inf``.
    """
    m = t1.shape[0]
    k_fit, k_true = fit.a.shape[0], true.a.shape[0]
    d_beta1 = np.linalg.norm(
        (fit.beta1[None, :, None, :] + t1[:, None, None, :]) - true.beta1[None, None, :, :],
        axis=-1)                                                    # (m, K, J)
    d_b = np.abs(fit.b[:, None] - true.b[None, :])                  # (K, J)
    d_a = np.linalg.norm(fit.a[:, None, :] - true.a[None, :, :], axis=-1)
    d_v = np.abs(fit.v[:, None] - true.v[None, :])
    dist = d_beta1 + (d_b + d_a + d_v)[None]
    cell = np.argmin(dist, axis=2)                                  # (m, K)
    rows = np.arange(m)[:, None]
    counts = np.zeros((m, k_true), dtype=int)
    np.add.at(counts, (np.broadcast_to(rows, cell.shape), cell), 1)
    size = np.take_along_axis(counts, cell, axis=1)                 # (m, K)
    r = rtab[size]                                                  # nan for size 1
    pick = cell[:, :, None]
    db1 = np.take_along_axis(d_beta1, pick, axis=2)[..., 0]
    fixed = np.broadcast_to(np.arange(k_fit)[None, :], cell.shape)
    db, da, dv = (x[fixed, cell] for x in (d_b, d_a, d_v))
    single = db1 + db + da + dv
    with np.errstate(invalid="ignore"):
        multi = db1**r + db**r + da ** (r / 2) + dv ** (r / 2)
    term = np.where(size == 1, single, multi)
    weight = np.exp(fit.beta0)[None, :]
    bad = np.any((size > 1) & np.isnan(r), axis=1)
    cost = np.sum(weight * np.where(np.isnan(term), 0.0, term), axis=1)  # (m,)
    mass = np.zeros((m, k_true))
    np.add.at(mass, (np.broadcast_to(rows, cell.shape), cell),
              np.broadcast_to(weight, cell.shape))
    target = np.exp(true.beta0)[None, :]
    with np.errstate(divide="ignore"):
        breaks = np.where(mass > 0, target / mass, np.nan)
    ones = np.ones((m, 1))
    u = np.concatenate([ones, breaks], axis=1) if optimise_t0 else ones  # (m, J + 1)
    value = u * cost[:, None] + np.sum(
        np.abs(u[:, :, None] * mass[:, None, :] - target[:, None, :]), axis=2)
    value = np.where(np.isnan(value), np.inf, value)
    best = np.argmin(value, axis=1)
    loss = value[np.arange(m), best]
    loss[bad] = np.inf
    return loss, np.log(u[np.arange(m), best])


def _search_t1(fit: Atoms, true: Atoms, rtab: np.ndarray) -> float:
    d = fit.a.shape[1]
    zero = np.zeros((1, d))
    best = float(_losses(fit, true, zero, rtab)[0][0])
    shifts = (true.beta1[None, :, :] - fit.beta1[:, None, :]).reshape(-1, d)

    def f(t: np.ndarray) -> float:
        return float(_losses(fit, true, np.asarray(t, float).reshape(1, d), rtab)[0][0])

    if d == 1:
        lo, hi = shifts.min() - 1.0, shifts.max() + 1.0
        grid = np.unique(np.concatenate([np.linspace(lo, hi, TRANSLATION_GRID), shifts[:, 0]]))
        values = _losses(fit, true, grid[:, None], rtab)[0]
        step = (hi - lo) / (TRANSLATION_GRID - 1)
        for idx in np.argsort(values, kind="stable")[:TRANSLATION_STARTS]:
            if not np.isfinite(values[idx]):
                continue
            best = min(best, float(values[idx]))
            res = minimize_scalar(
                lambda t: f(np.array([t])), method="bounded",
                bounds=(grid[idx] - step, grid[idx] + step),
                options={"xatol": TRANSLATION_XTOL})
            best = min(best, float(res.fun))
        return best
    values = _losses(fit, true, shifts, rtab)[0]
    order = np.argsort(values, kind="stable")[:TRANSLATION_NM_STARTS]
    for start in shifts[order]:
        if not np.isfinite(f(start)):
            continue
        res = minimize(f, start, method="Nelder-Mead",
                       options={"xatol": TRANSLATION_NM_XTOL, "fatol": 1e-13,
                                "maxiter": 400 * d})
        best = min(best, float(res.fun), f(start))
    return best


def voronoi_loss(
    fitted: Any, truth: Any, *, translation: bool = False,
    rbar: Mapping[int, float] | None = None,
) -> float:
    """Voronoi loss between a fitted mixture and the truth (module docstring: formula).

    Parameters
    ----------
    fitted, truth : MoEModel or Atoms
        The fitted and the true mixtures; their numbers of experts may differ, their
        input dimensions may not. Gates are compared with the last expert as reference.
    translation : bool
        Minimise over a common translation of the fitted gates (the identifiable loss).
    rbar : mapping of int to float, optional
        Exponents for cells of more than 3 atoms (added to ``RBAR``).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For shapes that disagree, non-finite parameters, non-positive variances, or a
        cell (at no translation) whose size has no known rbar.
    """
    fit = _as_atoms(fitted, "fitted").canonical()
    true = _as_atoms(truth, "truth").canonical()
    if fit.a.shape[1] != true.a.shape[1]:
        raise ValueError(f"fitted has d = {fit.a.shape[1]} inputs, truth d = {true.a.shape[1]}")
    rtab = _rbar_table(fit.a.shape[0], rbar)
    d = fit.a.shape[1]
    plain = float(_losses(fit, true, np.zeros((1, d)), rtab, optimise_t0=False)[0][0])
    if not np.isfinite(plain):
        known = sorted(m for m in range(2, len(rtab)) if np.isfinite(rtab[m]))
        raise ValueError(
            f"a Voronoi cell holds more fitted atoms than rbar is known for (known cell "
            f"sizes: {known}); pass rbar={{m: r}} to choose the exponent")
    if not translation:
        return plain
    return min(plain, _search_t1(fit, true, rtab))
