"""A PNG of a page of the built site, taken by headless Chromium through Playwright.

Playwright cannot download its own browser build here: the system's ``chromium`` (Debian's
package) is launched by its path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: the browser executables looked for, in order
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    """The path of a Chromium executable on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_missing() -> str | None:
    """Why a headless browser cannot run here (one line), or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install 'moebench[dev]' or playwright)"
    if find_browser() is None:
        return (f"no Chromium executable on PATH ({', '.join(BROWSERS)}); install Debian's "
                "`chromium` package (apt-get install chromium)")
    return None


def screenshot(page: str | os.PathLike, png: str | os.PathLike, width: int = 1280,
               height: int = 900) -> Path:
    """Write a PNG of ``page`` (an HTML file of the site) after its figures are drawn.

    Raises
    ------
    ValueError
        When playwright or a Chromium executable is missing (the message says which).
    """
    why = browser_missing()
    if why:
        raise ValueError(f"--screenshot needs a headless browser: {why}")
    from playwright.sync_api import sync_playwright

    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_browser(), args=["--no-sandbox"])
        try:
            view = browser.new_page(viewport={"width": width, "height": height})
            view.goto(Path(page).resolve().as_uri())
            view.wait_for_load_state("load")
            view.screenshot(path=str(png), full_page=False)
        finally:
            browser.close()
    return png
