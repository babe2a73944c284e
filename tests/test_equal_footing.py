"""Methods on equal footing (issue 14 item 8): error at equal steps and at equal time, and the
time to reach an error.

Constructed checkpoint frames give exact expectations (first crossing, carry-forward, runs that
never reach the target, setup records); one smoke test runs the CLI on the committed
results/baselines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moebench.cli import main
from moebench.sweep.plots import plot_equal_footing
from moebench.sweep.quantiles import median_band
from moebench.sweep.report_time import time_to_error, time_to_error_table
from moebench.sweep.trajectory import carry_forward, run_trajectory

BASELINES = Path(__file__).resolve().parents[1] / "results" / "baselines"


def _run(run_id: str, errors, times=None, lls=None, phases=None, **setting) -> pd.DataFrame:
    m = len(errors)
    return pd.DataFrame({
        "run_id": run_id,
        "phase": phases or ["em"] * m,
        "iteration": np.arange(m),
        "time": times if times is not None else 0.1 * np.arange(1, m + 1),
        "log_likelihood": lls if lls is not None else -1.0 / np.arange(1, m + 1),
        "expert_error": np.asarray(errors, float),
        "gating_error": np.asarray(errors, float) * 2,
        **setting,
    })


def _results(runs: list[tuple[str, str, dict, pd.DataFrame | None, str]]):
    """(summary, checkpoints) from (run_id, label, setting, checkpoints or None, status)."""
    rows, frames = [], []
    for rid, label, setting, ck, status in runs:
        rows.append({"run_id": rid, "label": label, "status": status, "d": 4, **setting})
        if ck is not None:
            frames.append(ck.assign(label=label, **setting))
    return pd.DataFrame(rows), pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- per run
def test_time_to_error_is_the_first_crossing_and_later_rises_do_not_matter():
    ck = _run("a", [0.5, 0.2, 0.05, 0.08, 0.01], times=[0.1, 0.2, 0.3, 0.4, 0.5])
    summary, ck = _results([("a", "em", {"k": 2}, ck, "ok")])
    got = time_to_error(summary, ck, 0.1).iloc[0]
    assert bool(got["reached"]) and got["step"] == 2 and got["time"] == pytest.approx(0.3)
    got = time_to_error(summary, ck, 0.01).iloc[0]
    assert got["step"] == 4 and got["time"] == pytest.approx(0.5)
    got = time_to_error(summary, ck, 0.001).iloc[0]
    assert not got["reached"] and np.isnan(got["time"]) and np.isnan(got["step"])


def test_anytime_estimate_ignores_a_restart_below_the_best_likelihood_raw_does_not():
    # a second start reaches error 0.05 at a lower log-likelihood than the first start's best;
    # the estimator would return the first start there, so the anytime error is still 0.3
    ck = _run("a", [0.5, 0.3, 0.05, 0.08], times=[1.0, 2.0, 3.0, 4.0],
              lls=[-1.0, -0.5, -2.0, -0.4])
    summary, ck = _results([("a", "em", {"k": 2}, ck, "ok")])
    anytime = time_to_error(summary, ck, 0.1).iloc[0]
    raw = time_to_error(summary, ck, 0.1, raw=True).iloc[0]
    assert (anytime["step"], anytime["time"]) == (3, 4.0)
    assert (raw["step"], raw["time"]) == (2, 3.0)


def test_setup_records_are_not_steps_but_their_time_counts():
    # tensor_em: moments (no estimate) then the tensor step (step 0), gating EM, refine
    ck = _run("t", [np.nan, 0.3, 0.3, 0.3, 0.05, 0.02], times=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
              lls=[np.nan, np.nan, -0.9, -0.8, -0.5, -0.4],
              phases=["moments", "decomposition", "gating_em", "gating_em", "refine", "refine"])
    steps, times, values = run_trajectory(ck)
    assert steps.tolist() == [0, 1, 2, 3, 4]
    assert times[0] == pytest.approx(0.6)  # the clock includes the moments' 0.5 s
    assert values.tolist() == [0.3, 0.3, 0.3, 0.05, 0.02]
    summary, ck = _results([("t", "tensor_em", {"k": 2}, ck, "ok")])
    got = time_to_error(summary, ck, 0.3).iloc[0]
    assert (got["step"], got["time"]) == (0, 0.6)


def test_carry_forward_keeps_the_last_value_and_has_none_before_the_first():
    got = carry_forward(np.array([0.0, 2.0, 5.0]), np.array([3.0, 2.0, 1.0]),
                        np.array([-1.0, 0.0, 1.0, 2.0, 4.0, 5.0, 9.0]))
    np.testing.assert_array_equal(got, [np.nan, 3, 3, 2, 2, 1, 1])


def test_median_counts_a_run_without_an_estimate_yet_as_worse_than_any():
    runs = [(np.array([0.0]), np.array([1.0])), (np.array([0.0]), np.array([2.0])),
            (np.array([5.0]), np.array([0.1]))]
    med, q1, q3 = median_band(runs, np.array([1.0, 5.0, 9.0]))
    # at 1 the third run has no value: median of (1, 2, worse) = 2; its upper quartile
    # depends on the missing run, so it is undefined
    assert med[0] == 2.0 and q1[0] == 1.5 and np.isnan(q3[0])
    # at 5 and after (carried forward): (0.1, 1, 2)
    np.testing.assert_allclose(med[1:], [1.0, 1.0])
    np.testing.assert_allclose(q1[1:], [0.55, 0.55])
    np.testing.assert_allclose(q3[1:], [1.5, 1.5])
    two = median_band(runs[1:], np.array([1.0]))  # (2, worse): no median
    assert np.isnan(two[0][0])


# --------------------------------------------------------------------------- table
def _three_runs():
    return _results([
        ("a", "em", {"k": 2}, _run("a", [0.5, 0.05], times=[1.0, 3.0]), "ok"),
        ("b", "em", {"k": 2}, _run("b", [0.5, 0.4, 0.3]), "ok"),      # never reaches 0.1
        ("c", "em", {"k": 2}, _run("c", [0.5, 0.01], times=[1.0, 2.0]), "timeout"),  # failed
        ("d", "sgd", {"k": 2}, _run("d", [0.2, 0.09], times=[0.5, 1.5]), "ok"),
        ("e", "sgd", {"k": 2}, None, "ok"),                             # no checkpoints
        ("f", "em", {"k": 3}, _run("f", [0.05]), "ok"),
    ])


def _rows(text: str, target: str) -> dict[tuple[str, ...], dict[str, str]]:
    """The rows of the table of ``target``, keyed by (settings..., variant), by column."""
    section = text.split(f"<= {target}\n", 1)[1].split("###", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    head = cells[0]
    at = head.index("variant")
    return {(*r[:at], r[at].split(" (")[0]): dict(zip(head, r, strict=True)) for r in cells[1:]}


REACHED, TIME, STEP, ALL = ("reached", "time (s), median [IQR] of reached",
                            "step, median of reached", "time (s), median of all runs")


def test_runs_that_never_reach_failed_or_bare_runs_stay_in_the_denominator():
    summary, ck = _three_runs()
    text = time_to_error_table(summary, ck, [0.1, 0.35])
    rows = _rows(text, "0.1")
    em = rows[("2", "em")]
    # 3 runs: one reached (at 3.0 s, step 1), one never did, one timed out (not reached)
    assert em["variant"] == "em (1 failed)" and em["runs"] == "3"
    assert em[REACHED] == "33% [6%–79%]"
    assert em[TIME] == "3 [3, 3]" and em[STEP] == "1" and em[ALL] == "not reached"
    sgd = rows[("2", "sgd")]
    assert sgd["runs"] == "2" and sgd[REACHED].startswith("50% ") and sgd[ALL] == "not reached"
    assert rows[("3", "em")][REACHED].startswith("100% ")
    # at 0.35 two of em's three runs reach it (at 3.0 s and 0.3 s): the median over all
    # runs, the unreached one infinite, is 3.0
    em35 = _rows(text, "0.35")[("2", "em")]
    assert em35[REACHED].startswith("67% ") and em35[ALL] == "3"


def test_time_to_error_table_bad_input_names_the_problem_and_the_choices():
    summary, ck = _three_runs()
    for bad in (0, -0.1, float("nan"), []):
        with pytest.raises(ValueError, match="--target-error"):
            time_to_error_table(summary, ck, bad if bad == [] else [bad])
    with pytest.raises(ValueError, match=r"unknown variant\(s\) 'adam'; valid choices: em, sgd"):
        time_to_error_table(summary, ck, [0.1], variants=["adam"])
    with pytest.raises(ValueError, match="no checkpoints"):
        time_to_error_table(summary, ck.iloc[:0], [0.1])
    with pytest.raises(ValueError, match="expert_error, gating_error"):
        time_to_error_table(summary, ck, [0.1], metric="log_likelihood")
    with pytest.raises(ValueError, match="no checkpoint has a finite expert_error"):
        time_to_error_table(summary, ck.assign(expert_error=np.nan), [0.1])
    only = time_to_error_table(summary, ck, [0.1], variants=["sgd"])
    assert "| em" not in only and "| sgd" in only


# --------------------------------------------------------------------------- figure
def test_equal_footing_figure_has_a_panel_pair_per_setting_and_a_line_per_variant():
    summary, ck = _three_runs()
    fig = plot_equal_footing(summary, ck)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4  # k = 2, 3: steps and time each
    titles = [ax.get_title() for ax in axes]
    assert titles == ["k=2: equal steps", "k=3: equal steps", "k=2: equal time",
                      "k=3: equal time"]
    for ax in axes:
        assert ax.get_yscale() == "log"
    assert [ax.get_xscale() for ax in axes] == ["linear", "linear", "log", "log"]
    # k = 2: em (run a and b; c failed) and sgd (run d): a median line and an end dot each
    assert len(axes[0].get_lines()) == 4 and len(axes[1].get_lines()) == 2
    em_line = axes[0].get_lines()[0]
    # steps of em at k = 2: runs a (0.5, 0.05) and b (0.5, 0.4, 0.3), b's end carried forward
    np.testing.assert_allclose(em_line.get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(em_line.get_ydata(), [0.5, 0.225, 0.175])
    pooled = plot_equal_footing(summary, ck, facet=[], variants=["em"])
    assert len([ax for ax in pooled.axes if ax.get_visible()]) == 2
    with pytest.raises(ValueError, match="unknown facet column"):
        plot_equal_footing(summary, ck, facet=["colour"])
    with pytest.raises(ValueError, match="valid choices: em, sgd"):
        plot_equal_footing(summary, ck, variants=["adam"])


# --------------------------------------------------------------------------- committed results
@pytest.mark.skipif(not (BASELINES / "summary.parquet").is_file(),
                    reason="results/baselines is not in this checkout")
def test_cli_on_the_committed_baselines(tmp_path, capsys):
    assert main(["report", str(BASELINES), "--table", "time_to_error", "--target-error", "0.3",
                 "0.1", "--variants", "joint_em", "tensor_em"]) == 0
    text = capsys.readouterr().out
    rows = _rows(text, "0.1")
    assert len(rows) == 12 and {r["runs"] for r in rows.values()} == {"10"}
    assert rows[("3", "linear", "joint_em")][REACHED].startswith("100% ")
    assert main(["plot", str(BASELINES), "--kind", "equal_footing", "--axes", "activation",
                 "--variants", "joint_em", "tensor_em", "--compact",
                 "--out", str(tmp_path / "ef.png")]) == 0
    png = (tmp_path / "ef.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) < 150_000
    capsys.readouterr()
    assert main(["report", str(BASELINES), "--table", "time_to_error",
                 "--variants", "adam"]) == 2
    assert "valid choices" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", str(BASELINES), "--table", "time_to_error", "--target-error", "0"])
