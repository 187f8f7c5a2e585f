"""The dashboard in a real headless chromium (Debian's /usr/bin/chromium, driven by Playwright).

Skipped when chromium is missing, except under INCA_REQUIRE_BROWSER=1 (CI), where that fails.
Screenshots of every page go to tests/artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import catalog
from dashboard.lib import exports, params
from tests import dataset_facts as facts
from tests.conftest import PROJECT, Database

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = PROJECT / "tests" / "artifacts"
STARTUP_TIMEOUT_S = 60
PAGE_TIMEOUT_MS = 60_000

# The comparison as the page shows it: header texts, then each row's cells, a cell's lines joined by "\n".
READ_TABLE_JS = """
(selector) => {
  const table = document.querySelector(selector);
  const cell = (td) => {
    const lines = td.querySelectorAll('.inst');
    return lines.length ? Array.from(lines, (line) => line.textContent).join('\\n') : td.textContent;
  };
  return {
    header: Array.from(table.querySelectorAll('thead th'), (th) => th.textContent),
    rows: Array.from(table.querySelectorAll('tbody tr'), (tr) => Array.from(tr.querySelectorAll('td'), cell)),
  };
}
"""


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install -y chromium"
    if os.environ.get("INCA_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " (INCA_REQUIRE_BROWSER=1: browser tests must run)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_streamlit(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    return subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_healthy(process: subprocess.Popen[bytes], base: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}"
                               if process.stderr else "streamlit exited")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as answer:
                if answer.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer /_stcore/health within {timeout_s} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def app_url(loaded_db_session: Database) -> Iterator[str]:
    require_chromium()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_streamlit({**os.environ, **loaded_db_session.env()}, port)
    try:
        wait_healthy(process, base)
        yield base
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1800})
    try:
        yield context.new_page()
    finally:
        context.close()


def open_and_wait(page: Any, url: str, selector: str) -> None:
    """Streamlit's shell appears first: wait for our content, then for the script run to finish."""
    page.goto(url)
    page.wait_for_selector(selector, timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=PAGE_TIMEOUT_MS)


