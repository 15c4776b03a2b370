"""Headless Chromium for the tests (Debian's chromium and chromedriver, driven by Selenium; nothing is downloaded):
:func:`find` says what is missing, :func:`start` opens the browser. Also a script: a screenshot of a page,

    python tests/browser.py runs/sweeps/demo_cifar10_kcurve/site/e/demo_cifar10_kcurve/index.html shot.png \
        [WIDTH HEIGHT] [--hover 'svg.kcurve g.trace circle.pt']

(how README's picture of the results site was taken).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

# --headless without a display; no sandbox (root in a container); and none of Chromium's own connections to Google
# (they fail noisily without a network and are nothing a test should wait for)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio"]


def binaries() -> tuple[str | None, str | None]:
    """(chromium, chromedriver): $SPATIALPROBE_CHROMIUM / $SPATIALPROBE_CHROMEDRIVER, else found on PATH."""
    browser = os.environ.get("SPATIALPROBE_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = os.environ.get("SPATIALPROBE_CHROMEDRIVER") or shutil.which("chromedriver")
    return (browser if browser and os.access(browser, os.X_OK) else None,
            driver if driver and os.access(driver, os.X_OK) else None)


def find() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (make install: the dev extra has it)"
    browser, driver = binaries()
    if not browser or not driver:
        return ("headless Chromium not found (apt-get install chromium chromium-driver; or set "
                "SPATIALPROBE_CHROMIUM and SPATIALPROBE_CHROMEDRIVER)")
    return None


def start(width: int = 1280, height: int = 1000):
    """A headless Chromium with a fresh profile, its console logged (``driver.get_log("browser")``); the caller quits
    it (``driver.quit()``), and the profile folder goes with it (``driver.profile_dir``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = binaries()
    profile = tempfile.mkdtemp(prefix="spatialprobe-chromium-")
    options = webdriver.ChromeOptions()
    for flag in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    options.binary_location = browser
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.profile_dir = profile
    return driver


def stop(driver) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 900, hover: str | None = None) -> None:
    """``page`` as a PNG of the browser's window; ``hover``: a CSS selector of an element to hover first (a
    point of a K-curve shows its tooltip)."""
    from selenium.webdriver.common.action_chains import ActionChains

    driver = start(width, height)
    try:
        driver.get(Path(page).resolve().as_uri())
        if hover:
            ActionChains(driver).move_to_element(driver.find_element("css selector", hover)).perform()
        driver.save_screenshot(str(png))
    finally:
        stop(driver)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="a screenshot of a page in headless Chromium")
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("size", nargs="*", type=int, help="WIDTH HEIGHT of the window (default 1200 900)")
    parser.add_argument("--hover", help="CSS selector of an element to hover before the picture")
    args = parser.parse_args()
    missing = find()
    if missing:
        raise SystemExit(missing)
    screenshot(args.page, args.png, *args.size[:2], hover=args.hover)
