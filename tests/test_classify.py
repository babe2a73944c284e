"""The certified stuck test: the polisher, the classes, and ``moebench classify``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from moebench import make_moe
from moebench.activations import get_activation
from moebench.cli import main
from moebench.em import run_em
from moebench.stationarity import stationarity
from moebench.sweep import classify as c
from moebench.sweep.gridlock import mark_stuck

LINEAR = get_activation("linear")


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Runs on one data set (truth log-likelihood 1.0, above them all), defaults filled in."""
    base = dict(data_id="D", status="ok", true_train_log_likelihood=1.0, climbs=True,
                has_parameters=True, polished_log_likelihood=math.nan,
                polished_grad_norm=math.nan, polished_hessian_min_eig=math.nan,
                polish_error="")
    return pd.DataFrame([{**base, "run_id": str(i), **r} for i, r in enumerate(rows)])


def _polished(res: c.Polished) -> dict:
    return dict(polished_log_likelihood=res.log_likelihood, polished_grad_norm=res.grad_norm,
                polished_hessian_min_eig=res.hessian_min_eig)


def test_every_branch_of_the_classes():
    rows = [
        dict(train_log_likelihood=0.5),  # the best: fine
        dict(train_log_likelihood=0.4995),  # within tol of the best: fine
        dict(train_log_likelihood=0.2, polished_log_likelihood=0.5, polished_grad_norm=1e-9,
             polished_hessian_min_eig=0.1),  # slow
        dict(train_log_likelihood=0.2, polished_log_likelihood=0.3, polished_grad_norm=1e-9,
             polished_hessian_min_eig=2e-6),  # local maximum
        dict(train_log_likelihood=0.2, polished_log_likelihood=0.3, polished_grad_norm=1e-9,
             polished_hessian_min_eig=-2e-6),  # saddle
        dict(train_log_likelihood=0.2, polished_log_likelihood=0.3, polished_grad_norm=1e-9,
             polished_hessian_min_eig=5e-7),  # singular
        dict(train_log_likelihood=0.2, polished_log_likelihood=0.3, polished_grad_norm=2e-5,
             polished_hessian_min_eig=0.1),  # unfinished: not stationary
        dict(train_log_likelihood=0.2, polish_error="FloatingPointError: nan"),  # failed
        dict(train_log_likelihood=math.nan, status="error"),  # failed
        dict(train_log_likelihood=0.2, climbs=False),  # not classified
        dict(train_log_likelihood=0.2, has_parameters=False),  # no parameters
        dict(train_log_likelihood=0.2),  # short, not polished
    ]
    got = list(c.assign_classes(_frame(rows), 1e-3))
    assert got == [c.FINE, c.FINE, c.SLOW, c.LOCAL_MAX, c.SADDLE, c.SINGULAR, c.UNFINISHED,
                   c.FAILED, c.FAILED, c.NOT_CLASSIFIED, c.NO_PARAMETERS, c.NOT_POLISHED]
    assert set(got) <= set(c.CLASSES)


def test_the_best_includes_polished_points_and_the_truth_condition():
    """A polished point raises the best (the first run becomes short); above the truth's
    log-likelihood a run is never short; without a truth only the best counts."""
    rows = [dict(train_log_likelihood=-0.2),
            dict(train_log_likelihood=-0.5, polished_log_likelihood=-0.1,
                 polished_grad_norm=1e-9, polished_hessian_min_eig=0.1)]
    frame = _frame(rows)
    assert list(c.best_log_likelihood(frame)) == [-0.1, -0.1]
    assert list(c.assign_classes(frame, 1e-3)) == [c.NOT_POLISHED, c.SLOW]
    above_truth = frame.assign(true_train_log_likelihood=-0.3)
    assert list(c.assign_classes(above_truth, 1e-3)) == [c.FINE, c.SLOW]
    real = frame.drop(columns="true_train_log_likelihood")
    assert list(c.assign_classes(real, 1e-3)) == [c.NOT_POLISHED, c.SLOW]


def _spurious(X, y, k):
    a = np.linalg.lstsq(X, y, rcond=None)[0]
    return np.tile(a, (k, 1)), np.zeros((k, X.shape[1])), float(np.sqrt(np.mean((y - X @ a)
                                                                                 ** 2)))


