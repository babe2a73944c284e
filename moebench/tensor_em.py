"""Compatibility module: the estimator lives in :mod:`moebench.tensor.estimator`.

``from moebench.tensor_em import TensorEM`` keeps working; new code imports from
:mod:`moebench.tensor.estimator` (the pipeline's other modules are in :mod:`moebench.tensor`).
"""

from moebench.tensor.estimator import TensorEM, gating_orthogonality, min_samples

__all__ = ["TensorEM", "gating_orthogonality", "min_samples"]
