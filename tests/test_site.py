"""``moebench site``: the static results site (issue 30), without a browser.

The site is built from copies of committed results folders (the committed ones are never
written to), plus temporary folders that are empty, damaged or of another store schema.
The browser tests are in ``test_site_browser.py``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moebench.cli import main
from moebench.site import MARKER, build_site, network_references
from moebench.site.encode import display_rows, dumps
from moebench.site.pages import verdict_html, verdict_table
from moebench.site.sources import load_sweep, split_cells

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
SMALL = ("consistency_wide", "label_ablation")


def copy_results(dest: Path, names=SMALL) -> Path:
    """Copies of committed results folders under ``dest/results``."""
    for name in names:
        shutil.copytree(RESULTS / name, dest / "results" / name)
    return dest / "results"


def bad_folders(results: Path) -> dict[str, str]:
    """An empty, a damaged, an older-schema and a newer-schema folder beside the good ones;
    name -> a word the index's one-line message must hold."""
    (results / "empty").mkdir()
    damaged = results / "damaged"
    damaged.mkdir()
    (damaged / "summary.parquet").write_bytes(b"PAR1 not a parquet file")
    (damaged / "checkpoints.parquet").write_bytes(b"garbage")
    older = results / "older"
    older.mkdir()  # tables from before the label column, no run files to rebuild them from
    pd.DataFrame({"run_id": ["a"], "status": ["ok"]}).to_parquet(older / "summary.parquet")
    pd.DataFrame({"run_id": ["a"], "iteration": [0]}).to_parquet(older / "checkpoints.parquet")
    newer = results / "newer"
    newer.mkdir()
    table = pa.table({"run_id": ["a"], "status": ["ok"], "label": ["x"]})
    table = table.replace_schema_metadata({b"moebench_schema": b"99"})
    pq.write_table(table, newer / "summary.parquet")
    pq.write_table(table, newer / "checkpoints.parquet")
    return {"empty": "empty folder", "damaged": "could not be read",
            "older": "lacks the column", "newer": "schema 99"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("site")
    results = copy_results(base)
    bad = bad_folders(results)
    outcome = build_site([results], base / "site")
    return outcome, results, bad


def test_pages_of_every_sweep_and_cell(built):
    outcome, results, _ = built
    site = outcome.out
    assert sorted(outcome.sweeps) == sorted(SMALL)
    assert (site / MARKER).is_file()
    for name in ("index.html", "compare.html", "timings.html", "assets/plotly.min.js",
                 "assets/site.js", "assets/site.css"):
        assert (site / name).is_file(), name
    for name in SMALL:
        sweep = load_sweep(results / name)
        cells = sorted(p.stem for p in (site / "sweeps" / name / "cells").glob("*.html"))
        assert cells == sorted(c.key for c in sweep.cells)
        assert (site / "compare" / f"{name}.js").is_file()
        page = (site / "sweeps" / name / "index.html").read_text()
        assert f"{len(sweep.summary)} (ok" in page  # the run count and status counts
        for cell in sweep.cells:  # every cell is linked from its sweep's page
            assert f'href="cells/{cell.key}.html"' in page
    index = (site / "index.html").read_text()
    for name in SMALL:
        assert f'href="sweeps/{name}/index.html"' in index
    assert outcome.pages == sum(1 for _ in site.rglob("*.html"))
    assert outcome.bytes == sum(p.stat().st_size for p in site.rglob("*") if p.is_file())


def test_bad_folders_get_one_line_each(built):
    outcome, _, bad = built
    index = (outcome.out / "index.html").read_text()
    skipped = {s.name: s.reason for s in outcome.skipped}
    assert set(bad) <= set(skipped)
    for name, word in bad.items():
        assert word in skipped[name], (name, skipped[name])
        assert "\n" not in skipped[name]
        lines = re.findall(rf'<p class="skipped">{name}: [^<]*</p>', index)
        assert len(lines) == 1, name
    assert not (outcome.out / "sweeps" / "damaged").exists()


def test_no_page_loads_from_the_network(built, tmp_path):
    site = built[0].out
    assert network_references(site) == []
    for page in site.rglob("*.html"):  # every script and stylesheet is a file of the site
        text = page.read_text()
        for ref in re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', text):
            assert (page.parent / ref).resolve().is_file(), (page, ref)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.html").write_text('<script src="https://cdn.plot.ly/plotly.min.js"></script>')
    (bad / "y.html").write_text('<link rel="stylesheet" href="//example.org/a.css">')
    assert len(network_references(bad)) == 2  # the check finds what it must refuse


def test_rerun_command_selects_exactly_the_cell(built):
    from moebench.sweep.config import load_config
    from moebench.sweep.selection import count_runs

    outcome, results, _ = built
    for name in SMALL:
        sweep = load_sweep(results / name)
        config = load_config(results / name / "config.toml")
        for cell in sweep.cells:
            page = (outcome.out / "sweeps" / name / "cells" / f"{cell.key}.html").read_text()
            cmd = re.search(r'<pre class="command">([^<]*)</pre>', page).group(1)
            args = shlex.split(cmd.replace("&#x27;", "'"))
            assert args[:3] == ["moebench", "run", str(results / name / "config.toml")]
            filters = [args[i + 1] for i, a in enumerate(args) if a == "--filter"]
            count = count_runs(config, filters)
            assert count.selected == len(cell.rows), (name, cell.key, filters)


def test_cell_page_lists_every_run(built):
    outcome, results, _ = built
    sweep = load_sweep(results / "label_ablation")
    cell = sweep.cells[0]
    page = (outcome.out / "sweeps" / "label_ablation" / "cells" / f"{cell.key}.html").read_text()
    for rid in sweep.summary.loc[cell.rows, "run_id"]:
        assert f"<td>{rid}</td>" in page
    spec = json.loads(re.search(r'id="spec-trajectories">(.*?)</script>', page).group(1)
                      .replace("<\\/", "</"))
    runs = sweep.summary.loc[cell.rows]
    series = spec["panels"][0]["series"]
    assert [s["name"] for s in series] == list(dict.fromkeys(runs["label"]))
    for s in series:  # each run of the variant is one stretch between gaps (null)
        stretches = "".join("|" if v is None else "." for v in s["y"]).split("|")
        assert len(stretches) == int((runs["label"] == s["name"]).sum())
        assert len(s["x"]) == len(s["xt"]) == len(s["y"]) == len(s["rep"])


def test_out_folder_rules(built, tmp_path):
    results = built[1]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds other files"):
        build_site([results / "consistency_wide"], foreign)
    assert (foreign / "keep.txt").read_text() == "mine"
    site = tmp_path / "site"
    build_site([results / "consistency_wide"], site)
    (site / "stale.html").write_text("old")
    build_site([results / "consistency_wide"], site)  # an earlier site is replaced whole
    assert not (site / "stale.html").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.")]  # no temp left
    with pytest.raises(ValueError, match="not a directory"):
        build_site([tmp_path / "missing"], tmp_path / "other")


def test_cli(built, tmp_path, capsys):
    results = built[1]
    assert main(["site", str(results / "consistency_wide"), "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "1 sweep(s)" in out and (tmp_path / "s" / "index.html").is_file()
    assert main(["site", str(tmp_path / "nothing"), "--out", str(tmp_path / "t")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["site", str(results / "consistency_wide"), "--out", str(tmp_path / "u"),
                 "--verdict", str(RESULTS / "consistency_wide" / "config.toml")]) == 2
    assert "no Markdown table" in capsys.readouterr().err


def test_verdict_table_from_readme():
    text = (ROOT / "README.md").read_text()
    table = verdict_table(text)
    lines = table.splitlines()
    assert lines[0].startswith("| the paper's claim") and len(lines) >= 4
    html = verdict_html(table, ["gridlock_30seeds", "theorem", "nope"])
    assert '<a href="sweeps/gridlock_30seeds/index.html"><code>gridlock_30seeds</code></a>' in html
    assert '<a href="sweeps/theorem/index.html"><code>theorem</code></a>' in html
    assert "docs/findings" not in html  # links to Markdown files stay text
    assert verdict_table("no table here\n| a | b |\n|---|---|\n") == ""


def test_timings_page(tmp_path):
    folder = tmp_path / "performance"
    folder.mkdir()
    pd.DataFrame({"benchmark": ["bench.Floor.time_gram", "bench.Floor.time_gram",
                                "bench.Floor.peakmem_data_only"],
                  "params": ["[1000, 10]", "[10000, 10]", "[1000, 10]"],
                  "value": [0.01, 0.1, 2.0**21], "unit": ["s", "s", "bytes"]}
                 ).to_csv(folder / "benchmarks.csv", index=False)
    outcome = build_site([tmp_path], tmp_path / "site")
    page = (outcome.out / "timings.html").read_text()
    spec = json.loads(re.search(r'id="spec-timing_0_0">(.*?)</script>', page).group(1))
    panels = {p["title"]: p["series"][0]["y"] for p in spec["panels"]}
    assert panels == {"peakmem_data_only (MiB)": [2], "time_gram (s)": [0.01, 0.1]}
    assert 'href="timings.html">timings (asv)' in (outcome.out / "index.html").read_text()
    [skipped] = outcome.skipped  # not a sweep: said so, with where its timings are
    assert skipped.reason.endswith("its asv timings (benchmarks.csv) are on the timings page")


def test_dumps_and_display_rows():
    text = dumps({"a": np.array([1.0, np.nan, 1e-5, 123456.0]), "b": [0.5, 2.0], "c": "</x>",
                  "d": np.inf, "e": [1, 2]})
    assert text == '{"a":[1,null,1e-05,123500],"b":[0.5,2],"c":"<\\/x>","d":null,"e":[1,2]}'
    values = np.array([0.123456, -98765.4321, 3.14159e-7, 2.0**60, 0.0, 1e-310])
    rounded = json.loads(dumps(values))
    assert rounded == [0.1235, -98770.0, 3.142e-07, 1.153e18, 0.0, 0.0]  # subnormal: 0
    assert display_rows(5, 10).tolist() == [0, 1, 2, 3, 4]
    rows = display_rows(1000, 20)
    assert rows[0] == 0 and rows[-1] == 999 and len(rows) <= 22
    assert np.all(np.diff(rows) > 0)


def test_cells_split_on_varying_settings(built):
    summary = load_sweep(built[1] / "consistency_wide").summary
    cells = split_cells(summary)
    assert [c.setting for c in cells] == [{"n": n} for n in sorted(summary["n"].unique())]
    assert sum(len(c.rows) for c in cells) == len(summary)
    assert cells[0].filters() == [f"--filter n={int(summary['n'].min())}"]


@pytest.mark.skipif(os.environ.get("MOEBENCH_SITE_FULL") != "1",
                    reason="the site of every committed folder (about 20 s): set "
                    "MOEBENCH_SITE_FULL=1 to build it")
def test_full_results_site(tmp_path):
    """Issue 30's targets: every committed folder, <= 25 MB, under a minute, offline."""
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    start = time.perf_counter()
    outcome = build_site([results], tmp_path / "site")
    seconds = time.perf_counter() - start
    assert outcome.bytes <= 25 * 2**20
    assert network_references(outcome.out) == []
    assert seconds < 60, f"{seconds:.1f} s (a loaded machine?)"


def test_a_folder_that_fails_to_draw_is_set_aside(built, tmp_path, monkeypatch):
    """A sweep whose pages raise becomes one line on the index; the others still build and
    nothing of the failed one is left in the site."""
    import moebench.site.build as build

    results = built[1]
    real = build.cell_page

    def failing(drawn, cell, classes):
        if drawn.sweep.name == "label_ablation":
            raise RuntimeError("boom\nsecond line")
        return real(drawn, cell, classes)

    monkeypatch.setattr(build, "cell_page", failing)
    outcome = build_site([results / "consistency_wide", results / "label_ablation"],
                         tmp_path / "site")
    assert outcome.sweeps == ["consistency_wide"]
    [skipped] = outcome.skipped
    assert skipped.reason == "could not be drawn: RuntimeError: boom"
    assert not (outcome.out / "sweeps" / "label_ablation").exists()
    assert not (outcome.out / "compare" / "label_ablation.js").exists()
    assert "label_ablation: could not be drawn" in (outcome.out / "index.html").read_text()


def test_a_folder_without_its_config_says_so(built, tmp_path):
    folder = tmp_path / "results" / "consistency_wide"
    shutil.copytree(built[1] / "consistency_wide", folder)
    (folder / "config.toml").unlink()
    outcome = build_site([folder], tmp_path / "site")
    cell = next((outcome.out / "sweeps" / "consistency_wide" / "cells").glob("*.html"))
    text = cell.read_text()
    assert "holds no config.toml" in text and "moebench run" not in text


def test_asv_result_files(tmp_path):
    """asv's own result files (in a results folder, or an asv results folder's newest run
    per machine) become charts: each value at its parameter combination."""
    run = {"commit_hash": "b1e1cf3f41", "date": 1795633298000, "params": {"machine": "h100"},
           "result_columns": ["result", "params", "version"],
           "results": {"bench.EM.time_e_step": [[0.5, None, 2.0, 4.0],
                                                [["1000", "10000"], ["'numpy'", "'torch'"]],
                                                "v"],
                       "bench.EM.peakmem_step": [[2.0**20], [], "v"]}}
    gpu = tmp_path / "results" / "performance" / "gpu"
    gpu.mkdir(parents=True)
    (gpu / "asv_run.json").write_text(json.dumps(run))
    (gpu / "other.json").write_text('{"rows": []}')  # not an asv result: ignored
    asv = tmp_path / ".asv" / "results" / "vm"
    asv.mkdir(parents=True)
    (asv / "machine.json").write_text("{}")
    (asv / "old-env.json").write_text(json.dumps({**run, "commit_hash": "0ld"}))
    time.sleep(0.01)
    (asv / "new-env.json").write_text(json.dumps({**run, "commit_hash": "new"}))
    outcome = build_site([tmp_path / "results"], tmp_path / "site", asv=[asv.parent])
    page = (outcome.out / "timings.html").read_text()
    titles = re.findall(r"<h2>([^<]*)</h2>", page)
    assert titles == [f"{gpu / 'asv_run.json'}: asv run of b1e1cf3f41 on h100, 2026-11-25",
                      f"{asv / 'new-env.json'}: asv run of new on h100, 2026-11-25"]
    spec = json.loads(re.search(r'id="spec-timing_0_0">(.*?)</script>', page).group(1))
    panels = {p["title"]: (p["series"][0]["x"], p["series"][0]["y"]) for p in spec["panels"]}
    assert panels == {"peakmem_step (MiB)": (["()"], [1]),
                      "time_e_step (s)": (["(1000, numpy)", "(10000, numpy)",
                                           "(10000, torch)"], [0.5, 2, 4])}
    with pytest.raises(ValueError, match="--asv"):
        build_site([tmp_path / "results"], tmp_path / "site2", asv=[tmp_path / "none"])
