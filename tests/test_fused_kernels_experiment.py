"""The fused AVX2 moment kernels of ``benchmarks/fused_kernels.py`` (an experiment for
issue 13, not part of the package) agree with the package's moments."""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from moebench.tensor.moments import second_moment, whitened_third_moment

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or platform.machine() != "x86_64",
    reason="the experiment's kernels need gcc and x86-64")


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from benchmarks import fused_kernels
    finally:
        sys.path.pop(0)
    with open("/proc/cpuinfo") as fh:
        flags = fh.read()
    if " avx2" not in flags or " fma" not in flags:
        pytest.skip("this CPU has no AVX2/FMA")
    return fused_kernels, fused_kernels.build(tmp_path_factory.mktemp("fused"))


@pytest.mark.parametrize(("n", "d"), [(1003, 37), (4099, 10), (2600, 100)])
def test_fused_kernels_match_the_package(fused, n, d):
    """Shapes off every block size (4 rows, 6 x 8 tiles, 128 / 256-row blocks), both signs."""
    module, so = fused
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    W = np.linalg.qr(rng.standard_normal((d, module.K)))[0]
    for s2 in (y**2, y**2 - 1.0):
        np.testing.assert_allclose(module.fused_second_moment(so, X, s2), second_moment(X, s2),
                                   rtol=0, atol=1e-12 * np.abs(second_moment(X, s2)).max())
    s3 = y**3 - 3 * y
    ref = whitened_third_moment(X, s3, W)
    got = module.fused_whitened_third_moment(so, X, s3, W)
    assert got.shape == (module.K,) * 3
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
