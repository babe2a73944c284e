"""Views declared once (issue 28 item 3): the registry of figures and tables, the colours and
references derived from the variant list, and the one quartile helper.

The "Adding a view" page's example (``docs/examples/my_view.py``) is registered here, found
in ``moebench plot --help`` / ``moebench report --help``, and drawn and printed from a tiny
results folder; it is unregistered afterwards.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from moebench.cli import main
from moebench.sweep import views as registry
from moebench.sweep.config import ConfigError, validate_config
from moebench.sweep.plots import applicable_kinds, draw
from moebench.sweep.quantiles import median_band, quartiles
from moebench.sweep.store import load_results, write_run
from moebench.sweep.style import PALETTE, check_report_table, derive_style, folder_style

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "my_view.py"
PAGE = ROOT / "docs" / "adding_a_view.md"


@pytest.fixture
def example_view():
    """docs/examples/my_view.py imported (its views registered), then removed again."""
    spec = importlib.util.spec_from_file_location("moebench_docs_my_view", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        registry.unregister("figure", "fit_time")
        registry.unregister("table", "fit_time")
        sys.modules.pop(spec.name, None)


def _folder(tmp_path: Path) -> Path:
    """Three variants, fixed fit times: a (1, 2, 3, 4 s), b (10, 20 s and a failed run)."""
    out = tmp_path / "tiny"
    times = {"a": [1.0, 2.0, 3.0, 4.0], "b": [10.0, 20.0, np.nan]}
    for label, values in times.items():
        for i, t in enumerate(values):
            write_run(out, {"run_id": f"{label}{i}", "label": label, "algorithm": "joint_em",
                            "status": "ok" if np.isfinite(t) else "error", "data_id": f"D{i}",
                            "train_log_likelihood": -1.0, "fit_time": t}, [])
    return out


def test_docs_quote_the_example_verbatim():
    page = PAGE.read_text()
    start = page.index('```python\n"""Fit time per variant') + len("```python\n")
    assert page[start:page.index("```\n", start)] == EXAMPLE.read_text()
    assert "adding_a_view" in (ROOT / "docs" / "index.md").read_text()


def test_the_example_is_a_kind_and_a_table_with_help_and_draws(example_view, tmp_path,
                                                                  capsys):
    for verb, option in (("plot", "--kind"), ("report", "--table")):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "fit_time: median fit time per variant, with its interquartile range" in text
        assert option in text
    out = _folder(tmp_path)
    assert main(["plot", str(out), "--kind", "fit_time"]) == 0
    path = out / "figures" / "fit_time.png"
    assert f"wrote {path}" in capsys.readouterr().out
    assert Image.open(path).size[0] > 100
    assert main(["report", str(out), "--table", "fit_time"]) == 0
    table = capsys.readouterr().out
    # a: quartiles of 1, 2, 3, 4 (linear interpolation); b: the failed run is left out
    assert "| a | 4 | 2.5 [1.75, 3.25] |" in table and "| b | 2 | 15 [12.5, 17.5] |" in table
    summary, _ = load_results(out)
    assert "fit_time" in applicable_kinds(summary)  # --kind all draws it
    fig = draw("fit_time", pd.DataFrame({"label": ["a"], "status": ["ok"], "fit_time": [1.0]}))
    bars = fig.axes[0].patches
    assert len(bars) == 1 and bars[0].get_height() == pytest.approx(1.0)


