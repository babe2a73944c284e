"""Issue 26 item 4: runs whose tensor step was below its sample complexity get their own
report column (tensor_em and refine = joint_em(init="tensor")), apart from stuck."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import moebench
from moebench.cli import main
from moebench.sweep.gridlock import BELOW_COLUMN, BELOW_HEAD, below_rate, phase_table, rate_interval

TINY = """
name = "below_tiny"
seed = 5
repetitions = 2
success_threshold = 0.1

[data]
n = 300
d = 5
k = 3
activation = "sigmoid"
sigma = 0.5
gating = "orthogonal"
gating_scale = 2.0
n_test = 100

[budget]
max_iter = 20
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
label = "joint_em_tensor"
params = {init = "tensor"}

[[algorithm]]
name = "joint_em"
label = "joint_em"
params = {n_init = 1}
"""


def test_refine_records_its_tensor_starts_flag():
    """joint_em(init="tensor") (refine) exposes the flag of its tensor start, as tensor_em."""
    data = moebench.make_moe(300, 5, 3, sigma=0.5, activation="sigmoid", random_state=0)
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, kw in (("tensor_em", {}), ("tensor_em", {"refine": True}),
                         ("joint_em", {"init": "tensor"}), ("joint_em", {"n_init": 1})):
            fits[(name, tuple(kw))] = moebench.get_algorithm(
                name, n_experts=3, activation="sigmoid", random_state=0, max_iter=5,
                **kw).fit(data.X, data.y)
    assert fits[("tensor_em", ())].below_sample_complexity_ is True
    assert fits[("tensor_em", ("refine",))].below_sample_complexity_ is True
    assert fits[("joint_em", ("init",))].below_sample_complexity_ is True
    assert not hasattr(fits[("joint_em", ("n_init",))], "below_sample_complexity_")


def test_below_rate_counts_flags_over_all_runs():
    frame = pd.DataFrame({BELOW_COLUMN: [True, False, None, True]})
    assert below_rate(frame) == rate_interval(2, 4)
    assert below_rate(pd.DataFrame({BELOW_COLUMN: [None, None]})) == "–"
    assert below_rate(pd.DataFrame({"x": [1]})) == "–"


def test_tiny_sweep_reports_the_column(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "res"
    assert main(["run", str(config), "--out", str(out), "--jobs", "1", "--quiet",
                 "--no-plot"]) == 0
    summary = pd.read_parquet(out / "summary.parquet")
    flags = summary.set_index("label")[BELOW_COLUMN]
    # n = 300, sigmoid, k = 3: the tensor step is below its sample complexity in every run,
    # for tensor_em and for both spellings of refine; joint_em from random starts has none
    for label in ("tensor_em", "tensor_em_refine", "joint_em_tensor"):
        assert flags[label].astype(bool).all(), label
    assert flags["joint_em"].isna().all()
    capsys.readouterr()
    assert main(["report", str(out), "--phase", "gating_scale", "--stuck-tols", "1e-3"]) == 0
    text = capsys.readouterr().out
    summary_table = text[:text.index("## Phase map")]
    head = next(line for line in summary_table.splitlines() if line.startswith("| variant"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert BELOW_HEAD in cols and "stuck" in cols and cols.index(BELOW_HEAD) != cols.index(
        "stuck")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in summary_table.splitlines() if line.startswith("| ") and
            not line.startswith("| variant")}
    i = cols.index(BELOW_HEAD)
    for label in ("tensor_em", "tensor_em_refine", "joint_em_tensor"):
        assert rows[label][i] == rate_interval(2, 2), (label, rows[label])
    assert rows["joint_em"][i] == "–"
    assert "*Tensor step below sample complexity*" in summary_table
    # the phase map and the verdict show it too
    phase = text[text.index("## Phase map"):]
    assert f"| {BELOW_HEAD} |" in phase
    assert (f"tensor_em_refine: {BELOW_HEAD} in {rate_interval(2, 2)} of its runs" in text)
    table = phase_table(summary, ["gating_scale"])
    assert table.set_index("label").loc["tensor_em", "n_below"] == 2
    assert np.isnan(table.set_index("label").loc["joint_em", "n_below"])


@pytest.mark.parametrize("value", [np.nan, None])
def test_no_flag_no_column(value):
    from moebench.sweep.report import report_table

    summary = pd.DataFrame({
        "data_id": ["a"], "status": ["ok"], "train_log_likelihood": [-1.0],
        "true_train_log_likelihood": [-1.0], "label": ["joint_em"], "run_id": ["r"],
        "expert_error": [0.01], "gating_error": [0.1], "success": [True],
        "test_log_likelihood": [-1.0], "fit_time": [0.1], "n_iter": [5], "n": [100],
        BELOW_COLUMN: [value]})
    assert BELOW_HEAD not in report_table(summary)
