"""`moebench verify`: stored runs re-run at HEAD agree with their records, bit for bit on
the same path, within RTOL/ATOL across paths; changed records, old code, max_time runs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from moebench.cli import main
from moebench.sweep.executors import available_cores
from moebench.sweep.store import (
    read_run_summary,
    run_path,
    stored_runs,
    verify_run_file,
    write_run,
)
from moebench.sweep.verify import (
    ATOL,
    RTOL,
    compare_summaries,
    excluded_column,
    same_path,
    verify,
)

TINY = """
name = "tiny_verify"
seed = 3
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

#: a run that its max_time ends long before its iteration budget
MAX_TIME = """
name = "max_time_verify"
seed = 3
repetitions = 1
[data]
n = 4000
d = 4
k = 3
activation = "linear"
n_test = 300
[budget]
max_iter = 100000
max_time = 0.02
[[algorithm]]
name = "joint_em"
label = "joint_em"
params = {tol = 0.0}
"""


def run_config(tmp: Path, text: str) -> Path:
    config, out = tmp / "config.toml", tmp / "out"
    config.write_text(text)
    # as many jobs as cores: one thread per run, the path verify re-runs on
    assert main(["run", str(config), "--out", str(out), "--jobs", str(available_cores()),
                 "--quiet", "--no-plot"]) == 0
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return run_config(tmp_path_factory.mktemp("verify"), TINY)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(folder, dest)
    return dest


def rewrite(out: Path, run_id: str, **changes) -> None:
    """Write the run file of ``run_id`` again (a valid checksum) with ``changes``."""
    rec = verify_run_file(run_path(out, run_id))
    summary, frame = rec.summary, rec.checkpoints
    for key, value in changes.items():
        if value is None:
            summary.pop(key)
        else:
            summary[key] = value
    write_run(out, summary, frame.to_dict("records"))


def test_verify_passes_bit_equal(tiny, capsys):
    assert main(["verify", str(tiny)]) == 0
    out = capsys.readouterr().out.splitlines()
    runs = [line for line in out if "  OK" in line]
    assert len(runs) == 4
    assert all(line.endswith("OK (bit-equal)") for line in runs), out
    assert out[-1].endswith("4 of 4 run(s) agree (4 bit-equal, 0 within rtol 1e-06, 0 ended "
                            "by max_time: status only), 0 differ")
    for rec in stored_runs(tiny).values():  # what made the records is recorded
        assert rec.summary["code_version"] == 2
        assert rec.summary["kernel_path"] in ("fused", "blas")
        assert rec.summary["threads"] == 1
        assert same_path(rec.summary)


def test_verify_seeded_sample(tiny):
    first = [c.run_id for c in verify(tiny, sample=2, seed=5).checks]
    again = [c.run_id for c in verify(tiny, sample=2, seed=5).checks]
    assert first == again and len(set(first)) == 2 and first == sorted(first)
    runs = sorted(stored_runs(tiny))
    chosen = {tuple(c.run_id for c in verify(tiny, sample=2, seed=s).checks) for s in range(6)}
    assert len(chosen) > 1 and all(set(c) <= set(runs) for c in chosen)


@pytest.mark.parametrize("factor", [1 + 1e-3, 1 + 1e-14])
def test_changed_metric_differs(tiny, tmp_path, capsys, factor):
    out = copy_of(tiny, tmp_path)
    rid = next(r for r, rec in stored_runs(out).items() if rec.summary["label"] == "joint_em")
    stored = read_run_summary(run_path(out, rid))["test_log_likelihood"]
    rewrite(out, rid, test_log_likelihood=stored * factor)
    assert main(["verify", str(out), "--run-id", rid]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{rid}  joint_em  DIFFERS (bit-equal) test_log_likelihood: "
                               f"stored {stored * factor!r}, now {stored!r}")
    assert lines[-1].endswith("0 of 1 run(s) agree (0 bit-equal, 0 within rtol 1e-06, 0 ended "
                              "by max_time: status only), 1 differ")


