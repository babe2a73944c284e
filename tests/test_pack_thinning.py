"""Packing with thinned checkpoints: ``pack(out, thin_checkpoints=N)``, ``moebench pack
--thin-checkpoints N``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from moebench.cli import main
from moebench.sweep.config import load_config
from moebench.sweep.plots import applicable_kinds
from moebench.sweep.runner import run_sweep
from moebench.sweep.store import (
    CHECKSUM_KEY,
    PACK_KEY,
    RECORDS_FILE,
    SUMMARY_KEY,
    THINNED_COLUMN,
    THINNING_KEY,
    checkpoint_segments,
    is_packed,
    load_results,
    pack,
    run_checksum,
    runs_dir,
    stored_runs,
    stored_summaries,
    thin_checkpoint_rows,
    unpack,
    verify_run_file,
    write_run,
)
from moebench.sweep.trajectory import check_inputs


# --------------------------------------------------------------------------- constructed runs
def _run(phases_iters: list[tuple[str, list[int]]]) -> list[dict]:
    """Checkpoint records of a constructed run: (phase, iterations) segments in order."""
    rows, t = [], 0.0
    for phase, its in phases_iters:
        for i in its:
            t += 0.01
            rows.append({"phase": phase, "iteration": i, "time": t,
                         "log_likelihood": -1.0 / (1 + i), "expert_error": 1.0 / (1 + i),
                         "gating_error": 2.0 / (1 + i)})
    return rows


#: tensor_em + refine like: setup rows, a 1000-iteration phase, then a restart of 100
LONG = [("moments", [0]), ("decomposition", [0]), ("em", list(range(1000))),
        ("em", list(range(100))), ("gating", [0])]


def _kept(segments, n):
    ck = pd.DataFrame(_run(segments))
    rows = thin_checkpoint_rows(ck["phase"], ck["iteration"], n)
    return ck, rows


def test_kept_iterations_are_the_geometric_grid_exactly():
    ck, rows = _kept(LONG, 10)
    kept = ck.iloc[rows]
    em = kept[kept["phase"] == "em"]["iteration"].tolist()
    # 1000-iteration segment: round(geomspace(1, 1000, 10)) - 1; then the 100-iteration restart
    assert em == [0, 1, 4, 9, 21, 45, 99, 214, 463, 999] + [0, 1, 2, 4, 7, 12, 21, 35, 59, 99]
    assert kept["phase"].tolist()[:2] == ["moments", "decomposition"]
    assert kept["phase"].tolist()[-1] == "gating"
    assert len(rows) == 23


def test_gapped_iterations_keep_the_first_row_at_or_after_each_grid_point():
    ck, rows = _kept([("sgd", list(range(0, 1000, 10)))], 5)
    # span 991: offsets 0, 5, 30, 175, 990 -> first recorded iteration at or after each
    assert ck.iloc[rows]["iteration"].tolist() == [0, 10, 30, 180, 990]


@pytest.mark.parametrize("n", [2, 3, 7, 40, 2000])
def test_first_last_and_every_phase_and_restart_boundary_are_kept(n):
    ck, rows = _kept(LONG, n)
    seg = checkpoint_segments(ck["phase"], ck["iteration"])
    assert seg.max() == 4  # moments, decomposition, em, em restart, gating
    starts = np.flatnonzero(np.diff(seg, prepend=-1))
    ends = np.flatnonzero(np.diff(seg, append=seg[-1] + 1))
    assert set(starts) | set(ends) <= set(rows.tolist())
    assert rows[0] == 0 and rows[-1] == len(ck) - 1
    assert np.all(np.diff(rows) > 0)  # recorded order, no duplicates
    # a segment of at most n rows is kept whole; thinning again with the same n keeps all
    for s in range(seg.max() + 1):
        size = int((seg == s).sum())
        if size <= n:
            assert int((seg[rows] == s).sum()) == size
    again = thin_checkpoint_rows(ck["phase"].iloc[rows], ck["iteration"].iloc[rows], n)
    assert again.tolist() == list(range(len(rows)))


def test_a_short_run_loses_nothing():
    ck, rows = _kept([("em", list(range(30)))], 30)
    assert rows.tolist() == list(range(30))


@pytest.mark.parametrize("bad", [0, 1, -5, 1_000_001, 2.5, True, "10", None],
                         ids=["zero", "one", "negative", "too-big", "float", "bool", "str", "none"])
def test_bad_n_is_refused_naming_the_option_and_the_range(bad, tmp_path):
    with pytest.raises(ValueError, match=r"thin_checkpoints \(--thin-checkpoints\) must be an "
                       r"integer from 2 to 1000000.*got"):
        thin_checkpoint_rows(["em"] * 3, [0, 1, 2], bad)
    if bad is None:
        return
    out = tmp_path / "res"
    write_run(out, {"run_id": "r1", "status": "ok", "label": "a"}, _run(LONG))
    before = (runs_dir(out) / "r1.parquet").read_bytes()
    with pytest.raises(ValueError, match="--thin-checkpoints"):
        pack(out, thin_checkpoints=bad)
    assert (runs_dir(out) / "r1.parquet").read_bytes() == before and not is_packed(out)


def test_cli_bad_n_is_one_line_and_touches_nothing(tmp_path, capsys):
    out = tmp_path / "res"
    write_run(out, {"run_id": "r1", "status": "ok", "label": "a"}, _run(LONG))
    assert main(["pack", str(out), "--thin-checkpoints", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--thin-checkpoints" in err and "from 2 to" in err
    assert "Traceback" not in err and not is_packed(out)


# --------------------------------------------------------------------------- packed folders
def _pack_record(out) -> dict:
    """The ``moebench_pack`` record in records.parquet's schema metadata (the file format)."""
    return json.loads(pq.read_schema(out / RECORDS_FILE).metadata[PACK_KEY])


