"""Issue 27, item 4: numerics that do not depend on the scale of X.

Scaling X by c > 0 scales tensor_em's experts by 1/c up to rounding, with no cliff
(on main f3f291d the tensor step's expert error was 0.0802 at scale 1 and 1.12 but
0.1413 at 1.08, 0.1073 at 1e-6 and 0.1034 at 1e6); the Dask tensor step equals the
in-memory one at every scale (it stayed at 0.0802), accepts zero-row chunks (failed
with "X is empty"), checks y's length before dask does (dask's internal message) and
refuses sigma=True as the estimators do (it ran as sigma = 1).
"""

from __future__ import annotations

import numpy as np
import pytest

import moebench
from moebench.metrics import parameter_errors
from moebench.tensor.estimator import INPUT_RMS_NOISE_SDS, TensorEM, input_scale

#: scales that are not powers of two (2**m is exact: the fit is bit for bit the same)
SCALES = (1e-6, 0.37, 0.93, 1.08, 1.12, 3.0, 1e6)


@pytest.fixture(scope="module")
def data():
    return moebench.make_moe(20_000, 6, 2, random_state=3)


def _tensor(X, y, **options):
    # gating_em_iter=0: the tensor step alone (its experts, no local search after it)
    return TensorEM(n_experts=2, random_state=0, gating_em_iter=0, **options).fit(X, y)


def _error(est, c, data):
    return parameter_errors(est.experts_ * c, est.gating_ * c, data.model)["expert_error"]


def test_tensor_step_is_scale_equivariant_without_a_cliff(data):
    fits = {c: _tensor(data.X * c, data.y) for c in SCALES}
    ref = fits[SCALES[0]].experts_ * SCALES[0]
    for c, est in fits.items():
        np.testing.assert_allclose(est.experts_ * c, ref, rtol=0, atol=1e-12 * np.abs(ref).max()
                                   * 1e3)  # rounding: 1e-9 of the experts' size
    errors = {c: _error(est, c, data) for c, est in fits.items()}
    assert max(errors.values()) - min(errors.values()) < 1e-9
    assert errors[1.08] == pytest.approx(0.0802, abs=5e-4)
    # unit scale is used as given (the committed results): it differs from the
    # standardised fits by the sampling noise of rms(X) only
    unit = _tensor(data.X, data.y)
    assert abs(_error(unit, 1.0, data) - errors[1.08]) < 1e-3
    for m in (-20, -1, 1, 20):  # powers of two: bit for bit
        np.testing.assert_array_equal(_tensor(np.ldexp(data.X, m), data.y).experts_,
                                      np.ldexp(unit.experts_, -m))


def test_unit_scale_band_is_the_sampling_noise_of_the_rms():
    n_values = 120_000
    band = INPUT_RMS_NOISE_SDS / np.sqrt(2 * n_values)
    assert input_scale(1.0 + 0.9 * band, n_values) == 1.0
    assert input_scale(1.0 + 1.1 * band, n_values) == 1.0 + 1.1 * band
    assert input_scale(1.08, n_values) == 1.08  # was used as given (the 0.1 band)
    assert input_scale(1.09, 100) == 1.0  # never wider than the former 0.1
    assert input_scale(1.11, 100) == 1.11


#: what each algorithm's fit of the unit-scale X (used as given) may differ from the
#: standardised fits by: the sampling noise of rms(X) (measured 7e-5, 5e-12, 1e-15,
#: 8e-8, 3e-7 relative), far below the statistical error
UNIT_SCALE_NOISE = {"tensor_em": 2e-4, "joint_em": 1e-9, "alt_min": 1e-12, "sgd": 1e-6,
                    "spectral_experts": 1e-5}
#: algorithms whose scale check runs on their own model's data, where they converge: the
#: least squares of the regression MoE has no interior minimum on this mixture-density
#: data (L-BFGS-B ends at its budget; the fits of X * c differ by 4-60%, measured)
SCALE_CHECKED_ELSEWHERE = {
    "lse_moe": "tests/test_sigmoid_gating.py::test_least_squares_is_scale_equivariant"}


