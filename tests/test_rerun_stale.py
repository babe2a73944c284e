"""Run records carry their fitted parameters and the code version that made them;
`moebench run` names stored runs made by older code and `--rerun-stale` re-runs them
(run files and packed records alike)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moebench.cli import main
from moebench.sweep.executors import available_cores
from moebench.sweep.rerun import (
    fitted_model,
    fitted_parameters,
    stored_cells,
    with_parameters,
)
from moebench.sweep.store import (
    code_version_of,
    is_packed,
    load_results,
    read_run_summary,
    run_path,
    runs_dir,
    stored_runs,
    unpack,
    verify_run_file,
    write_run,
)
from moebench.version import NUMERICS_VERSION, UNVERSIONED

TINY = """
name = "tiny_stale"
seed = 11
repetitions = 2
[data]
n = 600
d = 4
k = 2
activation = "linear"
n_test = 300
[budget]
max_iter = 10
max_time = 20.0
[[algorithm]]
name = "joint_em"
label = "joint_em"
[[algorithm]]
name = "tensor_em"
label = "tensor_em"
"""


def run(config: Path, out: Path, *extra: str) -> int:
    return main(["run", str(config), "--out", str(out), "--jobs", str(available_cores()),
                 "--quiet", "--no-plot", *extra])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("stale")
    config = tmp / "tiny.toml"
    config.write_text(TINY)
    out = tmp / "out"
    assert run(config, out) == 0
    return config, out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(folder, dest)
    return dest


def make_old(out: Path, run_ids: list[str]) -> dict[str, str]:
    """Rewrite these runs as code version 1 wrote them (no code_version, no parameters),
    with a marker value; returns run id -> old file's summary JSON."""
    old = {}
    for rid in run_ids:
        rec = verify_run_file(run_path(out, rid))
        summary, frame = rec.summary, rec.checkpoints
        for key in ("code_version", "kernel_path", "fitted_parameters"):
            summary.pop(key)
        summary["expert_error"] = 123.0  # what the old code "computed"
        write_run(out, summary, frame.to_dict("records"))
        old[rid] = json.dumps(summary)
    return old


# --------------------------------------------------------------------------- fitted parameters
def test_fitted_parameters_in_every_record(tiny, tmp_path):
    config, out = tiny
    records = stored_runs(out)
    assert len(records) == 4
    cells = stored_cells(out)
    assert set(cells) == set(records)
    for rid, rec in records.items():
        summary = rec.summary
        assert summary["code_version"] == NUMERICS_VERSION == code_version_of(summary)
        params = fitted_parameters(summary)
        assert set(params) >= {"experts", "gating", "sigma"}
        assert params["experts"].shape == params["gating"].shape == (2, 4)
        assert float(params["sigma"]) == summary["sigma_hat"]
        model = fitted_model(summary)
        assert model.experts.shape == (2, 4)
        # the record's parameters give back the record's scores (float64 exact)
        from moebench.sweep.data_sources import load_cell_data

        data = load_cell_data(cells[rid])
        assert model.mean_log_likelihood(data.X, data.y) == pytest.approx(
            summary["train_log_likelihood"], rel=1e-12, abs=1e-12)
    # kept in the records only (not summary.parquet, not the checkpoint rows); with_parameters
    # adds the run files' text back as a string column
    table = pd.read_parquet(out / "summary.parquet")
    assert "fitted_parameters" not in table.columns
    assert "fitted_parameters" not in pd.read_parquet(out / "checkpoints.parquet").columns
    table = with_parameters(table, out)
    assert pd.api.types.is_string_dtype(table["fitted_parameters"])
    assert dict(zip(table["run_id"], table["fitted_parameters"], strict=True)) == {
        rid: rec.summary["fitted_parameters"] for rid, rec in records.items()}
    assert table["code_version"].tolist() == [NUMERICS_VERSION] * 4
    # pack and unpack keep the text byte-exact
    folder = copy_of(out, tmp_path)
    assert main(["pack", str(folder)]) == 0
    packed = stored_runs(folder)
    assert all(packed[r].source == "packed" for r in packed)
    assert {r: p.summary["fitted_parameters"] for r, p in packed.items()} == {
        r: rec.summary["fitted_parameters"] for r, rec in records.items()}
    summary, _ = load_results(folder)
    assert set(with_parameters(summary, folder)["fitted_parameters"]) == {
        r.summary["fitted_parameters"]
                                                 for r in records.values()}
    unpack(folder)
    assert {r: read_run_summary(run_path(folder, r))["fitted_parameters"] for r in records} == {
        r: rec.summary["fitted_parameters"] for r, rec in records.items()}


def test_code_version_of():
    assert UNVERSIONED == 1
    assert code_version_of({}) == 1
    assert code_version_of({"code_version": None}) == 1
    assert code_version_of({"code_version": math.nan}) == 1  # a consolidated table's gap
    assert code_version_of({"code_version": 2}) == 2
    assert code_version_of(pd.Series({"code_version": 2.0})) == 2
    assert code_version_of(pd.Series({"run_id": "x"})) == 1


