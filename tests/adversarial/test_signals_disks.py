"""Issue 27, item 3: clean signals and full disks.

``moebench generate`` removes its temporary files on SIGTERM as on SIGINT and the
stale ones a killed earlier ``generate`` left; a write that fails for want of space
(here: a file-size limit, which fails the same writes with an OSError) ends ``run``
and ``pack`` in one line without worker tracebacks; ``--out ''`` is refused. Each
failed on main f3f291d (temporary files left and kept, two worker tracebacks, data
written into the current directory).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_status import run_cli

CONFIG = """name = "tiny"
seed = 1
repetitions = 2
[data]
n = 300
d = 3
k = 2
n_test = 100
[budget]
max_iter = 3
[[algorithm]]
name = "joint_em"
"""




def _moebench(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GIT_OPTIONAL_LOCKS": "0",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "moebench.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def test_generate_removes_its_temporary_files_on_sigterm(tmp_path):
    out = tmp_path / "data"
    proc = _moebench(["generate", "--n", "20000000", "--d", "3", "--k", "2", "--out",
                      str(out)], cwd=tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        tmps = list(out.glob(".tmp-X.npy.*")) if out.is_dir() else []
        if tmps and tmps[0].stat().st_size > 1_000_000:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "generate ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []


def test_generate_removes_stale_temporaries_it_recognises(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    stale = [out / ".tmp-X.npy.k2j3h4", out / ".tmp-y.npy.abc", out / ".tmp-params.json.x1"]
    for path in stale:
        path.write_bytes(b"\0" * 100)
    kept = [out / ".tmp-notes.txt.q", out / "notes.txt", out / ".tmp-X.npy"]
    for path in kept:
        path.write_text("mine")
    assert run_cli(["generate", "--n", "500", "--d", "3", "--k", "2", "--out", str(out)]) == 0
    assert "removed 3 temporary file(s) an interrupted generate had left" in \
        capsys.readouterr().out
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "mine" for p in kept)
    npz = tmp_path / "d.npz"
    (tmp_path / ".tmp-d.npz.zz9").write_bytes(b"\0")
    assert run_cli(["generate", "--n", "500", "--d", "3", "--k", "2", "--out", str(npz)]) == 0
    assert not (tmp_path / ".tmp-d.npz.zz9").exists() and npz.is_file()


@pytest.mark.parametrize("value", ["", "  "])
def test_generate_refuses_an_empty_out(tmp_path, monkeypatch, capsys, value):
    monkeypatch.chdir(tmp_path)
    assert run_cli(["generate", "--n", "500", "--d", "3", "--k", "2", "--out", value]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--out is empty" in err
    assert list(tmp_path.iterdir()) == []


def test_every_verb_refuses_an_empty_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    for argv in (["run", str(cfg), "--dry-run"], ["report", "res"], ["plot", "res"]):
        assert run_cli([*argv, "--out", ""]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--out is empty" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def _file_size_limit(limit: int):
    def apply() -> None:
        # writes past the limit fail with EFBIG (an OSError, as ENOSPC on a full disk)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_sweep_into_a_full_disk_ends_in_one_line(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    proc = _moebench(["run", str(cfg), "--out", str(tmp_path / "res"), "--jobs", "2",
                      "--quiet", "--no-plot"], cwd=tmp_path, preexec_fn=_file_size_limit(1500))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("moebench run: tiny: 2 runs"), err
    assert lines[1].startswith("moebench run: error: ") and "File too large" in lines[1], err
    # nothing half-written: no run file, no temporary file
    runs = tmp_path / "res" / "runs"
    assert not runs.is_dir() or list(runs.iterdir()) == []


def test_pack_into_a_full_disk_ends_in_one_line(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    res = tmp_path / "res"
    assert run_cli(["run", str(cfg), "--out", str(res), "--jobs", "1", "--quiet",
                    "--no-plot"]) == 0
    before = sorted(p.name for p in (res / "runs").iterdir())
    proc = _moebench(["pack", str(res)], cwd=tmp_path, preexec_fn=_file_size_limit(3000))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in (res / "runs").iterdir()) == before


def test_a_dask_sweep_into_a_full_disk_ends_in_one_line(tmp_path):
    pytest.importorskip("dask.distributed")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    proc = _moebench(["run", str(cfg), "--out", str(tmp_path / "res"), "--jobs", "1",
                      "--executor", "dask", "--quiet", "--no-plot"], cwd=tmp_path,
                     preexec_fn=_file_size_limit(1500))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "Compute Failed" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("moebench run: error: ") and "File too large" in lines[-1], err
    runs = tmp_path / "res" / "runs"
    assert not runs.is_dir() or list(runs.iterdir()) == []