def _folder(tmp_path, n_long=3):
    """A results folder of constructed runs: ``n_long`` long ones and a short one."""
    out = tmp_path / "res"
    for i in range(n_long):
        write_run(out, {"run_id": f"long{i}", "status": "ok", "label": "em", "n_iter": 999,
                        "expert_error": 0.001}, _run(LONG))
    write_run(out, {"run_id": "short", "status": "ok", "label": "tensor",
                    "n_iter": 3}, _run([("gating_em", [0, 1, 2])]))
    return out


def test_pack_thins_records_metadata_and_keeps_summaries_exact(tmp_path, capsys):
    out = _folder(tmp_path)
    summaries = {p.stem: pq.read_schema(p).metadata[SUMMARY_KEY]
                 for p in runs_dir(out).glob("*.parquet")}
    full = {rid: rec.checkpoints for rid, rec in stored_runs(out).items()}
    assert main(["pack", str(out), "--thin-checkpoints", "10"]) == 0
    assert "thinned the checkpoints of 3 run(s) to about 10 per segment" in \
        capsys.readouterr().out
    meta = _pack_record(out)
    rows_full = sum(len(f) for f in full.values())
    assert meta == {"format": 2, "runs": 4, "checkpoint_rows": 3 * 23 + 3,
                    "checkpoint_rows_full": rows_full, "thinned_runs": 3,
                    "thin_checkpoints": [10]}
    records = pq.read_table(out / RECORDS_FILE).to_pandas().set_index("run_id")
    assert records.loc["long0", "thin_checkpoints"] == 10
    assert records.loc["long0", "checkpoint_rows_full"] == len(full["long0"]) == 1103
    assert records.loc["long0", "checkpoint_rows"] == 23
    assert records.loc["short", "thin_checkpoints"] == 0  # 3 rows: nothing to drop
    assert {rid: r.encode() for rid, r in records["summary"].items()} == summaries
    summary, ck = load_results(out)
    assert dict(zip(summary["run_id"], summary[THINNED_COLUMN], strict=True)) == \
        {"long0": 10, "long1": 10, "long2": 10, "short": 0}
    assert set(ck.groupby("run_id").size().items()) == \
        {("long0", 23), ("long1", 23), ("long2", 23), ("short", 3)}
    # the kept rows are the original rows at the kept positions, values unchanged
    kept = ck[ck["run_id"] == "long1"][["phase", "iteration", "time", "log_likelihood",
                                        "expert_error", "gating_error"]]
    rows = thin_checkpoint_rows(full["long1"]["phase"], full["long1"]["iteration"], 10)
    pd.testing.assert_frame_equal(kept.reset_index(drop=True),
                                  full["long1"].iloc[rows].reset_index(drop=True))


def test_pack_without_thinning_keeps_the_format_1_layout(tmp_path):
    out = _folder(tmp_path)
    pack(out)
    assert _pack_record(out)["format"] == 1
    assert "thin_checkpoints" not in pq.read_schema(out / RECORDS_FILE).names
    summary, _ = load_results(out)
    assert THINNED_COLUMN not in summary.columns


