"""`moebench run / plot / report` end to end, including a sweep killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from moebench.cli import main
from moebench.sweep.store import finished_run_ids, runs_dir

SMALL = """
name = "cli_small"
seed = 5
repetitions = {reps}
[data]
n = [800, 1600]
d = 4
k = 2
activation = "linear"
n_test = 500
[budget]
max_iter = 10
max_time = 20.0
[[algorithm]]
name = "joint_em"
label = "joint_em"
[[algorithm]]
name = "tensor_em"
label = "tensor_em_refine"
params = {{refine = true, refine_max_iter = 10}}
"""


def write_config(tmp_path: Path, reps: int) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL.format(reps=reps))
    return path


def moebench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "moebench.cli", *args]


def test_bad_config_fails_before_running(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\nn = 500\nd = 4\nk = 2\ncolour = "red"\n'
                   '[[algorithm]]\nname = "joint_em"\n')
    out = tmp_path / "out"
    assert main(["run", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown key data.'colour'" in err and "valid keys" in err
    assert not out.exists()
    bad.write_text('[data]\nn = 500\nd = 4\nk = 2\n[[algorithm]]\nname = "em_joint"\n')
    assert main(["run", str(bad), "--out", str(out)]) == 2
    assert "unknown algorithm[0].name 'em_joint'" in capsys.readouterr().err
    assert not out.exists()
    assert main(["run", "no_such_config"]) == 2
    assert "shipped configs" in capsys.readouterr().err


def test_dry_run_of_shipped_configs(capsys):
    assert main(["run", "quickstart", "--dry-run"]) == 0
    assert "= 24 runs" in capsys.readouterr().out
    assert main(["run", "paper", "--dry-run", "--filter", "k=2", "--filter", "n=2000"]) == 0
    assert "130 selected" in capsys.readouterr().out
    assert main(["run", "paper", "--dry-run", "--filter", "colour=red"]) == 2
    assert "unknown key 'colour'" in capsys.readouterr().err


def test_sigkill_mid_sweep_then_resume(tmp_path):
    config = write_config(tmp_path, reps=4)
    out = tmp_path / "out"
    total = 2 * 4 * 2
    env = dict(os.environ, CI="1")
    proc = subprocess.Popen(moebench_cmd("run", str(config), "--out", str(out), "--jobs", "1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if len(finished_run_ids(out)) >= 3:
                break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    time.sleep(0.3)  # let orphaned workers notice (they exit with their parent)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in runs_dir(out).iterdir()
              if p.name.endswith(".parquet") and not p.name.startswith(".tmp-")}
    assert 3 <= len(before) < total, f"{len(before)} of {total} runs finished before the kill"
    rerun = subprocess.run(moebench_cmd("run", str(config), "--out", str(out), "--jobs", "2"),
                           capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped {len(before)} finished" in rerun.stdout
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == total and summary["run_id"].is_unique
    assert (summary["status"] == "ok").all()
    files = [p for p in runs_dir(out).iterdir() if p.name.endswith(".parquet")]
    assert len(files) == total and not any(p.name.startswith(".tmp-") for p in files)
    for name, (mtime, content) in before.items():
        p = runs_dir(out) / name
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == content
    assert (out / "figure.png").is_file() and (out / "checkpoints.parquet").is_file()


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    config = write_config(tmp, reps=2)
    out = tmp / "res"
    assert main(["run", str(config), "--out", str(out), "--jobs", "2", "--csv", "--quiet"]) == 0
    return out


def test_run_writes_tables_csv_and_figure(cli_results, capsys):
    for name in ("summary.parquet", "checkpoints.parquet", "summary.csv", "checkpoints.csv",
                 "figure.png", "config.toml"):
        assert (cli_results / name).is_file(), name
    summary = pd.read_csv(cli_results / "summary.csv")
    assert len(summary) == 8 and set(summary["label"]) == {"joint_em", "tensor_em_refine"}


def test_plot_and_report_cli(cli_results, tmp_path, capsys):
    assert main(["plot", str(cli_results), "--kind", "curves", "--x", "time",
                 "--out", str(tmp_path / "c.pdf")]) == 0
    assert (tmp_path / "c.pdf").read_bytes().startswith(b"%PDF")
    assert main(["plot", str(cli_results), "--kind", "all", "--out", str(tmp_path / "all")]) == 0
    made = {p.name for p in (tmp_path / "all").iterdir()}
    assert {"curves.png", "time.png", "sample_complexity.png", "success.png"} <= made
    assert main(["plot", str(cli_results), "--kind", "success"]) == 0
    assert (cli_results / "figures" / "success.png").is_file()
    capsys.readouterr()
    assert main(["report", str(cli_results)]) == 0
    text = capsys.readouterr().out
    assert "| variant | n |" in text and "| joint_em | 800 | 2 | 0 |" in text
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "no results directory" in capsys.readouterr().err


def test_phase_maps_diagnostics_and_gridlock_report(cli_results, tmp_path, capsys):
    assert main(["plot", str(cli_results), "--kind", "phase", "--axes", "n", "k",
                 "--out", str(tmp_path / "phase")]) == 0
    assert {p.name for p in (tmp_path / "phase").iterdir()} == {
        "phase_joint_em.png", "phase_tensor_em_refine.png"}
    assert main(["plot", str(cli_results), "--kind", "diagnostics", "--by", "n",
                 "--out", str(tmp_path / "diag.png")]) == 0
    assert (tmp_path / "diag.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["report", str(cli_results), "--phase", "n"]) == 0
    text = capsys.readouterr().out
    assert "## Phase map over n" in text and "## Gridlock: stuck >= 30%" in text
    assert main(["plot", str(cli_results), "--kind", "phase"]) == 2
    assert "--kind phase needs --axes" in capsys.readouterr().err
    assert main(["report", str(cli_results), "--phase", "n", "--reference", "nope"]) == 2
    assert "unknown reference variant 'nope'" in capsys.readouterr().err
    assert main(["plot", str(cli_results), "--kind", "gridlock", "--axes", "n", "k",
                 "--out", str(tmp_path / "gridlock.svg")]) == 0
    assert "<svg" in (tmp_path / "gridlock.svg").read_text()[:500]
    capsys.readouterr()
    assert main(["plot", str(cli_results), "--kind", "gridlock"]) == 2
    assert "--kind gridlock needs --axes" in capsys.readouterr().err
