"""Array backends for the moment kernels and the EM steps (numpy or torch), in one place.

The kernels in :mod:`moebench.tensor.moments` and the E- and M-steps of
:mod:`moebench.em` and :mod:`moebench.acceleration` are written once against the small
:class:`Backend` interface below (tensorly-style); no kernel tests for torch
itself. ``get_backend("torch")`` runs on CUDA when ``torch.cuda.is_available()``
and on the CPU otherwise; CUDA is never required. Every backend returns results
to the caller as numpy arrays.

The EM steps pick the backend of their data array with :func:`array_backend` (torch
tensors: torch on the tensor's device; anything else: numpy, whose row-wise
log-sum-exps are the column-pass kernels of :mod:`moebench.fastmath`), and
:func:`to_backend` moves ``X`` and ``y`` to a backend once per fit. Data-sized arrays
(n rows) live on the backend; the parameters (experts, gating, sigma) and the small
linear systems stay numpy on the host (:meth:`Backend.param` and
:meth:`Backend.to_numpy` cross between the two).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import numpy as np
from scipy.special import softmax

from moebench.activations import ACTIVATIONS, LEAKY_SLOPE, Activation
from moebench.chunked import slices
from moebench.fastmath import log_softmax_rows, normalize_log_rows
from moebench.validation import check_choice

try:  # the optional C extension (setup.py); absent where it could not be compiled
    from moebench import _fused
except ImportError:  # pragma: no cover - depends on the build
    _fused = None

#: Whether the fused AVX2 kernels (``moebench/_fused.c``) run on the numpy backend:
#: the float64 weighted Gram matrices (T2 and the EM's Newton and least-squares systems)
#: and the whitened T3 (float64, or float32 with X stored as float32). True when the
#: extension was built, this CPU has AVX2 and FMA, and ``MOEBENCH_FUSED_KERNELS`` is not
#: ``0``; otherwise numpy's BLAS does. The one switch of the kernel path.
FUSED_KERNELS = (_fused is not None and _fused.available()
                 and os.environ.get("MOEBENCH_FUSED_KERNELS", "1") != "0")


@contextlib.contextmanager
def read_only_arrays() -> Iterator[None]:
    """Silence torch's "The given NumPy array is not writable" warning inside the block.

    torch shares the memory of a NumPy array it is given and warns (once per process)
    when the array is read-only, as a memmap or ``X.flags.writeable = False`` makes it;
    moebench never writes into the user's data, so the warning would only mislead.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable",
                                category=UserWarning)
        yield


