"""Headless Chromium, driven by Playwright, for the tests that look at the web UI as a user does.

The browser is Debian's chromium (installed here when missing), never one Playwright downloads: the machine
reaches package registries, not browser downloads.
"""

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Page, expect, sync_playwright

WIDTH, HEIGHT = 1600, 900
expect.set_options(timeout=60_000)  # a page waits for the webserver's queries on a loaded machine
# Without these, Chromium keeps trying the network this machine closes.
QUIET_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def ensure_chromium() -> str:
    """Debian's chromium; installed here when missing (CI runs as root on a possibly new machine)."""
    found = shutil.which("chromium")
    if found:
        return found
    assert os.geteuid() == 0, "chromium is missing: apt-get install -y chromium (as root)"
    subprocess.run(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
        shell=True,
        check=True,
        timeout=900,
        capture_output=True,
    )
    return shutil.which("chromium") or "/usr/bin/chromium"


@contextmanager
def browser_page() -> Iterator[Page]:
    """A page of WIDTH x HEIGHT in a new headless browser, closed afterwards."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=ensure_chromium(), args=QUIET_FLAGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()
