"""Fits on data on disk (numpy.memmap): validation, blocked EM passes, bounded memory.

The EM steps and the quasi-Newton gating objective visit a memmapped X in row blocks
(:mod:`moebench.chunked`); these tests make the blocks small (a few hundred rows) so that a
small n has several blocks, and check every step and whole fits against the in-memory
computation, the memory a blocked fit holds, and the row-block NaN check.
"""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

import moebench
from moebench import acceleration, chunked, em
from moebench.activations import get_activation
from moebench.validation import check_array, check_X_y

RTOL = 1e-10


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 700 rows (a ragged last one for the n used here)."""
    monkeypatch.setattr(chunked, "BLOCK_BYTES", 1)
    monkeypatch.setattr(chunked, "MIN_BLOCK_ROWS", 700)


def _on_disk(tmp_path, name, a):
    path = tmp_path / f"{name}.npy"
    np.save(path, a)
    return np.load(path, mmap_mode="r")


def _data(tmp_path, n=4000, d=8, k=3, activation="linear", seed=0):
    data = moebench.make_moe(n, d, k, activation=activation, sigma=0.1, random_state=seed)
    return data, _on_disk(tmp_path, "X", data.X), _on_disk(tmp_path, "y", data.y)


def _close(a, b, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol,
                               atol=rtol * max(1.0, float(np.max(np.abs(b)))))


def test_blocks_cover_rows_once(small_blocks, tmp_path):
    X = _on_disk(tmp_path, "X", np.zeros((2500, 3)))
    sls = chunked.row_blocks(X)
    assert [(s.start, s.stop) for s in sls] == [(0, 700), (700, 1400), (1400, 2100),
                                                (2100, 2500)]
    assert chunked.row_blocks(np.zeros((2500, 3))) == [slice(0, 2500)]
    Xb = next(chunked.blocks(X))[0]
    assert type(Xb) is np.ndarray and np.shares_memory(Xb, X)  # a view, no copy


def test_check_array_keeps_memmap(tmp_path):
    X = _on_disk(tmp_path, "X", np.ones((50, 4)))
    out = check_array(X, "X", 2)
    assert out is X  # no copy: the data stay on disk
    Xv, yv = check_X_y(X, _on_disk(tmp_path, "y", np.ones(50)))
    assert isinstance(Xv, np.memmap) and isinstance(yv, np.memmap)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nonfinite_memmap_names_row_block(small_blocks, tmp_path, bad):
    A = np.ones((3000, 4))
    A[1500, 2] = bad
    A[2900, 0] = bad
    X = _on_disk(tmp_path, "X", A)
    with pytest.raises(ValueError, match=r"X contains 2 NaN or infinite value\(s\); only finite "
                                         r"values are valid \(the first in rows 1400 to 2099\)"):
        check_array(X, "X", 2)
    with pytest.raises(ValueError, match=r"rows 1400 to 2099"):
        moebench.get_algorithm("joint_em", n_experts=2).fit(X, np.ones(3000))


def _params(data, seed=1):
    rng = np.random.default_rng(seed)
    experts = data.experts + 0.1 * rng.standard_normal(data.experts.shape)
    gating = data.gating + 0.1 * rng.standard_normal(data.gating.shape)
    return experts, gating - gating[-1], 0.13


def test_e_step_and_m_steps_blocked_equal_in_memory(small_blocks, tmp_path):
    data, X, y = _data(tmp_path)
    act = get_activation("linear")
    experts, gating, sigma = _params(data)
    resp, ll, _ = em._e_step_gate(data.X, data.y, experts, gating, sigma, act)
    lazy, ll_b, _ = em._e_step_gate(X, y, experts, gating, sigma, act)
    _close(ll_b, ll)
    _close(np.vstack([lazy[s] for s in chunked.row_blocks(X)]), resp)
    _close(em.expert_m_step(X, y, lazy, experts, act),
           em.expert_m_step(data.X, data.y, resp, experts, act))
    _close(em.sigma_m_step(X, y, lazy, experts, act),
           em.sigma_m_step(data.X, data.y, resp, experts, act))
    for method in ("newton", "lbfgs"):
        _close(em.gating_m_step(X, lazy, gating, ridge=1e-3, method=method, max_iter=4),
               em.gating_m_step(data.X, resp, gating, ridge=1e-3, method=method, max_iter=4))
    for a, b in zip(em._gradient_m_step(X, y, lazy, experts, gating, act, 0.5),
                    em._gradient_m_step(data.X, data.y, resp, experts, gating, act, 0.5)):
        _close(a, b)


@pytest.mark.parametrize("update_sigma", [True, False], ids=["sigma-fitted", "sigma-given"])
def test_marginal_likelihood_blocked_equals_in_memory(small_blocks, tmp_path, update_sigma):
    data, X, y = _data(tmp_path, k=4)
    act = get_activation("linear")
    experts, gating, _ = _params(data)
    dense = acceleration._MarginalLikelihood(
        data.X, data.y, acceleration._expert_means_t(data.X, experts, act), 0.2, 1e-3,
        update_sigma)
    blocked = acceleration._MarginalLikelihood(
        X, y, lambda sl: acceleration._expert_means_t(X[sl], experts, act), 0.2, 1e-3,
        update_sigma)
    assert not hasattr(blocked, "resid2") and not hasattr(blocked, "log_dens")
    z = gating[:-1].ravel()
    if update_sigma:
        z = np.append(z, np.log(0.2))
        _close(blocked.sigma_step(z), dense.sigma_step(z))
    for a, b in zip(blocked.evaluate(z), dense.evaluate(z)):
        _close(a, b)


FITS = [
    pytest.param("tensor_em", {"gating_em_iter": 12}, id="tensor_em"),
    pytest.param("tensor_em", {"gating_em_iter": 12, "gating_acceleration": "none"},
                 id="tensor_em-plain-gating-em"),
    pytest.param("tensor_em", {"gating_em_iter": 12, "refine": True, "refine_max_iter": 3},
                 id="tensor_em-refine"),
    pytest.param("joint_em", {"n_init": 1, "max_iter": 4}, id="joint_em"),
    pytest.param("joint_em", {"n_init": 1, "max_iter": 4, "mstep": "gradient"},
                 id="joint_em-gradient"),
    pytest.param("sgd", {"max_epochs": 2, "batch_size": 512, "device": "cpu"}, id="sgd"),
]


@pytest.mark.parametrize("name, options", FITS)
def test_fit_on_memmap_equals_in_memory(small_blocks, tmp_path, name, options):
    data, X, y = _data(tmp_path, n=6000, d=6, k=3)
    before = chunked.passes()
    on_disk = moebench.get_algorithm(name, n_experts=3, random_state=0, **options).fit(X, y)
    assert chunked.passes() > before  # the blocked path ran
    in_memory = moebench.get_algorithm(name, n_experts=3, random_state=0,
                                       **options).fit(data.X, data.y)
    assert on_disk.n_iter_ == in_memory.n_iter_
    for attr in ("experts_", "gating_", "sigma_", "log_likelihood_"):
        _close(getattr(on_disk, attr), getattr(in_memory, attr))


def test_nonlinear_expert_step_on_disk_is_refused(tmp_path):
    data, X, y = _data(tmp_path, n=3000, activation="sigmoid")
    act = get_activation("sigmoid")
    resp = np.full((3000, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"supports activation 'linear' only; got 'sigmoid'"):
        em.expert_m_step(X, y, resp, data.experts, act)


@pytest.mark.parametrize(("name", "options", "asks"), [
    pytest.param("tensor_em", {"refine": True}, "tensor_em with refine=True", id="tensor_em"),
    pytest.param("joint_em", {}, "joint_em with mstep='full'", id="joint_em"),
    pytest.param("joint_em", {"mstep": "gradient", "init": "responsibilities"},
                 "joint_em with init='responsibilities'", id="joint_em-responsibilities"),
])
@pytest.mark.filterwarnings("ignore:tensor_em.*eigenvalues of T2:RuntimeWarning")
def test_nonlinear_expert_step_on_disk_fails_before_any_work(tmp_path, name, options, asks):
    """A fit whose expert step would need X in memory says so at once, naming the option
    and the valid choices, before the stages that precede that step (the moments, the
    gating EM) have read X."""
    _, X, y = _data(tmp_path, n=3000, activation="relu")
    est = moebench.get_algorithm(name, n_experts=3, activation="relu", random_state=0,
                                 **options)
    before = chunked.passes()
    with pytest.raises(ValueError, match=re.escape(asks) + r" \(valid on disk for "
                       r"nonlinear experts: .*supports activation 'linear' only; got 'relu'"):
        est.fit(X, y)
    # one pass only: the input checks' finite check (counted since issue 28), no stage
    assert chunked.passes() == before + 1 and not hasattr(est, "history_")
    # the settings it names as valid run on disk
    valid = {"refine": False} if name == "tensor_em" else {"mstep": "gradient",
                                                            "init": "random", "max_iter": 3}
    moebench.get_algorithm(name, n_experts=3, activation="relu", random_state=0,
                           **{**options, **valid}).fit(X, y)


def _peak_traced(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name, options", [
    pytest.param("joint_em", {"n_init": 1, "max_iter": 2, "init": "random"}, id="joint_em"),
    pytest.param("tensor_em", {"gating_em_iter": 10}, id="tensor_em"),
])
def test_memory_of_blocked_fit_does_not_hold_n_by_k(monkeypatch, tmp_path, name, options):
    """n = 200000, d = 12, k = 10: an (n, k) float64 array is 16 MB, X 19 MB. With 1 MB
    blocks the fit on the memmap allocates less than half of one (n, k) array (what it
    holds of size n are a few (n,) vectors: y's label transforms, 1.6 MB each); the same
    fit in memory allocates more than one."""
    monkeypatch.setattr(chunked, "BLOCK_BYTES", 1 << 20)
    n, d, k = 200_000, 12, 10
    data, X, y = _data(tmp_path, n=n, d=d, k=k)
    nk_bytes = n * k * 8

    def fit(A, b):
        return lambda: moebench.get_algorithm(name, n_experts=k, random_state=0,
                                              **options).fit(A, b)

    on_disk = _peak_traced(fit(X, y))
    in_memory = _peak_traced(fit(data.X, data.y))
    assert on_disk < 0.5 * nk_bytes, (on_disk, nk_bytes)
    assert in_memory > nk_bytes  # the bound above is one that the in-memory fit breaks