# --------------------------------------------------------------------------- --rerun-stale
def test_run_names_and_reruns_stale_runs(tiny, tmp_path, capsys):
    config, base = tiny
    out = copy_of(base, tmp_path)
    fresh = {rid: rec.summary for rid, rec in stored_runs(out).items()}
    stale = sorted(fresh)[:2]
    make_old(out, stale)
    capsys.readouterr()
    assert run(config, out) == 0
    printed = capsys.readouterr().out
    assert "ran 0 run(s)" in printed
    assert (f"2 of 4 stored runs were made by code version 1 (now {NUMERICS_VERSION}); re-run "
            f"them with --rerun-stale") in printed.splitlines()
    table = pd.read_parquet(out / "summary.parquet")
    # old records have no code_version: a gap in the table, version 1
    versions = {rid: code_version_of(row) for rid, row in table.set_index("run_id").iterrows()}
    assert versions == {rid: 1 if rid in stale else 2 for rid in fresh}

    before = {rid: run_path(out, rid).stat().st_ino for rid in fresh}
    assert run(config, out, "--rerun-stale") == 0
    printed = capsys.readouterr().out
    assert "ran 2 run(s)" in printed and "skipped 2 finished" in printed
    assert (f"2 of 4 stored runs were made by code version 1 (now {NUMERICS_VERSION}); re-ran "
            f"them (--rerun-stale)") in printed.splitlines()
    after = stored_runs(out)
    for rid, rec in after.items():
        assert rec.summary["code_version"] == NUMERICS_VERSION
        # the re-run gives the record the current code makes (same numbers as a fresh run)
        assert rec.summary["expert_error"] == fresh[rid]["expert_error"]
        assert rec.summary["fitted_parameters"] == fresh[rid]["fitted_parameters"]
        # stale files were replaced (a new inode: os.replace), the others left alone
        assert (run_path(out, rid).stat().st_ino != before[rid]) == (rid in stale)
    assert not [p for p in runs_dir(out).iterdir() if p.name.startswith(".")]
    table = pd.read_parquet(out / "summary.parquet")
    assert table["code_version"].tolist() == [NUMERICS_VERSION] * 4
    assert run(config, out) == 0
    assert "stored runs were made by code version" not in capsys.readouterr().out


def test_rerun_stale_in_a_packed_folder(tiny, tmp_path, capsys):
    config, base = tiny
    out = copy_of(base, tmp_path)
    fresh = {rid: rec.summary for rid, rec in stored_runs(out).items()}
    stale = sorted(fresh)[1:4]
    make_old(out, stale)
    assert main(["pack", str(out)]) == 0
    assert is_packed(out) and not runs_dir(out).exists()
    capsys.readouterr()
    assert run(config, out, "--filter", "label=tensor_em") == 0
    printed = capsys.readouterr().out.splitlines()
    n_tensor = sum(fresh[r]["label"] == "tensor_em" for r in stale)
    assert (f"{n_tensor} of 2 stored runs were made by code version 1 (now {NUMERICS_VERSION}); "
            f"re-run them with --rerun-stale") in printed
    assert run(config, out, "--rerun-stale") == 0
    assert "ran 3 run(s)" in capsys.readouterr().out
    # the new run files override the packed records, and the consolidation rewrote
    # records.parquet with them
    records = pd.read_parquet(out / "records.parquet")
    versions = {rid: json.loads(text).get("code_version")
                for rid, text in zip(records["run_id"], records["summary"], strict=True)}
    assert versions == dict.fromkeys(fresh, NUMERICS_VERSION)
    assert main(["pack", str(out)]) == 0
    packed = stored_runs(out)
    assert not runs_dir(out).exists() and set(packed) == set(fresh)
    for rid, rec in packed.items():
        assert rec.source == "packed"
        assert rec.summary["expert_error"] == fresh[rid]["expert_error"]
        assert np.isfinite(rec.summary["test_log_likelihood"])


def test_rerun_that_times_out_replaces_the_old_record(tmp_path):
    """A re-run killed at its hard timeout is recorded as a timeout: the old run file it
    was to replace is not taken for its result."""
    import importlib
    import sys

    from moebench.registry import _REGISTRY

    present = "sweeptest_em" in _REGISTRY
    import sweep_algos  # registers sweeptest_em (imported by the workers too)

    if "sweeptest_em" not in _REGISTRY:  # imported and unregistered by an earlier test
        importlib.reload(sweep_algos)
    from moebench.sweep.config import validate_config
    from moebench.sweep.runner import run_sweep
    from moebench.sweep.worker import failure_summary

    try:
        cfg = validate_config({
            "name": "stale_timeout", "seed": 2, "repetitions": 1,
            "data": {"n": 300, "d": 3, "k": 2, "activation": "linear", "n_test": 100},
            "budget": {"max_iter": 5, "max_time": 5.0},
            "algorithm": [{"name": "sweeptest_em", "label": "sleepy",
                           "params": {"sleep_after": 60.0}, "timeout": 1.5}]})
        (cell,) = cfg.cells()
        old = failure_summary(cell, "ok", "", cfg.name)  # an "ok" record of older code
        old.pop("code_version")
        write_run(tmp_path, old, [])
        outcome = run_sweep(cfg, tmp_path, jobs=1, progress=False)
        assert outcome.ran == 0 and outcome.stale == {cell.run_id: 1}
        outcome = run_sweep(cfg, tmp_path, jobs=1, progress=False, rerun_stale=True)
        assert outcome.ran == 1 and outcome.reran_stale
        (summary,) = outcome.summaries
        assert summary["status"] == "timeout" and summary["code_version"] == NUMERICS_VERSION
        stored = read_run_summary(run_path(tmp_path, cell.run_id))
        assert stored["status"] == "timeout" and stored["code_version"] == NUMERICS_VERSION
    finally:
        if not present:  # as it was: a later `import sweep_algos` registers it again
            sweep_algos.unregister()
            sys.modules.pop("sweep_algos", None)