def test_all_draws_every_figure_that_applies(example_view, tmp_path, monkeypatch):
    """``--kind all`` iterates the registry: the example's figure is drawn with the others
    that apply (the built-in ones are kept out: this folder has no checkpoints)."""
    only = {name: view if name == "fit_time" else dataclasses.replace(view, applies=None)
            for name, view in registry.views("figure").items()}
    monkeypatch.setitem(registry._VIEWS, "figure", only)
    out = _folder(tmp_path)
    assert main(["plot", str(out), "--kind", "all", "--out", str(tmp_path / "all")]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["fit_time.png"]


def test_after_unregistering_the_example_is_no_choice(tmp_path, capsys):
    assert "fit_time" not in registry.views("figure")
    with pytest.raises(SystemExit) as stop:
        main(["plot", str(_folder(tmp_path)), "--kind", "fit_time"])
    assert stop.value.code == 2
    assert "invalid choice: 'fit_time'" in capsys.readouterr().err


def test_every_builtin_view_is_registered_with_help():
    figures, tables = registry.views("figure"), registry.views("table")
    assert {"curves", "time", "sample_complexity", "success", "heldout", "diagnostics",
            "equal_footing", "theorem", "phase", "gridlock"} <= set(figures)
    assert {"summary", "accuracy", "comparison", "phase_times", "time_to_error", "theorem",
            "threshold_n"} <= set(tables)
    for view in [*figures.values(), *tables.values()]:
        assert view.help and set(view.inputs) <= set(registry.INPUTS), view.name
    assert registry.get_view("figure", "curves").stem == "curves_{x}"


def test_the_registry_refuses_bad_views_with_the_valid_choices():
    with pytest.raises(ValueError, match="parameter\\(s\\) results are not inputs.*valid "
                                         "inputs: summary, checkpoints, style"):
        @registry.figure("broken", help="x")
        def broken(results):  # noqa: ARG001
            return None
    assert "broken" not in registry.views("figure")
    with pytest.raises(ValueError, match="already registered .*plot_curves"):
        @registry.figure("curves", help="another")
        def curves(summary):  # noqa: ARG001
            return None
    with pytest.raises(ValueError, match="must be an identifier"):
        registry.table("fit time", help="x")
    with pytest.raises(ValueError, match="needs a help text"):
        registry.table("fit_time", help="")
    with pytest.raises(ValueError, match="unknown --kind 'nope'; valid choices: curves, "):
        registry.get_view("figure", "nope")
    with pytest.raises(ValueError, match="unknown view kind 'chart'; valid choices: figure, "
                                         "table"):
        registry.views("chart")


def test_a_view_that_needs_an_option_names_it(tmp_path, capsys):
    out = _folder(tmp_path)
    assert main(["plot", str(out), "--kind", "gridlock"]) == 2
    assert "--kind gridlock needs --axes" in capsys.readouterr().err


# --------------------------------------------------------------------------- style
def _variants(*rows):
    """A summary with one run per (label, algorithm, init, refine)."""
    return pd.DataFrame([{"run_id": f"r{i}", "label": lab, "algorithm": alg, "param_init": init,
                          "param_refine": refine}
                         for i, (lab, alg, init, refine) in enumerate(rows)])


PAPER = [("tensor_em", "tensor_em", None, None), ("tensor_em_refine", "joint_em", "tensor", None),
         ("joint_em", "joint_em", None, None), ("sgd", "sgd", None, None),
         ("alt_min", "alt_min", None, None)]


def test_colours_derived_from_the_variant_list_reproduce_the_paper_figures():
    """The rule gives the paper config (and the baselines config, in another order) the
    colours they had when they were pinned per label."""
    style = derive_style(_variants(*PAPER))
    assert [style.colors[v[0]] for v in PAPER] == list(PALETTE[:5])
    baselines = _variants(("joint_em", "joint_em", None, None), ("sgd", "sgd", None, None),
                          ("alt_min", "alt_min", None, None),
                          ("tensor_em", "tensor_em", None, None),
                          ("tensor_em+refine", "tensor_em", None, True))
    colors = derive_style(baselines).colors
    assert colors == {"tensor_em": PALETTE[0], "tensor_em+refine": PALETTE[1],
                      "joint_em": PALETTE[2], "sgd": PALETTE[3], "alt_min": PALETTE[4]}
    # no paper estimator: the refinement keeps orange; a reference model is black
    real = _variants(("refine", "joint_em", "tensor", None), ("em", "joint_em", None, None),
                     ("lr", "linear_regression", None, None))
    assert derive_style(real).colors == {"refine": PALETTE[1], "em": PALETTE[2],
                                         "lr": "#000000"}
    # labels do not matter, the variant list does; markers go by sorted label
    renamed = derive_style(_variants(("zz", "tensor_em", None, None), ("aa", "sgd", None, None)))
    assert renamed.colors == {"zz": PALETTE[0], "aa": PALETTE[2]}
    assert renamed.markers == {"aa": "o", "zz": "s"}


def test_references_derived_and_declared():
    assert derive_style(_variants(*PAPER)).references == ["tensor_em_refine", "tensor_em"]
    style = derive_style(_variants(*PAPER), {"references": ["tensor_em"],
                                             "colors": {"sgd": "tab:gray"}})
    assert style.references == ["tensor_em"] and style.colors["sgd"] == "tab:gray"
    assert style.colors["joint_em"] == PALETTE[2]
    assert derive_style(_variants(("em", "joint_em", None, None))).references == []


@pytest.mark.parametrize(("report", "message"), [
    ({"referenses": ["a"]}, "unknown key report.referenses; valid keys: references, colors"),
    ({"references": "a"}, "report.references must be a non-empty list of variant labels; "
                          "valid labels: a, b"),
    ({"references": ["c"]}, "report.references: 'c' is not a variant label; valid labels: a, b"),
    ({"colors": {"c": "red"}}, "report.colors: 'c' is not a variant label"),
    ({"colors": {"a": "reddish"}}, "report.colors.a: 'reddish' is not a colour"),
    ({"colors": ["red"]}, "report.colors must be a table"),
    ("red", "\\[report\\] must be a table"),
])
def test_report_table_errors_name_the_problem_and_the_choices(report, message):
    with pytest.raises(ValueError, match=message):
        check_report_table(report, ["a", "b"])


def test_the_config_validates_its_report_table(tmp_path):
    raw = {"data": {"n": 500, "d": 3, "k": 2},
           "algorithm": [{"name": "joint_em", "label": "em"}, {"name": "sgd"}]}
    config = validate_config({**raw, "report": {"references": ["em"],
                                                "colors": {"sgd": "#123456"}}})
    assert config.raw["report"]["references"] == ["em"]
    with pytest.raises(ConfigError, match="report.references: 'tensor_em' is not a variant "
                                          "label; valid labels: em, sgd"):
        validate_config({**raw, "report": {"references": ["tensor_em"]}})
    out = _folder(tmp_path)
    (out / "config.toml").write_text('[report]\nreferences = ["b"]\ncolors = {a = "red"}\n')
    summary = pd.DataFrame({"label": ["a", "b"], "algorithm": ["joint_em"] * 2})
    style = folder_style(summary, out)
    assert style.references == ["b"] and style.colors == {"a": "red", "b": PALETTE[3]}


# --------------------------------------------------------------------------- quartiles
def test_quartiles_leave_out_missing_finals_and_censor_missing_curves():
    values = np.array([4.0, 1.0, np.nan, 3.0, 2.0, np.inf])
    assert quartiles(values) == pytest.approx((1.75, 2.5, 3.25))
    assert np.percentile([1, 2, 3, 4], [25, 50, 75]) == pytest.approx(quartiles(values))
    assert all(np.isnan(q) for q in quartiles([np.nan, np.inf]))
    # censored: missing is worse than every value; a quartile that needs one is NaN
    q1, med, q3 = quartiles(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, np.nan],
                                      [4.0, np.nan]]), axis=0, censored=True)
    assert q1.tolist() == pytest.approx([1.75, 1.75])  # 2 of 4 known: only q1 is defined
    assert med[0] == pytest.approx(2.5) and np.isnan(med[1])
    assert q3[0] == pytest.approx(3.25) and np.isnan(q3[1])
    by_column = quartiles(np.array([[1.0, 5.0], [3.0, np.nan]]), axis=0)
    assert by_column[1].tolist() == pytest.approx([2.0, 5.0])