def test_unpack_round_trip_gives_valid_run_files_with_honest_checksums(tmp_path):
    out = _folder(tmp_path)
    pack(out, thin_checkpoints=10)
    packed = stored_runs(out)
    s0, c0 = load_results(out)
    assert unpack(out) == 4 and not is_packed(out)
    for rid, rec in packed.items():
        path = runs_dir(out) / f"{rid}.parquet"
        got = verify_run_file(path)  # raises on a bad checksum
        pd.testing.assert_frame_equal(got.checkpoints, rec.checkpoints)
        assert got.summary_json == rec.summary_json and got.thinning == rec.thinning
        meta = pq.read_schema(path).metadata
        assert meta[CHECKSUM_KEY].decode() == run_checksum(
            meta[SUMMARY_KEY], got.checkpoints, got.thinning)
        if rec.thinning:
            assert json.loads(meta[THINNING_KEY]) == {"thin_checkpoints": 10,
                                                      "checkpoint_rows_full": 1103}
        else:
            assert THINNING_KEY not in meta
    # packing again (no thinning asked) keeps the thinning records and the same tables
    pack(out)
    assert _pack_record(out)["thinned_runs"] == 3
    s1, c1 = load_results(out)
    pd.testing.assert_frame_equal(s1, s0)
    pd.testing.assert_frame_equal(c1, c0)


def test_an_altered_thinning_record_fails_the_checksum(tmp_path, capsys):
    out = _folder(tmp_path, n_long=1)
    pack(out, thin_checkpoints=10)
    unpack(out)
    path = runs_dir(out) / "long0.parquet"
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[THINNING_KEY] = json.dumps({"thin_checkpoints": 10,
                                     "checkpoint_rows_full": 23}).encode()  # "not thinned"
    pq.write_table(table.replace_schema_metadata(meta), path)
    assert "long0" not in stored_runs(out)
    assert "checksum mismatch" in capsys.readouterr().err
    assert (runs_dir(out) / ".quarantine" / "long0.parquet").is_file()


def test_runs_thinned_before_are_left_as_they_are_and_new_runs_are_thinned(tmp_path):
    out = _folder(tmp_path, n_long=1)
    pack(out, thin_checkpoints=10)
    first = stored_runs(out)["long0"]
    write_run(out, {"run_id": "late", "status": "ok", "label": "em"}, _run(LONG))
    done = pack(out, thin_checkpoints=5)
    assert done.thinned == 1 and done.runs == 3
    runs = stored_runs(out)
    pd.testing.assert_frame_equal(runs["long0"].checkpoints, first.checkpoints)
    assert runs["long0"].thinning["thin_checkpoints"] == 10
    assert runs["late"].thinning == {"thin_checkpoints": 5, "checkpoint_rows_full": 1103}
    assert _pack_record(out)["thin_checkpoints"] == [5, 10]


def test_equal_footing_refuses_thinned_runs_and_all_skips_it(tmp_path):
    out = _folder(tmp_path)
    pack(out, thin_checkpoints=10)
    summary, ck = load_results(out)
    with pytest.raises(ValueError, match="thinned"):
        check_inputs(summary, ck, "expert_error", None)
    assert check_inputs(summary, ck, "expert_error", ["tensor"]) == ["tensor"]
    assert "equal_footing" not in applicable_kinds(summary)


# --------------------------------------------------------------------------- a real sweep
CONFIG = """
name = "thin"
seed = 5
repetitions = 2
[data]
n = 300
d = 3
k = 2
activation = "linear"
n_test = 100
[budget]
max_iter = 40
max_time = 20.0
[[algorithm]]
name = "joint_em"
label = "joint_em"
params = {n_init = 2, tol = 0.0}
"""


def test_resume_treats_thinned_runs_as_finished(tmp_path):
    path = tmp_path / "thin.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    out = tmp_path / "res"
    first = run_sweep(config, out, jobs=1, progress=False)
    assert first.ran == 2
    s0, c0 = load_results(out)
    done = pack(out, thin_checkpoints=4)
    assert done.thinned == 2 and done.checkpoint_rows < len(c0)
    again = run_sweep(config, out, jobs=1, progress=False)
    assert again.ran == 0 and again.skipped == 2
    assert set(stored_summaries(out)) == set(s0["run_id"])
    s1, _ = load_results(out)
    pd.testing.assert_frame_equal(s1[list(s0.columns)], s0)
    assert (s1[THINNED_COLUMN] == 4).all()
    shutil.rmtree(out)
