"""Headless Chromium for the dashboard's browser tests and benchmark: Debian's binary, driven by
Playwright (never a downloaded browser), offline by its flags."""

from __future__ import annotations

import contextlib
import os
import shutil

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
