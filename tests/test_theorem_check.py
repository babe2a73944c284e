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
            "1 stuck (uncertified), 1 unfinished (uncertified), 1 flat, 1 failed") in text
    # no classes: the table says its stuck test is uncertified and how to certify it
    assert "Uncertified (no `moebench classify` classes)" in text
    assert "moebench classify RESULTS --tol 0.0001" in text
    assert "| stuck (uncertified) | unfinished (uncertified) |" in text


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


# --------------------------------------------------------------------------- certified classes
def test_gating_stationarity_has_no_size_cap():
    """Above the dense limit the gating Hessian's smallest eigenvalue is a Lanczos estimate on
    exact gating Hessian-vector products: the dense value to 1e-7, never NaN."""
    from moebench.activations import get_activation
    from moebench.oracle import GatingHessianProduct, gating_stationarity

    data = moebench.make_moe(3000, 6, 4, sigma=0.3, gating_scale=2.0, random_state=1)
    act = get_activation("linear")
    W = np.random.default_rng(0).standard_normal((4, 6))
    dense = gating_stationarity(data.X, data.y, data.model.experts, W, 0.3, act)
    lanczos = gating_stationarity(data.X, data.y, data.model.experts, W, 0.3, act,
                                  hessian_max_params=1)
    assert lanczos[0] == dense[0]
    assert lanczos[1] == pytest.approx(dense[1], abs=1e-7) and dense[1] < 0
    # the products are those of the formed Hessian
    _, H = gating_gradient_hessian(data.X, data.y, data.model.experts, W, 0.3, act)
    v = np.random.default_rng(1).standard_normal(H.shape[0])
    hvp = GatingHessianProduct(data.X, data.y, data.model.experts, W, 0.3, act)
    assert np.allclose(hvp(v), H @ v, rtol=1e-10, atol=1e-12)
    # weights recomputed per product above the storage limit: the same products
    import moebench.stationarity as st

    limit, st.HVP_MAX_STORED = st.HVP_MAX_STORED, 0
    try:
        unstored = GatingHessianProduct(data.X, data.y, data.model.experts, W, 0.3, act)
    finally:
        st.HVP_MAX_STORED = limit
    assert unstored._weights is None and np.array_equal(unstored(v), hvp(v))


def test_gating_polisher_takes_a_slow_run_to_the_best():
    """A random start of the gating EM stopped after 3 iterations is short; the gating
    polisher (experts and sigma fixed) reaches the fully converged run's likelihood at a
    certified maximum of the gating likelihood: the class is slow."""
    from moebench.activations import get_activation
    from moebench.em import run_em
    from moebench.starts import data_scale_start
    from moebench.sweep import classify as c

    data = moebench.make_moe(4000, 4, 3, sigma=0.3, gating_scale=2.0, random_state=3)
    m, act = data.model, get_activation("linear")
    start = data_scale_start(np.random.default_rng(0), data.X, data.y, 3)[1]
    kw = dict(update_experts=False, update_sigma=False, ridge=0.0)
    short = run_em(data.X, data.y, m.experts, start, m.sigma, act, max_iter=3, **kw)
    full = run_em(data.X, data.y, m.experts, start, m.sigma, act, max_iter=1000, tol=1e-12,
                  **kw)
    assert short.log_likelihood < full.log_likelihood - 1e-3
    res = c.polish_gating(data.X, data.y, m.experts, short.gating, m.sigma, "linear")
    assert np.array_equal(res.experts, m.experts) and res.sigma == m.sigma
    assert res.log_likelihood == pytest.approx(full.log_likelihood, abs=1e-8)
    assert res.grad_norm <= c.CERTIFY_GRAD_TOL and res.hessian_min_eig > c.HESSIAN_EPS
    frame = pd.DataFrame({
        "run_id": ["full", "short"], "data_id": "D", "status": "ok", "climbs": True,
        "has_parameters": True, "polisher": "gating",
        # the gating problem ignores the truth condition (the truth is a point of it)
        "true_train_log_likelihood": 10.0,
        "train_log_likelihood": [full.log_likelihood, short.log_likelihood],
        "polished_log_likelihood": [math.nan, res.log_likelihood],
        "polished_grad_norm": [math.nan, res.grad_norm],
        "polished_hessian_min_eig": [math.nan, res.hessian_min_eig], "polish_error": ""})
    assert list(c.assign_classes(frame, 1e-4)) == [c.FINE, c.SLOW]
    # the same rows in the joint problem: both above the truth - tol? no: below; still the
    # truth condition applies there (short needs ll < truth - tol), and the best is per group
    joint = frame.assign(polisher="joint", true_train_log_likelihood=short.log_likelihood)
    assert list(c.assign_classes(joint, 1e-4)) == [c.FINE, c.FINE]
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        c.polish_gating(data.X, data.y, m.experts, short.gating, 0.0, "linear")


THEOREM_TINY = """
name = "theorem_tiny"
seed = 3
repetitions = 1
success_threshold = 0.1

[data]
n = 1500
d = 5
k = [2, 4]
activation = "linear"
sigma = 0.3
gating = "orthogonal"
gating_scale = 4.0
n_test = 200

[budget]
max_iter = 300
max_time = 30.0
timeout = 120.0

[[algorithm]]
name = "oracle_gating_em"
label = "truth"
params = {gating_init = "truth"}

[[algorithm]]
name = "oracle_gating_em"
label = "random_1"
params = {gating_init = "random"}

[[algorithm]]
name = "oracle_gating_em"
label = "random_2"
params = {gating_init = "random"}
max_iter = 2
"""


