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


#: fast targets (a few seconds each) whose sections the browser checks
TARGETS = ("fig1", "orbit", "eos_toy", "basin")


def test_report_reads_as_a_page_in_headless_chromium(tmp_path):
    """#17: a table of contents linking one section per target; each section has its figure
    (loaded) and a key-number table; no cell over 200 characters; no horizontal overflow at a
    laptop width; a screenshot per section is saved (into $GDSTAB_TEST_ARTIFACTS when set, e.g.
    for CI to keep, else the test's temporary folder)."""
    import os
    from pathlib import Path

    out = tmp_path / "rep"
    assert main(["reproduce", *TARGETS, "--out", str(out), "--quiet"]) == 0
    shots = Path(os.environ.get("GDSTAB_TEST_ARTIFACTS", tmp_path)) / "report-sections"
    shots.mkdir(parents=True, exist_ok=True)
    drv = _driver()
    try:
        drv.set_window_size(1280, 1400)
        drv.get((out / "report.html").resolve().as_uri())
        toc = drv.execute_script("return Array.from(document.querySelectorAll('#toc a')).map(a => a.hash);")
        assert toc == [f"#{t}" for t in TARGETS] + ["#provenance"]
        for target in TARGETS:
            info = drv.execute_script(
                "const s = document.getElementById(arguments[0]); const i = s.querySelector('figure img');"
                "return [s.querySelector('h2').innerText, i.complete, i.naturalWidth, i.getBoundingClientRect().width,"
                " s.querySelectorAll('table.key-numbers tbody tr').length, s.querySelector('figcaption').innerText];",
                target)
            title, loaded, natural, shown, rows, caption = info
            assert loaded and natural > 0 and rows >= 1, (target, info)
            assert "_" not in title and len(caption) > 50, (target, title)
            el = drv.find_element("id", target)
            drv.execute_script("arguments[0].scrollIntoView();", el)
            assert el.screenshot(str(shots / f"{target}.png"))
            assert (shots / f"{target}.png").stat().st_size > 10_000
        widths = drv.execute_script(
            "return Array.from(document.querySelectorAll('figure img')).map(i => i.getBoundingClientRect().width);")
        assert max(widths) - min(widths) < 1, widths  # every figure at the same width
        cells = drv.execute_script("return Array.from(document.querySelectorAll('td, th')).map(c => c.innerText);")
        assert max(len(c) for c in cells) <= 200, max(cells, key=len)
        overflow = drv.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
        assert overflow <= 0
        text = drv.execute_script("return document.body.innerText;")
        assert "not reproduced" in text  # the M_WS length 37.4 is reported honestly
        assert "eta" not in text.replace("Beta", "").replace("beta", "").split("Provenance")[0].replace(
            "eta_", "")  # maths in symbols, not ASCII names (code names like eta_E excepted)
    finally:
        drv.quit()
