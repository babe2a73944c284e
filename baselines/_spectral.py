"""Spectral initialisation shared by the alt_min and joint_em baselines.

Private module (leading underscore: the registry does not import it as a baseline).

1. :func:`spectral_subspace`: the top-k eigenvectors (by absolute eigenvalue) of
   M = mean(S2(y) (x x^T - I)), where S2(y) = y^2 + gamma y is the second-order
   label transform of the tensor method (gamma = 0 for linear g, so M is
   mean(y^2 x x^T) - mean(y^2) I as in Yi, Caramanis and Sanghavi 2014). Under
   Gaussian x, M = c2 sum_i p_i a_i a_i^T, so its top-k eigenvectors span the experts.
2. The search for the experts inside that span (a greedy k-medoids choice among
   random unit directions) is :func:`moebench.starts.search_in_subspace`, with the
   other starting points.
"""

from __future__ import annotations

import warnings

import numpy as np

from moebench.activations import Activation
from moebench.tensor.label_transforms import transform_coefficients
from moebench.tensor.moments import second_moment
from moebench.tensor.whitening import top_eigenpairs


def second_order_label(y: np.ndarray, activation: Activation) -> np.ndarray:
    """S2(y) = y^2 + gamma y with E[h2'(Z)] = 0 (falls back to (y - mean y)^2)."""
    if activation.is_linear:
        return y * y
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gamma = transform_coefficients(activation, 0.0).gamma
    except ValueError:
        yc = y - np.mean(y)
        return yc * yc
    return y * y + gamma * y


def spectral_subspace(X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                      max_rows: int = 200_000) -> np.ndarray:
    """Orthonormal basis (d, k) of the span of the top-k eigenvectors of mean(S2(y)(xx^T - I)).

    At most ``max_rows`` rows (the first ones) are used; the moment
    (:func:`moebench.tensor.moments.second_moment`, tensor_em's T2) is O(n d^2).
    """
    Xs, ys = X[:max_rows], y[:max_rows]
    T2 = second_moment(Xs, second_order_label(ys, activation))
    return top_eigenpairs(T2, k)[1]
