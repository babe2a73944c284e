"""The moments and the tensor step on Dask arrays equal the in-memory ones (issue 13 item 5).

Computed on a ``dask.distributed.LocalCluster`` on 127.0.0.1 (two worker processes): each
task returns one row block's partial sum, the client reduces them.
"""

from __future__ import annotations

import numpy as np
import pytest

from moebench.generator import make_moe
from moebench.tensor import moments
from moebench.tensor.estimator import TensorEM
from moebench.tensor.label_transforms import apply_transforms, transform_coefficients
from moebench.tensor.whitening import whiten

da = pytest.importorskip("dask.array", reason="needs the dask extra: pip install 'moebench[dask]'")
distributed = pytest.importorskip("dask.distributed")

from moebench.tensor import distributed as dm  # noqa: E402 (after the importorskip)

TOL = 1e-10


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def data():
    return make_moe(12_000, 7, 3, activation="relu", sigma=0.1, random_state=3)


def _weights(data):
    coef = transform_coefficients("relu", 0.1)
    return apply_transforms(data.y, coef)  # s2 has negative entries: both SYRK paths run


# uneven row blocks, and column blocks (merged into whole rows by the tasks)
CHUNKS = {"rows": (2500, 7), "rows-and-columns": ((5000, 4000, 3000), (3, 4)),
          "one-block": (12_000, 7)}


@pytest.mark.parametrize("chunks", list(CHUNKS.values()), ids=list(CHUNKS))
def test_second_moment_equals_in_memory(client, data, chunks):
    s2, _ = _weights(data)
    Xd = da.from_array(data.X, chunks=chunks)
    got = dm.second_moment(Xd, da.from_array(s2, chunks=1000))
    want = moments.second_moment(data.X, s2)
    assert got.shape == (7, 7)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    assert np.array_equal(got, got.T)


@pytest.mark.parametrize("chunks", list(CHUNKS.values()), ids=list(CHUNKS))
def test_whitened_third_moment_equals_in_memory(client, data, chunks):
    s2, s3 = _weights(data)
    W = whiten(moments.second_moment(data.X, s2), 3).W
    got = dm.whitened_third_moment(da.from_array(data.X, chunks=chunks), s3, W)
    want = moments.whitened_third_moment(data.X, s3, W)
    assert got.shape == (3, 3, 3)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


@pytest.mark.parametrize("method", ["eigh", "randomized"])
def test_whitening_equals_in_memory(client, data, method):
    s2, _ = _weights(data)
    Xd = da.from_array(data.X, chunks=(3000, 7))
    op = dm.DaskSecondMomentOperator(Xd, s2)
    mem = moments.SecondMomentOperator(data.X, s2)
    got = whiten(op, 3, method, n_extra=1, random_state=4)
    want = whiten(mem, 3, method, n_extra=1, random_state=4)
    np.testing.assert_allclose(got.W, want.W, rtol=0, atol=TOL)
    np.testing.assert_allclose(got.leading_eigvals, want.leading_eigvals, rtol=0, atol=TOL)
    assert op.n_passes == mem.n_passes >= 1


@pytest.mark.parametrize("activation, sigma, whitening, scale", [
    ("linear", None, "eigh", 1.0),
    ("relu", 0.1, "eigh", 1.0),
    ("sigmoid", None, "randomized", 1.0),
    ("relu", None, "eigh", 3.0),  # X off unit rms: divided by its rms inside the tasks
], ids=["linear-sigma-estimated", "relu-sigma-given", "sigmoid-randomized", "relu-rescaled"])
def test_tensor_step_equals_tensor_em(client, activation, sigma, whitening, scale):
    d = make_moe(20_000, 6, 3, activation=activation, sigma=0.1, random_state=8)
    X = d.X * scale
    res = dm.tensor_step(da.from_array(X, chunks=(4096, 6)), da.from_array(d.y, chunks=4096),
                         3, activation, sigma, random_state=5, whitening=whitening)
    # gating_em_iter=0: the estimator stops after its tensor step; its experts are the step's
    est = TensorEM(n_experts=3, activation=activation, sigma=sigma, random_state=5,
                   whitening=whitening, gating_em_iter=0).fit(X, d.y)
    np.testing.assert_allclose(res.experts, est.experts_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.whitening.leading_eigvals, est.t2_eigenvalues_, rtol=1e-10)
    assert res.whitening.noise_level == pytest.approx(est.t2_noise_level_, rel=1e-12)
    assert res.whitening.below_sample_complexity == est.below_sample_complexity_
    assert res.decomposition.ill_conditioned == est.tensor_ill_conditioned_
    assert res.x_scale == pytest.approx(scale, rel=0.05)
    assert (res.T2 is None) == (whitening == "randomized")
    if sigma is None:
        assert res.sigma == pytest.approx(est.coefficients_.sigma, rel=1e-12)


def test_the_blocks_are_computed_on_the_workers(client, data):
    s2, _ = _weights(data)
    Xd = da.from_array(data.X, chunks=(3000, 7))  # 4 row blocks
    with distributed.get_task_stream(client) as stream:
        dm.second_moment(Xd, s2)
    tasks = [t for t in stream.data if "_t2_sum" in str(t["key"])]
    assert len(tasks) == 4
    assert {t["worker"] for t in tasks} <= set(client.scheduler_info()["workers"])


@pytest.mark.parametrize("call, match", [
    (lambda X, y: dm.tensor_step(np.asarray(X), y, 3), "X must be a dask.array"),
    (lambda X, y: dm.tensor_step(X, y[:-1], 3), r"y must have shape \(n,\)"),
    (lambda X, y: dm.tensor_step(X, y, 8), "n_experts"),
    (lambda X, y: dm.tensor_step(X[:200], y[:200], 3), "at least max"),
    (lambda X, y: dm.tensor_step(X, y, 3, whitening="svd"), "whitening"),
    (lambda X, y: dm.tensor_step(X, y, 3, sigma=-1.0), "sigma"),
    (lambda X, y: dm.tensor_step(X[:, 0], y, 3), "2-dimensional"),
], ids=["numpy-X", "short-y", "k-above-d", "too-few-rows", "bad-whitening", "bad-sigma",
        "1-d-X"])
def test_bad_input_raises_value_error(client, data, call, match):
    Xd = da.from_array(data.X, chunks=(3000, 7))
    yd = da.from_array(data.y, chunks=3000)
    with pytest.raises(ValueError, match=match):
        call(Xd, yd)


def test_nonfinite_rows_raise(client, data):
    X = data.X.copy()
    X[5000, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        dm.tensor_step(da.from_array(X, chunks=(3000, 7)), data.y, 3, "relu")
