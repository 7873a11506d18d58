"""The HTML report in a real browser: Debian's headless Chromium driven by Selenium.

Skipped (with the reason) only where no browser can be found: .ci/run installs the Debian
packages chromium and chromium-driver when they are missing."""

from __future__ import annotations

import shutil

import pytest

from gdstab.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _driver():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no Chromium browser/driver installed (Debian packages chromium and chromium-driver); "
                    ".ci/run installs them where apt-get is available")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--window-size=1280,2000"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def test_report_opens_in_headless_chromium(tmp_path):
    out = tmp_path / "rep"
    assert main(["reproduce", "fig1", "--out", str(out), "--quiet"]) == 0
    drv = _driver()
    try:
        drv.get((out / "report.html").resolve().as_uri())
        images = drv.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);")
        assert images and all(ok and width > 0 for _, ok, width in images), images
        rows = drv.execute_script("return document.querySelectorAll('#key-numbers tbody tr').length;")
        assert rows >= 4
        text = drv.execute_script("return document.getElementById('key-numbers').innerText;")
        assert "eta_E" in text and "not reproduced" in text  # the M_WS length 37.4 is reported honestly
        shot = tmp_path / "report.png"
        assert drv.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        drv.quit()
