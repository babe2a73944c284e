"""One runner behind every README number (issue 12 item 6).

The shipped configs ``baselines``, ``tensor_em_accuracy`` and ``tensor_em_phase_times``
reproduce the protocols of the retired ``scripts/measure_*.py``; ``moebench report
--table accuracy|comparison|phase_times`` prints the README's tables from stored results;
a variant's ``only`` restricts it to some data settings.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from moebench.cli import main
from moebench.sweep.config import ConfigError, load_config, validate_config
from moebench.sweep.report import (
    accuracy_table,
    comparison_table,
    crossing_n,
    phase_times_table,
    threshold_n_table,
)
from moebench.sweep.runner import run_sweep
from moebench.sweep.worker import fitted_scalars
from moebench.tensor.estimator import TensorEM


# --------------------------------------------------------------------------- shipped configs
def _defaults(name: str) -> dict:
    from moebench.registry import algorithm_class

    cls = algorithm_class(name)
    return {p: getattr(cls(), p) for p in cls._get_param_names()}


def test_baselines_config_reproduces_the_script_protocol():
    cfg = load_config("baselines")
    assert [s["n"] for s in cfg.data_grid] == [100_000] * 6
    assert {(s["d"], s["sigma"], s["gating"], s["gating_scale"]) for s in cfg.data_grid} == \
        {(10, 0.1, "orthogonal", 1.0)}
    assert [(s["k"], s["activation"]) for s in cfg.data_grid] == [
        (k, a) for k in (3, 4) for a in ("linear", "sigmoid", "relu")]
    assert cfg.repetitions == 10
    labels = [v.label for v in cfg.variants]
    assert labels == ["joint_em", "sgd", "alt_min", "tensor_em", "tensor_em+refine"]
    cells = cfg.cells()
    assert len(cells) == 6 * 10 * 5 - 4 * 10  # alt_min on linear only
    assert {c.data["activation"] for c in cells if c.variant.label == "alt_min"} == {"linear"}
    # every algorithm with its default options: the sweep's budgets equal the defaults and
    # max_time never binds; only refine is set: joint EM from the tensor start with the
    # joint_em variant's settings (issue 26: one EM)
    for v in cfg.variants:
        assert v.params == ({"init": "tensor"} if v.label == "tensor_em+refine" else {})
        assert not v.known_sigma
        defaults = _defaults(v.algorithm)
        if "max_iter" in defaults and v.algorithm != "tensor_em":
            assert v.max_iter == defaults["max_iter"]
        if v.algorithm == "tensor_em":
            assert v.max_iter == defaults["gating_em_iter"] == defaults["refine_max_iter"]
        assert v.max_time >= 600
    # the data set of a repetition is shared by every algorithm
    by_rep = {}
    for c in cells:
        by_rep.setdefault((c.data["k"], c.data["activation"], c.repetition), set()).add(c.data_id)
    assert all(len(ids) == 1 for ids in by_rep.values())


def test_tensor_em_accuracy_config_reproduces_the_script_protocol():
    cfg = load_config("tensor_em_accuracy")
    grid = {(s["n"], s["k"], s["activation"]) for s in cfg.data_grid}
    assert grid == {(n, k, a) for n in (10_000, 100_000, 1_000_000) for k in (2, 3, 4)
                    for a in ("linear", "sigmoid", "relu")}
    assert {(s["d"], s["sigma"], s["gating"], s["gating_scale"]) for s in cfg.data_grid} == \
        {(10, 0.1, "orthogonal", 1.0)}
    assert cfg.repetitions == 5
    cells = cfg.cells()
    assert len(cells) == 27 * 5 + 3 * 5
    refine = [c for c in cells if c.variant.label == "tensor_em_refine"]
    assert {(c.data["n"], c.data["k"]) for c in refine} == {(100_000, 3)}
    assert all(c.variant.params == {"init": "tensor"} and c.variant.algorithm == "joint_em"
               for c in refine)
    defaults = _defaults("tensor_em")
    assert all(v.max_iter == defaults["gating_em_iter"] and v.max_time >= 600
               for v in cfg.variants)


def test_tensor_em_phase_times_config_is_one_run_at_d100_k10():
    cfg = load_config("tensor_em_phase_times")
    (cell,) = cfg.cells()
    assert (cell.data["n"], cell.data["d"], cell.data["k"], cell.data["activation"]) == \
        (1_000_000, 100, 10, "linear")


# --------------------------------------------------------------------------- only
def _raw(**algorithm):
    return {"seed": 1, "repetitions": 2,
            "data": {"n": [400, 800], "d": 4, "k": [2, 3], "activation": ["linear", "relu"]},
            "algorithm": [{"name": "joint_em"}, {"name": "tensor_em", **algorithm}]}


def test_only_restricts_a_variant_to_some_settings_and_keeps_the_others_ids():
    free = validate_config(_raw())
    cfg = validate_config(_raw(only={"n": 800, "k": [3]}))
    cells = [c for c in cfg.cells() if c.variant.label == "tensor_em"]
    assert len(cells) == 2 * 2  # 2 activations x 2 repetitions
    assert {(c.data["n"], c.data["k"]) for c in cells} == {(800, 3)}
    # the restricted variant's runs keep their ids; the other variant is untouched
    ids = {c.run_id for c in free.cells()}
    assert {c.run_id for c in cfg.cells()} <= ids
    assert len([c for c in cfg.cells() if c.variant.label == "joint_em"]) == 16


@pytest.mark.parametrize("only, match", [
    ({"m": 3}, r"unknown key algorithm\[1\]\.only\.'m'"),
    ({"k": []}, r"algorithm\[1\]\.only\.k is an empty list"),
    ({"k": 4}, r"matches none of the 8 data setting\(s\); valid values: k: \['2', '3'\]"),
    ("k=3", r"algorithm\[1\]\.only must be a table"),
], ids=["unknown-key", "empty-list", "matches-nothing", "not-a-table"])
def test_bad_only_is_refused_before_anything_runs(only, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(_raw(only=only))


# --------------------------------------------------------------------------- worker
def test_fitted_scalars_flattens_a_dict_of_numbers():
    est = TensorEM()
    est.phase_times_ = {"moments": 0.5, "gating_em": np.float64(2.0)}
    est.t2_eigengap_ = 3.0
    est.history_ = [{"time": 1.0}]  # not a dict of numbers: skipped
    out = fitted_scalars(est)
    assert out["fitted_phase_times_moments"] == 0.5
    assert out["fitted_phase_times_gating_em"] == 2.0
    assert out["fitted_t2_eigengap"] == 3.0
    assert not any(k.startswith("fitted_history") for k in out)


# --------------------------------------------------------------------------- tables
def _summary() -> pd.DataFrame:
    rows = []
    for n in (100_000, 10_000):
        for act in ("linear", "relu"):
            for rep, err in enumerate((0.1, 0.3, 0.2)):
                for label, scale in (("tensor_em", 1.0), ("joint_em", 0.01)):
                    rows.append({"n": n, "k": 3, "activation": act, "label": label,
                                 "repetition": rep, "status": "ok",
                                 "expert_error": err * scale * (2 if act == "relu" else 1)
                                 * (10_000 / n), "gating_error": 0.5,
                                 "success": err * scale < 0.15, "fit_time": 1.0 + rep,
                                 "n_iter": 5})
    frame = pd.DataFrame(rows)
    # one failed joint_em run: it counts as a failure with an infinite error
    failed = (frame["label"] == "joint_em") & (frame["n"] == 10_000) & \
        (frame["activation"] == "relu") & (frame["repetition"] == 0)
    frame.loc[failed, ["status", "expert_error", "success", "fit_time"]] = \
        ["error", math.nan, False, math.nan]
    return frame


def test_accuracy_table_pivots_the_median_by_n_k_and_activation():
    text = accuracy_table(_summary())
    head, body = text.split("### joint_em")
    assert "### tensor_em: median expert_error over 3 repetition(s)" in head
    assert "| n | k | linear | relu |" in head
    # n ascending, written as powers of ten; medians of (0.1, 0.3, 0.2) x factors
    assert "| 10⁴ | 3 | 0.200 | 0.400 |\n| 10⁵ | 3 | 0.020 | 0.040 |" in head
    # joint_em relu at 1e4: median of (inf, 0.006, 0.004) = 0.006
    assert "| 10⁴ | 3 | 0.002 | 0.006 |" in body
    gating = accuracy_table(_summary(), "gating_error")
    assert "median gating_error" in gating and "| 10⁵ | 3 | 0.500 | 0.500 |" in gating
    with pytest.raises(ValueError, match="column 'no_such_metric' is not in the results"):
        accuracy_table(_summary(), "no_such_metric")


def test_comparison_table_has_the_readme_columns_in_config_order():
    lines = comparison_table(_summary()).splitlines()
    assert lines[0] == ("| n | activation | algorithm | seeds | median expert error | "
                        "success rate | median time (s) |")
    assert lines[2] == "| 10000 | linear | tensor_em | 3 | 0.2000 | 33% [6%–79%] | 2.00 |"
    assert lines[3] == "| 10000 | linear | joint_em | 3 | 0.0020 | 100% [44%–100%] | 2.00 |"
    # the failed run: inf in the median, a failure in the rate, no time
    assert lines[5] == "| 10000 | relu | joint_em (1 failed) | 3 | 0.0060 | 67% [21%–94%] | 2.50 |"
    assert len(lines) == 2 + 8


def test_phase_times_table_lists_each_runs_phases():
    s = pd.DataFrame([{"n": 1_000_000, "d": 100, "k": 10, "activation": "linear",
                       "label": "tensor_em", "fitted_phase_times_moments": 0.49,
                       "fitted_phase_times_gating_em": 48.4, "fit_time": 48.9, "n_iter": 15,
                       "expert_error": 0.357, "gating_error": 0.208}])
    text = phase_times_table(s)
    assert "| moments (s) | gating_em (s) | fit (s) |" in text
    assert "| 1000000 | 100 | 10 | linear | tensor_em | 0.49 | 48.4 | 48.9 | 15 | 0.3570 | " \
        "0.2080 |" in text
    with pytest.raises(ValueError, match="no fitted_phase_times_"):
        phase_times_table(s.drop(columns=["fitted_phase_times_moments",
                                          "fitted_phase_times_gating_em"]))


def test_report_table_option_on_stored_results(tmp_path, capsys):
    cfg = validate_config({"name": "tiny", "seed": 2, "repetitions": 2,
                           "data": {"n": 3000, "d": 4, "k": 2,
                                    "activation": ["linear", "relu"], "n_test": 500},
                           "algorithm": [{"name": "tensor_em"}]})
    out = tmp_path / "tiny"
    run_sweep(cfg, out, jobs=1, progress=False)
    assert main(["report", str(out), "--table", "accuracy"]) == 0
    text = capsys.readouterr().out
    assert "### tensor_em: median expert_error over 2 repetition(s)" in text
    assert "| n | k | linear | relu |" in text and "| 3000 | 2 | " in text
    assert main(["report", str(out), "--table", "phase_times"]) == 0
    text = capsys.readouterr().out
    assert "| moments (s) | decomposition (s) | gating_em (s) |" in text
    assert main(["report", str(out), "--table", "comparison", "--out",
                 str(tmp_path / "t.md")]) == 0
    assert "| activation | algorithm | seeds |" in (tmp_path / "t.md").read_text()


def test_crossing_n_interpolates_in_log_log_and_says_when_never_reached():
    n = np.array([1e3, 1e4, 1e5])
    # 4 -> 0.4 -> 0.04: 0.1 is crossed between 1e4 and 1e5, at 10**4.602 (log-log linear)
    expected = 10 ** (4 + math.log10(4))
    assert crossing_n(n, np.array([4.0, 0.4, 0.04]), 0.1) == pytest.approx(expected)
    assert crossing_n(n, np.array([0.05, 0.01, 0.001]), 0.1) == 1e3  # already below
    assert crossing_n(n, np.array([0.5, 0.3, 0.2]), 0.1) == math.inf
    assert crossing_n(n[::-1], np.array([0.04, 0.4, 4.0]), 0.1) == pytest.approx(expected)
    assert crossing_n(n, np.array([math.inf, 0.05, 0.01]), 0.1) == 1e4  # a failed size


def test_threshold_n_table_reads_the_crossing_off_the_medians():
    frame = _summary()
    frame["success_threshold"] = 0.1
    text = threshold_n_table(frame)
    # tensor_em linear: median 0.2 at 1e4, 0.02 at 1e5 -> crossing at 10**4.301
    row = next(line for line in text.splitlines() if line.startswith("| tensor_em | linear"))
    assert "| 0.2 | 0.02 | 2e+04 | 3/3 100% [44%–100%] |" in row
    # tensor_em relu: 0.4 -> 0.04, crossing at 10**4.602 = 40 000; all 3 at or below 0.1 at 1e5
    relu = next(line for line in text.splitlines() if line.startswith("| tensor_em | relu"))
    assert "| 4e+04 | 3/3" in relu
    with pytest.raises(ValueError, match="needs results at several n"):
        threshold_n_table(frame[frame["n"] == 10_000])
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        threshold_n_table(frame, threshold=0.0)