def test_median_band_starts_once_half_the_runs_have_a_value():
    runs = [(np.array([1.0]), np.array([3.0])), (np.array([2.0]), np.array([2.0])),
            (np.array([3.0]), np.array([1.0]))]
    med, q1, q3 = median_band(runs, np.array([1.0, 2.0, 3.0]))
    # at 2 the run not yet started counts as the worst: the median is 3, not 2.5
    assert np.isnan(med[0]) and med[1:].tolist() == pytest.approx([3.0, 2.0])
    assert q1[1:].tolist() == pytest.approx([2.5, 1.5])
    assert np.isnan(q3[:2]).all() and q3[2] == pytest.approx(2.5)


def test_sample_size_ticks_are_short_and_log_time_axes_label_decades_only():
    """Tick labels must not run into each other: "3k".."3M" for n, no minor labels on time."""
    import matplotlib.ticker
    from matplotlib.figure import Figure

    from moebench.sweep.plots import _set_n_ticks, compact_count, set_log_x

    assert [compact_count(v) for v in (250, 3000, 1e5, 3e6, 2.5e9)] == \
        ["250", "3k", "100k", "3M", "2.5G"]
    ax = Figure().subplots()
    ax.set_xscale("log")
    _set_n_ticks(ax, [3000, 10_000, 3_000_000])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["3k", "10k", "3M"]
    ax = Figure().subplots()
    set_log_x(ax)
    assert ax.get_xscale() == "log"
    assert isinstance(ax.xaxis.get_minor_formatter(), matplotlib.ticker.NullFormatter)