def screenshot(page: Any, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main container, so grow the viewport to fit it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight ?? 0")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 40, 8000))})
    page.wait_for_timeout(200)
    page.screenshot(path=str(ARTIFACTS / name))
    page.set_viewport_size(size)


def shown_table(page: Any) -> tuple[list[str], list[list[str]]]:
    found = page.evaluate(READ_TABLE_JS, "table.inca-compare")
    return found["header"], found["rows"]


def test_compare_page_shows_the_datasets_amounts(app_url: str, page: Any, loaded_db: Database) -> None:
    open_and_wait(page, app_url + "/", "table.inca-compare")
    header, rows = shown_table(page)
    keys, codes = [product.key for product in catalog.products()], list(params.DEFAULT_CODES)
    assert header == [*facts.HEAD, *(facts.label(key) for key in keys)]
    assert [row[0] for row in rows] == codes
    assert [row[2:] for row in rows] == facts.expected_rows(keys, codes)
    # spot checks against the card files: one confirmed, one unconfirmed, one missing, one multi-instance
    by_code = {row[0]: row for row in rows}
    column = {key: 2 + position for position, key in enumerate(keys)}
    assert facts.cards_for("samsung_health_v1", "A4200_1")[0].status == "CONFIRMED"
    assert by_code["A4200_1"][column["samsung_health_v1"]] == facts.cards_for("samsung_health_v1", "A4200_1")[0].value_text
    assert by_code["A4200_1"][column["hanwha_health_v1"]] == facts.UNCONFIRMED_TEXT
    assert by_code["A4101"][column["samsung_health_v1"]] == facts.NOT_AVAILABLE_TEXT
    assert len(facts.cards_for("samsung_health_v1", "A4210")) > 1
    assert by_code["A4210"][column["samsung_health_v1"]].split("\n") == facts.cell_lines("samsung_health_v1", "A4210")
    styles = page.evaluate("""() => {
        const td = document.querySelector('table.inca-compare td[data-status="NOT_AVAILABLE"] .inst');
        const grey = document.querySelector('table.inca-compare td[data-status="UNCONFIRMED"] .inst');
        return [getComputedStyle(td).textDecorationLine, getComputedStyle(grey).fontStyle];
    }""")
    assert styles == ["line-through", "italic"]
    assert page.locator('[data-testid="stExpander"] details[open]').count() == 0  # evidence collapsed
    with page.expect_download(timeout=PAGE_TIMEOUT_MS) as download:
        page.get_by_role("button", name="CSV", exact=True).click()  # not 조건 CSV
    data = Path(download.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    csv = exports.read_csv(data)  # the shown table plus evidence_check (issue 13)
    assert csv.columns[-1] == exports.EVIDENCE_CHECK
    assert csv.drop(columns=[exports.EVIDENCE_CHECK]).values.tolist() == rows
    screenshot(page, "compare.png")
    # 원문 is read and sent only when a coverage's button opens it (issue 16)
    assert page.locator(".inca-ev pre").count() == 0
    page.get_by_role("button", name="근거자료 (원문) 보기").first.click()
    page.wait_for_selector(".inca-ev pre", timeout=PAGE_TIMEOUT_MS)
    page.locator(".inca-ev").first.screenshot(path=str(ARTIFACTS / "compare_evidence.png"))
    shown = " ".join(page.locator(".inca-ev pre").first.inner_text().split())  # verbatim: tests/test_dashboard.py
    assert shown in {" ".join(text.split()) for key in keys for card in facts.cards_for(key, codes[0])
                     for text in facts.snippets_of(card.insurer, card.raw_name)}


def test_shared_url_opens_that_comparison(app_url: str, page: Any, loaded_db: Database) -> None:
    open_and_wait(page, app_url + "/?p=kb_health_v1,samsung_health_v1,lotte_health_v1&c=A4104_1,A4101", "table.inca-compare")
    header, rows = shown_table(page)
    keys, codes = ["kb_health_v1", "samsung_health_v1", "lotte_health_v1"], ["A4104_1", "A4101"]
    assert header == ["코드", "담보명", "KB손해보험", "삼성화재", "롯데손해보험"]
    assert [row[0] for row in rows] == codes
    assert [row[2:] for row in rows] == facts.expected_rows(keys, codes)
    chips = page.locator('[data-testid="stMultiSelect"]').first.locator(".react-aria-ComboBox [data-tag]")
    assert [chips.nth(i).get_attribute("aria-label") for i in range(chips.count())] == \
        ["KB손해보험", "삼성화재", "롯데손해보험"]
    assert "p=kb_health_v1%2Csamsung_health_v1%2Clotte_health_v1" in page.url or \
        "p=kb_health_v1,samsung_health_v1,lotte_health_v1" in page.url
    screenshot(page, "compare_shared_url.png")


def test_catalog_and_status_pages_render(app_url: str, page: Any, loaded_db: Database) -> None:
    known = sorted(coverage.code for coverage in catalog.coverages())
    codes: list[str] = []
    for number in range(1, len(known) + 1):  # one page of codes per view (INCA_CATALOG_PAGE_ROWS), by URL
        open_and_wait(page, app_url + f"/catalog?page={number}", "table.inca-catalog")
        codes += page.locator("table.inca-catalog tbody tr td.code").all_inner_texts()
        if len(codes) >= len(known):
            break
        page.goto("about:blank")  # the next URL opens as a new view, not a rerun of this one
    assert sorted(codes) == known
    screenshot(page, "catalog.png")
    open_and_wait(page, app_url + "/status", ".inca-badge")
    assert page.locator('.inca-badge[data-state="INTACT"]').count() == 1
    page.wait_for_selector('[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg',
                           timeout=PAGE_TIMEOUT_MS)
    screenshot(page, "status.png")


def test_conditions_section_renders(app_url: str, page: Any, loaded_db: Database) -> None:
    open_and_wait(page, app_url + "/", "table.inca-conditions")
    # the status widget may not have appeared yet when the first table arrives: wait for the section's
    # last table (one per default code) rather than trusting its absence
    page.wait_for_function("n => document.querySelectorAll('table.inca-conditions').length >= n",
                           arg=len(params.DEFAULT_CODES), timeout=PAGE_TIMEOUT_MS)
    tables = page.locator("table.inca-conditions")
    assert tables.count() == len(params.DEFAULT_CODES)
    header = page.evaluate("() => Array.from(document.querySelectorAll('table.inca-conditions')[0]"
                           ".querySelectorAll('thead th'), (th) => th.textContent)")
    products = [product.label for product in catalog.products()][:params.DEFAULT_PRODUCT_LIMIT]
    assert header == ["조건", *products]
    assert page.locator("table.inca-conditions .s-NOT_FOUND").count() > 0
    assert page.locator('[data-testid="stException"]').count() == 0
    tables.first.screenshot(path=str(ARTIFACTS / "compare_conditions.png"))


@pytest.mark.parametrize(("path", "selector"), [("/status", ".inca-badge"), ("/catalog", "table.inca-catalog")])
def test_any_page_works_as_the_first_one_opened(path: str, selector: str, loaded_db_session: Database,
                                                browser: Any) -> None:
    """An operator's bookmark on a freshly started server, with nothing but the checkout on disk
    (no PYTHONPATH: `dashboard` is importable only because the page itself makes it so)."""
    require_chromium()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    process = start_streamlit({**env, **loaded_db_session.env()}, port)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="ko-KR")
    try:
        wait_healthy(process, base)
        first = context.new_page()
        open_and_wait(first, base + path, selector)
        text = first.locator('[data-testid="stApp"]').inner_text()
        assert "ModuleNotFoundError" not in text and "Traceback" not in text
        assert first.locator('[data-testid="stException"]').count() == 0
    finally:
        context.close()
        stop(process)
