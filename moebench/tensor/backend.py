"""Array backends for the moment kernels (numpy or torch), chosen in one place.

The kernels in :mod:`moebench.tensor.moments` are written once against the small
:class:`Backend` interface below (tensorly-style); no kernel tests for torch
itself. ``get_backend("torch")`` runs on CUDA when ``torch.cuda.is_available()``
and on the CPU otherwise; CUDA is never required. Every backend returns results
to the caller as numpy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moebench.validation import check_choice

BACKENDS = ("numpy", "torch")


class Backend:
    """The array operations the moment kernels need.

    Attributes
    ----------
    name : str
        ``"numpy"`` or ``"torch"``.
    device : str
        ``"cpu"`` or ``"cuda"``.
    """

    name = "abstract"
    device = "cpu"

    def asarray(self, a: Any, dtype: Any) -> Any:  # pragma: no cover - interface
        """Copy or view ``a`` (numpy array or slice of a memmap) on this backend."""
        raise NotImplementedError

    def to_numpy(self, a: Any) -> np.ndarray:  # pragma: no cover - interface
        """Return ``a`` as a float64 numpy array."""
        raise NotImplementedError

    def colsum(self, a: Any) -> Any:  # pragma: no cover - interface
        """Sum over the rows (axis 0)."""
        raise NotImplementedError

    def rowsum(self, a: Any) -> Any:  # pragma: no cover - interface
        """Sum over the columns (axis 1)."""
        raise NotImplementedError

    def take_rows(self, a: Any, idx: np.ndarray, out: Any = None) -> Any:  # pragma: no cover
        """Rows ``a[idx]``, written into ``out`` when given."""
        raise NotImplementedError

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:  # pragma: no cover
        """An uninitialised array of ``shape`` and ``dtype`` on this backend."""
        raise NotImplementedError

    def multiply(self, a: Any, b: Any, out: Any) -> Any:  # pragma: no cover - interface
        """Elementwise ``a * b`` (broadcasting) written into ``out``."""
        raise NotImplementedError


class NumpyBackend(Backend):
    """numpy (whatever BLAS numpy links)."""

    name = "numpy"
    device = "cpu"

    def asarray(self, a: Any, dtype: Any) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    def colsum(self, a: np.ndarray) -> np.ndarray:
        return a.sum(axis=0)

    def rowsum(self, a: np.ndarray) -> np.ndarray:
        return a.sum(axis=1)

    def take_rows(self, a: np.ndarray, idx: np.ndarray, out: Any = None) -> np.ndarray:
        return np.take(a, idx, axis=0, out=out)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def multiply(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.multiply(a, b, out=out)


class TorchBackend(Backend):
    """torch on CUDA when available, else on the CPU."""

    name = "torch"

    def __init__(self, device: str | None = None) -> None:
        import torch

        self._torch = torch
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device

    def _dtype(self, dtype: Any) -> Any:
        dt = np.dtype(dtype)
        if dt == np.float64:
            return self._torch.float64
        if dt == np.float32:
            return self._torch.float32
        raise ValueError(f"dtype must be float32 or float64; got {dt}")

    def asarray(self, a: Any, dtype: Any) -> Any:
        torch = self._torch
        if isinstance(a, torch.Tensor):
            return a.to(device=self.device, dtype=self._dtype(dtype))
        arr = np.ascontiguousarray(a, dtype=dtype)
        t = torch.from_numpy(arr)
        if self.device != "cpu":
            t = t.to(self.device, non_blocking=False)
        return t

    def to_numpy(self, a: Any) -> np.ndarray:
        if isinstance(a, self._torch.Tensor):
            return a.detach().to("cpu", dtype=self._torch.float64).numpy()
        return np.asarray(a, dtype=np.float64)

    def colsum(self, a: Any) -> Any:
        return a.sum(dim=0)

    def rowsum(self, a: Any) -> Any:
        return a.sum(dim=1)

    def take_rows(self, a: Any, idx: np.ndarray, out: Any = None) -> Any:
        t = self._torch.as_tensor(idx, dtype=self._torch.long, device=self.device)
        if out is None:
            return a.index_select(0, t)
        return self._torch.index_select(a, 0, t, out=out)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self._torch.empty(shape, dtype=self._dtype(dtype), device=self.device)

    def multiply(self, a: Any, b: Any, out: Any) -> Any:
        return self._torch.mul(a, b, out=out)


_CACHE: dict[str, Backend] = {}


def get_backend(backend: str | Backend = "numpy") -> Backend:
    """Return the backend named ``backend`` (``"numpy"`` or ``"torch"``).

    A :class:`Backend` instance is returned unchanged, so callers may pass e.g.
    ``TorchBackend(device="cpu")`` to force the CPU.

    Raises
    ------
    ValueError
        Unknown backend name, or ``"torch"`` requested when torch is not installed.
    """
    if isinstance(backend, Backend):
        return backend
    check_choice(backend, "backend", BACKENDS)
    if backend not in _CACHE:
        if backend == "numpy":
            _CACHE[backend] = NumpyBackend()
        else:
            try:
                _CACHE[backend] = TorchBackend()
            except ImportError as exc:  # pragma: no cover - torch is a dependency
                raise ValueError(f"backend 'torch' needs torch installed: {exc}") from None
    return _CACHE[backend]