def test_identical_experts_polish_to_a_certified_saddle():
    """k = 2, both experts the least-squares fit, zero gating: an exact stationary point that
    EM cannot leave (the responsibilities stay 1/2); the polisher stays, the Hessian says
    saddle, and so does the class."""
    data = make_moe(n=4000, d=4, k=2, sigma=0.1, gating_scale=2.0, random_state=3)
    A, W, s = _spurious(data.X, data.y, 2)
    res = c.polish(data.X, data.y, A, W, s, "linear")
    assert res.newton_steps == 0 and res.grad_norm < 1e-9
    assert res.hessian_min_eig < -0.1
    good = c.polish(data.X, data.y, data.model.experts, data.model.gating, data.model.sigma,
                    "linear")
    frame = _frame([dict(train_log_likelihood=good.log_likelihood - 1e-4),
                    dict(train_log_likelihood=res.log_likelihood, **_polished(res))])
    frame["true_train_log_likelihood"] = data.model.mean_log_likelihood(data.X, data.y)
    assert list(c.assign_classes(frame, 1e-3)) == [c.FINE, c.SADDLE]


def test_em_stopped_early_from_a_good_start_is_slow():
    data = make_moe(n=4000, d=4, k=3, sigma=0.1, gating_scale=2.0, random_state=1)
    m = data.model
    rng = np.random.default_rng(0)
    start = m.experts + 0.3 * rng.standard_normal(m.experts.shape)
    short = run_em(data.X, data.y, start, np.zeros_like(m.gating), 0.5, LINEAR, max_iter=3)
    full = run_em(data.X, data.y, start, np.zeros_like(m.gating), 0.5, LINEAR, max_iter=500,
                  tol=1e-9)
    res = c.polish(data.X, data.y, short.experts, short.gating, short.sigma, "linear")
    assert res.log_likelihood > short.log_likelihood + 0.01
    frame = _frame([dict(train_log_likelihood=full.log_likelihood),
                    dict(train_log_likelihood=short.log_likelihood, **_polished(res))])
    frame["true_train_log_likelihood"] = m.mean_log_likelihood(data.X, data.y)
    assert frame.loc[1, "train_log_likelihood"] < frame.loc[0, "train_log_likelihood"] - 1e-3
    assert list(c.assign_classes(frame, 1e-3)) == [c.FINE, c.SLOW]


def test_a_spurious_local_maximum_is_certified():
    """Linear experts at 90 degrees, k = 8, gating norm 8: this random start ends 0.07 per
    sample below the truth's polished point, where the Newton finish brings the gradient to
    rounding and the loss Hessian is positive definite: a certified local maximum."""
    data = make_moe(3000, 10, 8, "linear", sigma=0.05, gating_scale=8.0, expert_angle=90.0,
                    random_state=1)
    m = data.model
    best = c.polish(data.X, data.y, m.experts, m.gating, m.sigma, "linear")
    start = np.random.default_rng(1).standard_normal((8, 10))
    res = c.polish(data.X, data.y, start, np.zeros((8, 10)), 1.0, "linear")
    assert best.log_likelihood - res.log_likelihood > 0.05
    assert res.newton_steps >= 1 and res.grad_norm < 1e-12
    assert res.hessian_min_eig > 10 * c.HESSIAN_EPS
    # the eigenvalue is the dense one (P = 151 < the Lanczos limit) and Lanczos agrees
    lanczos = stationarity(data.X, data.y, res.experts, res.gating, res.sigma, "linear",
                           hessian_max_params=0)[1]
    assert abs(lanczos - res.hessian_min_eig) < 1e-8
    frame = _frame([dict(train_log_likelihood=best.log_likelihood),
                    dict(train_log_likelihood=res.log_likelihood, **_polished(res))])
    frame["true_train_log_likelihood"] = m.mean_log_likelihood(data.X, data.y)
    assert list(c.assign_classes(frame, 1e-3)) == [c.FINE, c.LOCAL_MAX]


def test_polish_refuses_bad_inputs():
    data = make_moe(n=200, d=3, k=2, random_state=0)
    with pytest.raises(ValueError, match="shape"):
        c.polish(data.X, data.y, np.zeros((2, 4)), np.zeros((2, 4)), 1.0, "linear")
    with pytest.raises(ValueError, match="sigma"):
        c.polish(data.X, data.y, np.zeros((2, 3)), np.zeros((2, 3)), 0.0, "linear")


