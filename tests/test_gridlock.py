import numpy as np
import pandas as pd
import pytest

from moebench.sweep.gridlock import (
    gridlock_regions,
    local_search_labels,
    mark_stuck,
    phase_table,
)
from moebench.sweep.plots import plot_gridlock, plot_phase_maps


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
