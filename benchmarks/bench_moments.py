"""asv suites of the moment kernels (moebench.tensor.moments) and the machine's floor.

Every class draws its data in ``setup`` from ``numpy.random.default_rng(0)``; the
floor kernels (:class:`Floor`) use the same data so the report's ratios (kernel time
over floor time) come from one asv run. ``peakmem_*`` is the process's peak RSS,
data included; :meth:`Floor.peakmem_data_only` is the same process with the data and
no kernel, so the difference is the kernel's own peak memory.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import D_VALUES, K_VALUES, N_VALUES, kernel_data
from moebench.tensor.moments import (
    SecondMomentOperator,
    dense_third_moment,
    second_moment,
    third_moment_products,
    whitened_third_moment,
)
from moebench.tensor.whitening import whiten

IMPLS = ["numpy-float64", "numpy-float32", "torch-float64", "torch-float32"]


def _impl(impl: str) -> tuple[str, type]:
    backend, dtype = impl.split("-")
    return backend, np.float64 if dtype == "float64" else np.float32


class _Kernel:
    # One call at n = 10^6, d = 100 takes ~0.1-1 s; a few samples suffice.
    number = 1
    repeat = (2, 5, 20.0)
    warmup_time = 0.0
    timeout = 600


class Floor(_Kernel):
    """The machine's floor: the projection ``X @ W`` and one ``X^T X`` (SYRK) GEMM."""

    params = (N_VALUES, D_VALUES, K_VALUES)
    param_names = ["n", "d", "k"]

    def setup(self, n, d, k):
        self.X, _, _, self.W = kernel_data(n, d, k)
        self.Wt = np.ascontiguousarray(self.W.T)

    def time_projection(self, n, d, k):
        self.X @ self.W

    def time_projection_transposed(self, n, d, k):
        # the same product laid out (k, n), as the streaming kernel computes it
        self.Wt @ self.X.T

    def time_gram(self, n, d, k):
        self.X.T @ self.X

    def peakmem_data_only(self, n, d, k):
        pass


class WhitenedThirdMoment(_Kernel):
    """``T3(W, W, W)`` in one streaming pass (``X`` stored in the compute dtype)."""

    params = (N_VALUES, D_VALUES, K_VALUES, IMPLS)
    param_names = ["n", "d", "k", "impl"]

    def setup(self, n, d, k, impl):
        self.backend, self.dtype = _impl(impl)
        if self.backend == "torch":
            try:
                import torch  # noqa: F401
            except ImportError:  # pragma: no cover - torch is a dependency
                raise NotImplementedError("torch is not installed") from None
        self.X, _, self.s3, self.W = kernel_data(n, d, k, self.dtype)

    def time_whitened_third_moment(self, n, d, k, impl):
        whitened_third_moment(self.X, self.s3, self.W, backend=self.backend, dtype=self.dtype)

    def peakmem_whitened_third_moment(self, n, d, k, impl):
        whitened_third_moment(self.X, self.s3, self.W, backend=self.backend, dtype=self.dtype)


class SecondMoment(_Kernel):
    """``T2 = mean s2 (x x^T - I)`` (split SYRK per chunk)."""

    params = (N_VALUES, D_VALUES, ["float64", "float32"])
    param_names = ["n", "d", "dtype"]

    def setup(self, n, d, dtype):
        self.dtype = np.float64 if dtype == "float64" else np.float32
        self.X, self.s2, _, _ = kernel_data(n, d, 3, self.dtype)

    def time_second_moment(self, n, d, dtype):
        second_moment(self.X, self.s2, dtype=self.dtype)

    def peakmem_second_moment(self, n, d, dtype):
        second_moment(self.X, self.s2, dtype=self.dtype)


