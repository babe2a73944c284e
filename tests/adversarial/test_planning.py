"""Issue 27, item 2: planning a sweep does not grow with its number of runs.

``moebench run --dry-run`` counts the runs from the grid's shape, validates each
distinct setting once and estimates the cost from stored runs; ``--filter`` with one
key twice matches either value. Each case failed on main f3f291d (the dry run built
every cell: 155 s and 2.9 GB for 1e7 runs; two filters on one key selected nothing).
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
from cli_status import run_cli

from moebench.sweep import config as config_module
from moebench.sweep.config import SweepConfig, validate_config
from moebench.sweep.selection import count_runs, select_cells

#: 10 x 10 x 10 data settings
BIG = """name = "big"
repetitions = {reps}
[data]
n = [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000]
d = 10
k = 3
sigma = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1]
gating_scale = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
[[algorithm]]
name = "joint_em"
[[algorithm]]
name = "sgd"
activations = ["linear"]
only = {{n = [1000, 2000]}}
"""




def _no_listing(*args, **kwargs):
    raise AssertionError("the dry run listed the runs")


def test_dry_run_of_1e8_runs_counts_without_listing(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "big.toml"
    cfg.write_text(BIG.format(reps=50_000))  # 1000 settings x 50000 reps x (1 + 0.2) variants
    monkeypatch.setattr(SweepConfig, "cells", _no_listing)
    monkeypatch.setattr(SweepConfig, "iter_cells", _no_listing)
    tracemalloc.start()
    start = time.perf_counter()
    assert run_cli(["run", str(cfg), "--dry-run", "--out", str(tmp_path / "out"),
                    "--filter", "sigma=0.05", "--filter", "sigma=0.06"]) == 0
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out = capsys.readouterr().out
    # 1000 x 50000 joint_em runs + 200 x 50000 sgd runs
    assert "= 60000000 runs; 12000000 selected" in out
    assert "(10000000 selected)" in out and "(2000000 selected)" in out
    assert "cost estimate" not in out  # no stored runs: nothing to estimate from
    assert elapsed < 10.0
    assert peak < 100 * 2**20
    assert not (tmp_path / "out").exists()


def test_each_distinct_model_setting_is_validated_once(monkeypatch):
    calls = []
    real = config_module.make_moe_model

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(config_module, "make_moe_model", counting)
    raw = {"repetitions": 2, "data": {"n": [100, 200, 300, 200], "n_test": [50, 60], "d": 4,
                                      "k": 2, "sigma": [0.1, 0.2]},
           "algorithm": [{"name": "joint_em"}]}
    cfg = validate_config(raw)
    assert len(calls) == 2  # sigma is the only axis the model depends on
    assert len(cfg.data_grid) == 3 * 2 * 2  # n = 200 listed twice is one grid point
    assert len(cfg.cells()) == 12 * 2


@pytest.mark.parametrize("filters, limit", [
    ([], None), (["k=2"], None), (["k=2", "k=3"], None), (["repetition=1"], None),
    (["repetition=1", "repetition=0", "label=joint_em"], None), (["activation=relu"], 7),
    (["k=3.0", "label=sgd", "label=joint_em"], None), (["repetition=9"], None),
])
def test_count_agrees_with_the_listed_selection(filters, limit):
    raw = {"repetitions": 3, "data": {"n": 300, "d": 4, "k": [2, 3],
                                      "activation": ["linear", "relu"]},
           "algorithm": [{"name": "joint_em", "grid": {"n_init": [1, 2]}},
                         {"name": "sgd", "activations": ["linear"]},
                         {"name": "alt_min", "only": {"k": 3, "activation": "linear"}}]}
    cfg = validate_config(raw)
    count = count_runs(cfg, filters, limit)
    chosen = select_cells(cfg.cells(), filters, limit)
    assert count.total == len(cfg.cells())
    assert count.selected == len(chosen)
    if limit is None:
        by_label = {}
        for c in chosen:
            by_label[c.variant.label] = by_label.get(c.variant.label, 0) + 1
        assert count.by_variant == by_label
    assert [c.run_id for c in cfg.iter_cells()] == [c.run_id for c in cfg.cells()]


def test_count_agrees_on_real_data_with_the_reference(tmp_path):
    csv = tmp_path / "d.csv"
    pd.DataFrame({"a": range(40), "b": [i % 7 for i in range(40)],
                  "y": [float(i % 5) for i in range(40)]}).to_csv(csv, index=False)
    raw = {"repetitions": 2, "data": {"source": {"csv": str(csv), "target": "y"},
                                      "k": [2, 3], "folds": 3},
           "algorithm": [{"name": "joint_em"}]}
    cfg = validate_config(raw)
    for filters in ([], ["fold=1"], ["k=2"], ["label=linear_regression", "fold=2"]):
        assert count_runs(cfg, filters).selected == len(select_cells(cfg.cells(), filters))
    assert count_runs(cfg).total == len(cfg.cells())


def test_same_filter_key_twice_selects_either_value(tmp_path, capsys):
    raw = {"repetitions": 1, "data": {"n": 300, "d": 5, "k": [2, 3, 4]},
           "algorithm": [{"name": "joint_em"}]}
    cfg = validate_config(raw)
    chosen = select_cells(cfg.cells(), ["k=2", "k=4"])
    assert sorted(c.data["k"] for c in chosen) == [2, 4]
    path = tmp_path / "c.toml"
    path.write_text('name = "c"\n[data]\nn = 300\nd = 4\nk = [2, 3]\n'
                    '[[algorithm]]\nname = "joint_em"\n')
    assert run_cli(["run", str(path), "--dry-run", "--filter", "k=2", "--filter", "k=3",
                    "--out", str(tmp_path / "o")]) == 0
    assert "= 2 runs; 2 selected" in capsys.readouterr().out
    assert run_cli(["run", str(path), "--dry-run", "--filter", "k=5", "--filter", "k=6",
                    "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "k: 2, 3" in err and "a key given twice matches either value" in err


def test_dry_run_estimates_the_cost_from_stored_runs(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('name = "c"\nrepetitions = 4\n[data]\nn = 300\nd = 4\nk = [2, 3]\n'
                    '[[algorithm]]\nname = "joint_em"\n[[algorithm]]\nname = "sgd"\n')
    out = tmp_path / "o"
    out.mkdir()
    # joint_em stored at k = 2 only (median 20 s), at k = 3 never: its k = 3 runs are
    # estimated from its runs at other settings (median 20 s of all 3 joint_em runs)
    pd.DataFrame({"label": ["joint_em"] * 3 + ["other"], "k": [2, 2, 2, 3], "n": 300,
                  "wall_time": [10.0, 20.0, 30.0, 1e6]}).to_parquet(out / "summary.parquet")
    assert run_cli(["run", str(path), "--dry-run", "--out", str(out), "--jobs", "2"]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.startswith("cost estimate"))
    # 8 joint_em runs at 20 s = 160 s; sgd has no stored run
    assert f"{160 / 3600:.3g} run-hours ({80 / 3600:.3g} h at --jobs 2)" in line
    assert "for 8 of the 16 selected runs" in line and "3 stored run(s)" in line
    assert "(4 runs by their variant and data setting, 4 by their variant at other " \
        "settings)" in line
    assert "without stored runs not estimated: sgd" in line
    # a setting's own runs win over the variant's others: k = 3 at 100 s
    pd.DataFrame({"label": ["joint_em"] * 4, "k": [2, 2, 2, 3], "n": 300,
                  "wall_time": [10.0, 20.0, 30.0, 100.0]}).to_parquet(out / "summary.parquet")
    assert run_cli(["run", str(path), "--dry-run", "--out", str(out), "--filter",
                    "label=joint_em"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines()
                if x.startswith("cost estimate"))
    assert f"{(4 * 20 + 4 * 100) / 3600:.3g} run-hours" in line
    assert "(8 runs by their variant and data setting, 0 by" in line
    Path(out / "summary.parquet").unlink()
    assert run_cli(["run", str(path), "--dry-run", "--out", str(out)]) == 0
    assert "cost estimate" not in capsys.readouterr().out


def test_a_sweep_streams_its_runs_without_listing_them(tmp_path, monkeypatch):
    from moebench.sweep.runner import run_sweep

    raw = {"name": "tiny", "repetitions": 3, "seed": 1,
           "data": {"n": 300, "d": 3, "k": 2, "n_test": 100},
           "budget": {"max_iter": 3}, "algorithm": [{"name": "joint_em"}]}
    cfg = validate_config(raw)
    expected = [c.run_id for c in cfg.cells()]
    monkeypatch.setattr(SweepConfig, "cells", _no_listing)
    outcome = run_sweep(cfg, tmp_path / "out", jobs=2, progress=False,
                        filters=["repetition=0", "repetition=2"])
    assert (outcome.ran, outcome.skipped, len(outcome.cells)) == (2, 0, 2)
    assert [c.run_id for c in outcome.cells] == [expected[0], expected[2]]
    again = run_sweep(cfg, tmp_path / "out", jobs=1, progress=False)
    assert (again.ran, again.skipped, again.stored) == (1, 2, 2)