@pytest.mark.parametrize("name", sorted(UNIT_SCALE_NOISE))
def test_every_algorithm_is_scale_equivariant_up_to_rounding(data, name):
    assert set(UNIT_SCALE_NOISE) | set(SCALE_CHECKED_ELSEWHERE) == set(
        moebench.available_algorithms())

    def fit(c):
        options = {"max_epochs": 20} if name == "sgd" else {}
        return moebench.get_algorithm(name, n_experts=2, random_state=0, **options).fit(
            data.X * c, data.y)

    fits = {c: fit(c) for c in SCALES}
    ref = fits[SCALES[0]].experts_ * SCALES[0]
    size = np.abs(ref).max()
    for c, est in fits.items():  # starts, ridges, steps and moments in standardised units
        np.testing.assert_allclose(est.experts_ * c, ref, rtol=0, atol=1e-9 * size)
        np.testing.assert_allclose(est.gating_ * c, fits[SCALES[0]].gating_ * SCALES[0],
                                   rtol=0, atol=1e-9 * max(1.0, np.abs(est.gating_ * c).max()))
    unit = fit(1.0)
    assert np.abs(unit.experts_ - ref).max() <= UNIT_SCALE_NOISE[name] * size


# ------------------------------------------------------------------------------- Dask
da = pytest.importorskip("dask.array", reason="needs the dask extra")
from moebench.tensor import distributed as dm  # noqa: E402 (after the importorskip)


@pytest.mark.parametrize("c", [1.0, 1e-6, 1.08, 1e6])
def test_dask_tensor_step_equals_the_in_memory_one_at_every_scale(data, c):
    X = data.X * c
    res = dm.tensor_step(da.from_array(X, chunks=(4096, 6)), da.from_array(data.y, chunks=4096),
                         2, random_state=0)
    est = _tensor(X, data.y)
    np.testing.assert_allclose(res.experts, est.experts_, rtol=0,
                               atol=1e-8 * np.abs(est.experts_).max())


def test_dask_accepts_zero_row_chunks(data):
    mask = np.ones(len(data.y), bool)
    mask[4096:8192] = False  # the whole second block
    keep = da.from_array(mask, chunks=4096)  # a lazy mask: chunk sizes unknown (nan)
    Xd = da.from_array(data.X, chunks=(4096, 6))[keep]
    yd = da.from_array(data.y, chunks=4096)[keep]
    Xd, yd = Xd.compute_chunk_sizes(), yd.compute_chunk_sizes()
    assert 0 in Xd.chunks[0]
    res = dm.tensor_step(Xd, yd, 2, random_state=0)
    est = _tensor(data.X[mask], data.y[mask])
    np.testing.assert_allclose(res.experts, est.experts_, rtol=0, atol=1e-10)
    T2 = dm.second_moment(Xd, yd)
    assert np.all(np.isfinite(T2))


@pytest.mark.parametrize("y_kind", ["numpy", "dask"])
def test_dask_checks_the_length_of_y(data, y_kind):
    Xd = da.from_array(data.X, chunks=(4096, 6))
    y = data.y[:-5] if y_kind == "numpy" else da.from_array(data.y[:-5], chunks=4096)
    with pytest.raises(ValueError, match=r"^y must have shape \(n,\) = \(20000,\) like X's rows; "
                                         r"got shape \(19995,\)$"):
        dm.tensor_step(Xd, y, 2)


@pytest.mark.parametrize("sigma", [True, False, "0.1", np.nan])
def test_dask_refuses_sigma_as_the_estimators_do(data, sigma):
    Xd = da.from_array(data.X, chunks=(4096, 6))
    with pytest.raises(ValueError, match="sigma must be a finite real number > 0") as dask_error:
        dm.tensor_step(Xd, data.y, 2, sigma=sigma)
    with pytest.raises(ValueError) as fit_error:
        TensorEM(n_experts=2, sigma=sigma).fit(data.X, data.y)
    assert str(fit_error.value).endswith(str(dask_error.value))
