"""Adversarial attempts on results folders (issue 11 items 1 and 7).

Each test damages a copy of a small finished sweep the way a crash, a full disk, bit rot,
a careless copy or a hostile user would, then drives the CLI. What must hold: no
traceback, the damaged file named by path in one warning line and moved to
``runs/.quarantine/`` (never deleted), the tables rebuilt without it, and resumes,
``--retry-failed`` and ``--force --filter`` still working.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moebench.cli import main

CONFIG = """
name = "adv_results"
seed = 3
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


def _run_files(folder: Path) -> list[Path]:
    return sorted((folder / "runs").glob("*.parquet"))


def _rewrite(path: Path, table: pa.Table, meta: dict[bytes, bytes]) -> None:
    pq.write_table(table.replace_schema_metadata(meta), path)


# --------------------------------------------------------------------------- damage kinds
def garbage_bytes(runs: Path, victim: Path) -> Path:
    victim.write_bytes(np.random.default_rng(0).bytes(3000))
    return victim


def truncated(runs: Path, victim: Path) -> Path:
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    return victim


def empty_file(runs: Path, victim: Path) -> Path:
    victim.write_bytes(b"")
    return victim


def magic_intact_footer_scrambled(runs: Path, victim: Path) -> Path:
    data = bytearray(victim.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer
    for i in range(start, start + footer // 2):
        data[i] ^= 0xA5
    assert data[:4] == b"PAR1" and data[-4:] == b"PAR1"
    victim.write_bytes(bytes(data))
    return victim


def altered_checkpoint_value(runs: Path, victim: Path) -> Path:
    """Bit rot parquet cannot see: one log-likelihood changed, metadata kept as it was."""
    table = pq.read_table(victim)
    ll = table.column("log_likelihood").to_numpy().copy()
    ll[0] += 1.0
    table = table.set_column(table.column_names.index("log_likelihood"), "log_likelihood",
                             pa.array(ll))
    _rewrite(victim, table, dict(table.schema.metadata))
    return victim


def edited_summary(runs: Path, victim: Path) -> Path:
    """A hand-edited result: the summary claims a perfect fit, the checksum was kept."""
    table = pq.read_table(victim)
    meta = dict(table.schema.metadata)
    summary = json.loads(meta[SUMMARY_KEY])
    summary["expert_error"] = 0.0
    meta[SUMMARY_KEY] = json.dumps(summary).encode()
    _rewrite(victim, table, meta)
    return victim


def summary_not_json(runs: Path, victim: Path) -> Path:
    table = pq.read_table(victim)
    meta = dict(table.schema.metadata)
    meta[SUMMARY_KEY] = b'{"run_id": "trunc'
    _rewrite(victim, table, meta)
    return victim


def foreign_parquet(runs: Path, victim: Path) -> Path:
    path = runs / "0123456789abcdef.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3]}), path)
    return path


def copied_under_another_name(runs: Path, victim: Path) -> Path:
    """A run file copied to another run's name: its summary names a different run."""
    path = runs / "feedfacefeedface.parquet"
    shutil.copyfile(victim, path)
    return path


def directory_named_like_run_file(runs: Path, victim: Path) -> Path:
    path = runs / "abcdefabcdef0000.parquet"
    path.mkdir()
    (path / "part-0.parquet").write_bytes(b"not parquet")
    return path


def dangling_symlink(runs: Path, victim: Path) -> Path:
    path = runs / "0000deadbeef0000.parquet"
    path.symlink_to(runs.parent / "nowhere" / "gone.parquet")
    return path


DAMAGE = [garbage_bytes, truncated, empty_file, magic_intact_footer_scrambled,
          altered_checkpoint_value, edited_summary, summary_not_json, foreign_parquet,
          copied_under_another_name, directory_named_like_run_file, dangling_symlink]
#: damage that takes a real run away (the others add a file that was never a run)
REPLACES_A_RUN = {garbage_bytes, truncated, empty_file, magic_intact_footer_scrambled,
                  altered_checkpoint_value, edited_summary, summary_not_json}


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__ for d in DAMAGE])
def test_report_quarantines_a_damaged_run_file(res, damage, capsys):
    _, out = res
    runs = out / "runs"
    victim = _run_files(out)[0]
    bad = damage(runs, victim)
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    naming = [line for line in captured.err.splitlines() if str(bad) in line]
    assert len(naming) == 1 and "quarantine" in naming[0], captured.err
    assert not os.path.lexists(bad)
    assert (runs / ".quarantine" / bad.name).exists() or \
        (runs / ".quarantine" / bad.name).is_symlink()
    expect = N_RUNS - 1 if damage in REPLACES_A_RUN else N_RUNS
    assert f"Run statuses: ok {expect}." in captured.out
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == expect and summary["run_id"].is_unique
    # a second report is quiet: the folder is clean again
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().err == ""


