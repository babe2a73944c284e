"""The paper's theorem, tested (issue 14 item 6): the oracle gating EM, its config, its table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import moebench
from moebench import registry
from moebench.metrics import gating_error, wilson_interval
from moebench.oracle import ORACLE, OracleGatingEM, gating_gradient_hessian
from moebench.stationarity import log_likelihood_gradient, log_likelihood_hessian
from moebench.sweep.config import ConfigError, load_config, validate_config
from moebench.sweep.gridlock import rate_interval
from moebench.sweep.theorem import theorem_report, theorem_runs, theorem_table
from moebench.testing import check_algorithm


@pytest.fixture(scope="module")
def k2():
    """k = 2, d = 5, n = 2e4, sigma = 0.1, orthogonal gating of norm 2 (seed 0)."""
    return moebench.make_moe(20000, 5, 2, sigma=0.1, gating_scale=2.0, random_state=0)


@pytest.fixture(scope="module")
def from_truth(k2):
    return moebench.get_algorithm(ORACLE, n_experts=2, gating_init="truth").fit(
        k2.X, k2.y, truth=k2)


def test_registered_as_an_oracle_listed_apart():
    assert registry.algorithm_class(ORACLE) is OracleGatingEM and OracleGatingEM.needs_truth
    assert ORACLE not in moebench.available_algorithms()
    assert ORACLE in registry.available_algorithms(oracles=True)
    assert registry.oracle_algorithms() == [ORACLE]
    assert not any(registry.algorithm_class(n).needs_truth
                   for n in moebench.available_algorithms(references=True))


def test_meets_the_contract_given_the_truth():
    check_algorithm(ORACLE)


def test_fit_without_truth_raises(k2):
    est = moebench.get_algorithm(ORACLE, n_experts=2, random_state=0)
    with pytest.raises(ValueError, match="oracle_gating_em is an oracle: it needs the true "
                                         "parameters.*got truth=None"):
        est.fit(k2.X, k2.y)
    assert not hasattr(est, "gating_")


def test_truth_of_another_activation_is_refused(k2):
    est = moebench.get_algorithm(ORACLE, n_experts=2, activation="relu", random_state=0)
    with pytest.raises(ValueError, match="truth has activation 'linear' but activation = 'relu'"):
        est.fit(k2.X, k2.y, truth=k2)


def test_from_truth_recovers_the_gating_at_k2(k2, from_truth):
    """The ML gating next to the truth is within 0.1 of it (5% of ||W_1 - W_2|| = 2), the
    experts and sigma are the truth's, and the EM converged at a strict local maximum."""
    assert np.linalg.norm(k2.model.gating[0] - k2.model.gating[1]) == pytest.approx(2.0)
    assert gating_error(from_truth.gating_, k2.model.gating, np.arange(2)) < 0.1
    assert np.array_equal(from_truth.experts_, k2.model.experts)
    assert from_truth.sigma_ == k2.model.sigma
    assert from_truth.converged_ and from_truth.stop_reason_ == "converged"
    assert from_truth.gating_start_distance_ == 0.0
    grad, eig = from_truth.stationarity(k2.X, k2.y)
    assert grad < 1e-4 and eig > 1e-2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_starts_reach_the_same_likelihood_and_gating_at_k2(k2, from_truth, seed):
    est = moebench.get_algorithm(ORACLE, n_experts=2, random_state=seed).fit(
        k2.X, k2.y, truth=k2)
    assert est.gating_start_distance_ > 1.0  # a start far from the truth
    assert abs(est.log_likelihood_ - from_truth.log_likelihood_) < 1e-8
    dist = np.linalg.norm(est.gating_ - from_truth.gating_) / np.linalg.norm(from_truth.gating_)
    assert dist < 1e-3
    assert est.gating_free_ == {f"0_{j}": est.gating_[0, j] for j in range(5)}


def test_stationarity_is_the_gating_likelihood_alone(k2):
    """The gating-only gradient and Hessian are the gating blocks of the full ones; at a
    start away from the optimum the gradient is large."""
    data = moebench.make_moe(3000, 4, 3, sigma=0.2, gating_scale=1.5, random_state=5)
    X, y, m = data.X, data.y, data.model
    W = m.gating + 0.3 * np.random.default_rng(0).standard_normal(m.gating.shape)
    g, H = gating_gradient_hessian(X, y, m.experts, W, m.sigma, m.activation)
    kd = 3 * 4
    full_g = log_likelihood_gradient(X, y, m.experts, W, m.sigma, m.activation, False)
    full_H = log_likelihood_hessian(X, y, m.experts, W, m.sigma, m.activation, False)
    assert np.allclose(g, full_g[kd:], rtol=1e-10, atol=1e-12)
    assert np.allclose(H, full_H[kd:, kd:], rtol=1e-8, atol=1e-10)
    est = moebench.get_algorithm(ORACLE, n_experts=3, gating_init="truth", max_iter=1).fit(
        X, y, truth=data)
    est.gating_ = W - W[-1]
    grad, _ = est.stationarity(X, y)
    assert grad == pytest.approx(np.linalg.norm(g) / np.sqrt(np.mean(X**2)), rel=1e-10)
    assert grad > 1e-2


