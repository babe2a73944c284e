"""The fused AVX2 moment kernels (``moebench/_fused.c``) against numpy's BLAS path."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from moebench import backend
from moebench.tensor import moments
from moebench.tensor.moments import second_moment, whitened_third_moment

fused_only = pytest.mark.skipif(not backend.FUSED_KERNELS,
                                reason="the fused kernels are not built or this CPU lacks AVX2")


def _blas(monkeypatch, fn, *args, **kw):
    with monkeypatch.context() as m:
        m.setattr(backend, "FUSED_KERNELS", False)
        return fn(*args, **kw)


def _data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    W = np.linalg.qr(rng.standard_normal((d, k)))[0] / 2
    return X, y, W


@fused_only
@pytest.mark.parametrize(("n", "d", "k"), [(1003, 37, 10), (4099, 10, 3), (2600, 100, 12),
                                           (517, 5, 1), (3001, 20, 7)])
def test_fused_kernels_equal_the_blas_path(monkeypatch, n, d, k):
    """Shapes off every block size (4 rows, 6 x 8 tiles, 128- and 256-row blocks), k from 1
    to 12, s2 of one sign and of both: equal to 1e-12 relative."""
    X, y, W = _data(n, d, k)
    for s2 in (y**2, y**2 - 1.0):
        got, ref = second_moment(X, s2), _blas(monkeypatch, second_moment, X, s2)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
        assert np.array_equal(got, got.T)
    s3 = y**3 - 3.0 * y
    got, ref = whitened_third_moment(X, s3, W), _blas(monkeypatch, whitened_third_moment, X, s3, W)
    assert got.shape == (k, k, k)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    assert np.allclose(got, got.transpose(1, 0, 2)) and np.allclose(got, got.transpose(2, 1, 0))


@fused_only
def test_fused_kernels_read_a_memmap(tmp_path, monkeypatch):
    X, y, W = _data(2000, 30, 4)
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert moments._fused_input(Xm, moments.get_backend("numpy"), np.dtype(np.float64)) is Xm
    np.testing.assert_allclose(second_moment(Xm, y), _blas(monkeypatch, second_moment, X, y),
                               rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(whitened_third_moment(Xm, y, W),
                               _blas(monkeypatch, whitened_third_moment, X, y, W),
                               rtol=1e-12, atol=1e-13)


@fused_only
def test_what_the_fused_kernels_do_not_take_goes_to_blas(monkeypatch):
    """Non-contiguous X, float32 compute, the torch backend and k > 12 take the BLAS path
    (the fused kernels are never called), with the same results."""
    X, y, W = _data(600, 24, 13)

    def refuse(*args):
        raise AssertionError("fused kernel called")

    be = moments.get_backend("numpy")
    assert moments._fused_input(np.asfortranarray(X), be, np.dtype(np.float64)) is None
    assert moments._fused_input(X, be, np.dtype(np.float32)) is None  # cast per chunk
    assert moments._fused_input(X.astype(np.float32), be, np.dtype(np.float64)) is None
    assert moments._fused_input(X, moments.get_backend("torch"), np.dtype(np.float64)) is None
    monkeypatch.setattr(backend._fused, "wsyrk", refuse)
    monkeypatch.setattr(backend._fused, "wt3", refuse)
    T3 = whitened_third_moment(X, y, W)  # k = 13
    assert T3.shape == (13, 13, 13)
    T2 = second_moment(np.asfortranarray(X), y)
    np.testing.assert_allclose(T2, _blas(monkeypatch, second_moment, X, y), rtol=1e-12,
                               atol=1e-13)
    T3_32 = whitened_third_moment(X, y, W[:, :5], dtype=np.float32)  # float32 compute
    assert T3_32.shape == (5, 5, 5)
    with pytest.raises(AssertionError, match="fused kernel called"):
        second_moment(X, y)


@fused_only
@pytest.mark.parametrize(("n", "d", "k"), [(3001, 40, 10), (1037, 13, 12), (700, 9, 1)])
def test_fused_float32_third_moment(monkeypatch, n, d, k):
    """dtype=float32 with X stored as float32: the float32 kernel (6-row blocks, 1024-row
    float32 sums) within 1e-5 of the float64 result, as close as the BLAS float32 path;
    float32 T2 stays on the BLAS path."""
    X, y, W = _data(n, d, k)
    s3 = y**3 - 3.0 * y
    exact = _blas(monkeypatch, whitened_third_moment, X, s3, W)
    X32 = X.astype(np.float32)
    got = whitened_third_moment(X32, s3, W, dtype=np.float32)
    blas32 = _blas(monkeypatch, whitened_third_moment, X32, s3, W, dtype=np.float32)
    scale = np.abs(exact).max()
    assert got.shape == (k, k, k) and got.dtype == np.float64
    assert np.abs(got - exact).max() < 1e-5 * scale
    assert np.abs(got - exact).max() < 10 * max(np.abs(blas32 - exact).max(), 1e-7 * scale)

    def refuse(*args):
        raise AssertionError("fused kernel called")

    monkeypatch.setattr(backend._fused, "wsyrk", refuse)
    second_moment(X32, y, dtype=np.float32)  # the BLAS path: no AssertionError


@fused_only
def test_fused_kernels_refuse_non_finite_input():
    X, y, W = _data(800, 12, 3)
    X[417, 5] = np.nan
    with pytest.raises(ValueError, match="second_moment: X contains NaN"):
        second_moment(X, y)
    with pytest.raises(ValueError, match="whitened_third_moment: X contains NaN"):
        whitened_third_moment(X, y, W)
    with pytest.raises(ValueError, match="whitened_third_moment: X contains NaN"):
        whitened_third_moment(X.astype(np.float32), y, W, dtype=np.float32)


def test_environment_variable_turns_the_fused_kernels_off():
    code = "from moebench import backend; print(backend.FUSED_KERNELS)"
    env = {**os.environ, "MOEBENCH_FUSED_KERNELS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "False"


def test_without_the_extension_the_blas_path_runs():
    """An install without a C compiler has no moebench._fused: the moments still
    work (the BLAS path), equal to the fused ones."""
    code = (
        "import sys; sys.modules['moebench._fused'] = None\n"  # import fails
        "import numpy as np\n"
        "from moebench.tensor import moments\n"
        "from moebench import backend\n"
        "assert backend._fused is None and backend.FUSED_KERNELS is False\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.standard_normal((700, 9)); y = rng.standard_normal(700)\n"
        "np.save(sys.argv[1], np.concatenate([moments.second_moment(X, y - 0.5).ravel(),\n"
        "        moments.whitened_third_moment(X, y, np.eye(9)[:, :3]).ravel()]))\n")

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "blas.npy")
        subprocess.run([sys.executable, "-c", code, out], check=True)
        blas = np.load(out)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((700, 9))
    y = rng.standard_normal(700)
    here = np.concatenate([second_moment(X, y - 0.5).ravel(),
                           whitened_third_moment(X, y, np.eye(9)[:, :3]).ravel()])
    np.testing.assert_allclose(here, blas, rtol=1e-12, atol=1e-13)