def test_theorem_sweep_classified_and_reported(tmp_path, capsys):
    """A tiny theorem sweep, run, classified and reported: every random start has a
    certified class of the gating problem, and the theorem table counts them."""
    from moebench.cli import main
    from moebench.sweep import classify as c

    config = tmp_path / "theorem_tiny.toml"
    config.write_text(THEOREM_TINY)
    out = tmp_path / "res"
    assert main(["run", str(config), "--out", str(out), "--jobs", "1", "--quiet",
                 "--no-plot"]) == 0
    assert main(["report", str(out), "--table", "theorem"]) == 0
    assert "Uncertified (no `moebench classify` classes)" in capsys.readouterr().out
    assert main(["classify", str(out), "--quiet", "--tol", "1e-4"]) == 0
    capsys.readouterr()
    classes = pd.read_parquet(out / "classes.parquet")
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(classes) == len(summary) == 6
    assert set(classes["polisher"]) == {"gating"} and classes["climbs"].all()
    assert (classes["best_group"] == classes["data_id"] + "|gating").all()
    certified = {c.FINE, c.SLOW, c.LOCAL_MAX, c.SADDLE, c.SINGULAR, c.UNFINISHED}
    assert set(classes["class"]) <= certified, set(classes["class"])
    # two EM iterations from a random start end short: polished, certified
    short = classes[classes["label"] == "random_2"]
    assert (short["class"] != c.FINE).all()
    assert np.isfinite(short["polished_log_likelihood"]).all()
    assert np.isfinite(short["polished_hessian_min_eig"]).all()
    assert main(["report", str(out), "--table", "theorem"]) == 0
    text = capsys.readouterr().out
    assert "uncertified" not in text.lower()
    assert ("| local maximum (stuck) | saddle | singular | slow | unfinished | not classified |"
            in text)
    assert c.CLASS_DEFINITIONS[c.LOCAL_MAX] in text
    # the report's counts are the classes of the random starts with a gap
    from moebench.sweep.classify import attach_classes
    from moebench.sweep.store import load_results

    runs = theorem_runs(attach_classes(load_results(out)[0], out))
    assert len(runs) == 4 and runs["certified"].all()
    gapped = runs[runs["gapped"]]
    assert len(gapped) >= 1  # random_2's two iterations
    assert set(gapped["theorem_class"]) <= {c.SLOW, c.LOCAL_MAX, c.SADDLE, c.SINGULAR,
                                            c.UNFINISHED}
    n = {name: int((gapped["theorem_class"] == name).sum()) for name in certified}
    assert f"{n[c.SLOW]} slow" in text and f"{n[c.LOCAL_MAX]} local maximum (stuck)" in text
    # the figure counts the same classes, by their letters
    from moebench.sweep.plots_maps import plot_theorem

    fig = plot_theorem(attach_classes(load_results(out)[0], out))
    assert "red: certified (moebench classify)" in " ".join(fig._suptitle.get_text().split())
    letters = {"m": c.LOCAL_MAX, "s": c.SADDLE, "z": c.SINGULAR, "w": c.SLOW, "u": c.UNFINISHED}
    drawn = {letter: 0 for letter in letters}
    for ax in fig.axes:
        for t in ax.texts:
            for item in t.get_text().split():
                if item[-1] in letters:
                    drawn[item[-1]] += int(item[:-1])
    assert drawn == {letter: n[name] for letter, name in letters.items()}


def test_certified_classes_replace_the_gap_rule():
    """With the classes of ``moebench classify`` attached, a start with a gap is counted by
    its polished class at the theorem's tolerance: A's stuck-by-the-gap-rule start polishes
    to a certified local maximum, its budget-ended start to the best (slow); a start with a
    gap that classify did not polish (its tolerance was larger) is not classified."""
    from moebench.sweep import classify as c

    s = _summary()
    s = s[s["data_id"] == "A"].reset_index(drop=True)
    extra = _run("A", 2, "random", -1.0005, 1e-6, 30, (1.0, 0.0))  # gap 5e-4
    s = pd.concat([s, pd.DataFrame([extra])], ignore_index=True)
    s["stop_reason"] = s["stop_reason"].fillna("converged")
    nan = math.nan
    s = s.assign(**{"class": "fine", "climbs": True, "polisher": "gating",
                    "has_parameters": True, "classify_tol": 1e-3, "polish_error": "",
                    "polished_log_likelihood": [nan, nan, -1.01, nan, -1.0, nan],
                    "polished_grad_norm": [nan, nan, 1e-9, nan, 1e-12, nan],
                    "polished_hessian_min_eig": [nan, nan, 1e-3, nan, 1e-2, nan]})
    runs = theorem_runs(s)
    assert runs["certified"].all()
    assert list(runs["gapped"]) == [False, True, False, True, True]
    assert list(runs["theorem_class"]) == [c.FINE, c.LOCAL_MAX, c.FINE, c.SLOW,
                                           c.NOT_POLISHED]
    assert list(runs["stuck"]) == [False, True, False, False, False]
    assert list(runs["slow"]) == [False, False, False, True, False]
    assert list(runs["not_classified"]) == [False, False, False, False, True]
    assert not runs["unfinished"].any() and not runs["saddle"].any()
    text = theorem_report(s, ["k"])
    assert ("1 local maximum (stuck), 0 saddle, 0 singular, 1 slow, 0 unfinished, "
            "1 not classified, 1 flat, 0 failed") in text
    assert "uncertified" not in text.lower()
