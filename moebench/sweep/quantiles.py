"""The one quantile helper of the figures and tables: quartiles and the median band.

Every median, interquartile range and band of ``moebench plot`` and ``moebench report``
comes from :func:`quartiles` (final values: the sample-complexity and diagnostics
figures, the report's "median [IQR]" columns) or from :func:`median_band` (curves over
runs: the curves, time and equal-footing figures), which reads each run off a common
grid and calls :func:`quartiles` on it.

**Definition.** The 25%, 50% and 75% points with numpy's default linear interpolation
(Hyndman and Fan's type 7, which pandas' ``quantile`` uses too), so a table's median and
a figure's line are the same number.

**Missing values.** Two cases, one rule each:

* a *final* value that is not finite (a failed run has none) is left out: the tables
  count failures in their own columns;
* a *curve* that has no value yet at a grid point (a run before its first estimate, or
  before its first checkpoint on the time axis) is **censored**: it counts as worse than
  every value, so a quantile that depends on it is undefined (NaN) there. Dropping such
  runs instead would make the early band the band of the fast runs only, an optimistic
  bias exactly where the methods differ; with censoring the median appears once more than
  half the runs have an estimate and the upper quartile once three quarters do, and the
  median of anytime curves never rises (a median over the started runs alone did rise as
  slow runs joined: the time figure of ``results/label_ablation`` showed it).

This one definition replaced two band helpers (the curves figure dropped runs without a
value and drew where half had one; the equal-footing figure censored them) and four
quartile computations. Figures it changes, regenerated with the same data: the time-axis
curves (``moebench plot --kind time`` and each folder's ``figure.png``) where runs start at
different times, e.g. ``results/paper`` time.png (8.3% of pixels); the iteration curves,
the equal-footing figure and every table are unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from moebench.sweep.trajectory import carry_forward


def quartiles(values: object, axis: int | None = None, censored: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lower quartile, median and upper quartile of ``values`` (see the module notes).

    Parameters
    ----------
    values : array_like
        Values; non-finite entries are missing.
    axis : int, optional
        The axis over which to take the quartiles (default: all values).
    censored : bool
        False: leave missing values out (NaN where none is left). True: a missing value
        is worse than every value, and a quartile that depends on one is NaN.

    Returns
    -------
    q1, median, q3 : float or ndarray
        Of the shape of ``values`` without ``axis``.
    """
    v = np.asarray(values, float)
    finite = np.isfinite(v)
    if not censored and axis is None:
        kept = v[finite]
        if kept.size == 0:
            return np.nan, np.nan, np.nan
        q1, med, q3 = np.percentile(kept, [25, 50, 75])
        return q1, med, q3
    if not censored:
        with warnings.catch_warnings():  # an empty group gives NaN by design
            warnings.simplefilter("ignore", RuntimeWarning)
            q1, med, q3 = np.nanpercentile(np.where(finite, v, np.nan), [25, 50, 75], axis=axis)
        return q1, med, q3
    if not finite.any():
        nan = np.full(np.shape(np.sum(v, axis=axis)), np.nan)
        return nan, nan.copy(), nan.copy()
    worst = float(v[finite].max())
    big = np.finfo(float).max / 4  # "no value yet": above every value, still finite
    q1, med, q3 = np.percentile(np.where(finite, v, big), [25, 50, 75], axis=axis)
    med = np.where(med > worst, np.nan, med)
    q1 = np.where(q1 > worst, np.nan, q1)
    q3 = np.where(np.isnan(q1) | (q3 > worst), np.nan, q3)
    return q1, med, q3


def median_band(curves: Sequence[tuple[np.ndarray, np.ndarray]], grid: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and quartiles over runs on ``grid``, each run carried forward
    (:func:`moebench.sweep.trajectory.carry_forward`) and censored before its first value
    (:func:`quartiles` with ``censored=True``).

    Parameters
    ----------
    curves : sequence of (x, y)
        One (positions, values) pair per run, positions non-decreasing.
    grid : ndarray

    Returns
    -------
    median, q1, q3 : ndarray of the shape of ``grid``
    """
    grid = np.asarray(grid, float)
    if not curves:
        nan = np.full(grid.shape, np.nan)
        return nan, nan.copy(), nan.copy()
    vals = np.vstack([carry_forward(x, y, grid) for x, y in curves])
    q1, med, q3 = quartiles(vals, axis=0, censored=True)
    return med, q1, q3

