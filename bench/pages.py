"""What each dashboard page really sends (issue 16): websocket bytes per rerun and the HTML it shows.

    python bench/pages.py --size 1m [--project PATH] [--json FILE]    # one size, in a real browser
    python bench/run.py --sizes real,1m                               # also runs it (child "pages")

Against the bench database of the size (bench/market.py's bench server, never the project database):
1. browser: the real `streamlit run dashboard/app.py` (from --project: another checkout, to measure
   "before") and Debian's chromium through Playwright. Per page (compare with its default view and with
   a seeded 10 x 50 selection in the URL, catalog, status): the websocket bytes the browser received for
   the first view (a new session) and for one interaction's rerun (a run ends with Streamlit's
   `script_finished` message), and the UTF-8 size of the HTML in the page's st.html / markdown elements
   after each, by part (the table class). Streamlit sends a large message the browser already holds as
   a reference (`ref_hash`), so a rerun that repeats a table costs less on the wire than its HTML.
   Interactions: compare opens one coverage's 원문, catalog types a search and then goes to page 2,
   status presses 지금 다시 검증.
2. AppTest (in-process, the same code): rerun medians of the catalog page (a search typed, then the
   page number) and of the status page (a plain rerun), what `bench/run.py` reports next to the compare
   page's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # run as a script: make `core`, `bench` and `tests` importable
    sys.path.insert(0, str(PROJECT_ROOT))

#: the issue's bound on what one rerun of any page may send at 5 M facts
PAGE_BUDGET_BYTES = 500_000
WAIT_MS = 180_000
URL_WAIT_MS = 30_000
#: a rerun is over when the script finished and no frame arrived for this long
SETTLE_S = 0.6
# UTF-8 bytes of the HTML inside each st.html and markdown element (what the page shows, tables
# included), with the start of its markup (to tell the parts apart)
HTML_PARTS_JS = """
() => {
  const encoder = new TextEncoder();
  return Array.from(document.querySelectorAll('[data-testid="stHtml"], [data-testid="stMarkdownContainer"]'),
                    (element) => [element.innerHTML.slice(0, 300), encoder.encode(element.innerHTML).length]);
}
"""
_PART = re.compile(r'class="([^"]*)"')
_LAYOUT_CLASSES = {"inca-wrap", "inca-table", "inca-fixed"}


def _part(markup: str) -> str:
    """Which part of a page an element is: its first inca-* class that is not layout (else markdown/html)."""
    for classes in _PART.findall(markup):
        for name in classes.split():
            if name.startswith("inca-") and name not in _LAYOUT_CLASSES:
                return name
    return "style" if markup.lstrip().startswith("<style") else "markdown and other html"


def html_parts(page: Any) -> dict[str, int]:
    parts: dict[str, int] = {}
    for markup, size in page.evaluate(HTML_PARTS_JS):
        parts[_part(markup)] = parts.get(_part(markup), 0) + int(size)
    return dict(sorted(parts.items(), key=lambda item: -item[1]))


class Frames:
    """Every websocket frame the page received, counted as it arrives and read as Streamlit's ForwardMsg:
    a run ends with its `script_finished` message, so each rerun's bytes are counted exactly. Streamlit
    sends a large message the browser already holds as a `ref_hash` only; those are counted apart."""

    def __init__(self) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self._message = ForwardMsg
        self.received = 0
        self.finished = 0
        self.references = 0
        self.last_at = time.monotonic()

    def attach(self, page: Any) -> None:
        page.on("websocket", lambda socket: socket.on("framereceived", self._count))

    def _count(self, payload: str | bytes) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self.received += len(data)
        self.last_at = time.monotonic()
        message = self._message()
        try:
            message.ParseFromString(data)
        except Exception:  # not a ForwardMsg (another version's framing): bytes still counted
            return
        kind = message.WhichOneof("type")
        if kind == "ref_hash":
            self.references += 1
        elif kind == "script_finished" and message.script_finished != message.FINISHED_EARLY_FOR_RERUN:
            self.finished += 1


def _settle(page: Any, frames: Frames, finished: int) -> None:
    """Wait until a run finished after `finished` runs, then until no frame came for SETTLE_S."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while frames.finished == finished and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    while time.monotonic() - frames.last_at < SETTLE_S:
        page.wait_for_timeout(100)