def test_no_size_cap_d100_k10():
    """d = 100, k = 10 (P = 1901, the Lanczos path): a finite eigenvalue, not a skip."""
    data = make_moe(n=1500, d=100, k=10, sigma=0.1, random_state=0)
    m = data.model
    gn, eig = stationarity(data.X, data.y, m.experts, m.gating, m.sigma, "linear")
    assert np.isfinite(gn) and np.isfinite(eig)


TINY = """
name = "tiny_classify"
description = "classify test"
seed = 0
repetitions = 2
success_threshold = 0.1

[data]
n = 1500
d = 4
k = 3
activation = "linear"
sigma = 0.1
gating = "orthogonal"
gating_scale = 2.0
n_test = 200

[budget]
max_iter = 200
max_time = 30.0
timeout = 120.0

[[algorithm]]
name = "tensor_em"
label = "tensor_em"

[[algorithm]]
name = "tensor_em"
label = "tensor_em_refine"
params = {refine = true}

[[algorithm]]
name = "joint_em"
label = "joint_em"
params = {n_init = 1}

[[algorithm]]
name = "joint_em"
label = "joint_em_short"
params = {n_init = 1}
max_iter = 2

[[algorithm]]
name = "alt_min"
label = "alt_min"
"""


def test_classify_a_real_sweep_folder(tmp_path, capsys, monkeypatch):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "res"
    assert main(["run", str(config), "--out", str(out), "--jobs", "1", "--quiet",
                 "--no-plot"]) == 0
    summary = pd.read_parquet(out / "summary.parquet")
    # every climbing run records its gradient norm and Hessian eigenvalue (refine too)
    climbing = summary["label"].isin(["tensor_em_refine", "joint_em", "joint_em_short"])
    ok = summary["status"].eq("ok")
    assert np.isfinite(summary.loc[climbing & ok, "fitted_grad_norm"]).all()
    assert np.isfinite(summary.loc[climbing & ok, "fitted_hessian_min_eig"]).all()
    assert summary.loc[~climbing, "fitted_grad_norm"].isna().all()
    capsys.readouterr()
    assert main(["classify", str(out), "--quiet"]) == 0
    first = capsys.readouterr().out
    classes = pd.read_parquet(out / "classes.parquet").set_index("run_id")
    assert len(classes) == len(summary)
    by_label = classes.groupby("label")["class"].agg(set)
    assert by_label["tensor_em"] <= {c.NOT_CLASSIFIED, c.FAILED}
    assert by_label["alt_min"] <= {c.NOT_CLASSIFIED, c.FAILED}
    certified = {c.FINE, c.SLOW, c.LOCAL_MAX, c.SADDLE, c.SINGULAR, c.UNFINISHED, c.FAILED}
    for label in ("tensor_em_refine", "joint_em", "joint_em_short"):
        assert by_label[label] <= certified, (label, by_label[label])
    # two EM iterations from a random start end short; the polisher continues them
    short = classes[classes["label"] == "joint_em_short"]
    assert (short["class"] != c.FINE).all()
    assert np.isfinite(short["polished_log_likelihood"]).all()
    assert "polished 0 now" not in first
    # resumable: a second call polishes nothing and writes the same classes
    calls = []
    monkeypatch.setattr(c, "polish", lambda *a, **k: calls.append(a))
    assert main(["classify", str(out), "--quiet"]) == 0
    assert calls == [] and "polished 0 now" in capsys.readouterr().out
    again = pd.read_parquet(out / "classes.parquet").set_index("run_id")
    pd.testing.assert_frame_equal(again, classes)
    # the report uses the classes; without them it says "uncertified"
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| local maximum | saddle | singular | slow | unfinished |" in text
    assert c.CLASS_DEFINITIONS[c.UNFINISHED] in text and "Uncertified" not in text
    (out / "classes.parquet").rename(tmp_path / "classes.parquet")
    assert main(["report", str(out)]) == 0
    assert "Uncertified" in capsys.readouterr().out


