"""Smoke tests of the asv suites (run at tiny sizes), of the asv results reader
(``tools/asv_report.py``) and of what ``benchmarks/`` holds (asv suites and helpers only)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the suites pin BLAS/torch to 1 thread on import; keep this test process untouched
os.environ["MOEBENCH_BENCH_THREADS"] = "0"
os.environ["MOEBENCH_BENCH_CACHE"] = ""  # no .npy cache from tests

bench_moments = pytest.importorskip("benchmarks.bench_moments")
report = pytest.importorskip("tools.asv_report")
measure = pytest.importorskip("tools.measure")


def _run_suite(cls, *params):
    obj = cls()
    obj.setup(*params)
    names = [m for m in dir(obj) if m.startswith(("time_", "peakmem_", "track_"))]
    assert names
    for name in names:
        getattr(obj, name)(*params)


def test_moment_suites_run_small():
    bm = bench_moments
    _run_suite(bm.Floor, 2000, 10, 3)
    for impl in bm.IMPLS:
        _run_suite(bm.WhitenedThirdMoment, 2000, 10, 3, impl)
    _run_suite(bm.SecondMoment, 2000, 10, "float32")
    _run_suite(bm.MomentStep, 2000, 10, 3)
    for method in ("eigh", "randomized"):
        _run_suite(bm.Whitening, 2000, 10, 3, method)
    _run_suite(bm.WhiteningLargeD, 500, 30, 3, "randomized")
    _run_suite(bm.ThirdMomentProducts, 2000, 10, 10)
    _run_suite(bm.DenseThirdMoment, 2000, 10)
    with pytest.raises(NotImplementedError):
        bm.DenseThirdMoment().setup(1_000_000, 100)


def test_algorithm_suites_run_small():
    ba = pytest.importorskip("benchmarks.bench_algorithms")
    _run_suite(ba.TensorDecomposition, 3, "power")
    obj = ba.GatingEMStep()
    obj.setup(2000, 10, 3)
    obj.time_e_step(2000, 10, 3)
    obj.time_gating_m_step(2000, 10, 3)
    assert "tensor_em" in ba.FullFit.params[0]


@pytest.mark.parametrize("algorithm", ["tensor_em", "tensor_em_refine", "joint_em"])
def test_algorithms_vs_plain_suite_runs_small_and_agrees(algorithm):
    ba = pytest.importorskip("benchmarks.bench_algorithms")
    obj = ba.AlgorithmsVsPlain()
    obj.rounds = 1
    params = ("3000,6,2", algorithm, "relu")
    obj.setup(*params)
    assert obj.track_ratio_to_floor(*params) > 1.0
    assert obj.track_ratio_to_plain(*params) > 0.0
    obj.time_moebench(*params)
    obj.time_plain(*params)
    # the plain implementation is the same algorithm: the same final experts
    experts, _ = obj._plain(algorithm, "relu")
    err_plain = ba.expert_error(experts, obj.data.experts)
    assert abs(obj.track_expert_error(*params) - err_plain) < 1e-6
    with pytest.raises(NotImplementedError):
        obj.setup("3000,100,10", "joint_em", "linear")


def _fake_results(tmp_path: Path) -> Path:
    n, d, k = 1_000_000, 100, 10
    p3 = [[str(n)], [str(d)], [str(k)]]
    impls = ["'numpy-float64'", "'numpy-float32'", "'torch-float64'", "'torch-float32'"]
    res = {
        "bench_moments.Floor.time_projection": [[0.1], p3],
        "bench_moments.Floor.time_projection_transposed": [[0.08], p3],
        "bench_moments.Floor.time_gram": [[0.25], p3],
        "bench_moments.Floor.peakmem_data_only": [[1.0e9], p3],
        "bench_moments.WhitenedThirdMoment.time_whitened_third_moment":
            [[0.15, 0.075, 0.3, None], p3 + [impls]],
        "bench_moments.WhitenedThirdMoment.peakmem_whitened_third_moment":
            [[1.0e9 + 2**21, 5e8, 1e9, 1e9], p3 + [impls]],
        "bench_moments.SecondMoment.time_second_moment":
            [[0.3, 0.15], [[str(n)], [str(d)], ["'float64'", "'float32'"]]],
        "bench_moments.SecondMoment.peakmem_second_moment":
            [[1.0e9 + 2**22, 5e8], [[str(n)], [str(d)], ["'float64'", "'float32'"]]],
        "bench_moments.MomentStep.time_moment_step": [[0.5], p3],
        "bench_moments.DenseThirdMoment.time_dense_third_moment":
            [[None], [[str(n)], [str(d)]]],
    }
    mdir = tmp_path / "results" / "box"
    mdir.mkdir(parents=True)
    (mdir / "machine.json").write_text("{}")
    data = {"commit_hash": "abc", "env_name": "e", "date": 1, "python": "3.11",
            "result_columns": ["result", "params"], "results": res, "version": 2}
    (mdir / "abc-e.json").write_text(json.dumps(data))
    return tmp_path / "results"


def test_report_from_asv_json(tmp_path):
    results = _fake_results(tmp_path)
    out = tmp_path / "perf"
    report.write_report(results, None, out)
    text = (out / "table.md").read_text()
    assert "t3/projection" in text
    data, _ = report._latest_results(results, None)
    (row,) = report.derived_tables(report.asv_rows(data))
    assert math.isclose(row["t3/projection"], 1.5)
    assert math.isclose(row["(t2+t3)/gram"], 1.8)
    assert math.isclose(row["f32_speedup_t3"], 2.0)
    assert math.isclose(row["peak_t3_MiB"], 2.0)
    assert math.isclose(row["peak_t2_MiB"], 4.0)
    assert math.isnan(row["speedup_vs_dense"])  # skipped benchmark stays n/a
    assert (out / "speedup.png").stat().st_size > 1000
    assert (out / "benchmarks.csv").read_text().count("\n") == 1 + 18


def test_report_without_results(tmp_path):
    with pytest.raises(SystemExit, match="no asv results"):
        report.write_report(tmp_path / "missing", None, tmp_path / "out")


def test_report_algorithm_ratios_from_asv_json():
    """The AlgorithmsVsPlain track_ values of an asv run become one row per (setting,
    algorithm, activation); a skipped combination stays NaN."""
    params = [["'100000,10,3'", "'100000,100,10'"], ["'tensor_em'", "'joint_em'"],
              ["'linear'"]]
    data = {"result_columns": ["result", "params"], "results": {
        "bench_algorithms.AlgorithmsVsPlain.track_ratio_to_plain": [[0.4, 0.45, 0.3, None],
                                                                    params],
        "bench_algorithms.AlgorithmsVsPlain.track_ratio_to_floor": [[30.0, 300.0, 20.0, None],
                                                                    params],
        "bench_algorithms.AlgorithmsVsPlain.time_moebench": [[0.1, 0.2, 1.0, None], params],
    }}
    rows = report.algorithm_ratios(report.asv_rows(data))
    assert [(r["d"], r["algorithm"]) for r in rows] == [
        (10, "joint_em"), (10, "tensor_em"), (100, "joint_em"), (100, "tensor_em")]
    assert rows[0]["ratio_to_plain"] == 0.45 and rows[0]["ratio_to_floor"] == 300.0
    assert rows[1]["ratio_to_plain"] == 0.4 and rows[3]["ratio_to_plain"] == 0.3
    assert math.isnan(rows[2]["ratio_to_plain"])
    assert "time_moebench" not in rows[0] and "moebench" not in rows[0]


def test_partial_asv_run_writes_algorithms_only(tmp_path):
    """An asv run of AlgorithmsVsPlain alone (``--bench``) never overwrites table.md with
    empty kernel tables; ``--algorithms`` writes its ratios to algorithms_asv.md."""
    params = [["'100000,10,3'"], ["'joint_em'"], ["'linear'", "'relu'"]]
    res = {"bench_algorithms.AlgorithmsVsPlain.track_ratio_to_plain": [[0.43, 0.44], params],
           "bench_algorithms.AlgorithmsVsPlain.track_ratio_to_floor": [[645.0, 1549.0], params]}
    mdir = tmp_path / "results" / "m"
    mdir.mkdir(parents=True)
    (mdir / "machine.json").write_text("{}")
    (mdir / "abc-e.json").write_text(json.dumps(
        {"commit_hash": "abc", "env_name": "e", "date": 1, "python": "3.11",
         "result_columns": ["result", "params"], "results": res, "version": 2}))
    out = tmp_path / "perf"
    with pytest.raises(SystemExit, match="no moment-kernel results.*--algorithms"):
        report.write_report(tmp_path / "results", None, out)
    assert not (out / "table.md").exists()
    written = report.write_algorithms_report(tmp_path / "results", None, out)
    text = written.read_text()
    assert written.name == "algorithms_asv.md"
    assert "| 100000 | 10 | 3 | joint_em | relu | 0.44 | 1.55e+03 |" in text
    (mdir / "abc-e.json").write_text(json.dumps(
        {"commit_hash": "abc", "env_name": "e", "date": 1, "python": "3.11",
         "result_columns": ["result", "params"], "results": {}, "version": 2}))
    with pytest.raises(SystemExit, match="no AlgorithmsVsPlain results"):
        report.write_algorithms_report(tmp_path / "results", None, out)


def test_benchmarks_holds_asv_suites_and_their_helpers_only():
    """benchmarks/ is what asv discovers: bench_*.py suites, the helpers they import, the
    CI smoke script; tools that are not asv suites live in tools/."""
    tracked = sorted(p.name for p in (ROOT / "benchmarks").iterdir()
                     if p.is_file() and p.suffix in (".py", ".sh"))
    suites = [name for name in tracked if name.startswith("bench_")]
    helpers = sorted(set(tracked) - set(suites))
    assert suites and helpers == ["__init__.py", "ci_quick.sh", "common.py", "plain.py"]
    imported = set()
    for name in suites:
        text = (ROOT / "benchmarks" / name).read_text()
        imported |= {h for h in ("common", "plain") if f"benchmarks.{h}" in text
                     or f"from benchmarks import {h}" in text}
    assert imported == {"common", "plain"}  # every helper serves a suite


def test_measure_tool_algorithms_small(tmp_path):
    """tools/measure.py --algorithms at a tiny size: a note naming its command, no numbers
    but its own."""
    rows = measure.measure_algorithms(2000, 6, 2, [0], 1, 1, ["tensor_em"], ["linear"],
                                      "tiny", tmp_path)
    (row,) = rows
    assert row["moebench_s"] > 0 and row["plain_s"] > 0
    assert not any(key.startswith("issue") for key in row)
    text = (tmp_path / "algorithms_tiny.md").read_text()
    assert "python tools/measure.py --algorithms --n 2000 --d 6 --k 2 --tag tiny" in text
