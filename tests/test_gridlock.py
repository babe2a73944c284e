import numpy as np
import pandas as pd
import pytest

from moebench.sweep.gridlock import (
    gridlock_regions,
    local_search_labels,
    mark_stuck,
    phase_table,
)
from moebench.sweep.plots_maps import plot_gridlock, plot_phase_maps


def _summary():
    rows = []
    # two data sets per k; truth ll -1.0; "em" stuck on one data set at k=4
    for k in (2, 4):
        for rep in range(2):
            did = f"k{k}r{rep}"
            rows.append(dict(data_id=did, k=k, label="ref", status="ok", run_id=f"{did}a",
                             train_log_likelihood=-0.999, true_train_log_likelihood=-1.0,
                             success=True, expert_error=0.01))
            ll = -1.2 if (k == 4) else -0.9995  # -0.9995: sampling noise, not stuck
            rows.append(dict(data_id=did, k=k, label="em", status="ok", run_id=f"{did}b",
                             train_log_likelihood=ll, true_train_log_likelihood=-1.0,
                             success=ll > -1.1, expert_error=0.5 if ll < -1.1 else 0.01))
            rows.append(dict(data_id=did, k=k, label="bad", status="error", run_id=f"{did}c",
                             train_log_likelihood=np.nan, true_train_log_likelihood=-1.0,
                             success=False, expert_error=np.nan))
    return pd.DataFrame(rows)


def test_stuck_needs_gap_to_best_and_to_truth():
    m = mark_stuck(_summary(), tol=1e-3)
    em = m[m.label == "em"]
    assert em[em.k == 4].stuck.all() and not em[em.k == 2].stuck.any()
    assert not m[m.label == "bad"].stuck.any()  # failures are not "stuck"
    assert m[m.label == "ref"].likelihood_gap.eq(0).all()


def test_without_truth_only_the_gap_to_the_best_counts():
    m = mark_stuck(_summary().drop(columns="true_train_log_likelihood"))
    em = m[m.label == "em"]
    assert em[em.k == 4].stuck.all() and not em[em.k == 2].stuck.any()


def test_phase_table_and_regions():
    table = phase_table(_summary(), ["k"])
    row = table[(table.k == 4) & (table.label == "em")].iloc[0]
    assert row.stuck_rate == 1.0 and row.success_rate == 0.0 and row.runs == 2
    regions = gridlock_regions(table, ["k"], baselines=["em"], reference="ref")
    assert regions.k.tolist() == [4]


def test_phase_maps_are_written(tmp_path):
    s = _summary()
    s["sigma"] = 0.1
    files = plot_phase_maps(s, "k", "sigma", tmp_path)
    assert {f.name for f in files} == {"phase_em.png", "phase_ref.png", "phase_bad.png"}
    assert all(f.stat().st_size > 1000 for f in files)


def test_missing_columns_and_axes_are_named():
    with pytest.raises(ValueError, match="train_log_likelihood"):
        mark_stuck(_summary().drop(columns="train_log_likelihood"))
    with pytest.raises(ValueError, match="unknown axis column"):
        phase_table(_summary(), ["gating_scale"])


def test_gridlock_figure_names_the_cells_in_the_region():
    fig = plot_gridlock(_summary(), ["k"], reference="ref")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["em: 1 of 2 cells", "bad: 0 of 2 cells"]
    em_ax = fig.axes[0]
    assert [t.get_text() for t in em_ax.texts] == ["k=4"]  # the one gridlock cell, named
    with pytest.raises(ValueError, match="unknown reference variant 'nope'"):
        plot_gridlock(_summary(), ["k"], reference="nope")
    with pytest.raises(ValueError, match="unknown baseline variant"):
        plot_gridlock(_summary(), ["k"], reference="ref", baselines=["zzz"])


def test_local_search_labels_leave_out_moment_and_hard_assignment_methods():
    s = pd.DataFrame({"label": ["tensor_em", "refine", "em1", "adam", "alt_min", "mine"],
                      "algorithm": ["tensor_em", "tensor_em", "joint_em", "sgd", "alt_min",
                                    "not_registered"]})
    assert local_search_labels(s, reference="refine") == ["em1", "adam", "mine"]


