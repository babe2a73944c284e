"""Adversarial attempts on the store that used to lose runs (issue 27 item 1).

Each test damages or misuses a copy of a small finished sweep, then drives the CLI. What
must hold: every record that fails verification, packed or not, is set aside in
``runs/.quarantine/`` with its reason and never deleted; ``unpack`` verifies before it
trusts a file and never deletes the last verified copy; the consolidated tables are
checked against the records they summarise and rebuilt in one line when they disagree;
a symbolic-link ``runs/`` packs; a folder belongs to one config; records and tables
carry a schema version, and an unversioned (older) folder is read with a one-line note
while a newer one is refused in one line.

The tests use the command line and pyarrow/pandas on the files (one also patches the
store's file writer), so the same file runs against older code, where each case failed
(the same config with other comments is the allowed case and passed before too).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moebench.cli import main

CONFIG = """
name = "adv_store"
seed = 11
repetitions = 2
[data]
n = [300, 400]
d = 3
k = 2
activation = "linear"
n_test = 200
[budget]
max_iter = 5
max_time = 20.0
[[algorithm]]
name = "joint_em"
label = "joint_em"
params = {n_init = 1}
"""
N_RUNS = 4
SUMMARY_KEY = b"moebench_summary"
SCHEMA_KEY = b"moebench_schema"


@pytest.fixture
def packed(res, capsys):
    config, out = res
    assert main(["pack", str(out)]) == 0
    assert (out / "records.parquet").is_file() and not (out / "runs").exists()
    capsys.readouterr()
    return config, out


def _quarantined(out: Path) -> list[Path]:
    qdir = out / "runs" / ".quarantine"
    return sorted(p for p in qdir.iterdir() if not p.name.endswith(".reason.txt")) \
        if qdir.is_dir() else []


def _reasons(out: Path) -> str:
    qdir = out / "runs" / ".quarantine"
    return "".join(p.read_text() for p in sorted(qdir.glob("*.reason.txt")))


def _report(out: Path, capsys) -> tuple[int, str, str]:
    code = main(["report", str(out)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _records(out: Path) -> pa.Table:
    return pq.read_table(out / "records.parquet")


# --------------------------------------------------------------------------- packed records
def test_a_packed_record_with_an_altered_checkpoint_is_set_aside_not_dropped(packed, capsys):
    _, out = packed
    table = pq.read_table(out / "checkpoints.parquet")
    victim = table.column("run_id")[0].as_py()
    ll = table.column("log_likelihood").to_numpy().copy()
    ll[0] += 1.0
    table = table.set_column(table.column_names.index("log_likelihood"), "log_likelihood",
                             pa.array(ll)).replace_schema_metadata(table.schema.metadata)
    pq.write_table(table, out / "checkpoints.parquet")
    assert main(["pack", str(out)]) == 0  # rewrites records.parquet without the bad record
    err = capsys.readouterr().err
    assert "Traceback" not in err and victim in err
    (kept,) = _quarantined(out)
    assert kept.name.startswith(victim)
    meta = pq.read_schema(kept).metadata
    assert json.loads(meta[SUMMARY_KEY])["run_id"] == victim  # the summary is kept whole
    assert len(pq.read_table(kept)) > 0  # with its checkpoint rows
    assert "checksum mismatch" in _reasons(out)
    assert victim not in _records(out).column("run_id").to_pylist()
    assert _records(out).num_rows == N_RUNS - 1


def test_a_packed_record_with_an_edited_summary_is_set_aside(packed, capsys):
    _, out = packed
    table = _records(out)
    summaries = table.column("summary").to_pylist()
    victim = json.loads(summaries[1])["run_id"]
    edited = json.loads(summaries[1])
    edited["expert_error"] = 0.0
    summaries[1] = json.dumps(edited)
    table = table.set_column(table.column_names.index("summary"), "summary",
                             pa.array(summaries)).replace_schema_metadata(table.schema.metadata)
    pq.write_table(table, out / "records.parquet")
    code, report, err = _report(out, capsys)
    assert code == 0 and f"ok {N_RUNS - 1}." in report
    assert len([line for line in err.splitlines() if victim in line]) == 1
    (kept,) = _quarantined(out)
    assert json.loads(pq.read_schema(kept).metadata[SUMMARY_KEY])["expert_error"] == 0.0
    assert main(["pack", str(out)]) == 0
    assert _quarantined(out) == [kept]  # set aside once, whatever reads it again


# --------------------------------------------------------------------------- unpack
def test_unpack_over_a_junk_file_named_after_a_packed_run(packed, capsys):
    _, out = packed
    victim = _records(out).column("run_id")[0].as_py()
    (out / "runs").mkdir()
    junk = out / "runs" / f"{victim}.parquet"
    junk.write_bytes(b"not a run file")
    assert main(["unpack", str(out)]) == 0
    assert f"wrote {N_RUNS} run file(s)" in capsys.readouterr().out
    assert not (out / "records.parquet").exists()
    assert junk.read_bytes() != b"not a run file"  # the packed record took its place
    assert [p.read_bytes() for p in _quarantined(out)] == [b"not a run file"]
    code, report, err = _report(out, capsys)
    assert code == 0 and f"ok {N_RUNS}." in report and "quarantine" not in err


def test_unpack_moves_a_damaged_run_file_aside_even_with_force(packed, capsys):
    _, out = packed
    victim = _records(out).column("run_id")[2].as_py()
    (out / "runs").mkdir()
    (out / "runs" / f"{victim}.parquet").mkdir()  # not even a file
    assert main(["unpack", "--force", str(out)]) == 0
    assert (out / "runs" / f"{victim}.parquet").is_file()
    assert [p.name for p in _quarantined(out)] == [f"{victim}.parquet"]
    code, report, _ = _report(out, capsys)
    assert code == 0 and f"ok {N_RUNS}." in report


def test_unpack_keeps_records_when_a_written_run_file_does_not_verify(packed, monkeypatch):
    """The last verified copy stays: a run file that comes out damaged (a full disk, a
    bad write) stops unpack before records.parquet is removed."""
    from moebench.sweep.store import packing as store_pack

    _, out = packed
    write = store_pack.atomic_write_bytes
    monkeypatch.setattr(store_pack, "atomic_write_bytes",
                        lambda path, data: write(path, data[: len(data) // 2]))
    with pytest.raises(ValueError, match="does not verify.*records.parquet was kept"):
        store_pack.unpack(out)
    assert _records(out).num_rows == N_RUNS


# --------------------------------------------------------------------------- tables
@pytest.mark.parametrize("keep_metadata", [False, True], ids=["pandas", "metadata_kept"])
def test_an_edited_summary_table_is_detected_and_rebuilt(res, capsys, keep_metadata):
    _, out = res
    assert main(["report", str(out)]) == 0
    honest = capsys.readouterr().out
    table = pq.read_table(out / "summary.parquet")
    errors = table.column("expert_error").to_numpy().copy()
    errors[:] = 0.0
    edited = table.set_column(table.column_names.index("expert_error"), "expert_error",
                              pa.array(errors))
    if keep_metadata:
        pq.write_table(edited.replace_schema_metadata(table.schema.metadata),
                       out / "summary.parquet")
    else:
        edited.to_pandas().to_parquet(out / "summary.parquet")
    code, report, err = _report(out, capsys)
    assert code == 0 and report == honest
    warned = [line for line in err.splitlines() if "summary.parquet" in line]
    assert len(warned) == 1 and "rebuild" in warned[0]
    assert (pd.read_parquet(out / "summary.parquet")["expert_error"] > 0).all()
    # the edited table was kept as evidence, and the folder is quiet again
    assert "summary.parquet" in [p.name for p in _quarantined(out)]
    assert _report(out, capsys)[2] == ""


def test_records_rewritten_to_no_rows_are_not_reported_as_runs(packed, capsys):
    _, out = packed
    table = _records(out)
    pq.write_table(table.slice(0, 0), out / "records.parquet")
    code, report, err = _report(out, capsys)
    assert f"ok {N_RUNS}." not in report  # the tables no longer pass for the records
    assert "disagree" in err and "Traceback" not in err
    # ... and what they held is set aside, not lost
    kept = {p.name for p in _quarantined(out)}
    assert {"summary.parquet", "checkpoints.parquet"} <= kept
    old = pd.read_parquet(out / "runs" / ".quarantine" / "summary.parquet")
    assert len(old) == N_RUNS


# --------------------------------------------------------------------------- symlinked runs/
@pytest.mark.parametrize("own_file", [False, True], ids=["only_runs", "with_a_note"])
def test_pack_and_unpack_with_a_symlinked_runs_dir(res, tmp_path, capsys, own_file):
    _, out = res
    target = tmp_path / "elsewhere" / "runs"
    target.parent.mkdir()
    shutil.move(out / "runs", target)
    if own_file:
        (target / "notes.txt").write_text("mine")  # not a run file: must stay
    (out / "runs").symlink_to(target, target_is_directory=True)
    assert main(["pack", str(out)]) == 0
    assert f"{N_RUNS} runs" in capsys.readouterr().out
    assert (out / "runs").is_symlink() and target.is_dir()
    assert sorted(p.name for p in target.iterdir()) == (["notes.txt"] if own_file else [])
    assert main(["unpack", str(out)]) == 0
    assert len(list(target.glob("*.parquet"))) == N_RUNS
    code, report, _ = _report(out, capsys)
    assert code == 0 and f"ok {N_RUNS}." in report


# --------------------------------------------------------------------------- one config
def test_a_different_config_is_refused_in_one_line(res, tmp_path, capsys):
    config, out = res
    before = (out / "config.toml").read_bytes()
    other = tmp_path / "other.toml"
    other.write_text(CONFIG.replace("n = [300, 400]", "n = [500]"))
    assert main(["run", str(other), "--out", str(out), "--quiet", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--replace-config" in err
    assert "[data] n" in err
    assert (out / "config.toml").read_bytes() == before
    assert len(list((out / "runs").glob("*.parquet"))) == N_RUNS  # nothing ran
    # said explicitly: it runs, and the folder now belongs to the other config
    assert main(["run", str(other), "--out", str(out), "--quiet", "--no-plot",
                 "--replace-config", "--jobs", "1"]) == 0
    assert (out / "config.toml").read_text() == other.read_text()


def test_the_same_config_with_other_comments_reruns_part_of_the_folder(res, tmp_path, capsys):
    config, out = res
    same = tmp_path / "same.toml"
    same.write_text("# the same sweep, reformatted\n" + CONFIG.replace(
        "seed = 11", "seed = 11   # base seed").replace("d = 3", "d=3"))
    assert main(["run", str(same), "--out", str(out), "--quiet", "--no-plot", "--jobs", "1",
                 "--filter", "n=300", "--force"]) == 0
    assert "ran 2 run(s)" in capsys.readouterr().out


# --------------------------------------------------------------------------- schema versions
def test_stored_files_carry_the_schema_version(packed):
    _, out = packed
    for name in ("records.parquet", "summary.parquet", "checkpoints.parquet"):
        assert pq.read_schema(out / name).metadata[SCHEMA_KEY] == b"2", name
    assert main(["unpack", str(out)]) == 0
    for path in (out / "runs").glob("*.parquet"):
        assert pq.read_schema(path).metadata[SCHEMA_KEY] == b"2"


def _strip_schema(path: Path) -> None:
    table = pq.read_table(path)
    meta = {k: v for k, v in (table.schema.metadata or {}).items()
            if k not in (SCHEMA_KEY, b"moebench_tables")}
    pq.write_table(table.replace_schema_metadata(meta), path)


def test_an_unversioned_folder_is_read_with_one_note(packed, capsys):
    _, out = packed
    code, honest, _ = _report(out, capsys)
    for name in ("records.parquet", "checkpoints.parquet", "summary.parquet"):
        _strip_schema(out / name)  # as written before schema versions
    code, report, err = _report(out, capsys)
    assert code == 0 and report == honest
    notes = err.strip().splitlines()
    assert len(notes) == 1 and "schema 1" in notes[0], err


def test_a_newer_schema_is_refused_in_one_line(packed, capsys):
    _, out = packed
    table = pq.read_table(out / "summary.parquet")
    meta = {**table.schema.metadata, SCHEMA_KEY: b"3"}
    pq.write_table(table.replace_schema_metadata(meta), out / "summary.parquet")
    code, report, err = _report(out, capsys)
    assert code == 2 and report == ""
    assert len(err.strip().splitlines()) == 1 and "schema 3" in err


def test_a_run_file_of_a_newer_schema_is_not_quarantined(res, capsys):
    _, out = res
    victim = sorted((out / "runs").glob("*.parquet"))[0]
    table = pq.read_table(victim)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, SCHEMA_KEY: b"9"}),
                   victim)
    assert main(["pack", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "schema 9" in err
    assert victim.is_file() and not _quarantined(out)
