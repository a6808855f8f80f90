"""`hub report --html FILE`: one self-contained page of Plotly plots from a store filled by
`hub run`, opened in a real headless browser (Debian's chromium + chromedriver, driven by
Selenium): it loads with no console errors and every plot renders."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from config.settings import ClickHouseSettings
from connectors.clickhouse import connect
from tests.helpers import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# CI (.ci/run) installs the browser and sets this: there a missing browser fails, never skips.
BROWSER_REQUIRED = os.environ.get("HUB_TEST_REQUIRE_BROWSER") == "1"


def hub(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=dict(os.environ))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    store = f"chdb://{tmp / 'store'}"
    r = hub("run", "--events", "30000", "--rate", "20", "--clickhouse", store)
    assert r.returncode == 0, r.stderr
    with closing(connect(ClickHouseSettings(dsn=store))) as client:  # the generator's series are calm: mark two
        start = client.query("SELECT toUnixTimestamp(max(window_start)) FROM metrics_1m").result_rows[0][0] * 1000
        client.insert("anomalies", [[f"a{i}", "latency_ms", "gpt-4o", "", "", start - i * 300_000, 60_000, "spike", 0.9,
                                     800.0, 50.0, 4000.0, "mad", "high", {}] for i in range(2)],
                      column_names=["id", "metric", "model", "endpoint", "team", "window_start", "window_ms",
                                    "anomaly_type", "score", "expected", "spread", "observed", "detector", "severity",
                                    "tags"])
    out = tmp / "report.html"
    r = hub("report", "--clickhouse", store, "--html", str(out))
    assert r.returncode == 0 and f"wrote {out}" in r.stderr, r.stderr
    return out


def test_the_report_is_one_self_contained_file(report: Path) -> None:
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"<script[^>]+src=", page), "plotly.js must be inline: the page opens offline"
    assert page.count("plotly.js v") <= 2  # the library once, not per plot
    for title in ("Latency p50", "Error rate per model", "Tokens per model",
                  "Cost per day and model", "Cost per day and team", "latency_ms of gpt-4o: anomalies marked",
                  "<th>pattern</th>", "Incident "):
        assert title in page, title


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER or BROWSER_REQUIRED),
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
def test_the_report_renders_every_plot_in_a_headless_browser_without_console_errors(report: Path) -> None:
    assert CHROMIUM and CHROMEDRIVER, ("HUB_TEST_REQUIRE_BROWSER=1 but chromium or chromedriver is not on PATH "
                                       "(apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(report.as_uri())
        count = "return document.querySelectorAll('.plotly-graph-div').length"
        drawn = ("return Array.from(document.querySelectorAll('.plotly-graph-div'))"
                 ".filter(d => d._fullLayout && d.querySelector('.main-svg') && d.data.length > 0).length")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and driver.execute_script(drawn) < driver.execute_script(count):
            time.sleep(0.2)  # polling interval, bounded by the deadline
        plots = driver.execute_script(count)
        assert plots >= 9 and driver.execute_script(drawn) == plots
        titles = driver.execute_script("return Array.from(document.querySelectorAll('.gtitle')).map(t => t.textContent)")
        assert any(t.startswith("Latency p50") for t in titles) and any("anomalies marked" in t for t in titles)
        marked = driver.execute_script(
            "return Array.from(document.querySelectorAll('.plotly-graph-div')).filter(d => d.data.some("
            "t => t.name === 'anomaly' && t.x.length === 2)).length")
        assert marked == 1
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


def test_an_empty_store_gives_a_page_and_a_bad_path_one_line(tmp_path: Path) -> None:
    store = f"chdb://{tmp_path / 'store'}"
    assert hub("migrate", "--clickhouse", store).returncode == 0
    r = hub("report", "--clickhouse", store, "--html", str(tmp_path / "empty.html"))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "empty.html").read_text()
    assert "no anomalies" in page and "no incidents" in page and "nothing to plot" in page
    r = hub("report", "--clickhouse", store, "--html", str(tmp_path / "missing" / "r.html"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "does not exist" in r.stderr