def _measure(page: Any, frames: Frames, action: Callable[[], None]) -> dict[str, Any]:
    before, finished, references = frames.received, frames.finished, frames.references
    action()
    _settle(page, frames, finished)
    parts = html_parts(page)
    return {"websocket_bytes": frames.received - before, "runs": frames.finished - finished,
            "cached_messages_by_reference": frames.references - references,
            "html_bytes": sum(parts.values()), "html_parts": parts}


def _open(page: Any, url: str, selector: str) -> Callable[[], None]:
    def action() -> None:
        page.goto(url)
        page.wait_for_selector(selector, timeout=WAIT_MS)
    return action


def _click(page: Any, role_name: str, shown: str | None = None) -> Callable[[], None]:
    """Click a button; with `shown`, the rerun is done once that selector is in the page."""
    def action() -> None:
        page.get_by_role("button", name=role_name).first.click()
        if shown:
            page.wait_for_selector(shown, timeout=WAIT_MS)
    return action


def _wait_for_url(page: Any, pattern: str) -> None:
    """The rerun wrote its view into the URL; a page without URL state (--project before issue 16) does
    not, and is then measured by the settle alone."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_url(pattern, timeout=URL_WAIT_MS)


def _search(page: Any, text: str) -> Callable[[], None]:
    def action() -> None:
        box = page.get_by_label("검색", exact=True)
        box.fill(text)
        box.press("Enter")
        _wait_for_url(page, "**q=**")  # the page wrote the search into the URL: it ran
    return action


def _next_page(page: Any) -> Callable[[], None]:
    def action() -> None:
        page.locator('[data-testid="stNumberInputStepUp"]').first.click()
        _wait_for_url(page, "**page=2**")
    return action


def _selection_url(seed: int) -> str:
    from core import catalog

    rng = random.Random(seed)
    products = [product.key for product in catalog.products()]
    codes = [coverage.code for coverage in catalog.coverages()]
    chosen = rng.sample(products, min(10, len(products)))
    wanted = rng.sample(codes, min(50, len(codes)))
    return f"/?p={','.join(chosen)}&c={','.join(wanted)}"


def browser_pages(project: Path, seed: int = 8) -> dict[str, Any]:
    """Per page: first view and each interaction's rerun, bytes received and HTML shown."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, stop, wait_healthy

    if not CHROMIUM.exists():
        return {"notes": [f"{CHROMIUM} missing: browser page sizes skipped"]}
    plan: list[tuple[str, str, str, list[tuple[str, Callable[[Any], Callable[[], None]]]]]] = [
        ("compare (default view)", "/", "table.inca-compare",
         [("open one coverage's 원문", lambda page: _click(page, "근거자료 (원문) 보기", ".inca-ev pre"))]),
        ("compare (10 x 50 by URL)", _selection_url(seed), "table.inca-compare",
         [("open one coverage's 원문", lambda page: _click(page, "근거자료 (원문) 보기", ".inca-ev pre"))]),
        ("catalog", "/catalog", "table.inca-catalog",
         [("search 암", lambda page: _search(page, "암")), ("next page", _next_page)]),
        ("status", "/status", ".inca-badge", [("지금 다시 검증", lambda page: _click(page, "지금 다시 검증"))]),
    ]
    results: dict[str, Any] = {"project": str(project), "pages": {}, "notes": []}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(project)}
    process = _start_in(project, env, port)
    try:
        wait_healthy(process, base)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                # one untimed view per page first: the server's caches (catalogs, index) warm, as in use
                for _, path, selector, _ in plan:
                    context = browser.new_context(viewport={"width": 1600, "height": 1200})
                    page = context.new_page()
                    page.goto(base + path)
                    page.wait_for_selector(selector, timeout=WAIT_MS)
                    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=WAIT_MS)
                    context.close()
                for name, path, selector, interactions in plan:
                    context = browser.new_context(viewport={"width": 1600, "height": 1200})
                    page = context.new_page()
                    frames = Frames()
                    frames.attach(page)
                    found = {"first view": _measure(page, frames, _open(page, base + path, selector))}
                    for label, make in interactions:
                        try:
                            found[label] = _measure(page, frames, make(page))
                        except Exception as error:  # an older page (--project) may lack the control
                            results["notes"].append(f"{name}: {label} not measured ({type(error).__name__})")
                    results["pages"][name] = found
                    context.close()
            finally:
                browser.close()
    finally:
        stop(process)
    return results