def test_resume_after_garbage_file_reruns_only_that_cell(res, capsys):
    config, out = res
    victim = _run_files(out)[1]
    others = {p.name: p.read_bytes() for p in _run_files(out) if p != victim}
    garbage_bytes(out / "runs", victim)
    assert main(["run", str(config), "--out", str(out), "--jobs", "1", "--quiet",
                 "--no-plot"]) == 0
    text = capsys.readouterr()
    assert "ran 1 run(s)" in text.out and f"skipped {N_RUNS - 1} finished" in text.out
    assert {p.name: p.read_bytes() for p in _run_files(out) if p != victim} == others
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == N_RUNS and (summary["status"] == "ok").all()


def test_retry_failed_with_a_garbage_file(res, capsys):
    config, out = res
    victim = garbage_bytes(out / "runs", _run_files(out)[0])
    assert main(["run", str(config), "--out", str(out), "--jobs", "1", "--quiet", "--no-plot",
                 "--retry-failed"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and str(victim) in captured.err
    assert "ran 1 run(s)" in captured.out
    assert len(pd.read_parquet(out / "summary.parquet")) == N_RUNS


def test_force_filter_with_a_garbage_file_elsewhere(res, capsys):
    config, out = res
    summary = pd.read_parquet(out / "summary.parquet")
    victim_id = summary.loc[summary["n"] == 400, "run_id"].iloc[0]
    garbage_bytes(out / "runs", out / "runs" / f"{victim_id}.parquet")
    assert main(["run", str(config), "--out", str(out), "--jobs", "1", "--quiet", "--no-plot",
                 "--force", "--filter", "n=300"]) == 0
    captured = capsys.readouterr()
    assert "ran 2 run(s)" in captured.out and victim_id in captured.err
    fresh = pd.read_parquet(out / "summary.parquet")  # not stale: rewritten without it
    assert len(fresh) == N_RUNS - 1 and victim_id not in set(fresh["run_id"])


def test_runs_is_a_file_is_one_line_error(res, capsys):
    config, out = res
    shutil.rmtree(out / "runs")
    (out / "runs").write_text("oops")
    assert main(["run", str(config), "--out", str(out), "--jobs", "1", "--quiet",
                 "--no-plot"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and str(out / "runs") in errors[0] and "Traceback" not in err
    assert (out / "runs").read_text() == "oops"


def test_plot_of_an_empty_summary_is_one_line(res, tmp_path, capsys):
    _, out = res
    shutil.rmtree(out / "runs")
    pd.DataFrame().to_parquet(out / "summary.parquet")
    pd.DataFrame({"run_id": pd.Series([], dtype=str)}).to_parquet(out / "checkpoints.parquet")
    assert main(["plot", str(out), "--kind", "curves", "--out", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no runs" in err and "Traceback" not in err


def test_stale_summary_is_said_and_refreshed(res, base, capsys):
    _, out = res
    summary = pd.read_parquet(out / "summary.parquet")
    # an older summary, as left by a sweep killed before its consolidation
    summary.iloc[:2].to_parquet(out / "summary.parquet")
    os.utime(out / "summary.parquet", ns=(1, 1))
    assert main(["report", str(out)]) == 0
    captured = capsys.readouterr()
    assert "stale" in captured.err and f"Run statuses: ok {N_RUNS}." in captured.out


@pytest.mark.parametrize("table", ["summary.parquet", "checkpoints.parquet"])
@pytest.mark.parametrize("kind", ["garbage", "foreign"])
def test_damaged_table_is_rebuilt_from_run_files(res, table, kind, capsys):
    _, out = res
    if kind == "garbage":
        (out / table).write_bytes(b"PAR1" + bytes(200) + b"PAR1")
    else:
        pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(out / table)
    assert main(["report", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1
    assert f"Run statuses: ok {N_RUNS}." in captured.out
    assert len(pd.read_parquet(out / "summary.parquet")) == N_RUNS


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_result_files_follow_the_umask(base, tmp_path, umask):
    from moebench.sweep.store import consolidate

    _, out = base
    copy = tmp_path / "res"
    shutil.copytree(out / "runs", copy / "runs")
    old = os.umask(umask)
    try:
        consolidate(copy)
    finally:
        os.umask(old)
    for name in ("summary.parquet", "checkpoints.parquet"):
        assert stat.S_IMODE((copy / name).stat().st_mode) == 0o666 & ~umask, name


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_run_file(res, capsys):
    _, out = res
    victim = _run_files(out)[0]
    victim.chmod(0)
    assert main(["report", str(out)]) == 0
    assert str(victim) in capsys.readouterr().err
    assert (out / "runs" / ".quarantine" / victim.name).exists()
