"""Headless Chromium for the dashboard's browser tests and benchmark: Debian's binary, driven by
Playwright (never a downloaded browser), offline by its flags; and a page under watch."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    """The system Chromium (Debian: apt-get install chromium), or None."""
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    return None


def needs_chromium():
    """Mark for browser tests: skipped where no Chromium is installed, except in CI (CI set), where a
    missing Chromium fails the run instead, so that the browser checks can never go quietly unrun."""
    if chromium_path() is None and os.environ.get("CI"):
        raise RuntimeError("CI is set but no chromium is on PATH: .ci/run must `apt-get install chromium`")
    return pytest.mark.skipif(chromium_path() is None,
                              reason="no chromium binary on PATH (apt-get install chromium; CI installs it)")


@contextlib.contextmanager
def launch():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A page with everything it logs, requests and pops up recorded."""

    def __init__(self, browser, html: Path):
        self.html = html
        self.page = browser.new_page(viewport={"width": 1440, "height": 900})
        self.errors, self.requests, self.dialogs = [], [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def open(self, fragment: str = "") -> "Watched":
        self.page.goto(self.html.as_uri() + fragment)
        return self

    def go(self, fragment: str) -> None:
        self.page.evaluate("h => { location.hash = h; }", fragment)

    def wait_title(self, title: str) -> None:
        """Wait until the feature page shows `title` ("Feature <id>")."""
        self.page.wait_for_function("t => document.querySelector('#feature h2')?.firstChild?.textContent === t",
                                    arg=title)

    def scroll_to_end(self) -> None:
        self.page.locator("#list").evaluate("node => { node.scrollTop = node.scrollHeight; }")

    def wait_last_row(self, feature: int) -> None:
        self.page.wait_for_function("f => document.querySelector('#list .row:last-child .row-id').textContent === f",
                                    arg=str(feature))

    def list_ids(self) -> list[int]:
        return [int(t) for t in self.page.locator("#list .row .row-id").all_text_contents()]

    def check(self) -> None:
        assert self.errors == []
        assert self.dialogs == []
        assert set(self.requests) == {self.html.as_uri()}


INJECTED = """() => ({img: document.querySelectorAll('img').length, b: document.querySelectorAll('b').length,
                    scripts: document.querySelectorAll('script').length,
                    blobs: document.querySelectorAll('script[type="application/octet-stream"]').length})"""


def assert_nothing_injected(page: Watched) -> None:
    page.page.wait_for_timeout(200)  # time for any injected handler to fire
    injected = page.page.evaluate(INJECTED)
    assert injected["img"] == 0 and injected["b"] == 0 and injected["scripts"] == injected["blobs"] + 2
