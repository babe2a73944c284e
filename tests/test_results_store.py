"""The results store: checksummed run files, quarantine, packed folders, file modes."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pandas as pd
import pyarrow.parquet as pq
import pytest

from moebench.cli import main
from moebench.io import atomic_write_bytes
from moebench.sweep.config import load_config
from moebench.sweep.runner import run_sweep
from moebench.sweep.selection import select_cells
from moebench.sweep.store import (
    CHECKSUM_KEY,
    RECORDS_FILE,
    SUMMARY_KEY,
    CorruptRunError,
    consolidate,
    finished_run_ids,
    is_packed,
    load_results,
    pack,
    read_run_summary,
    run_checksum,
    runs_dir,
    stored_summaries,
    unpack,
    verify_run_file,
    write_run,
)

CONFIG = """
name = "store"
seed = 11
repetitions = 2
[data]
n = [300, 500]
d = 3
k = 2
activation = "linear"
n_test = 200
[budget]
max_iter = 6
max_time = 20.0
[[algorithm]]
name = "joint_em"
label = "joint_em"
params = {n_init = 1}
[[algorithm]]
name = "tensor_em"
label = "tensor_em"
"""
N_RUNS = 8
#: columns that depend only on the cell (not on timing or on the machine)
DETERMINISTIC = ["run_id", "label", "n", "repetition", "status", "n_iter", "expert_error",
                 "gating_error", "train_log_likelihood", "test_log_likelihood"]


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("store_cfg") / "store.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def finished(config_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "res"
    assert main(["run", str(config_path), "--out", str(out), "--jobs", "2", "--quiet",
                 "--no-plot"]) == 0
    return out


@pytest.fixture
def copy(finished, tmp_path):
    out = tmp_path / "res"
    shutil.copytree(finished, out)
    return out


def _all_runs(out):
    return {p.name: verify_run_file(p) for p in sorted(runs_dir(out).glob("*.parquet"))}


def _deterministic(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[DETERMINISTIC].sort_values("run_id").reset_index(drop=True)


def test_run_file_carries_a_checksum_that_is_verified(tmp_path):
    ck = [{"phase": "em", "iteration": i, "time": 0.1 * i, "log_likelihood": -1.0 / (i + 1),
           "expert_error": 0.5, "gating_error": 0.2} for i in range(3)]
    path = write_run(tmp_path, {"run_id": "r1", "status": "ok", "expert_error": 0.5}, ck)
    meta = pq.read_schema(path).metadata
    rec = verify_run_file(path)
    summary, frame = rec.summary, rec.checkpoints
    assert meta[CHECKSUM_KEY].decode() == run_checksum(meta[SUMMARY_KEY], frame)
    assert meta[CHECKSUM_KEY].startswith(b"sha256:") and summary["expert_error"] == 0.5
    # a summary edited after the fact no longer matches
    table = pq.read_table(path)
    edited = {**meta, SUMMARY_KEY: json.dumps({"run_id": "r1", "status": "ok",
                                               "expert_error": 0.01}).encode()}
    pq.write_table(table.replace_schema_metadata(edited), path)
    with pytest.raises(CorruptRunError, match="checksum mismatch") as info:
        verify_run_file(path)
    assert info.value.path == path
    # files written before checksums existed (no key) are still read
    legacy = {k: v for k, v in meta.items() if k != CHECKSUM_KEY}
    pq.write_table(table.replace_schema_metadata(legacy), path)
    assert read_run_summary(path)["expert_error"] == 0.5


def test_corrupt_run_file_resumes_only_that_cell_with_a_correct_summary(
        finished, copy, config_path, capsys):
    """Acceptance: resume re-runs exactly the damaged cell and ends with the right summary."""
    reference = _deterministic(pd.read_parquet(finished / "summary.parquet"))
    files = sorted(runs_dir(copy).glob("*.parquet"))
    victim = files[3]
    keep = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in files if p != victim}
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated file (disk full, crash)
    assert main(["run", str(config_path), "--out", str(copy), "--jobs", "1", "--quiet",
                 "--no-plot"]) == 0
    out, err = capsys.readouterr()
    assert "ran 1 run(s)" in out and f"skipped {N_RUNS - 1} finished" in out
    assert [line for line in err.splitlines() if str(victim) in line] == [
        line for line in err.splitlines() if "warning" in line]
    assert len([line for line in err.splitlines() if str(victim) in line]) == 1
    assert (runs_dir(copy) / ".quarantine" / victim.name).read_bytes() != b""
    for name, (mtime, data) in keep.items():
        p = runs_dir(copy) / name
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data
    assert verify_run_file(victim).summary["status"] == "ok"
    pd.testing.assert_frame_equal(_deterministic(pd.read_parquet(copy / "summary.parquet")),
                                  reference)


def test_retry_failed_and_force_filter_on_a_folder_with_a_bad_file(copy, config_path):
    config = load_config(config_path)
    bad = runs_dir(copy) / "0000000000000000.parquet"
    bad.write_bytes(b"PAR1 not really PAR1")
    outcome = run_sweep(config, copy, jobs=1, progress=False, retry_failed=True)
    assert outcome.ran == 0 and outcome.skipped == N_RUNS and not bad.exists()
    chosen = {c.run_id for c in select_cells(config.cells(), ["label=tensor_em", "n=300"])}
    victim_id = sorted({c.run_id for c in config.cells()} - chosen)[0]
    (runs_dir(copy) / f"{victim_id}.parquet").write_bytes(b"garbage")
    outcome = run_sweep(config, copy, jobs=1, progress=False, force=True,
                        filters=["label=tensor_em", "n=300"])
    assert outcome.ran == 2
    summary, _ = consolidate(copy, [c.run_id for c in config.cells()])
    assert len(summary) == N_RUNS - 1 and victim_id not in set(summary["run_id"])
    assert (runs_dir(copy) / ".quarantine" / f"{victim_id}.parquet").read_bytes() == b"garbage"


def test_pack_unpack_round_trip_is_exact(copy, capsys):
    before = _all_runs(copy)
    s0, c0 = load_results(copy)
    done = pack(copy)
    assert done.runs == N_RUNS and done.removed == N_RUNS and done.checkpoint_rows == len(c0)
    assert not runs_dir(copy).exists() and is_packed(copy)
    assert done.bytes_after < done.bytes_before
    s1, c1 = load_results(copy)
    pd.testing.assert_frame_equal(s1, s0)
    pd.testing.assert_frame_equal(c1, c0)
    assert set(stored_summaries(copy)) == set(s0["run_id"])
    assert unpack(copy) == N_RUNS and not is_packed(copy)
    capsys.readouterr()
    s2, _ = load_results(copy)  # the tables are current: no stale warning, no rebuild
    assert capsys.readouterr().err == ""
    pd.testing.assert_frame_equal(s2, s0)
    after = _all_runs(copy)
    assert after.keys() == before.keys()
    for name, rec in before.items():
        assert after[name].summary == rec.summary
        pd.testing.assert_frame_equal(after[name].checkpoints, rec.checkpoints)


def test_unpacked_run_files_keep_the_exact_summary_bytes(copy, tmp_path):
    original = {p.name: pq.read_schema(p).metadata[SUMMARY_KEY]
                for p in runs_dir(copy).glob("*.parquet")}
    pack(copy)
    unpack(copy)
    assert {p.name: pq.read_schema(p).metadata[SUMMARY_KEY]
            for p in runs_dir(copy).glob("*.parquet")} == original


def test_packed_folder_resumes_plots_reports_and_repacks(config_path, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", str(config_path), "--out", str(out), "--jobs", "1", "--quiet",
                 "--no-plot", "--filter", "n=300"]) == 0
    pack(out)
    packed_ids = set(stored_summaries(out))
    assert len(packed_ids) == N_RUNS // 2 and not runs_dir(out).exists()
    capsys.readouterr()
    assert main(["run", str(config_path), "--out", str(out), "--jobs", "2", "--quiet",
                 "--no-plot"]) == 0
    text = capsys.readouterr().out
    assert f"ran {N_RUNS // 2} run(s)" in text and f"skipped {N_RUNS // 2} finished" in text
    assert finished_run_ids(out).isdisjoint(packed_ids)  # only the new runs are files
    assert len(finished_run_ids(out)) == N_RUNS // 2
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == N_RUNS and set(summary["n"]) == {300, 500}
    # a packed folder reports and plots
    assert main(["report", str(out)]) == 0
    assert f"Run statuses: ok {N_RUNS}." in capsys.readouterr().out
    assert main(["plot", str(out), "--kind", "all"]) == 0
    assert {p.name for p in (out / "figures").iterdir()} >= {"curves.png", "success.png"}
    # the next pack merges the new run files
    assert main(["pack", str(out)]) == 0
    assert "removed 4 run file(s)" in capsys.readouterr().out
    assert not runs_dir(out).exists() and len(stored_summaries(out)) == N_RUNS
    again = run_sweep(load_config(config_path), out, jobs=1, progress=False)
    assert again.ran == 0 and again.skipped == N_RUNS


def test_pack_and_unpack_refuse_what_they_cannot_do(tmp_path, capsys):
    assert main(["pack", str(tmp_path / "nowhere")]) == 2
    assert "no results directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["pack", str(tmp_path / "empty")]) == 2
    assert "holds no runs to pack" in capsys.readouterr().err
    assert main(["unpack", str(tmp_path / "empty")]) == 2
    assert "is not a packed results folder" in capsys.readouterr().err


def test_damaged_packed_table_is_named(copy, capsys):
    pack(copy)
    (copy / RECORDS_FILE).write_bytes(b"PAR1garbagePAR1")
    assert main(["run", str(copy / "config.toml"), "--out", str(copy), "--quiet",
                 "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert str(copy / RECORDS_FILE) in err and "git checkout" in err


def test_report_says_the_summary_is_stale_and_refreshes_it(copy, capsys):
    summary = pd.read_parquet(copy / "summary.parquet")
    victim_id = summary["run_id"].iloc[0]
    path = runs_dir(copy) / f"{victim_id}.parquet"
    moved = path.with_name("moved.bin")
    path.rename(moved)
    consolidate(copy)  # the summary now lacks the run
    moved.rename(path)  # ... which comes back (e.g. copied in from another machine)
    assert main(["report", str(copy)]) == 0
    out, err = capsys.readouterr()
    assert "stale" in err and "lacks 1 stored run" in err and f"ok {N_RUNS}." in out
    assert victim_id in set(pd.read_parquet(copy / "summary.parquet")["run_id"])


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
def test_result_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        path = write_run(tmp_path, {"run_id": "r1", "status": "ok"}, [])
        consolidate(tmp_path)
    finally:
        os.umask(old)
    for p in (tmp_path / "a.bin", path, tmp_path / "summary.parquet"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p
