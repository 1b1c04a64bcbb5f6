"""Debian's chromium driven by Selenium through Debian's chromedriver (both from apt: `make test`
installs them), headless, for the console's browser tests. No browser is downloaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chromium(width: int = 1280, height: int = 1600) -> webdriver.Chrome:
    driver_path = shutil.which("chromedriver") or str(CHROMEDRIVER)
    if not Path(driver_path).exists() or not CHROMIUM.exists():
        pytest.fail("chromium and chromium-driver (Debian packages) are missing; `make test` installs them")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