# --------------------------------------------------------------------------- stuck or unfinished
def _classified_runs():
    """Three runs on one data set: joint EM converged (stationary, no gap), Adam stopped by
    a 2-epoch budget (not stationary), and the spurious stationary point of identical
    least-squares experts with zero gating (stationary, with a gap)."""
    torch = pytest.importorskip("torch")
    from moebench import make_moe
    from moebench.registry import get_algorithm
    from moebench.stationarity import mean_log_likelihood, stationarity
    from tests.test_stationarity import spurious_point

    data = make_moe(n=4000, d=4, k=2, sigma=0.1, gating_scale=2.0, random_state=3)
    truth_ll = data.model.mean_log_likelihood(data.X, data.y)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fits = {"converged": get_algorithm("joint_em", n_experts=2, random_state=0),
                "budget": get_algorithm("sgd", n_experts=2, max_epochs=2, random_state=0)}
        rows = []
        for label, est in fits.items():
            est.fit(data.X, data.y)
            est.stationarity(data.X, data.y)
            rows.append(dict(label=label, ll=est.log_likelihood_, grad=est.grad_norm_,
                             stop=est.stop_reason_))
    finally:
        torch.set_num_threads(before)
    A, W, s = spurious_point(data.X, data.y, 2)
    rows.append(dict(label="spurious", ll=mean_log_likelihood(data.X, data.y, A, W, s, "linear"),
                     grad=stationarity(data.X, data.y, A, W, s, "linear")[0], stop="converged"))
    return pd.DataFrame([dict(data_id="D", run_id=r["label"], label=r["label"], k=2, status="ok",
                              train_log_likelihood=r["ll"], true_train_log_likelihood=truth_ll,
                              fitted_grad_norm=r["grad"], stop_reason=r["stop"],
                              success=r["label"] == "converged", expert_error=0.01)
                         for r in rows])


def test_classification_of_constructed_runs():
    runs = _classified_runs()
    m = mark_stuck(runs).set_index("label")
    assert m.loc["converged", "run_class"] == "fine" and m.loc["converged", "stationary"] == 1
    assert m.loc["budget", "run_class"] == "unfinished" and m.loc["budget", "stationary"] == 0
    assert m.loc["spurious", "run_class"] == "stuck" and m.loc["spurious", "stuck"]
    assert m.loc["budget", "likelihood_gap"] > 1e-3  # it has a gap, but is not counted stuck
    assert not m.loc["budget", "stuck"] and not m.loc["converged", "stuck"]


def test_without_gradient_norms_classification_falls_back_to_the_gap():
    runs = _classified_runs().drop(columns="fitted_grad_norm")
    m = mark_stuck(runs).set_index("label")
    assert m.loc["budget", "run_class"] == "stuck (gap only)" and m.loc["budget", "stuck"]
    assert m.loc["spurious", "stuck"] and not m.loc["converged", "stuck"]
    assert not m["unfinished"].any() and m["stationary"].isna().all()


def test_report_splits_stuck_from_unfinished_and_gives_intervals():
    from moebench.sweep.report import report_table
    from moebench.sweep.report_phase import phase_report

    s = _summary().assign(gating_error=0.1, test_log_likelihood=-1.0, fit_time=1.0, n_iter=10)
    s["stop_reason"] = "converged"
    s["fitted_grad_norm"] = np.where(s.label == "em", 1.0, 1e-5)  # em: never stationary
    s.loc[s.label == "em", "stop_reason"] = "max_iter"
    table = phase_table(s, ["k"])
    em4 = table[(table.k == 4) & (table.label == "em")].iloc[0]
    assert em4.stuck_rate == 0 and em4.unfinished_rate == 1.0
    assert gridlock_regions(table, ["k"], baselines=["em"], reference="ref").empty
    text = report_table(s)
    assert "| unfinished |" in text and "Wilson 95%" in text and "100% [34%–100%]" in text
    phase = phase_report(s, ["k"], reference="ref", stuck_tols=[1e-4, 1e-2])
    assert "## Verdict by stuck tolerance" in phase and "| 0.0001 | em |" in phase
    old = report_table(s.drop(columns="fitted_grad_norm"))
    assert "| unfinished |" not in old and "stationarity is unknown" in old


def test_phase_report_shows_both_references_by_default():
    """The default references are derived from the variant list: the refinement of the tensor
    step (joint_em with init "tensor") first, then the paper's estimator (tensor_em), whatever
    their labels; without such a variant the report names the way to choose one."""
    from moebench.sweep.report_phase import phase_report

    s = _summary().assign(algorithm="joint_em", param_init=None)
    s.loc[s.label == "ref", "param_init"] = "tensor"
    s["label"] = s["label"].replace({"ref": "start_from_moments"})
    paper = s[s.label == "start_from_moments"].assign(
        label="paper", algorithm="tensor_em", param_init=None, success=False,
        run_id=lambda d: d.run_id + "p")
    both = pd.concat([paper, s], ignore_index=True)
    text = phase_report(both, ["k"])
    assert text.index("while start_from_moments succeeds") < text.index("while paper succeeds")
    with pytest.raises(ValueError, match="no reference variant.*--reference or the config's "
                                         r"\[report\] references"):
        phase_report(s.assign(param_init=None), ["k"])