def test_stale_classes_are_not_used(tmp_path, capsys):
    summary = _frame([dict(train_log_likelihood=0.5), dict(train_log_likelihood=0.2)])
    classes = summary.assign(**{"class": [c.FINE, c.SLOW], "classify_tol": 1e-3,
                                "polish_iterations": np.nan, "polish_converged": None,
                                "polish_stop_reason": None, "polish_time": np.nan})
    classes.to_parquet(tmp_path / c.CLASSES_FILE)
    attached = c.attach_classes(summary, tmp_path)
    assert list(attached["class"]) == [c.FINE, c.SLOW]
    marked = mark_stuck(attached)
    assert marked["certified"].all() and list(marked["run_class"]) == [c.FINE, c.NOT_POLISHED]
    more = pd.concat([summary, _frame([dict(train_log_likelihood=0.1)]).assign(run_id="new")])
    assert "class" not in c.attach_classes(more, tmp_path).columns
    assert "stale (1 run(s) not classified" in capsys.readouterr().err
    changed = summary.assign(train_log_likelihood=[0.5, 0.3])
    assert "class" not in c.attach_classes(changed, tmp_path).columns


def test_classify_real_data_relative_to_the_best_found(tmp_path, capsys):
    """A CSV source has no truth: the classes are relative to the best run found."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = np.where(X[:, 0] > 0, X @ [2.0, -1.0, 0.5], X @ [-1.0, 0.5, 2.0])
    y += 0.1 * rng.normal(size=600)
    path = tmp_path / "mix.csv"
    path.write_text("a,b,c,target\n" + "\n".join(
        ",".join(f"{v:.10g}" for v in (*row, t)) for row, t in zip(X, y, strict=True)) + "\n")
    config = tmp_path / "real.toml"
    config.write_text(f"""
name = "real_classify"
seed = 0
[data]
source = {{csv = "{path}", target = "target"}}
k = 2
folds = 2
[budget]
max_iter = 200
[[algorithm]]
name = "joint_em"
label = "joint_em"
params = {{n_init = 3}}
[[algorithm]]
name = "joint_em"
label = "joint_em_short"
params = {{n_init = 1}}
max_iter = 1
""")
    out = tmp_path / "res"
    assert main(["run", str(config), "--out", str(out), "--jobs", "1", "--quiet",
                 "--no-plot"]) == 0
    assert main(["classify", str(out), "--quiet"]) == 0
    classes = pd.read_parquet(out / "classes.parquet")
    em = classes[classes["label"].str.startswith("joint_em")]
    assert set(em["class"]) <= {c.FINE, c.SLOW, c.LOCAL_MAX, c.SADDLE, c.SINGULAR,
                                c.UNFINISHED}
    assert (em.loc[em["label"] == "joint_em_short", "class"] != c.FINE).all()
    assert set(classes.loc[classes["label"] == "linear_regression", "class"]) == {
        c.NOT_CLASSIFIED}
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| local maximum |" in text and "below the truth" not in text


def test_over_specified_stationary_short_runs_are_singular():
    short = dict(train_log_likelihood=0.2, polished_log_likelihood=0.3, polished_grad_norm=1e-9)
    rows = [dict(train_log_likelihood=0.5, k=2, k_fit=3),
            dict(**short, polished_hessian_min_eig=0.1, k=2, k_fit=3),
            dict(**short, polished_hessian_min_eig=-0.1, k=2, k_fit=4),
            dict(**short, polished_hessian_min_eig=0.1, k=2, k_fit=2),
            dict(**short, polished_hessian_min_eig=-0.1, k=2, k_fit=math.nan)]
    got = list(c.assign_classes(_frame(rows), 1e-3))
    assert got == [c.FINE, c.SINGULAR, c.SINGULAR, c.LOCAL_MAX, c.SADDLE]


def test_fits_of_a_model_the_polisher_does_not_fit_are_not_classified():
    """joint EM with intercepts or per-expert noise is not polished by the plain-model
    polisher (it would polish the wrong likelihood): its variant gets no polisher."""
    from moebench.sweep.config import load_config

    config = load_config("softmax_gating")
    runs = {f"r{i}": run for i, run in enumerate(config.iter_cells())}
    summary = pd.DataFrame({"run_id": list(runs),
                            "label": [r.variant.label for r in runs.values()]})
    assert set(summary["label"]) == {"em_near_truth", "em_near_truth_best5"}
    assert c.variant_polishers(summary, runs) == {"em_near_truth": "",
                                                  "em_near_truth_best5": ""}
    plain = load_config("quickstart")
    runs = {f"q{i}": run for i, run in enumerate(plain.iter_cells())}
    summary = pd.DataFrame({"run_id": list(runs),
                            "label": [r.variant.label for r in runs.values()]})
    assert c.variant_polishers(summary, runs) == {
        "tensor_em": "", "tensor_em_refine": "joint", "joint_em": "joint", "sgd": "joint"}
