"""Dashboard timings: navigation -> rendered comparison table in a real browser, and one AppTest rerun.

    python bench/dashboard_bench.py [--runs 5] [--reruns 15]

Uses the configured database (DATABASE_URL) or the embedded one (loaded first if needed, so the
first-start load is not timed). Browser numbers need Debian's /usr/bin/chromium.

- browser cold: a new `streamlit run` process per run (imports, first connections, empty caches),
  time from page.goto to the comparison table being in the DOM and the script run finished.
- browser warm: one server (caches warm), a new session per run: in a new browser profile (Streamlit's
  static files downloaded again) and in a returning browser (static files from its HTTP cache).
- AppTest rerun: Python time of `at.run()` after the product selection changed, in-process;
  "new selection" misses the comparison cache, "repeated selection" hits it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tests.test_browser import (  # noqa: E402  (project root must be on sys.path first)
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    open_and_wait,
    start_streamlit,
    stop,
    wait_healthy,
)

APP = str(PROJECT / "dashboard" / "app.py")


def ensure_loaded() -> None:
    from core import db
    from core.ops import loader, migrate

    if not db.connections().embedded:
        return
    with db.read() as conn:
        if migrate.applied_version(conn) > 0 and loader.loaded_run(conn) is not None:
            return
    print(loader.load().message, file=sys.stderr)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def browser_timings(runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import BrowserContext, sync_playwright

    cold: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)

        def load_in(context: BrowserContext, base: str) -> float:
            page = context.new_page()  # a new page is a new Streamlit session
            try:
                return timed(lambda: open_and_wait(page, base + "/", "table.inca-compare"))
            finally:
                page.close()

        def load_once(base: str) -> float:
            context = browser.new_context(viewport={"width": 1600, "height": 1200})
            try:
                return load_in(context, base)
            finally:
                context.close()

        try:
            for _ in range(runs):
                port = free_port()
                process = start_streamlit(dict(os.environ), port)
                try:
                    wait_healthy(process, f"http://127.0.0.1:{port}")
                    cold.append(load_once(f"http://127.0.0.1:{port}"))
                finally:
                    stop(process)
            port = free_port()
            process = start_streamlit(dict(os.environ), port)
            try:
                wait_healthy(process, f"http://127.0.0.1:{port}")
                base = f"http://127.0.0.1:{port}"
                load_once(base)  # prime the server's caches
                fresh_browser = [load_once(base) for _ in range(runs)]
                returning = browser.new_context(viewport={"width": 1600, "height": 1200})
                load_in(returning, base)  # prime the browser's HTTP cache
                cached_browser = [load_in(returning, base) for _ in range(runs)]
                returning.close()
            finally:
                stop(process)
        finally:
            browser.close()
    return {"cold server": cold, "warm server, new browser profile": fresh_browser,
            "warm server, returning browser (cached static files)": cached_browser}


def apptest_timings(reruns: int) -> tuple[list[float], list[float]]:
    from streamlit.testing.v1 import AppTest

    from core import catalog

    keys = [product.key for product in catalog.products()]
    # Distinct column orders (rotations, then reversed rotations): each one misses the comparison cache.
    orders = [keys[i:] + keys[:i] for i in range(len(keys))]
    orders += [list(reversed(order)) for order in orders]
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    fresh: list[float] = []
    for order in (orders * (reruns // len(orders) + 1))[:reruns]:
        at.multiselect(key="sel_products").set_value(order[:3])
        fresh.append(timed(at.run))
    repeated: list[float] = []
    for i in range(reruns):
        at.multiselect(key="sel_products").set_value(keys[:3] if i % 2 else keys[3:6])
        repeated.append(timed(at.run))
    assert not at.exception, [exception.value for exception in at.exception]
    return fresh, repeated


def row(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name} | — | — | — | 0 |"
    return (f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} | {len(values)} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="browser navigations per mode")
    parser.add_argument("--reruns", type=int, default=15, help="AppTest reruns per mode")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    ensure_loaded()
    lines = ["| measurement | median s | min s | max s | n |", "| --- | ---: | ---: | ---: | ---: |"]
    if CHROMIUM.exists():
        lines += [row(f"browser: navigation → table, {mode}", values) for mode, values in browser_timings(args.runs).items()]
    else:
        print(f"{CHROMIUM} missing: browser timings skipped", file=sys.stderr)
    fresh, repeated = apptest_timings(args.reruns)
    lines += [row("AppTest rerun after a selection change (new selection)", fresh),
              row("AppTest rerun after a selection change (repeated selection)", repeated)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