def test_candidate_cells_and_their_config_entry():
    """A cell is a candidate when a local-search baseline is stuck in >= 20% of its seeds;
    the report lists them and gives a ``cells = [...]`` entry that a config accepts."""
    import tomllib

    from moebench.sweep.config import validate_config
    from moebench.sweep.gridlock import candidate_cells, cells_toml
    from moebench.sweep.report_phase import phase_report

    s = _summary()
    s["sigma"] = np.where(s.k == 4, 0.5, 0.05)
    table = phase_table(s, ["k", "sigma"])
    cells = candidate_cells(table, ["k", "sigma"], baselines=["em", "bad"])
    assert cells[["k", "sigma"]].values.tolist() == [[4, 0.5]]
    assert cells.variants.tolist() == ["em"] and cells.stuck_rate.tolist() == [1.0]
    assert candidate_cells(table, ["k", "sigma"], baselines=["ref"]).empty
    entry = cells_toml(cells, ["k", "sigma"])
    assert entry == "cells = [\n    {k = 4, sigma = 0.5},\n]"
    data = tomllib.loads("[data]\nn = 500\nd = 5\n" + entry)["data"]
    cfg = validate_config({"data": data, "algorithm": [{"name": "joint_em"}]}, name="re")
    assert [(g["k"], g["sigma"]) for g in cfg.data_grid] == [(4, 0.5)]
    text = phase_report(s, ["k", "sigma"], reference="ref")
    assert "## Candidate cells: a local method stuck in >= 20% of seeds (1 of 2)" in text
    assert "{k = 4, sigma = 0.5}," in text


def _certified(polish_eigs):
    """``_summary`` with classes attached: em's two stuck k = 4 runs polished to points with
    the given smallest loss-Hessian eigenvalues (gradient 1e-12, still 0.2 short)."""
    s = _summary().assign(climbs=True, has_parameters=True, classify_tol=1e-3,
                          gating_error=0.1, test_log_likelihood=-1.0, fit_time=1.0, n_iter=10)
    s.loc[s.label == "bad", "climbs"] = False
    stuck = s.index[(s.label == "em") & (s.k == 4)]
    s["polished_log_likelihood"] = np.nan
    s["polished_grad_norm"] = np.nan
    s["polished_hessian_min_eig"] = np.nan
    s.loc[stuck, "polished_log_likelihood"] = -1.2
    s.loc[stuck, "polished_grad_norm"] = 1e-12
    s.loc[stuck, "polished_hessian_min_eig"] = polish_eigs
    s["polish_error"] = ""
    s["class"] = "set by classify"  # mark_stuck recomputes the classes at its tol
    return s


def test_certified_classes_count_only_local_maxima_as_stuck():
    from moebench.sweep.classify import CLASS_DEFINITIONS, LOCAL_MAX, SADDLE
    from moebench.sweep.report import report_table
    from moebench.sweep.report_phase import phase_report

    s = _certified([0.01, -0.01])  # one local maximum, one saddle
    m = mark_stuck(s)
    assert m["certified"].all()
    em4 = m[(m.label == "em") & (m.k == 4)]
    assert list(em4["run_class"]) == [LOCAL_MAX, SADDLE]
    assert list(em4["stuck"]) == [True, False] and list(em4["saddle"]) == [False, True]
    table = phase_table(s, ["k"])
    row = table[(table.k == 4) & (table.label == "em")].iloc[0]
    assert row.n_stuck == 1 and row.n_saddle == 1 and row.stuck_rate == 0.5
    assert row.n_unfinished == 0 and row.n_slow == 0
    # the uncertified rule would count both (gap and stationary by the 1e-2 rule)
    old = mark_stuck(s.drop(columns="class").assign(fitted_grad_norm=1e-5))
    assert old.loc[em4.index, "stuck"].all() and not old["certified"].any()
    text = report_table(s)
    assert "| local maximum | saddle | singular | slow | unfinished |" in text
    assert CLASS_DEFINITIONS[SADDLE] in text and "| stuck |" not in text
    phase = phase_report(s, ["k"], reference="ref")
    assert "## Gridlock: local maximum >= 30% while ref succeeds" in phase
    regions = gridlock_regions(table, ["k"], baselines=["em"], reference="ref")
    assert list(regions["k"]) == [4]  # 1 of 2 local maxima: >= 30%
    both_saddles = phase_table(_certified([-0.01, -0.01]), ["k"])
    assert gridlock_regions(both_saddles, ["k"], baselines=["em"], reference="ref").empty