def test_changed_parameters_and_missing_column_differ(tiny, tmp_path, capsys):
    out = copy_of(tiny, tmp_path)
    rid = next(r for r, rec in stored_runs(out).items() if rec.summary["label"] == "tensor_em")
    summary = read_run_summary(run_path(out, rid))
    params = json.loads(summary["fitted_parameters"])
    params["experts"][0][0] += 1e-9
    rewrite(out, rid, fitted_parameters=json.dumps(params), fitted_made_up=0.5)
    assert main(["verify", str(out), "--run-id", rid]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert "DIFFERS" in line and "fitted_parameters" in line
    assert "fitted_made_up: stored 0.5, now missing" in line


def test_times_and_provenance_are_not_compared(tiny, tmp_path):
    out = copy_of(tiny, tmp_path)
    rid = sorted(stored_runs(out))[0]
    rewrite(out, rid, fit_time=1e6, wall_time=1e6, finished_at="1999-01-01T00:00:00+00:00",
            hostname="elsewhere", cpu="another CPU")
    assert verify(out, run_ids=[rid]).differing == 0


def test_packed_folder(tiny, tmp_path, capsys):
    out = copy_of(tiny, tmp_path)
    assert main(["pack", str(out)]) == 0
    assert not (out / "runs").exists()
    capsys.readouterr()
    assert main(["verify", str(out), "--sample", "3", "--seed", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(
        "3 of 3 run(s) agree (3 bit-equal, 0 within rtol 1e-06, 0 ended by max_time: status "
        "only), 0 differ")


def test_max_time_run_is_partially_checked(tmp_path, capsys):
    out = run_config(tmp_path, MAX_TIME)
    (rec,) = stored_runs(out).values()
    assert rec.summary["stop_reason"] == "max_time" and rec.summary["status"] == "ok"
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"{rec.run_id}  joint_em  OK, partially checked: the stored run ended "
                        f"by max_time, so only its status (ok) was compared")
    assert "1 ended by max_time: status only), 0 differ" in lines[-1]
    # a status that changes still fails it
    rewrite(out, rec.run_id, status="degenerate")
    assert main(["verify", str(out)]) == 1
    assert "DIFFERS" in capsys.readouterr().out


def test_errors(tiny, tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nowhere")]) == 2
    assert "no results folder" in capsys.readouterr().err
    bare = tmp_path / "bare"
    bare.mkdir()
    assert main(["verify", str(bare)]) == 2
    assert "no config.toml" in capsys.readouterr().err
    shutil.copy(tiny / "config.toml", bare / "config.toml")
    assert main(["verify", str(bare)]) == 2
    assert "holds no runs" in capsys.readouterr().err
    assert main(["verify", str(tiny), "--sample", "5"]) == 2
    err = capsys.readouterr().err
    assert "--sample 5 is larger than the 4 stored runs" in err and err.count("\n") == 1
    assert main(["verify", str(tiny), "--run-id", "nope"]) == 2
    assert "--run-id nope: no such run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(tiny), "--sample", "0"])
    assert exc.value.code == 2
    assert "--sample/-n: must be an integer >= 1; got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--sample must be >= 1"):
        verify(tiny, sample=0)


def test_old_records_are_refused(tiny, tmp_path, capsys):
    out = copy_of(tiny, tmp_path)
    for rid in stored_runs(out):
        rewrite(out, rid, code_version=None)  # as every record made before the column
    assert main(["verify", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("4 of the 4 chosen runs were made by code version 1: verify needs runs made by the "
            "current code (version 2); re-run with --rerun-stale") in err


def test_compare_rules():
    stored = {"run_id": "r", "status": "ok", "stop_reason": "converged", "n_iter": 7,
              "success": True, "expert_error": 0.25, "gating_error": None, "fit_time": 1.0,
              "fitted_grad_norm": 1e-7, "message": "", "label": "x",
              "fitted_parameters": json.dumps({"experts": [[1.0, 2.0]], "sigma": 0.1})}
    now = dict(stored, gating_error=math.nan, fit_time=9.0, message="other")
    assert compare_summaries(stored, now, exact=True) == []
    # a relative change of 1e-9: equal within RTOL across paths only
    moved = dict(now, expert_error=0.25 * (1 + 1e-9), fitted_grad_norm=1e-7 + ATOL / 2,
                 fitted_parameters=json.dumps({"experts": [[1.0 + 1e-9, 2.0]], "sigma": 0.1}))
    assert [c for c, _, _ in compare_summaries(stored, moved, exact=True)] == [
        "expert_error", "fitted_grad_norm", "fitted_parameters"]
    assert compare_summaries(stored, moved, exact=False) == []
    far = dict(now, expert_error=0.25 * (1 + 10 * RTOL))
    assert [c for c, _, _ in compare_summaries(stored, far, exact=False)] == ["expert_error"]
    # integers, booleans and strings are exact on every path; a missing value is not 0
    for key, value in (("n_iter", 8), ("success", False), ("status", "nan"),
                       ("stop_reason", "max_iter"), ("gating_error", 0.0)):
        assert [c for c, _, _ in compare_summaries(stored, dict(now, **{key: value}),
                                                   exact=False)] == [key]
    assert excluded_column("fitted_phase_times_gating_em") and excluded_column("hostname")
    assert excluded_column("threads") and excluded_column("code_version")
    assert not excluded_column("expert_error") and not excluded_column("n_iter")


def test_same_path_needs_kernels_blas_and_one_thread(tiny):
    summary = next(iter(stored_runs(tiny).values())).summary
    assert same_path(summary)
    other = "blas" if summary["kernel_path"] == "fused" else "fused"
    assert not same_path(dict(summary, kernel_path=other))
    assert not same_path(dict(summary, threads=2))
    assert not same_path(dict(summary, blas="mkl 2024"))