def fused_weighted_gram(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``X^T diag(w) X`` by the fused kernel (float64, C-contiguous X, any signs of w):
    it scales the rows while it packs them for its SYRK tiles, in one pass."""
    n, d = X.shape
    tiles = np.zeros((-(-d // 6) * 6, -(-d // 8) * 8))  # the kernel's 6 x 8 tiles
    weights = np.ascontiguousarray(w, dtype=np.float64)
    _fused.wsyrk(X.ctypes.data, weights.ctypes.data, n, d, tiles.ctypes.data)
    upper = np.triu(tiles[:d, :d])
    return upper + np.triu(upper, 1).T


def takes_fused(X: Any) -> bool:
    """Whether the fused float64 kernels take ``X`` (see :data:`FUSED_KERNELS`)."""
    return (FUSED_KERNELS and isinstance(X, np.ndarray) and X.dtype == np.float64
            and X.flags.c_contiguous and X.ndim == 2 and X.shape[0] > 0)

BACKENDS = ("numpy", "torch")
#: Bytes of one row block of :meth:`NumpyBackend.weighted_gram` (fits in a 2 MiB L2 cache)
GRAM_CHUNK_BYTES = 2 << 20


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

    # -- the elementwise and reduction operations of the EM steps ------------------------

    def param(self, a: Any, like: Any) -> Any:  # pragma: no cover - interface
        """A small numpy parameter (experts, gating) as an array of ``like``'s kind."""
        raise NotImplementedError

    def exp(self, a: Any) -> Any:  # pragma: no cover - interface
        """Elementwise exp (a new array)."""
        raise NotImplementedError

    def exp_(self, a: Any) -> Any:  # pragma: no cover - interface
        """Elementwise exp in place; returns ``a``."""
        raise NotImplementedError

    def log(self, a: Any) -> Any:  # pragma: no cover - interface
        """Elementwise natural logarithm (a new array)."""
        raise NotImplementedError

    def colmax(self, a: Any) -> Any:  # pragma: no cover - interface
        """Maximum over the rows (axis 0)."""
        raise NotImplementedError

    def vdot(self, a: Any, b: Any) -> float:  # pragma: no cover - interface
        """sum(a * b) over all entries, as a float."""
        raise NotImplementedError

    def var(self, a: Any) -> float:  # pragma: no cover - interface
        """Population variance of all entries (as ``np.var``), as a float."""
        raise NotImplementedError

    def log_softmax_rows(self, a: Any) -> Any:  # pragma: no cover - interface
        """log softmax of each row of a 2-d array."""
        raise NotImplementedError

    def softmax_rows(self, a: Any) -> Any:  # pragma: no cover - interface
        """softmax of each row of a 2-d array."""
        raise NotImplementedError

    def normalize_log_rows(self, a: Any) -> tuple[Any, Any]:  # pragma: no cover
        """``(exp(a - lse), lse)`` row-wise, ``lse`` the rows' log-sum-exp (``a`` may be
        overwritten)."""
        raise NotImplementedError

    def act_func(self, activation: Activation, t: Any) -> Any:  # pragma: no cover
        """g(t) of ``activation`` on this backend's array ``t``."""
        raise NotImplementedError

    def act_derivative(self, activation: Activation, t: Any) -> Any:  # pragma: no cover
        """g'(t) of ``activation`` on this backend's array ``t``."""
        raise NotImplementedError

    def weighted_gram(self, X: Any, w: Any) -> np.ndarray:  # pragma: no cover - interface
        """``sum_n w_n x_n x_n^T`` as a (d, d) float64 numpy array, for weights ``w >= 0``
        on this backend (the rows scaled by ``sqrt(w)``, then one symmetric rank-n update:
        half the flops of ``(X * w).T @ X``)."""
        raise NotImplementedError

    def errstate(self, **kwargs: str) -> Any:
        """A context manager for floating-point warnings (``np.errstate``; torch has none).

        Parameters
        ----------
        **kwargs : str
            As ``np.errstate`` (``over="ignore"`` ...).
        """
        return nullcontext()


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

    def param(self, a: Any, like: Any) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    def exp(self, a: np.ndarray) -> np.ndarray:
        return np.exp(a)

    def exp_(self, a: np.ndarray) -> np.ndarray:
        return np.exp(a, out=a)

    def log(self, a: np.ndarray) -> np.ndarray:
        return np.log(a)

    def colmax(self, a: np.ndarray) -> np.ndarray:
        return a.max(axis=0)

    def vdot(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.vdot(a, b))

    def var(self, a: np.ndarray) -> float:
        return float(np.var(a))

    def log_softmax_rows(self, a: np.ndarray) -> np.ndarray:
        return log_softmax_rows(a)

    def softmax_rows(self, a: np.ndarray) -> np.ndarray:
        return softmax(a, axis=1)

    def normalize_log_rows(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return normalize_log_rows(a)

    def act_func(self, activation: Activation, t: np.ndarray) -> np.ndarray:
        return activation.func(t)

    def act_derivative(self, activation: Activation, t: np.ndarray) -> np.ndarray:
        return activation.derivative(t)

    def weighted_gram(self, X: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The fused kernel where it takes X (:func:`takes_fused`: 1.3x faster at n = 10^5,
        d = 10); else row blocks of about :data:`GRAM_CHUNK_BYTES` scaled into one reused buffer, so
        the scaled copy stays in cache for its SYRK (1.2-1.7x faster than
        ``(X * w[:, None]).T @ X`` at n = 10^5, d = 10 to 100, one thread)."""
        if takes_fused(X):
            return fused_weighted_gram(X, w)
        n, d = X.shape
        rows = min(n, max(256, GRAM_CHUNK_BYTES // (8 * d)))
        root = np.sqrt(w)
        buf = np.empty((rows, d))
        gram = np.zeros((d, d))
        for sl in slices(n, rows):
            Y = np.multiply(X[sl], root[sl, None], out=buf[: sl.stop - sl.start])
            gram += Y.T @ Y
        return gram

    def errstate(self, **kwargs: str) -> Any:
        return np.errstate(**kwargs)



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
        with read_only_arrays():  # the data is only read
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

    def param(self, a: Any, like: Any) -> Any:
        return self._torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=like.dtype,
                                     device=like.device)

    def exp(self, a: Any) -> Any:
        return self._torch.exp(a)

    def exp_(self, a: Any) -> Any:
        return a.exp_()

    def log(self, a: Any) -> Any:
        return self._torch.log(a)

    def colmax(self, a: Any) -> Any:
        return a.max(dim=0).values

    def vdot(self, a: Any, b: Any) -> float:
        return float(self._torch.sum(a * b))

    def var(self, a: Any) -> float:
        return float(self._torch.var(a, correction=0))

    def log_softmax_rows(self, a: Any) -> Any:
        return self._torch.log_softmax(a, dim=1)

    def softmax_rows(self, a: Any) -> Any:
        return self._torch.softmax(a, dim=1)

    def normalize_log_rows(self, a: Any) -> tuple[Any, Any]:
        norm = self._torch.logsumexp(a, dim=1)
        a -= norm[:, None]
        return a.exp_(), norm

    def _via_numpy(self, fn: Any, t: Any) -> Any:
        out = np.asarray(fn(self.to_numpy(t)), dtype=np.float64)
        return self._torch.as_tensor(out, dtype=t.dtype, device=t.device)

    def act_func(self, activation: Activation, t: Any) -> Any:
        """g(t): the built-in torch function, else ``func`` through numpy on the host (a
        device round trip per call: correct, not fast)."""
        if _builtin(activation) is not None and activation.torch_func is not None:
            return activation.torch_func(t)
        return self._via_numpy(activation.func, t)

    def act_derivative(self, activation: Activation, t: Any) -> Any:
        """g'(t): closed forms for the built-ins, else ``derivative`` through numpy."""
        torch = self._torch
        name = _builtin(activation)
        if name == "linear":
            return torch.ones_like(t)
        if name == "sigmoid":
            s = torch.sigmoid(t)
            return s * (1.0 - s)
        if name == "relu":
            return (t > 0).to(t.dtype)
        if name == "tanh":
            return 1.0 - torch.tanh(t) ** 2
        if name == "leaky_relu":
            return torch.where(t > 0, torch.ones_like(t), torch.full_like(t, LEAKY_SLOPE))
        return self._via_numpy(activation.derivative, t)

    def weighted_gram(self, X: Any, w: Any) -> np.ndarray:
        Y = X * self._torch.sqrt(w)[:, None]
        return self.to_numpy(Y.T @ Y)



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


def _builtin(activation: Activation) -> str | None:
    """The built-in name whose numpy functions ``activation`` carries, else None."""
    ref = ACTIVATIONS.get(activation.name)
    if ref is not None and ref.func is activation.func and ref.derivative is activation.derivative:
        return activation.name
    return None


def is_tensor(a: Any) -> bool:
    """Whether ``a`` is a torch tensor (without importing torch).

    Parameters
    ----------
    a : object

    Returns
    -------
    bool
    """
    return getattr(type(a), "__module__", "").split(".")[0] == "torch"


_DEVICE_CACHE: dict[str, Backend] = {}


def array_backend(a: Any) -> Backend:
    """The backend that computes on ``a``: torch on ``a``'s device for a tensor, else numpy.

    Parameters
    ----------
    a : ndarray or torch.Tensor

    Returns
    -------
    Backend
    """
    if not is_tensor(a):
        return get_backend("numpy")
    device = str(a.device)
    if device not in _DEVICE_CACHE:
        _DEVICE_CACHE[device] = TorchBackend(device=device)
    return _DEVICE_CACHE[device]


def to_backend(X: Any, y: Any, backend: Any = "torch", dtype: Any = np.float64
               ) -> tuple[Any, Any]:
    """``X`` and ``y`` on ``backend`` (a name or a :class:`Backend`).

    ``backend=None`` returns them as they are. The numpy backend returns numpy arrays
    as they are (tensors come back as numpy); tensors already on the backend's device in
    ``dtype`` are returned unchanged (no copy), so callers may convert once per fit and
    pass the tensors down.

    Parameters
    ----------
    X, y : array-like or torch.Tensor
        The data, (n, d) and (n,).
    backend : str, Backend or None
        ``"numpy"``, ``"torch"``, a :class:`Backend`, or None (no conversion).
    dtype : dtype
        float64 or float32 (torch only).

    Returns
    -------
    X, y
        On the backend.

    Raises
    ------
    ValueError
        Unknown backend name (the message lists "numpy", "torch"), or torch missing.
    """
    if backend is None:
        return X, y
    be = get_backend(backend)
    if be.name == "numpy":
        if is_tensor(X) or is_tensor(y):
            return be.to_numpy(X), be.to_numpy(y)
        return X, y
    return be.asarray(X, dtype), be.asarray(y, dtype)
