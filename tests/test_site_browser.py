"""The results site in a real browser: headless Chromium from Debian's packages, driven by Selenium through Debian's
chromedriver (tests/browser.py; nothing is downloaded). The pages open from disk (file://): they load without a
console error (a Content-Security-Policy violation is one), a K-curve draws one trace per method and its legend
switches them, a hover shows a point's runs, K, parameters, FLOPs and spreads, a table cell equals the record's
value and the table sorts, every link resolves, and a run named ``<script>alert(1)</script>`` is only text.
Without selenium or the browser these tests skip with the reason; tests/test_site.py checks the pages without one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import browser
from fakeruns import evidence_rows, site_sweeps
from test_site import XSS, fake_run

REASON = browser.find()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no headless browser: {REASON}")

LINKS = """return [].concat(
  Array.from(document.querySelectorAll('a[href], link[href]'), e => e.href),
  Array.from(document.querySelectorAll('img[src], script[src]'), e => e.src),
  Array.from(document.querySelectorAll('[data-href]'), e => new URL(e.getAttribute('data-href'), document.baseURI).href));"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from spatialprobe.report.site import build_site

    root = tmp_path_factory.mktemp("runs")
    sweeps = site_sweeps(root)
    fake_run(sweeps / "xss" / "k=0", name=XSS, reason='<img src=x onerror="window.__pwned=2">',
             config={"experiment_name": XSS, "name": XSS})
    fake_run(sweeps / "xss" / "k=1", name="shuffled", k=1, method="spatial_shuffle", test_top1=40.0,
             config={"experiment_name": XSS, "name": XSS + "-k1"})
    build_site([sweeps], root / "site")
    return root / "site"


@pytest.fixture(scope="module")
def driver():
    d = browser.start()
    yield d
    browser.stop(d)


