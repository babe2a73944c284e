"""Shared fixtures."""

from __future__ import annotations

import pytest

import moebench


@pytest.fixture(scope="session")
def small_data():
    """d=6, k=3 linear data set with orthogonal gating (fixed seed)."""
    return moebench.make_moe(4000, 6, 3, activation="linear", sigma=0.1, random_state=0)
