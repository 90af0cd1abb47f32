"""A real browser for the tests: Playwright driving the system's Chromium (Debian's `chromium` package).

Playwright's own browser download needs its host, which CI and offline machines cannot reach, so the
tests use /usr/bin/chromium (or $DOGBREED_CHROMIUM) and skip, saying why, where it is absent.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """The Chromium to drive: $DOGBREED_CHROMIUM, else /usr/bin/chromium, else one on PATH."""
    for candidate in (os.environ.get("DOGBREED_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium (playwright's Browser); skips the test when there is none to drive."""
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium to drive: apt-get install -y chromium (or set DOGBREED_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Console:
    """What a page printed to its console as errors, and the exceptions its scripts threw."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page) -> None:
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