def _start_in(project: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """`streamlit run dashboard/app.py` of `project` (tests/test_browser.py's flags)."""
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    return subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _summary(seconds: list[float]) -> dict[str, float]:
    from bench.run import summary

    return summary(seconds)


def apptest_reruns(reruns: int) -> dict[str, Any]:
    """AppTest rerun times of the catalog page (search typed, page number changed) and the status page."""
    from streamlit.testing.v1 import AppTest

    app = str(PROJECT_ROOT / "dashboard" / "app.py")

    def check(at: Any) -> None:
        if at.exception:
            raise SystemExit(f"dashboard raised: {[exception.value for exception in at.exception]}")

    at = AppTest.from_file(app, default_timeout=300)
    at.run()
    at.switch_page("views/catalog.py")
    first = _timed(at.run)
    check(at)
    queries = ("암", "뇌", "상해", "수술", "입원", "")
    searched = []
    for index in range(reruns):
        at.text_input(key="catalog_search").input(queries[index % len(queries)])
        searched.append(_timed(at.run))
    check(at)
    at.text_input(key="catalog_search").input("")
    at.run()
    paged = []
    for index in range(reruns):
        widget = at.number_input(key="catalog_page")
        widget.set_value(1 + index % 3)
        paged.append(_timed(at.run))
    check(at)
    status = AppTest.from_file(app, default_timeout=300)
    status.run()
    status.switch_page("views/status.py")
    status_first = _timed(status.run)
    check(status)
    status_reruns = [_timed(status.run) for _ in range(reruns)]
    check(status)
    return {"catalog first run (AppTest)": _summary([first]),
            "catalog rerun after a search": _summary(searched),
            "catalog rerun after a page change": _summary(paged),
            "status first run (AppTest)": _summary([status_first]),
            "status rerun": _summary(status_reruns)}


def render_rows(size: str, found: dict[str, Any]) -> list[str]:
    """Markdown rows: bytes per page and rerun, against the issue's budget."""
    lines = []
    for page, measured in found.get("browser", {}).get("pages", {}).items():
        for step, sizes in measured.items():
            sent = sizes["websocket_bytes"]
            verdict = "within" if sent <= PAGE_BUDGET_BYTES else "OVER"
            largest = ", ".join(f"{part} {count:,}" for part, count in list(sizes.get("html_parts", {}).items())[:3])
            lines.append(f"| {page} | {size} | {step} | {sent:,} | {sizes['html_bytes']:,} | {verdict} | {largest} |")
    for note in found.get("browser", {}).get("notes", []):
        lines.append(f"| note | {size} | {note} | | | | |")
    return lines


TABLE_HEAD = ["| page | size | step | websocket bytes received | HTML bytes shown | 500 KB budget | largest parts (HTML bytes) |",
              "| --- | --- | --- | ---: | ---: | --- | --- |"]


def measure(reruns: int, seed: int, project: Path = PROJECT_ROOT, browser: bool = True) -> dict[str, Any]:
    found: dict[str, Any] = {"apptest": apptest_reruns(reruns)}
    if browser:
        found["browser"] = browser_pages(project, seed)
    return found


def main(argv: list[str] | None = None) -> int:
    from bench.market import REAL, SHAPES, bench_database, bench_server

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=[*sorted(SHAPES), REAL], required=True)
    parser.add_argument("--database", help="bench database name (default inca_bench_<size>)")
    parser.add_argument("--project", type=Path, default=PROJECT_ROOT,
                        help="checkout whose dashboard the browser runs (default this one)")
    parser.add_argument("--reruns", type=int, default=15)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--no-apptest", action="store_true", help="browser only")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    server = bench_server()
    database = args.database or bench_database(args.size)
    if not server.exists(database):
        raise SystemExit(f"{database} does not exist: python bench/market.py --size {args.size} first")
    server.point_env_at(database)
    found: dict[str, Any] = {}
    if not args.no_apptest:
        found["apptest"] = apptest_reruns(args.reruns)
    found["browser"] = browser_pages(args.project.resolve(), args.seed)
    from bench.run import noise_probe

    found["noise"] = noise_probe()
    found["load_average"] = [round(value, 2) for value in os.getloadavg()]
    lines = [f"noise probe median {found['noise']['median']:.1f} ms (CV {found['noise']['cv_percent']:.1f} %), "
             f"load average {found['load_average']}", "", *TABLE_HEAD, *render_rows(args.size, found)]
    for name, stats in found.get("apptest", {}).items():
        lines.append(f"| {name} | {args.size} | AppTest median {stats['median']:.1f} ms (n {int(stats['n'])}, "
                     f"p95 {stats['p95']:.1f}) | | | | |")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(found, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