def test_the_theorem_config_validates():
    cfg = load_config("theorem")
    cells = cfg.cells()
    assert cfg.name == "theorem" and len(cells) == 1008
    assert {c.variant.algorithm for c in cells} == {ORACLE}
    inits = pd.Series([c.variant.params["gating_init"] for c in cells])
    assert (inits == "truth").sum() * 5 == (inits == "random").sum()
    ks = {(c.data["activation"], c.data["k"]) for c in cells}
    assert ks == {("linear", 2), ("linear", 4), ("linear", 8), ("sigmoid", 2), ("sigmoid", 4),
                  ("relu", 2), ("relu", 4)}
    # five random starts per data set, each with its own seed
    one = [c for c in cells if c.data_id == cells[0].data_id]
    assert len(one) == 6 and len({c.algorithm_seed() for c in one}) == 6


def test_an_oracle_on_csv_data_is_refused(tmp_path: Path):
    path = tmp_path / "d.csv"
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((50, 3))
    path.write_text("a,b,t\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows))
    with pytest.raises(ConfigError, match="algorithm 'oracle_gating_em' \\(variant 'o'\\) is an "
                                          "oracle: it needs the true parameters"):
        validate_config({"data": {"source": {"csv": str(path), "target": "t"}},
                         "algorithm": [{"name": ORACLE, "label": "o"}]})
    ok = validate_config({"data": {"n": 200, "d": 3, "k": 2},
                          "algorithm": [{"name": ORACLE, "label": "o"}]})
    assert ok.variants[0].algorithm == ORACLE


def test_worker_runs_it_and_records_the_gating(tmp_path):
    from moebench.sweep.worker import run_cell

    cfg = validate_config({"data": {"n": 3000, "d": 4, "k": 3, "n_test": 500},
                           "algorithm": [{"name": ORACLE, "label": "r"}]})
    s = run_cell(cfg.cells()[0], str(tmp_path), write=False)
    assert s["status"] == "ok", s["message"]
    assert s["fitted_grad_norm"] < 1e-3 and s["fitted_hessian_min_eig"] > 0
    assert sorted(c for c in s if c.startswith("fitted_gating_free_")) == [
        f"fitted_gating_free_{i}_{j}" for i in range(2) for j in range(4)]
    assert s["expert_error"] == 0.0


def _run(data_id: str, k: int, gating_init: str, ll: float, grad_norm: float, n_iter: int,
         gating: tuple[float, float] | None = None, status: str = "ok", **extra) -> dict:
    """One summary row (sigma 0.5) with, when given, its free gating row (g_00, g_01)."""
    row = dict(data_id=data_id, k=k, sigma=0.5, param_gating_init=gating_init, status=status,
               train_log_likelihood=ll, fitted_grad_norm=grad_norm, n_iter=n_iter, **extra)
    if gating is not None:
        row["fitted_gating_free_0_0"], row["fitted_gating_free_0_1"] = gating
    return row


def _summary() -> pd.DataFrame:
    """Two data sets; on A four random starts: one reaches, one stuck at a gap, one flat
    (the same likelihood, another gating), one unfinished (a gap, stopped by its budget at a
    tiny gradient norm); on B two starts, one reaches
    (above the truth-started run), one failed; C has no successful truth-started run."""
    nan = math.nan
    rows = [
        _run("A", 2, "truth", -1.0, 1e-6, 5, (1.0, 0.0)),
        _run("A", 2, "random", -1.00001, 1e-6, 10, (1.001, 0.0)),
        _run("A", 2, "random", -1.01, 1e-3, 20, (-1.0, 0.0)),
        _run("A", 2, "random", -1.0, 1e-6, 40, (1.0, 0.5)),
        # a tiny gradient, but the budget ended it: unfinished
        _run("A", 2, "random", -1.05, 1e-5, 1000, (0.5, 0.5), stop_reason="max_iter"),
        _run("B", 4, "truth", -2.0, 1e-6, 5, (0.0, 2.0)),
        _run("B", 4, "random", -1.9, 1e-6, 30, (0.0, 2.01)),
        _run("B", 4, "random", nan, nan, 0, (nan, nan), status="error"),
        _run("C", 4, "truth", nan, nan, 0, status="error"),
        _run("C", 4, "random", -3.0, 1e-6, 3),
    ]
    frame = pd.DataFrame(rows)
    frame["stop_reason"] = frame["stop_reason"].fillna("converged")
    return frame


def test_runs_are_classified_against_the_truth_started_run():
    runs = theorem_runs(_summary())
    assert list(runs["data_id"]) == ["A", "A", "A", "A", "B", "B"]  # C has no reference
    assert list(runs["reached"]) == [True, False, False, False, True, False]
    assert list(runs["reached_ll"]) == [True, False, True, False, True, False]
    assert list(runs["stuck"]) == [False, True, False, False, False, False]
    assert list(runs["flat"]) == [False, False, True, False, False, False]
    assert list(runs["unfinished"]) == [False, False, False, True, False, False]
    assert list(runs["failed"]) == [False, False, False, False, False, True]
    # B's first start ends 0.1 above the truth-started run, its gating 0.5% away: reached
    assert runs["better"].tolist() == [False, False, False, False, True, False]
    assert runs.loc[4, "gating_distance"] == pytest.approx(0.005)
    assert runs.loc[2, "gating_distance"] == pytest.approx(0.5)
    assert runs.loc[0, "ll_gap"] == pytest.approx(1e-5)
    assert runs.loc[1, "gating_distance"] == pytest.approx(2.0)


def test_table_gives_rates_with_wilson_intervals_and_counts():
    table = theorem_table(_summary(), ["k"])
    a = table.set_index("k").loc[2]
    assert (a["starts"], a["data_sets"], a["n_reached"], a["n_reached_ll"]) == (4, 1, 1, 2)
    assert (a["n_stuck"], a["n_unfinished"], a["n_flat"], a["n_failed"]) == (1, 1, 1, 0)
    assert a["rate"] == pytest.approx(1 / 4)
    assert (a["low"], a["high"]) == pytest.approx(wilson_interval(1, 4))
    assert a["median_iterations"] == 30
    b = table.set_index("k").loc[4]
    # B's first start: likelihood above the reference and gating within tolerance: reached
    assert (b["starts"], b["n_reached"], b["n_failed"], b["n_better"]) == (2, 1, 1, 1)
    assert b["median_iterations"] == 30  # the failed run's 0 iterations left out
    text = theorem_report(_summary(), ["k", "sigma"])
    assert f"1/4 = {rate_interval(1, 4)}" in text and f"1/2 = {rate_interval(1, 2)}" in text
    assert rate_interval(1, 4).startswith("25% [5") and "70%]" in rate_interval(1, 4)
    assert (f"All cells: 2 of 6 random starts reached the ML gating, {rate_interval(2, 6)}; "
            "1 stuck, 1 unfinished, 1 flat, 1 failed") in text


@pytest.mark.parametrize("drop, needle", [
    ("train_log_likelihood", "lacks column\\(s\\) train_log_likelihood"),
    ("param_gating_init", "needs successful param_gating_init = \"truth\" runs.*found 0 "
                          "and 10"),  # unset: the oracle's default, random
    ("truth", "needs successful param_gating_init = \"truth\" runs.*found 0 and 7"),
], ids=["no-likelihood", "no-init-column", "no-truth-runs"])
def test_table_refuses_a_summary_that_is_not_a_theorem_sweep(drop, needle):
    s = _summary()
    s = s.drop(columns=drop) if drop in s.columns else s[s["param_gating_init"] != drop]
    with pytest.raises(ValueError, match=needle):
        theorem_table(s)


def test_report_marks_the_oracle():
    from moebench.sweep.report import _oracle_mark

    assert _oracle_mark(pd.DataFrame({"algorithm": [ORACLE]})) == " (oracle)"
    assert _oracle_mark(pd.DataFrame({"algorithm": ["joint_em"]})) == ""


def test_list_and_report_table_cli(tmp_path, capsys):
    """`moebench list` shows the oracle apart; `moebench report --table theorem` reads a
    results folder of the oracle (one truth-started and one random run)."""
    from moebench.cli import main
    from moebench.sweep.worker import run_cell

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "oracles (fit with the true parameters: synthetic data only):" in out
    assert out.index("oracle_gating_em") > out.index("oracles (")
    cfg = validate_config({"data": {"n": 2000, "d": 3, "k": 2, "n_test": 200},
                           "algorithm": [{"name": ORACLE, "label": "truth",
                                          "params": {"gating_init": "truth"}},
                                         {"name": ORACLE, "label": "random_1"}]})
    for cell in cfg.cells():
        assert run_cell(cell, str(tmp_path))["status"] == "ok"
    assert main(["report", str(tmp_path), "--table", "theorem"]) == 0
    text = capsys.readouterr().out
    assert f"| 2 | 1 (1) | 1/1 = {rate_interval(1, 1)} |" in text
    assert main(["report", str(tmp_path)]) == 0
    assert "| truth (oracle) |" in capsys.readouterr().out
