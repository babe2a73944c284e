"""The large-n study as a sweep: the memmap data source, the resource columns, the view.

Small n, fixed seeds: ``moebench generate --out DIR`` writes the memmaps, a config with
``[data] memmap = DIR`` runs on them out of core, the summary carries peak memory and
passes over X, and ``moebench plot --kind resources`` / ``report --table resources`` read
them. The shipped ``large_n`` config is checked for what it would run, not run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moebench import chunked
from moebench.cli import main
from moebench.sweep.columns import MACHINE_COLUMNS, RESOURCE_COLUMNS
from moebench.sweep.config import ConfigError, load_config, validate_config
from moebench.sweep.data_sources import MemmapSource, generate_command
from moebench.sweep.resources import ResourceMeter, reset_peak_rss
from moebench.sweep.verify import excluded_column
from moebench.sweep.worker import run_cell

N, D, K = 3000, 5, 2
LINUX = Path("/proc/self/status").is_file()


def _generate(folder: Path, seed: int = 0, n: int = N) -> Path:
    assert main(["generate", "--n", str(n), "--d", str(D), "--k", str(K), "--seed", str(seed),
                 "--out", str(folder)]) == 0
    return folder


def _config(folder: Path, algorithms: list[dict], **data) -> dict:
    return {"name": "t", "seed": 3, "data": {"memmap": str(folder), "n": N, "d": D, "k": K,
                                             "n_test": 500, **data},
            "budget": {"max_iter": 4, "max_time": 60.0}, "algorithm": algorithms}


SGD = {"name": "sgd", "params": {"max_epochs": 2, "batch_size": 500, "optimizer": "adam"}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("memmap") / "data")


# -- the data source ---------------------------------------------------------------------------
def test_memmap_source_loads_read_only_memmaps_and_the_recorded_truth(data_dir):
    import json

    (run,) = validate_config(_config(data_dir, [SGD])).cells()
    data = MemmapSource().load(run)
    assert isinstance(data.X, np.memmap) and isinstance(data.y, np.memmap)
    assert chunked.is_out_of_core(data.X)
    assert not data.X.flags.writeable and not data.y.flags.writeable
    assert data.X.shape == (N, D) and data.y.shape == (N,)
    meta = json.loads((data_dir / "params.json").read_text())
    np.testing.assert_array_equal(data.truth.experts, np.asarray(meta["experts"]))
    np.testing.assert_array_equal(data.truth.gating, np.asarray(meta["gating"]))
    assert data.X_test.shape == (500, D) and not isinstance(data.X_test, np.memmap)
    again = MemmapSource().load(run)  # held-out rows: seeded by the run, the same each time
    np.testing.assert_array_equal(again.X_test, data.X_test)
    np.testing.assert_array_equal(again.y_test, data.y_test)


def test_runs_are_identified_by_the_generator_parameters_not_the_folder(tmp_path):
    a = validate_config(_config(tmp_path / "a", [SGD])).cells()[0]
    b = validate_config(_config(tmp_path / "elsewhere" / "b", [SGD])).cells()[0]
    assert (a.run_id, a.data_id, a.algorithm_seed()) == (b.run_id, b.data_id, b.algorithm_seed())
    assert "memmap" not in a.data_key
    other = validate_config(_config(tmp_path / "a", [SGD], generator_seed=1)).cells()[0]
    assert other.data_id != a.data_id and other.run_id != a.run_id
    # the seeds of a memmap cell are those of the same synthetic setting with its
    # generator seed: stable ids for a given data set
    assert a.data_key["generator_seed"] == 0 and a.data_key["n"] == N


def test_an_absent_data_set_names_the_generate_command(tmp_path):
    (run,) = validate_config(_config(tmp_path / "missing", [SGD], generator_seed=4,
                                     activation="relu")).cells()
    command = (f"moebench generate --n {N} --d {D} --k {K} --activation relu --seed 4 "
               f"--out {tmp_path / 'missing'}")
    assert generate_command(run.data) == command
    with pytest.raises(FileNotFoundError, match="no X.npy, y.npy, params.json") as err:
        MemmapSource().load(run)
    assert command in str(err.value)
    summary = run_cell(run, str(tmp_path / "out"), write=False)
    assert summary["status"] == "error" and command in summary["message"]
    assert all(math.isnan(summary[c]) for c in ("passes_over_x",))


def test_a_folder_holding_another_data_set_is_refused(data_dir, tmp_path):
    (run,) = validate_config(_config(data_dir, [SGD], generator_seed=1)).cells()
    with pytest.raises(ValueError, match="holds another data set") as err:
        MemmapSource().load(run)
    assert "generator_seed = 0, this cell's 1" in str(err.value)
    assert f"--seed 1 --out {data_dir}" in str(err.value)


@pytest.mark.parametrize(("data", "message"), [
    ({"input_distribution": "laplace"}, "unknown key data.'input_distribution'"),
    ({"memmap": ["a", "b"]}, "data.memmap must be the folder"),
    ({"cells": [{"memmap": "x"}]}, r"data.cells\[0\].memmap: the folder is one path"),
    ({"generator_seed": -1}, "data.generator_seed must be an integer >= 0"),
])
def test_bad_memmap_data_keys_are_refused(tmp_path, data, message):
    raw = _config(tmp_path, [SGD])
    raw["data"].update(data)
    with pytest.raises(ConfigError, match=message):
        validate_config(raw)


# -- resource columns ---------------------------------------------------------------------------
def test_resource_columns_on_disk_count_the_passes_of_a_tiny_fit(data_dir, tmp_path):
    """sgd, 2 epochs of minibatches: the finite check, 3 full-data log-likelihoods (start and
    after each epoch) and the 2 epochs = 6 passes over X; its records count theirs from the
    fit's clock (after the finite check): 1, 3, 5."""
    (run,) = validate_config(_config(data_dir, [SGD])).cells()
    summary = run_cell(run, str(tmp_path / "out"))
    assert summary["status"] == "ok", summary["message"]
    assert summary["passes_over_x"] == 6
    ck = pd.read_parquet(next((tmp_path / "out" / "runs").glob("*.parquet")))
    assert ck["passes"].tolist() == [1.0, 3.0, 5.0]
    if LINUX:
        assert summary["peak_anon_mib"] > 1 and summary["peak_rss_mib"] >= summary["peak_anon_mib"]
    assert set(RESOURCE_COLUMNS) <= set(summary) and "memmap" not in summary


