"""The ``theorem`` figure: random starts of the oracle gating EM reaching the ML gating."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from moebench.cli import main
from moebench.metrics import wilson_interval
from moebench.sweep.plots import COMPACT_COLORS
from moebench.sweep.plots_maps import plot_theorem
from moebench.sweep.store import load_results, write_run
from moebench.sweep.views import views


def _summary(run_id, data_id, activation, k, init, ll, gating, **extra):
    return {"run_id": run_id, "label": f"{init}_{run_id}", "algorithm": "oracle_gating_em",
            "status": "ok", "data_id": data_id, "activation": activation, "k": k,
            "gating_scale": 2.0, "expert_angle": 30.0, "sigma": 0.5,
            "param_gating_init": init, "train_log_likelihood": ll, "fitted_grad_norm": 1e-6,
            "stop_reason": "converged", "n_iter": 10, "gating_error": 0.1,
            "fitted_gating_free_0_0": gating[0], "fitted_gating_free_0_1": gating[1], **extra}


def _folder(tmp_path):
    """linear k = 2: 3 of 4 starts reach (one flat); linear k = 4: 1 of 2 (one stuck);
    sigmoid k = 2: 0 of 2 (unfinished). No sigmoid k = 4 cell: an empty panel."""
    out = tmp_path / "theorem"
    runs = [
        _summary("a0", "A", "linear", 2, "truth", -1.0, (1.0, 0.0)),
        _summary("a1", "A", "linear", 2, "random", -1.0, (1.0, 0.0)),
        _summary("a2", "A", "linear", 2, "random", -1.0, (1.0, 0.001)),
        _summary("a3", "A", "linear", 2, "random", -1.0, (1.0, 0.5)),  # flat
        _summary("b0", "B", "linear", 2, "truth", -2.0, (0.0, 1.0)),
        _summary("b1", "B", "linear", 2, "random", -2.0, (0.0, 1.0)),
        _summary("c0", "C", "linear", 4, "truth", -1.0, (1.0, 1.0)),
        _summary("c1", "C", "linear", 4, "random", -1.0, (1.0, 1.0)),
        _summary("c2", "C", "linear", 4, "random", -1.5, (-1.0, 1.0)),  # stuck
        _summary("d0", "D", "sigmoid", 2, "truth", -1.0, (2.0, 0.0)),
        *[_summary(f"d{i}", "D", "sigmoid", 2, "random", -1.1, (0.0, 2.0),
                   stop_reason="max_iter") for i in (1, 2)],  # unfinished
    ]
    for s in runs:
        write_run(out, s, [{"phase": "gating_em", "iteration": 0, "time": 0.0,
                            "log_likelihood": s["train_log_likelihood"]}])
    return out


def test_theorem_is_a_plot_kind_and_draws_rates_with_wilson_intervals(tmp_path):
    assert "theorem" in views("figure")
    summary, _ = load_results(_folder(tmp_path))
    fig = plot_theorem(summary)
    shown = {ax.get_title(): ax for ax in fig.axes if ax.axison}
    assert set(shown) == {"activation=linear, k=2", "activation=linear, k=4",
                          "activation=sigmoid, k=2"}
    assert sum(not ax.axison for ax in fig.axes) == 1  # sigmoid k = 4: no cell
    for title, (hit, n) in {"activation=linear, k=2": (3, 4), "activation=linear, k=4": (1, 2),
                            "activation=sigmoid, k=2": (0, 2)}.items():
        ax = shown[title]
        bars = ax.containers[0]
        assert bars.lines[0].get_ydata() == pytest.approx([hit / n])
        (segment,) = bars.lines[2][0].get_segments()
        assert sorted(segment[:, 1]) == pytest.approx(sorted(wilson_interval(hit, n)))
    # the likelihood criterion alone: the flat start of linear k = 2 counts there
    ll_only = shown["activation=linear, k=2"].lines[-1].get_ydata()
    assert ll_only == pytest.approx([1.0])
    notes = {t.get_text() for t in shown["activation=linear, k=2"].texts}
    assert notes == {"1f"}
    # no classes.parquet: the uncertified rule, marked with "?" and named in the title
    assert {t.get_text() for t in shown["activation=linear, k=4"].texts} == {"1s?"}
    assert {t.get_text() for t in shown["activation=sigmoid, k=2"].texts} == {"2u?"}
    assert "uncertified: stuck (s?), unfinished (u?)" in " ".join(
        fig._suptitle.get_text().split())  # (wrapped to the figure's width)


def test_cli_writes_a_small_palette_png_next_to_the_results(tmp_path, capsys):
    out = _folder(tmp_path)
    assert main(["plot", str(out), "--kind", "theorem", "--compact"]) == 0
    path = out / "figures" / "theorem.png"
    assert f"wrote {path}" in capsys.readouterr().out
    image = Image.open(path)
    assert image.mode == "P" and len(image.getcolors(256)) <= COMPACT_COLORS
    assert path.stat().st_size < 150_000


def test_a_folder_that_is_not_a_theorem_sweep_is_one_line(tmp_path, capsys):
    out = tmp_path / "other"
    write_run(out, {"run_id": "r", "label": "joint_em", "status": "ok", "data_id": "A",
                    "train_log_likelihood": -1.0}, [])
    assert main(["plot", str(out), "--kind", "theorem"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "theorem" in err and "Traceback" not in err
    assert not (out / "figures").exists()


def test_without_panel_axes_one_panel_holds_every_cell():
    rows = pd.DataFrame([
        {"data_id": "A", "status": "ok", "param_gating_init": "truth",
         "train_log_likelihood": -1.0, "sigma": 0.1},
        {"data_id": "A", "status": "ok", "param_gating_init": "random",
         "train_log_likelihood": -1.0, "sigma": 0.1},
        {"data_id": "B", "status": "ok", "param_gating_init": "truth",
         "train_log_likelihood": -1.0, "sigma": 0.5},
        {"data_id": "B", "status": "ok", "param_gating_init": "random",
         "train_log_likelihood": -1.2, "sigma": 0.5},
    ]).assign(fitted_gating_free_0_0=1.0)
    fig = plot_theorem(rows)
    (ax,) = [a for a in fig.axes if a.axison]
    assert ax.get_title() == "all cells"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "0.5"]
    assert np.asarray(ax.containers[0].lines[0].get_ydata()) == pytest.approx([1.0, 0.0])
