"""`moebench verify`: stored runs re-run at HEAD agree with their records, bit for bit on
the same path, within RTOL/ATOL across paths; changed records, old code, max_time runs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
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


# --- across paths, within a run's own conditioning (issue 26) --------------------------

#: a tensor_em run below its sample complexity whose gating EM saturates on wrong experts:
#: on the BLAS kernel path its fitted gating (norm 21.6) ends 5.5e-6 apart from the fused
#: path's stored one (1.2e-6 relative), its experts 2.9e-14 apart
ILL_FOLDER = Path(__file__).resolve().parents[1] / "results" / "gridlock_nonlinear_30seeds"
ILL_RUN = "eacafe302f0d81fd"


def test_perturb_inputs_is_seeded_and_bounded(tmp_path):
    from moebench.sweep.data_sources import CellData
    from moebench.sweep.verify import perturb_inputs, probe_scale

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(400, 3)), rng.normal(size=400)
    data = CellData(X, y, X[:10], y[:10])
    a, b, c = perturb_inputs(data, 0), perturb_inputs(data, 0), perturb_inputs(data, 1)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X) and not np.array_equal(a.X, X)
    assert probe_scale(400) == 20 * 2.0 ** -53
    # (the ratio itself rounds by a few units of 2**-52)
    assert np.max(np.abs(a.X / X - 1)) <= probe_scale(400) + 4 * 2.0 ** -52
    assert a.y is y and a.X_test is data.X_test
    disk = tmp_path / "X.npy"
    np.save(disk, X)
    with pytest.raises(ValueError, match="X is on disk"):
        perturb_inputs(CellData(np.load(disk, mmap_mode="r"), y, X, y), 0)


def test_conditioning_rules():
    from moebench.sweep.verify import CONDITION_FACTOR, conditioning_explains

    def params(g):
        return json.dumps({"experts": [[1.0, 2.0]], "gating": [[g, 0.5], [0.0, 0.0]]})

    now = {"status": "ok", "gating_error": 3.0, "fitted_parameters": params(20.0)}
    probes = [dict(now, gating_error=3.0 + 1e-6, fitted_parameters=params(20.0 + 2e-6)),
              dict(now, gating_error=3.0 - 5e-7, fitted_parameters=params(20.0 - 1e-6))]
    inside = [("gating_error", 3.0 + 9e-6, 3.0),
              ("fitted_parameters", params(20.0 + 1.9e-5), now["fitted_parameters"])]
    found = conditioning_explains(inside, now, probes, 1e-14)
    assert found is not None and "fitted_parameters.gating 1.9e-05 apart, 2e-06 under" in found
    # beyond CONDITION_FACTOR times the probes' largest move: not explained
    beyond = 2.1e-6 * CONDITION_FACTOR
    assert conditioning_explains([("fitted_parameters", params(20.0 + beyond),
                                   now["fitted_parameters"])], now, probes, 1e-14) is None
    assert conditioning_explains([("gating_error", 3.0 + 2e-5, 3.0)], now, probes, 1e-14) is None
    # never beyond CONDITION_RTOL of the value's size, however unstable the fit
    loose = [dict(now, gating_error=3.0 + 1e-3), dict(now)]
    assert conditioning_explains([("gating_error", 3.0 + 5e-4, 3.0)], now, loose, 1e-14) is None
    assert conditioning_explains([("gating_error", 3.0 + 2e-5, 3.0)], now, loose,
                                 1e-14) is not None
    # a value the probes do not move gets no room; nor integers, strings, NaN, other shapes
    still = [dict(now), dict(now)]
    assert conditioning_explains(inside[:1], now, still, 1e-14) is None
    assert conditioning_explains([("n_iter", 7, 8)], now, probes, 1e-14) is None
    assert conditioning_explains([("gating_error", None, 3.0)], now, probes, 1e-14) is None
    other = json.dumps({"experts": [[1.0, 2.0, 3.0]], "gating": [[20.0, 0.5], [0.0, 0.0]]})
    assert conditioning_explains([("fitted_parameters", other, now["fitted_parameters"])],
                                 now, probes, 1e-14) is None
    # a probe that ends with another status explains nothing; nor no probe at all
    assert conditioning_explains(inside, now, [probes[0], dict(now, status="nan")],
                                 1e-14) is None
    assert conditioning_explains(inside, now, [], 1e-14) is None


def test_cross_path_difference_within_conditioning(monkeypatch):
    """The stored ill-conditioned run, judged as if made on the other path: its gating
    moved as far as the BLAS path moves it agrees within its conditioning; moved 1e-3
    it differs. The probes move its gating by ~1e-6 (the paths: 5.5e-6)."""
    import dataclasses

    from moebench.sweep import verify as verify_module
    from moebench.sweep.rerun import stored_cells

    record = stored_runs(ILL_FOLDER)[ILL_RUN]
    cell = stored_cells(ILL_FOLDER)[ILL_RUN]
    monkeypatch.setattr(verify_module, "same_path", lambda stored: False)
    probes, scale = verify_module.conditioning_probes(cell, ILL_FOLDER, "")
    calls = []
    monkeypatch.setattr(verify_module, "conditioning_probes",
                        lambda *a: calls.append(a) or (probes, scale))
    gating = np.asarray(json.loads(record.summary["fitted_parameters"])["gating"])
    spread = max(np.max(np.abs(np.asarray(json.loads(p["fitted_parameters"])["gating"])
                               - gating)) for p in probes)
    assert 1e-8 < spread < 1e-4  # rounding-level inputs move this gating by ~1e-6

    def judged(shift):
        params = json.loads(record.summary["fitted_parameters"])
        params["gating"] = (gating + shift * (np.abs(gating) > 0)).tolist()
        summary = dict(record.summary, fitted_parameters=json.dumps(params))
        again = dataclasses.replace(record, summary_json=json.dumps(summary))
        return verify_module.check_run(cell, again, ILL_FOLDER)

    near = judged(5e-6)  # outside rtol 1e-6 for the gating's small entries
    assert near.verdict == "OK" and near.conditioned and not near.bit_equal
    assert "within its conditioning" in near.line() and "fitted_parameters.gating" in near.line()
    far = judged(1e-3)
    assert far.verdict == "DIFFERS" and not far.conditioned
    assert "more than 10 times what X perturbed by rounding moves" in far.line()
    assert len(calls) == 2


def test_well_conditioned_run_gets_no_room(tiny, tmp_path, monkeypatch):
    """A joint EM fit barely moves under the probes: 1e-5 (relative) apart differs."""
    from moebench.sweep import verify as verify_module

    out = copy_of(tiny, tmp_path)
    rid = next(r for r, rec in stored_runs(out).items() if rec.summary["label"] == "joint_em")
    stored = read_run_summary(run_path(out, rid))["test_log_likelihood"]
    rewrite(out, rid, test_log_likelihood=stored * (1 + 1e-5))
    monkeypatch.setattr(verify_module, "same_path", lambda stored: False)
    check = verify(out, run_ids=[rid]).checks[0]
    assert check.verdict == "DIFFERS" and "conditioning probes" in check.note