def test_tensor_step_reads_x_twice(data_dir, tmp_path):
    (run,) = validate_config(_config(data_dir, [{"name": "tensor_em"}])).cells()
    summary = run_cell(run, str(tmp_path / "out"))
    assert summary["status"] == "ok", summary["message"]
    ck = pd.read_parquet(next((tmp_path / "out" / "runs").glob("*.parquet")))
    assert ck["phase"].tolist()[:2] == ["moments", "decomposition"]
    assert ck["passes"].tolist()[:2] == [2.0, 2.0]  # T2, then the whitened T3
    assert summary["passes_over_x"] == ck["passes"].iloc[-1] + 1  # + the finite check


def test_in_memory_runs_record_memory_but_no_passes(tmp_path):
    raw = {"name": "m", "data": {"n": 2000, "d": 4, "k": 2, "n_test": 200},
           "budget": {"max_iter": 3}, "algorithm": [SGD]}
    (run,) = validate_config(raw).cells()
    summary = run_cell(run, str(tmp_path / "out"), write=False)
    assert summary["status"] == "ok" and math.isnan(summary["passes_over_x"])
    assert LINUX is not math.isnan(summary["peak_anon_mib"])


@pytest.mark.skipif(not LINUX or not reset_peak_rss(), reason="needs /proc/self/clear_refs")
def test_peak_memory_is_per_run_not_per_process():
    """Two runs in one process: a 200 MiB allocation in the first does not show in the
    second's peaks (the kernel's high-water mark is reset at each start)."""
    with ResourceMeter() as first:
        block = np.ones(200 << 17)  # 200 MiB, touched
        block.sum()
        del block
    with ResourceMeter() as second:
        np.ones(1 << 10).sum()
    a, b = first.columns(), second.columns()
    assert a["peak_rss_mib"] - b["peak_rss_mib"] > 150
    assert a["peak_anon_mib"] - b["peak_anon_mib"] > 150
    assert math.isnan(a["passes_over_x"])  # no pass counted outside counting_passes


def test_verify_leaves_out_the_machine_columns_only():
    assert all(excluded_column(c) for c in MACHINE_COLUMNS)
    assert not excluded_column("passes_over_x")  # deterministic, like n_iter


def test_resource_columns_survive_pack_unpack_and_verify(data_dir, tmp_path, capsys):
    out = tmp_path / "res"
    raw = _config(data_dir, [SGD, {"name": "tensor_em"}])
    path = tmp_path / "cfg.toml"
    path.write_text(_toml(raw))
    assert main(["run", str(path), "--out", str(out), "--jobs", "1", "--no-plot", "-q"]) == 0
    before = pd.read_parquet(out / "summary.parquet").set_index("run_id").sort_index()
    ck_before = pd.read_parquet(out / "checkpoints.parquet")
    assert main(["pack", str(out)]) == 0
    assert main(["unpack", str(out)]) == 0
    after = pd.read_parquet(out / "summary.parquet").set_index("run_id").sort_index()
    for column in RESOURCE_COLUMNS:
        pd.testing.assert_series_equal(before[column], after[column])
    ck_after = pd.read_parquet(out / "checkpoints.parquet")
    assert ck_after["passes"].tolist() == ck_before["passes"].tolist()
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    assert "2 of 2 run(s) agree" in capsys.readouterr().out


