"""The torch path of the EM steps: compatibility names (CPU or CUDA).

The E- and M-steps of :mod:`moebench.em` and the quasi-Newton objective of
:mod:`moebench.acceleration` are written once against the array operations of
:mod:`moebench.tensor.backend`; when their data arrays (``X``, ``y``, the
responsibilities, the gate log-probabilities) are torch tensors they run in torch on
the tensors' device (:func:`~moebench.tensor.backend.array_backend`). The split of the
work:

* data-sized arrays (n rows: ``X``, ``y``, responsibilities, means, log-probabilities)
  live on the device, and every pass over them (GEMMs, log-sum-exps, activations,
  reductions) runs there;
* the parameters (experts (k, d), gating (k, d), sigma) and the small linear systems
  (the Newton Hessian ((k-1) d)², the d×d normal equations of the expert steps) stay
  numpy on the host: the iteration logic (line searches, damping, acceptance) is
  therefore the numpy one, and only reductions over n differ in their summation order
  (agreement with numpy ~1e-13 relative in float64; ``tests/test_em_torch.py``).

This module keeps the names the benchmarks and tests use: :func:`to_backend` (move
``X`` and ``y`` to a backend once per fit), :func:`is_tensor` and
:class:`MarginalLikelihood` (the quasi-Newton objective built from the experts). The
dtype is the tensors' (float64 by default; :func:`to_backend` takes ``dtype``). User
activations without a ``torch_func`` run through numpy on the host (a device round trip
per call: correct, not fast).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moebench.acceleration import _expert_means_t, _MarginalLikelihood
from moebench.activations import Activation
from moebench.tensor.backend import array_backend, is_tensor, to_backend

__all__ = ["MarginalLikelihood", "is_tensor", "to_backend"]


def _host(a: Any) -> np.ndarray:
    """A (small) array or tensor as a float64 numpy array."""
    return array_backend(a).to_numpy(a)


class MarginalLikelihood(_MarginalLikelihood):
    """The quasi-Newton gating EM's objective built from the fixed experts.

    :class:`moebench.acceleration._MarginalLikelihood` with the experts' means
    g(A X^T) computed on ``X``'s backend (``X`` and ``y`` torch tensors on one device,
    or numpy arrays).

    Parameters
    ----------
    X, y : torch.Tensor or ndarray
        The data, (n, d) and (n,).
    experts : ndarray (k, d)
    activation : Activation
    sigma, ridge : float
    update_sigma : bool
    """

    def __init__(self, X: Any, y: Any, experts: np.ndarray, activation: Activation,
                 sigma: float, ridge: float, update_sigma: bool) -> None:
        super().__init__(X, y, _expert_means_t(X, experts, activation), sigma, ridge,
                         update_sigma)

    # the quasi-Newton loop's interface, named in this class too (tests/test_em_torch.py
    # checks that it offers every public method of the numpy objective); one implementation
    evaluate = _MarginalLikelihood.evaluate
    gating = _MarginalLikelihood.gating
    sigma_step = _MarginalLikelihood.sigma_step
