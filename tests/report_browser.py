"""Headless Chromium through Playwright for the report's tests and its README screenshots.

Uses the Debian ``chromium`` package's binary (``executable_path``): browser downloads are not
available here, and ``.ci/run`` installs the package when it is missing.

    python tests/report_browser.py ROOT docs/    # screenshots of ROOT/images/index.html

- :func:`browser_available`: why the browser tests must skip (None when they can run);
- :func:`open_page`: a page on a ``file://`` URL that records console errors, page errors and
  failed requests (every test asserts they stay empty);
- :func:`broken_images`: the ``<img>`` sources that do not load;
- :func:`take_screenshots`: the study page and the gallery with a detail view open.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("PNEUMOCAM_CHROMIUM", "/usr/bin/chromium")


def browser_available() -> str | None:
    """None when Playwright and Chromium are both installed, else the reason to skip."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements_dev.txt)"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does it)"
    return None


@dataclass
class PageLog:
    """What went wrong while a page was open."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.console_errors + self.page_errors + self.failed_requests


@contextmanager
def browser() -> Iterator[object]:
    """A headless Chromium (Playwright ``Browser``), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def open_page(b, path: Path, width: int = 1280, height: int = 900) -> Iterator[tuple[object, PageLog]]:
    """``path`` opened in a new page of browser ``b``; yields ``(page, log)``."""
    log = PageLog()
    page = b.new_page(viewport={"width": width, "height": height})
    page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log.page_errors.append(str(e)))
    page.on("requestfailed", lambda r: log.failed_requests.append(f"{r.url}: {r.failure}"))

    def local_only(route) -> None:  # anything but a local file is a request the page must not make
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            log.failed_requests.append(f"network: {route.request.url}")
            route.abort()

    page.route("**/*", local_only)
    try:
        page.goto(Path(path).resolve().as_uri())
        page.wait_for_load_state("load")
        yield page, log
    finally:
        page.close()


BROKEN_IMAGES_JS = """async () => {
  const srcs = [...new Set([...document.images].map(i => i.src))];
  const bad = [];
  await Promise.all(srcs.map(src => new Promise(done => {
    const im = new Image();
    im.onload = () => { if (!im.naturalWidth) bad.push(src); done(); };
    im.onerror = () => { bad.push(src); done(); };
    im.src = src;
  })));
  return bad;
}"""


def broken_images(page) -> list[str]:
    """The ``src`` of every ``<img>`` on the page (lazy ones included) that does not load."""
    return page.evaluate(BROKEN_IMAGES_JS)


def take_screenshots(index: Path, out_dir: Path) -> list[Path]:
    """``report.png`` (the study page, top) and ``gallery.png`` (the gallery with one image's
    detail open) of the site whose page is ``index``; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with browser() as b:
        with open_page(b, index, 1280, 1500) as (page, _log):
            page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out_dir / "report.png"))
            written.append(out_dir / "report.png")
        with open_page(b, index.parent / "report" / "gallery.html", 1280, 900) as (page, _log):
            page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out_dir / "gallery.png"))
            written.append(out_dir / "gallery.png")
            tp = page.locator('.card[data-cell="tp"]')  # a positive: boxes in the detail
            (tp if tp.count() else page.locator(".card")).first.click()
            page.wait_for_timeout(300)
            page.screenshot(path=str(out_dir / "gallery_detail.png"))
            written.append(out_dir / "gallery_detail.png")
    return written


if __name__ == "__main__":
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    for p in take_screenshots(root / "images" / "index.html", out):
        print(p)
