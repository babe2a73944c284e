"""moebench: benchmark and comparison harness for learning mixture-of-experts parameters.

The public entry points are :func:`make_moe` (synthetic data),
:func:`get_algorithm` / :func:`available_algorithms` (the registry),
:mod:`moebench.metrics` and :func:`moebench.testing.check_algorithm`.
"""

from moebench.activations import Activation, available_activations, get_activation
from moebench.base import MoEEstimator
from moebench.degenerate import DegenerateFitError
from moebench.generator import MoEData, iter_moe_chunks, make_moe, make_moe_model
from moebench.model import MoEModel
from moebench.registry import (
    algorithm_descriptions,
    available_algorithms,
    get_algorithm,
    register,
)
from moebench.version import __version__

__all__ = [
    "Activation",
    "DegenerateFitError",
    "MoEData",
    "MoEEstimator",
    "MoEModel",
    "algorithm_descriptions",
    "available_activations",
    "available_algorithms",
    "get_activation",
    "get_algorithm",
    "iter_moe_chunks",
    "make_moe",
    "make_moe_model",
    "register",
    "__version__",
]