def open_page(driver, path: Path) -> list[dict]:
    """Load ``path`` from disk; the console messages it logged."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.resolve().as_uri())
    for _ in range(100):
        if driver.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.05)
    return driver.get_log("browser")


def test_every_page_loads_without_a_console_error_and_runs_its_script(site, driver):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 30
    for path in pages:
        log = open_page(driver, path)
        errors = [m for m in log if m["level"] in ("SEVERE", "ERROR")]
        assert not errors, f"{path}: {errors}"
        assert driver.execute_script("return document.title"), path
        sortable = driver.execute_script("var th = document.querySelector('table.sortable th');"
                                         "return th === null ? null : th.tabIndex")
        assert sortable in (None, 0), path  # site.js ran (it makes the headers focusable)
        assert driver.execute_script("return JSON.parse(document.getElementById('tips').textContent).length >= 0")


def test_a_kcurve_has_one_trace_per_method_and_the_legend_switches_them(site, driver):
    open_page(driver, site / "e" / "demo_cifar10_kcurve" / "index.html")
    traces = driver.find_elements("css selector", "svg.kcurve g.trace")
    methods = sorted(t.get_attribute("data-method") for t in traces)
    recorded = sorted({json.loads(p.read_text())["method"] for p in (site.parent / "sweeps" / "demo_cifar10_kcurve").rglob(
        "result.json") if json.loads(p.read_text())["k"] > 0})
    assert methods == recorded == ["channel_shuffle", "spatial_shuffle"]
    assert len(driver.find_elements("css selector", "svg.kcurve g.baseline")) == 1
    spatial = next(t for t in traces if t.get_attribute("data-method") == "spatial_shuffle")
    assert spatial.is_displayed()
    button = driver.find_element("css selector", f'.legend .key[data-trace="{spatial.get_attribute("data-trace")}"]')
    button.click()
    assert not spatial.is_displayed() and button.get_attribute("aria-pressed") == "false"
    button.click()
    assert spatial.is_displayed() and button.get_attribute("aria-pressed") == "true"
    open_page(driver, site / "e" / "cpu_cifar10_paper_a" / "index.html")
    evidence_traces = driver.find_elements("css selector", "svg.kcurve g.trace")
    assert sorted(t.get_attribute("data-method") for t in evidence_traces) == [
        "channel_shuffle", "conv1x1", "gap_fc", "spatial_shuffle"]


def hover(driver, element) -> str:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element(element).perform()
    tip = driver.find_element("id", "tooltip")
    for _ in range(50):
        if tip.is_displayed():
            break
        time.sleep(0.05)
    assert tip.is_displayed()
    return tip.text


def test_hovering_a_point_shows_its_runs_k_params_flops_and_spreads(site, driver):
    open_page(driver, site / "e" / "demo_cifar10_kcurve" / "index.html")
    point = driver.find_element("css selector", 'svg.kcurve g.trace[data-method="spatial_shuffle"] circle.pt')
    text = hover(driver, point)
    for needle in ("K", "3 (23% of the units)", "params", "1,024,282", "FLOPs", "40,014,848",
                   "test_top1, mean over 3 seed(s)", "±", "vgg16-cifar10-spatial_shuffle-k3-s0"):
        assert needle in text, (needle, text)
    open_page(driver, site / "e" / "cpu_cifar10_paper_a" / "index.html")
    point = driver.find_element("css selector", 'svg.kcurve g.trace[data-method="spatial_shuffle"] circle.pt')
    assert "64.35 ± 0.28 over 20 passes" in hover(driver, point)  # the evaluation passes of that network
    point.click()  # a point opens its run
    assert "/r/" in driver.current_url and driver.find_element("tag name", "h1").text == (
        "vgg16-cifar10-spatial_shuffle-k3-s0")


def runs_cell(driver, link_text: str, column: str) -> str:
    headers = [h.text.strip() for h in driver.find_elements("xpath", "//h2[@id='runs']/following::table[1]//thead//th")]
    row = driver.find_element("xpath", f"//h2[@id='runs']/following::table[1]//tbody/tr[td/a[text()={json.dumps(link_text)}]]")
    return row.find_elements("tag name", "td")[headers.index(column)].text


def test_a_table_cell_equals_the_records_value_and_the_table_sorts(site, driver):
    open_page(driver, site / "e" / "cpu_cifar10_paper_a" / "index.html")
    records = [r for r in evidence_rows() if r["record"] == "train"]
    for rec in records:
        assert runs_cell(driver, rec["name"], "test_top1") == str(rec["test_top1"])
        assert runs_cell(driver, rec["name"], "params") == f"{int(rec['params']):,}"
    header = driver.find_element("xpath", "//h2[@id='runs']/following::table[1]//thead//th[text()='test_top1']")
    column = [h.text.strip() for h in driver.find_elements(
        "xpath", "//h2[@id='runs']/following::table[1]//thead//th")].index("test_top1")
    for order in ("ascending", "descending"):
        header.click()
        assert header.get_attribute("aria-sort") == order
        values = [float(r.find_elements("tag name", "td")[column].text) for r in driver.find_elements(
            "xpath", "//h2[@id='runs']/following::table[1]//tbody/tr")]
        assert values == sorted(values, reverse=order == "descending") and len(values) == len(records)


def test_every_link_resolves(site, driver):
    checked = 0
    for path in sorted(site.rglob("*.html")):
        open_page(driver, path)
        for url in driver.execute_script(LINKS):
            parts = urlsplit(url)
            if parts.scheme in ("http", "https"):
                continue  # the papers and W&B: links out, never fetched by a page
            assert parts.scheme == "file", url
            target = Path(unquote(parts.path))
            assert target.is_file() and site.resolve() in target.resolve().parents, f"{path}: {url}"
            if parts.fragment:
                assert f'id="{parts.fragment}"' in target.read_text(), f"{path}: {url}"
            checked += 1
        driver.execute_script("Array.from(document.images).forEach(i => { i.loading = 'eager'; i.scrollIntoView(); })")
        for _ in range(40):  # the gallery's images load lazily: in view, they load
            broken = driver.execute_script("return Array.from(document.images).filter(i => !i.complete || "
                                           "i.naturalWidth === 0).map(i => i.src)")
            if not broken:
                break
            time.sleep(0.05)
        assert not broken, f"{path}: {broken}"
    assert checked > 200
    open_page(driver, site / "index.html")  # and a click follows a relative link from disk
    driver.find_element("link text", "demo_cifar10_kcurve").click()
    assert driver.find_element("tag name", "h1").text == "demo_cifar10_kcurve"
    driver.find_element("link text", "vgg16-cifar10-none-k0-s1").click()
    assert driver.find_element("tag name", "h1").text == "vgg16-cifar10-none-k0-s1"


def test_a_run_named_like_a_script_renders_as_text(site, driver):
    from selenium.common.exceptions import NoAlertPresentException

    open_page(driver, site / "index.html")
    driver.find_element("link text", XSS).click()  # the experiment, named like a script too
    assert driver.find_element("tag name", "h1").text == XSS
    run_link = driver.find_element("link text", XSS)
    assert runs_cell(driver, XSS, "status") == "complete"
    point = driver.find_element("css selector", "svg.kcurve g.trace circle.pt")
    assert XSS + "-k1" in hover(driver, point)
    run_link.click()
    assert driver.find_element("tag name", "h1").text == XSS
    assert '<img src=x onerror="window.__pwned=2">' in driver.find_element("tag name", "main").text
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert driver.execute_script("return document.querySelectorAll('script').length") == 2
