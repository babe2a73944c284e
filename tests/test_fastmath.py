"""The row-wise log-sum-exp kernels of the EM hot loop against scipy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp

from moebench.fastmath import log_softmax_rows, normalize_log_rows, row_max


def _cases():
    rng = np.random.default_rng(0)
    yield "normal", rng.standard_normal((500, 3))
    yield "k10", 5.0 * rng.standard_normal((300, 10))
    yield "huge", 1e300 * rng.standard_normal((50, 4))  # exp overflows without the shift
    yield "tiny", -1e4 + rng.standard_normal((50, 3))  # exp underflows without the shift
    yield "spread", np.array([[0.0, -800.0, 700.0], [1e-300, -1e-300, 0.0]])
    yield "one_column", rng.standard_normal((20, 1))
    a = rng.standard_normal((40, 5))
    a[::3, 1] = -np.inf
    a[::7, 2:] = -np.inf
    yield "some_minus_inf", a


CASES = list(_cases())


@pytest.mark.parametrize("name, a", CASES, ids=[c[0] for c in CASES])
def test_kernels_match_scipy(name, a):
    ref = logsumexp(a, axis=1)
    lsm = log_softmax_rows(a)
    ref_lsm = log_softmax(a, axis=1)
    finite = np.isfinite(ref_lsm)
    assert np.array_equal(np.isfinite(lsm), finite)
    assert np.allclose(lsm[finite], ref_lsm[finite], rtol=1e-12, atol=1e-12)
    w, lse = normalize_log_rows(a)
    assert np.allclose(lse, ref, rtol=1e-12, atol=1e-12)
    assert np.allclose(w, np.exp(ref_lsm), rtol=1e-12, atol=1e-300)
    assert not np.isnan(w).any() and not np.isnan(lsm).any()
    assert np.allclose(w.sum(axis=1), 1.0, rtol=1e-12)
    assert np.array_equal(row_max(a), a.max(axis=1))


def test_minus_inf_entries_give_zero_weight_and_all_minus_inf_row_gives_minus_inf():
    a = np.array([[-np.inf, 0.0, -np.inf], [-np.inf, -np.inf, -np.inf]])
    w, lse = normalize_log_rows(a)
    assert np.array_equal(w[0], [0.0, 1.0, 0.0])
    assert lse[0] == 0.0 and lse[1] == -np.inf
    assert lse[1] == logsumexp(a, axis=1)[1]
    assert np.array_equal(log_softmax_rows(a)[0], [-np.inf, 0.0, -np.inf])


def test_row_max_refuses_a_non_matrix():
    with pytest.raises(ValueError, match="2-d"):
        row_max(np.zeros(3))
    with pytest.raises(ValueError, match="column"):
        row_max(np.zeros((3, 0)))
