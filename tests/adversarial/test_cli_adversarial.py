"""Adversarial attempts on the ``moebench`` command line (issue 11, classes 4 and 5).

Each case drives ``moebench.cli.main`` in-process, as a careless or hostile user
would, and asserts what a user must see: exit status 2 before anything runs or is
written, one line on stderr that names the option, key, path or value (and what
would be valid), and no traceback. Each failed on commit 032b10d (exit 0 with
the bad value accepted, a traceback, a message without the name, or a folder
created before the error).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from cli_status import run_cli

from moebench.cli import main

SMALL = """{name_line}
seed = 1
[data]
n = 400
d = 3
k = 2
n_test = 200
[budget]
max_iter = 5
[[algorithm]]
name = "joint_em"
"""




def one_line_error(capsys, *needles: str) -> str:
    """stderr is exactly one line, with no traceback, containing every needle."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def write_config(folder: Path, name_line: str, filename: str = "cfg.toml") -> Path:
    path = folder / filename
    path.write_text(SMALL.format(name_line=name_line))
    return path


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A scratch folder as the working directory, with a regular file ``afile`` in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CI", "1")
    (tmp_path / "afile").write_text("not a folder\n")
    return tmp_path


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A finished one-run sweep (to aim plot and report at)."""
    tmp = tmp_path_factory.mktemp("adv_results")
    cfg = write_config(tmp, 'name = "adv_small"')
    out = tmp / "res"
    assert main(["run", str(cfg), "--out", str(out), "--jobs", "1", "--quiet",
                 "--no-plot"]) == 0
    return out


# --------------------------------------------------------------------------- config names
@pytest.mark.parametrize("name", ["../../escape", "sub/dir", "/tmp/absolute", "..", "",
                                  "my sweep", "x" * 300],
                         ids=["parent-escape", "slash", "absolute", "dotdot", "empty",
                              "space", "too-long"])
def test_config_name_must_be_plain(work, capsys, name):
    cfg = write_config(work, f'name = "{name}"')
    assert run_cli(["run", str(cfg), "--dry-run"]) == 2
    one_line_error(capsys, "name", repr(name)[:40], "plain name", "letters, digits")
    assert not (work / "results").exists()


def test_config_file_name_must_be_plain_without_name_key(work, capsys):
    cfg = write_config(work, "", filename="my sweep.toml")
    assert run_cli(["run", str(cfg), "--dry-run"]) == 2
    one_line_error(capsys, "'my sweep'", "from the file name", "plain name")


def test_config_that_is_not_text(work, capsys):
    bad = work / "binary.toml"
    bad.write_bytes(b"\xff\xfe\x00name")
    assert run_cli(["run", str(bad), "--dry-run"]) == 2
    one_line_error(capsys, str(bad), "UTF-8")


# --------------------------------------------------------------------------- CSV sources
CSV_CONFIG = """name = "csvcase"
[data]
source = {{csv = "{csv}", target = "y"}}
folds = {folds}
[[algorithm]]
name = "joint_em"
"""


def test_more_folds_than_rows(work, capsys):
    rows = "\n".join(f"{i},{(7 * i) % 5},{i % 3}" for i in range(15))
    (work / "rows15.csv").write_text("a,b,y\n" + rows + "\n")
    cfg = work / "csv.toml"
    cfg.write_text(CSV_CONFIG.format(csv="rows15.csv", folds=20))
    assert run_cli(["run", str(cfg), "--dry-run"]) == 2
    one_line_error(capsys, "data.folds", "20", "15")


def test_empty_csv_with_sep_auto(work, capsys):
    (work / "empty.csv").write_text("")
    cfg = work / "csv.toml"
    cfg.write_text(CSV_CONFIG.format(csv="empty.csv", folds=2))
    assert run_cli(["run", str(cfg), "--dry-run"]) == 2
    one_line_error(capsys, "data.source.csv", "empty.csv", "empty")


# --------------------------------------------------------------------------- numeric options
@pytest.mark.parametrize("argv, needles", [
    (["report", "{res}", "--stuck-tol", "-1"], ["--stuck-tol", "-1", ">= 0"]),
    (["report", "{res}", "--stuck-tol", "nan"], ["--stuck-tol", "nan", "finite"]),
    (["report", "{res}", "--stuck-tol", "1e400"], ["--stuck-tol", "1e400", "finite"]),
    (["plot", "{res}", "--kind", "phase", "--axes", "n", "d", "--stuck-tol", "inf"],
     ["--stuck-tol", "inf", "finite"]),
    (["generate", "--n", "10", "--d", "3", "--k", "2", "--seed", "-1", "--out", "x.npz"],
     ["--seed", "-1", ">= 0"]),
], ids=["report-stuck-tol-negative", "report-stuck-tol-nan", "report-stuck-tol-overflow",
        "plot-stuck-tol-inf", "generate-seed-negative"])
def test_numeric_option_ranges(work, results, capsys, argv, needles):
    argv = [a.replace("{res}", str(results)) for a in argv]
    assert run_cli(argv) == 2
    one_line_error(capsys, *needles)
    assert not (work / "x.npz").exists()


# --------------------------------------------------------------------------- output paths
@pytest.mark.parametrize("argv, needles", [
    (["run", "{cfg}", "--out", "afile"], ["--out", "'afile'", "existing file"]),
    (["run", "{cfg}", "--out", "afile/sub"], ["--out", "'afile/sub'", "'afile' is a file"]),
    (["plot", "{res}", "--out", "afile/fig.png"], ["--out", "'afile/fig.png'", "is a file"]),
    (["plot", "{res}", "--kind", "all", "--out", "afile"], ["--out", "'afile'", "existing file"]),
    (["report", "{res}", "--out", "adir"], ["--out", "'adir'", "existing directory"]),
    (["generate", "--n", "10", "--d", "3", "--k", "2", "--out", "afile"],
     ["--out", "'afile'", "existing file"]),
    (["generate", "--n", "10", "--d", "3", "--k", "2", "--out", "afile/x.npz"],
     ["--out", "'afile/x.npz'", "is a file"]),
], ids=["run-out-is-file", "run-out-under-file", "plot-out-under-file",
        "plot-all-out-is-file", "report-out-is-dir", "generate-out-is-file",
        "generate-out-under-file"])
def test_out_that_cannot_be_written(work, results, capsys, argv, needles):
    (work / "adir").mkdir()
    cfg = write_config(work, 'name = "outcase"')
    argv = [a.replace("{res}", str(results)).replace("{cfg}", str(cfg)) for a in argv]
    assert run_cli(argv) == 2
    one_line_error(capsys, *needles)
    assert (work / "afile").read_text() == "not a folder\n"
    assert list((work / "adir").iterdir()) == []


# --------------------------------------------------------------------------- results folders
def test_plot_on_a_summary_without_runs(work, capsys):
    folder = work / "empty_results"
    folder.mkdir()
    pd.DataFrame().to_parquet(folder / "summary.parquet")
    pd.DataFrame().to_parquet(folder / "checkpoints.parquet")
    assert run_cli(["plot", str(folder)]) == 2
    one_line_error(capsys, "empty_results", "no runs")


def test_filter_that_selects_nothing(work, capsys):
    cfg = write_config(work, 'name = "filtercase"')
    assert run_cli(["run", str(cfg), "--filter", "k=5", "--out", "res"]) == 2
    one_line_error(capsys, "--filter k=5", "selects none", "k: 2")
    assert not (work / "res").exists()


# --------------------------------------------------------------------------- dask options
def test_scheduler_without_dask_backend_touches_nothing(work, capsys):
    cfg = write_config(work, 'name = "schedcase"')
    assert run_cli(["run", str(cfg), "--scheduler", "tcp://127.0.0.1:8786",
                    "--out", "res"]) == 2
    one_line_error(capsys, "--scheduler", "--executor dask")
    assert not (work / "res").exists()


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "tcp://127.0.0.1:notaport"],
                         ids=["unreachable", "malformed"])
def test_unreachable_scheduler_fails_fast(work, capsys, address):
    pytest.importorskip("distributed")
    cfg = write_config(work, 'name = "daskcase"')
    t0 = time.monotonic()
    assert run_cli(["run", str(cfg), "--executor", "dask", "--scheduler", address,
                    "--out", "res"]) == 2
    assert time.monotonic() - t0 < 15
    one_line_error(capsys, "--scheduler", repr(address), "tcp://")
    assert not (work / "res").exists()


# --------------------------------------------------------------------------- --strict
def test_strict_counts_stored_failures_on_resume(work, capsys):
    from moebench.sweep.config import load_config
    from moebench.sweep.store import write_run
    from moebench.sweep.worker import failure_summary

    cfg = write_config(work, 'name = "strictcase"\nrepetitions = 2')
    cells = load_config(cfg).cells()
    assert len(cells) == 2
    out = work / "res"
    # an earlier session recorded one run as failed
    write_run(out, failure_summary(cells[0], "error", "RuntimeError: boom", "strictcase"), [])
    assert run_cli(["run", str(cfg), "--out", str(out), "--jobs", "1", "--quiet",
                    "--no-plot", "--strict"]) == 1
    stdout = capsys.readouterr().out
    assert "skipped 1 finished, 0 failed; 1 stored run(s) had failed before" in stdout
    # nothing new to run: still 1
    assert run_cli(["run", str(cfg), "--out", str(out), "--jobs", "1", "--quiet",
                    "--no-plot", "--strict"]) == 1
    assert "skipped 2 finished, 0 failed; 1 stored" in capsys.readouterr().out


# --------------------------------------------------------------------------- genuine bugs
def test_internal_error_is_one_line_and_debug_shows_the_traceback(results, capsys,
                                                                   monkeypatch):
    import moebench.sweep.report

    def broken(*args, **kwargs):
        raise KeyError("status")

    monkeypatch.setattr(moebench.sweep.report, "mark_stuck", broken)  # in report_table
    monkeypatch.delenv("MOEBENCH_DEBUG", raising=False)
    assert run_cli(["report", str(results)]) == 1
    one_line_error(capsys, "internal error", "KeyError", "'status'", "test_cli_adversarial.py:",
                   "--debug", "MOEBENCH_DEBUG=1")
    with pytest.raises(KeyError, match="status"):
        main(["report", str(results), "--debug"])
    with pytest.raises(KeyError, match="status"):
        main(["--debug", "report", str(results)])
    monkeypatch.setenv("MOEBENCH_DEBUG", "1")
    with pytest.raises(KeyError, match="status"):
        main(["report", str(results)])