class MomentStep(_Kernel):
    """The whole moment step in float64: ``T2``, whitening (eigh), ``T3(W, W, W)``."""

    params = (N_VALUES, D_VALUES, K_VALUES)
    param_names = ["n", "d", "k"]

    def setup(self, n, d, k):
        self.X, self.s2, self.s3, _ = kernel_data(n, d, k)

    def _run(self, k):
        T2 = second_moment(self.X, self.s2)
        W = whiten(T2, k).W
        whitened_third_moment(self.X, self.s3, W)

    def time_moment_step(self, n, d, k):
        self._run(k)

    def peakmem_moment_step(self, n, d, k):
        self._run(k)


class Whitening(_Kernel):
    """Whitening: eigh of a dense ``T2``, or a randomised range finder on implicit T2."""

    params = (N_VALUES, D_VALUES, K_VALUES, ["eigh", "randomized"])
    param_names = ["n", "d", "k", "method"]

    def setup(self, n, d, k, method):
        self.X, self.s2, _, _ = kernel_data(n, d, k)
        if method == "eigh":
            self.T2 = second_moment(self.X, self.s2)  # eigh on the dense d x d matrix

    def time_whitening(self, n, d, k, method):
        if method == "eigh":
            whiten(self.T2, k)
        else:  # 2 + n_iter = 4 streaming passes of O(n d (k + 10)), d x d never formed
            whiten(SecondMomentOperator(self.X, self.s2), k, method="randomized")


class WhiteningLargeD(_Kernel):
    """d = 1000: dense T2 + eigh (O(n d^2 + d^3)) against the randomised implicit path.

    n is 10^5 only: X is 800 MB at d = 1000 (10^6 rows would be 8 GB).
    """

    params = ([100_000], [1000], [10], ["dense-eigh", "randomized"])
    param_names = ["n", "d", "k", "method"]
    repeat = (1, 3, 60.0)

    def setup(self, n, d, k, method):
        self.X, self.s2, self.s3, _ = kernel_data(n, d, k)

    def _whiten(self, k, method):
        if method == "dense-eigh":
            return whiten(second_moment(self.X, self.s2), k).W
        return whiten(SecondMomentOperator(self.X, self.s2), k, method="randomized").W

    def time_whitening(self, n, d, k, method):
        self._whiten(k, method)

    def time_moment_step(self, n, d, k, method):
        # whitening + T3(W, W, W): O(n d k) per pass on the randomised path
        whitened_third_moment(self.X, self.s3, self._whiten(k, method))


class ThirdMomentProducts(_Kernel):
    """Implicit ``T3(I, v, v)`` for one vector and a batch of 10, ``O(n d m)``."""

    params = (N_VALUES, D_VALUES, [1, 10])
    param_names = ["n", "d", "m"]

    def setup(self, n, d, m):
        self.X, _, self.s3, _ = kernel_data(n, d, 3)
        self.V = np.random.default_rng(1).standard_normal((d, m))

    def time_third_moment_products(self, n, d, m):
        third_moment_products(self.X, self.s3, self.V)

    def peakmem_third_moment_products(self, n, d, m):
        third_moment_products(self.X, self.s3, self.V)


class DenseThirdMoment(_Kernel):
    """The dense ``d^3`` reference (tests and speed-up baseline only)."""

    params = (N_VALUES, D_VALUES)
    param_names = ["n", "d"]
    repeat = (1, 3, 60.0)

    def setup(self, n, d):
        # Skipped where it costs n d^3 > 2e11 flops (~10 s or more here: n = 10^6 at
        # d = 100); the d^3 tensor itself (8 MB at d = 100) is not the limit.
        if n * d**3 > 2e11:
            raise NotImplementedError("dense d^3 kernel too slow at this size (n d^3 > 2e11)")
        self.X, _, self.s3, _ = kernel_data(n, d, 3)

    def time_dense_third_moment(self, n, d):
        dense_third_moment(self.X, self.s3)

    def peakmem_dense_third_moment(self, n, d):
        dense_third_moment(self.X, self.s3)
