"""``moebench site`` in a real browser (issue 30 item 4): headless Chromium via Playwright.

Debian's ``chromium`` is launched by its path (Playwright cannot download its own build
here); ``.ci/run`` installs it, so these tests run in CI, where ``MOEBENCH_REQUIRE_BROWSER=1``
turns a missing browser into a failure. Elsewhere, without playwright or a Chromium
executable, they are skipped with the reason. The site is built once from copies of two
committed folders: ``gridlock_30seeds`` (gridlock maps, 12 cells) and ``consistency_wide``
(sample complexity).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moebench.site import build_site
from moebench.site.screenshot import browser_missing, find_browser

#: set (as ``.ci/run`` does) to make a missing browser a failure, not a skip
REQUIRE_ENV = "MOEBENCH_REQUIRE_BROWSER"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(browser_missing() is not None
                                 and os.environ.get(REQUIRE_ENV, "") in ("", "0"),
                                 reason=f"no headless browser: {browser_missing()}")]

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ("gridlock_30seeds", "consistency_wide")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    missing = browser_missing()
    if missing:  # only reached with MOEBENCH_REQUIRE_BROWSER set
        pytest.fail(f"{REQUIRE_ENV} is set but there is no headless browser: {missing}")
    base = tmp_path_factory.mktemp("browser_site")
    for name in SWEEPS:
        shutil.copytree(ROOT / "results" / name, base / "results" / name)
    return build_site([base / "results"], base / "site").out


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=find_browser(), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    view = browser.new_page(viewport={"width": 1280, "height": 900})
    view.errors = []
    view.on("console", lambda m: view.errors.append(m.text) if m.type == "error" else None)
    view.on("pageerror", lambda e: view.errors.append(str(e)))
    yield view
    view.close()


def open_page(page, path: Path) -> None:
    page.goto(path.as_uri())
    page.wait_for_load_state("load")


def figure_points(page) -> dict[str, int]:
    return page.eval_on_selector_all(
        "div.figure[data-spec]",
        "els => Object.fromEntries(els.map(e => [e.id, Number(e.getAttribute('data-points'))]))")


def test_every_page_loads_without_console_errors_and_every_figure_has_points(site, page):
    expected = {"gridlock_30seeds": {"curves_iteration", "curves_time", "gridlock_0",
                                     "gridlock_1"},
                "consistency_wide": {"curves_iteration", "curves_time", "sample_complexity"}}
    cell = sorted((site / "sweeps" / "gridlock_30seeds" / "cells").glob("*.html"))[0]
    pages = [site / "index.html", site / "compare.html", site / "timings.html",
             *(site / "sweeps" / name / "index.html" for name in SWEEPS), cell]
    for path in pages:
        open_page(page, path)
        assert page.errors == [], (path, page.errors)
        points = figure_points(page)
        assert all(n > 0 for n in points.values()), (path, points)
        name = path.parent.name
        if path.name == "index.html" and name in expected:
            assert set(points) == expected[name], (name, points)
            traces = page.evaluate("() => [...document.querySelectorAll('div.figure')]"
                                   ".map(d => d.data.length)")
            assert all(n > 0 for n in traces)
    assert {"trajectories", "cell_bands"} <= set(points)  # the cell page's figures


def test_filtering_a_table_changes_its_rows(site, page):
    open_page(page, site / "sweeps" / "gridlock_30seeds" / "index.html")
    table = page.locator("table.data").first  # the cells table
    rows = table.locator("tbody tr")
    total = rows.count()
    assert total == 12

    def visible() -> list[str]:
        return [rows.nth(i).inner_text() for i in range(total) if rows.nth(i).is_visible()]

    box = table.locator("xpath=preceding-sibling::div[@class='filter'][1]//input")
    box.fill("k=8 sigma=0.5")
    shown = visible()
    assert len(shown) == 2 and all("k=8" in r and "sigma=0.5" in r for r in shown)
    box.fill("")
    assert len(visible()) == total
    header = table.locator("thead th").nth(1)  # sorting by the runs column keeps the rows
    header.click()
    assert len(visible()) == total


def test_clicking_a_map_point_opens_its_cell(site, page):
    open_page(page, site / "sweeps" / "gridlock_30seeds" / "index.html")
    fig = page.locator("#gridlock_0")
    fig.scroll_into_view_if_needed()
    # a point of the first panel whose position no other point shares, in page pixels
    target = page.evaluate("""() => {
        const gd = document.getElementById('gridlock_0');
        const t = gd.data.find(d => d.customdata);
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const key = i => t.x[i] + ',' + t.y[i];
        const count = {};
        t.x.forEach((_, i) => { count[key(i)] = (count[key(i)] || 0) + 1; });
        const i = t.x.findIndex((_, j) => count[key(j)] === 1);
        const box = gd.getBoundingClientRect();
        return {link: t.customdata[i], x: box.left + xa._offset + xa.l2p(t.x[i]),
                y: box.top + ya._offset + ya.l2p(t.y[i])};
    }""")
    assert target["link"].startswith("cells/")
    page.mouse.move(target["x"], target["y"])
    page.mouse.click(target["x"], target["y"])
    page.wait_for_url("**/" + target["link"])
    assert page.url.endswith(target["link"])
    assert (site / "sweeps" / "gridlock_30seeds" / target["link"]).is_file()
    assert page.locator("pre.command").inner_text().startswith("moebench run ")


def test_compare_shows_both_variants(site, page):
    open_page(page, site / "compare.html")
    page.wait_for_selector("table.compare-table")
    page.select_option("#sweep-A", "gridlock_30seeds")
    page.select_option("#sweep-B", "gridlock_30seeds")
    page.select_option("#variant-A", "tensor_em_refine")
    page.select_option("#variant-B", "joint_em_1init")
    page.wait_for_function("() => document.querySelector('.compare-table') && "
                           "document.querySelector('#compare-table .caption').textContent"
                           ".includes('joint_em_1init')")
    caption = page.locator("#compare-table .caption").inner_text()
    assert "tensor_em_refine" in caption and "joint_em_1init" in caption
    assert page.locator("table.compare-table tbody tr").count() == 12
    names = page.evaluate("() => document.getElementById('compare-figure').data"
                          ".filter(t => t.showlegend !== false).map(t => t.name)")
    assert names == ["A: tensor_em_refine", "B: joint_em_1init"]
    assert int(page.locator("#compare-figure").get_attribute("data-points")) > 0
    assert page.errors == []


def test_screenshot_command(tmp_path):
    """`moebench site ... --screenshot PNG` (how docs/images/site.png is made) writes a PNG
    of the page after its figures are drawn. In a subprocess: Playwright's sync API does not
    nest inside this module's running browser."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "consistency_wide", results / "consistency_wide")
    png = tmp_path / "shot" / "site.png"

    def site(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "moebench.cli", "site", str(results),
                               "--out", str(tmp_path / "site"), "--screenshot", str(png),
                               *extra], capture_output=True, text=True, cwd=ROOT, timeout=300)

    done = site("--screenshot-page", "sweeps/consistency_wide/index.html")
    assert done.returncode == 0, done.stderr
    assert f"wrote {png}" in done.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 900)
    done = site("--screenshot-page", "nope.html")
    assert done.returncode == 2 and "is not a page of the site" in done.stderr
