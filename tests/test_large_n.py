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
    assert chunked.passes() == before and not hasattr(est, "history_")
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


def test_benchmark_script_fit_and_collect(tmp_path, capsys):
    """benchmarks/large_n.py on a small generated folder: per-fit JSON with memory, passes
    and errors, then the table and a palette figure."""
    import json
    import sys
    from pathlib import Path

    from PIL import Image

    from moebench.cli import main as cli_main
    from moebench.history import History

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from benchmarks import large_n
    finally:
        sys.path.pop(0)
    data = tmp_path / "data"
    assert cli_main(["generate", "--n", "3000", "--d", "5", "--k", "2", "--seed", "1",
                     "--out", str(data)]) == 0
    record = History.record
    for fit in ("tensor_em", "sgd"):
        large_n.main(["fit", "--data", str(data), "--fit", fit, "--out", str(tmp_path / "runs"),
                      "--max-time", "60"])
    assert History.record is record  # the benchmark's wrapper is removed after the fit
    out = json.loads((tmp_path / "runs" / "tensor_em.json").read_text())
    assert out["error"] is None and out["n"] == 3000
    assert out["memory_kb"]["rss_anon_peak"] >= out["memory_kb"]["rss_anon_before"] > 0
    assert [r["passes"] for r in out["records"]][:2] == [2, 2]  # the two moment passes
    assert out["passes"] > 2  # the gating EM's blocked passes are counted
    large_n.main(["fit", "--data", str(data), "--fit", "tensor_em", "--seed", "2",
                  "--out", str(tmp_path / "runs2"), "--max-time", "60"])
    # a shorter sgd schedule is its own curve (the learning rate decays over max_epochs)
    large_n.main(["fit", "--data", str(data), "--fit", "sgd", "--max-epochs", "3",
                  "--out", str(tmp_path / "runs2"), "--max-time", "60"])
    short = json.loads((tmp_path / "runs2" / "sgd_3ep.json").read_text())
    assert short["name"] == "sgd_3ep" and short["options"]["max_epochs"] == 3
    assert [r["passes"] for r in short["records"]] == [0, 1, 2, 3]
    with pytest.raises(SystemExit):  # --max-epochs belongs to sgd only
        large_n.main(["fit", "--data", str(data), "--fit", "joint_em", "--max-epochs", "3",
                      "--out", str(tmp_path / "runs3")])
    assert not (tmp_path / "runs3").exists()
    assert "--max-epochs applies to --fit sgd only" in capsys.readouterr().err
    for flag, value in (("--lr", "0.1"), ("--batch-size", "64")):
        with pytest.raises(SystemExit):  # so do sgd's learning rate and batch size
            large_n.main(["fit", "--data", str(data), "--fit", "tensor_em", flag, value,
                          "--out", str(tmp_path / "runs3")])
        assert f"{flag} applies to --fit sgd only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        large_n.main(["fit", "--data", str(data), "--fit", "sgd", "--lr", "-1",
                      "--out", str(tmp_path / "runs3")])
    assert "a finite real number > 0; got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "runs3").exists()
    # sgd's learning rate and batch size, where given, name the curve
    large_n.main(["fit", "--data", str(data), "--fit", "sgd", "--max-epochs", "3",
                  "--lr", "0.1", "--batch-size", "256", "--out", str(tmp_path / "runs2"),
                  "--max-time", "60"])
    tuned = json.loads((tmp_path / "runs2" / "sgd_3ep_lr0.1_b256.json").read_text())
    assert tuned["options"] == {**short["options"], "lr": 0.1, "batch_size": 256}
    assert tuned["final_expert_error"] != short["final_expert_error"]
    assert tuned["sgd_settings"] == {"lr": 0.1, "batch_size": 256}
    assert short["sgd_settings"] == {"lr": 0.05, "batch_size": 3000 // 32}  # "auto"
    large_n.main(["collect", "--runs", str(tmp_path / "runs"), str(tmp_path / "runs2"),
                  "--out", str(tmp_path / "res")])
    assert Image.open(tmp_path / "res" / "figure.png").mode == "P"
    # two (learning rate, batch) pairs of the 3-epoch schedule: the grid figure
    assert Image.open(tmp_path / "res" / "sgd_grid.png").mode == "P"
    rows = (tmp_path / "res" / "curves.csv").read_text().splitlines()
    assert rows[0].startswith("fit,seed,phase,iteration,time_s,passes,expert_error")
    assert {tuple(r.split(",")[:2]) for r in rows[1:]} == {
        ("tensor_em", "0"), ("tensor_em", "2"), ("sgd_40ep", "0"), ("sgd_3ep", "0"),
        ("sgd_3ep_lr0.1_b256", "0")}
    summary = json.loads((tmp_path / "res" / "measurements.json").read_text())
    # FITS order, sgd's longest schedule first (then learning rate and batch), then seed
    assert [(f["name"], f["seed"]) for f in summary] == [
        ("tensor_em", 0), ("tensor_em", 2), ("sgd_40ep", 0), ("sgd_3ep", 0),
        ("sgd_3ep_lr0.1_b256", 0)]
    large_n.main(["collect", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "res1")])
    assert not (tmp_path / "res1" / "sgd_grid.png").exists()  # one pair only: no grid
    with pytest.raises(SystemExit):  # asked for the grid anyway: a clear error, nothing written
        large_n.main(["collect", "--runs", str(tmp_path / "runs"), "--out",
                      str(tmp_path / "res2"), "--figures", "grid"])
    assert "no sgd schedule in --runs was run with more than one" in capsys.readouterr().err
    assert not (tmp_path / "res2").exists()
    large_n.main(["collect", "--runs", str(tmp_path / "runs2"), "--out", str(tmp_path / "res3"),
                  "--figures", "grid"])
    assert sorted(p.name for p in (tmp_path / "res3").iterdir()) == [
        "curves.csv", "measurements.json", "sgd_grid.png"]
    assert large_n.sgd_label(tuned["options"]) == "sgd, Adam, cosine over 3 epochs, lr 0.1, " \
        "batch 256"