# -- the view -----------------------------------------------------------------------------------
def _toml(raw: dict) -> str:
    def value(v):
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in raw.items() if not isinstance(v, (dict, list))]
    for table in ("data", "budget"):
        lines.append(f"[{table}]")
        lines += [f"{k} = {value(v)}" for k, v in raw[table].items()]
    for algorithm in raw["algorithm"]:
        lines.append("[[algorithm]]")
        lines += [f"{k} = {value(v)}" for k, v in algorithm.items()]
    return "\n".join(lines) + "\n"


def test_resources_figure_and_table_end_to_end(data_dir, tmp_path, capsys):
    out = tmp_path / "res"
    path = tmp_path / "cfg.toml"
    path.write_text(_toml(_config(data_dir, [SGD, {"name": "tensor_em"}])))
    assert main(["run", str(path), "--out", str(out), "--jobs", "2", "--no-plot", "-q"]) == 0
    assert main(["plot", str(out), "--kind", "resources", "--out", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["report", str(out), "--table", "resources"]) == 0
    text = capsys.readouterr().out
    assert "| n | variant | runs | expert error | fit time (s) | passes over X |" in text
    assert f"| {N} | sgd | 1 of 1 |" in text and "| 6 [6, 6] |" in text
    # --kind all draws it for results on disk
    assert main(["plot", str(out), "--kind", "all", "--out", str(tmp_path / "all")]) == 0
    assert (tmp_path / "all" / "resources.png").is_file()


def test_resources_figure_draws_error_against_passes():
    from moebench.sweep.plots_resources import plot_resources

    summary = pd.DataFrame({
        "run_id": ["a", "b"], "label": ["x", "y"], "status": ["ok", "ok"], "n": [100, 100],
        "d": [3, 3], "k": [2, 2], "expert_error": [0.5, 0.1], "fit_time": [1.0, 2.0],
        "peak_anon_mib": [10.0, 12.0], "passes_over_x": [4.0, 7.0], "algorithm": ["x", "y"]})
    checkpoints = pd.DataFrame({
        "run_id": ["a", "a", "b", "b"], "label": ["x", "x", "y", "y"],
        "phase": ["p"] * 4, "iteration": [0, 1, 0, 1], "time": [0.1, 0.5, 0.2, 1.0],
        "log_likelihood": [-2.0, -1.0, -3.0, -1.0], "expert_error": [1.0, 0.5, 2.0, 0.1],
        "passes": [1.0, 3.0, 2.0, 6.0]})
    fig = plot_resources(summary, checkpoints)
    time_ax, passes_ax, *bottom = fig.axes
    assert [line.get_xdata().tolist() for line in passes_ax.get_lines()] == [[1.0, 3.0],
                                                                              [2.0, 6.0]]
    assert passes_ax.get_xlabel() == "passes over X" and len(bottom) == 3
    assert bottom[2].get_ylabel() == "peak anonymous memory (MiB)"
    with pytest.raises(ValueError, match="unknown variant 'z'; valid: x, y"):
        plot_resources(summary, checkpoints, variants=["z"])


# -- the shipped config -------------------------------------------------------------------------
def test_shipped_large_n_config_is_the_planned_study():
    config = load_config("large_n")
    runs = config.cells()
    assert len(runs) == 71
    assert {r.data["memmap"] for r in runs} == {"/tmp/moebench_large_n"}
    sets = {(r.data["activation"], r.data["generator_seed"]) for r in runs}
    assert sets == {("linear", s) for s in range(5)} | {(a, s) for a in ("relu", "sigmoid")
                                                         for s in (0, 1)}
    assert all(r.data["n"] == 10_000_000 and r.data["d"] == 100 for r in runs)
    by_label = pd.Series([r.variant.label for r in runs]).value_counts()
    assert by_label["tensor_em"] == 9 and by_label["tensor_em_refine"] == 2
    assert sum(v for k, v in by_label.items() if k.startswith("sgd_1ep_grid")) == 21
    # joint EM runs on disk only with linear experts
    assert {r.data["activation"] for r in runs if r.variant.algorithm == "joint_em"
            or r.variant.params.get("refine")} == {"linear"}
