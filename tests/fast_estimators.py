"""The four built-in mixture algorithms with small budgets, for the input-hygiene tests."""

from __future__ import annotations

import moebench

ALGORITHMS = ("tensor_em", "joint_em", "sgd", "alt_min")
FAST = {"tensor_em": {}, "joint_em": {"max_iter": 30}, "sgd": {"max_epochs": 20},
        "alt_min": {}}


def estimator(name: str, **kw) -> moebench.MoEEstimator:
    """An unfitted ``name`` with k = 2, seed 0 and the small budget of :data:`FAST`."""
    return moebench.get_algorithm(name, n_experts=2, random_state=0, **{**FAST[name], **kw})
