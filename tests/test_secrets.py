"""No credential in any output, for every way a URL can carry one; malformed URLs refused in one line.

Every output an operator or user sees is checked: `status` text and `--json`, a backup error, the
API's /health and /status and its log, and the dashboard (AppTest). The embedded server trusts local
connections, so a URL with a password still reaches the real loaded database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL
from streamlit.testing.v1 import AppTest

from core import config, db
from core.errors import ConfigError
from core.ops import cli
from tests.conftest import PROJECT, Database

SECRET = "Zq7SecretNeverShown42"
APP = str(PROJECT / "dashboard" / "app.py")

#: ways a URL carries a credential (applied to a real reader URL)
CARRIERS: dict[str, Callable[[URL], URL]] = {
    "userinfo password": lambda url: url.set(password=SECRET),
    "?password=": lambda url: url.update_query_dict({"password": SECRET}),
    "?sslpassword=": lambda url: url.update_query_dict({"sslpassword": SECRET}),
    "password twice": lambda url: url.set(password=SECRET).update_query_dict({"password": SECRET}),
}
DOWN = "postgresql://inca_reader{auth}@127.0.0.1:1/inca{query}"
DOWN_FORMS = {
    "userinfo password": DOWN.format(auth=f":{SECRET}", query=""),
    "?password=": DOWN.format(auth="", query=f"?password={SECRET}"),
    "?sslpassword=": DOWN.format(auth="", query=f"?sslmode=disable&sslpassword={SECRET}&passfile=/etc/inca/pgpass"),
}
MALFORMED = {
    "unencoded @ in the password": (f"postgresql://inca_reader:{SECRET}@x@127.0.0.1:5432/inca", "more than one '@'"),
    "non-numeric port": (f"postgresql://inca_reader:{SECRET}@127.0.0.1:54x2/inca", "invalid port"),
    "port out of range": (f"postgresql://inca_reader:{SECRET}@127.0.0.1:99999/inca", "invalid port"),
    "unknown scheme": (f"mysql://inca_reader:{SECRET}@127.0.0.1:3306/inca", "only postgresql://"),
}


def _point(monkeypatch: pytest.MonkeyPatch, reader: str, admin: str | None = None) -> None:
    monkeypatch.setenv("DATABASE_URL", reader)
    if admin is None:
        monkeypatch.delenv("INCA_ADMIN_URL", raising=False)
    else:
        monkeypatch.setenv("INCA_ADMIN_URL", admin)
    db.dispose_all()


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out + out.err


def _page_text(at: AppTest) -> str:
    """Everything the page tree holds (every element's protobuf, html and markdown included)."""
    def walk(node: Any) -> Iterator[Any]:
        for child in getattr(node, "children", {}).values():
            yield child
            yield from walk(child)
    return "\n".join(str(getattr(element, "proto", "")) for element in walk(at.main))


def _dashboard(page: str | None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [exception.value for exception in at.exception]
    return at


def _api(caplog: pytest.LogCaptureFixture) -> tuple[int, str, int, str, str]:
    from api.server import app

    api_log = logging.getLogger("uvicorn.error")  # the API's logger (uvicorn may stop its propagation)
    api_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="uvicorn.error"), TestClient(app) as client:
            health, status = client.get("/health"), client.get("/status")
    finally:
        api_log.removeHandler(caplog.handler)
    return health.status_code, health.text, status.status_code, status.text, caplog.text


# --- the mask itself ---------------------------------------------------------------------------------

@pytest.mark.parametrize("form", DOWN_FORMS)
def test_mask_hides_every_credential_and_keeps_the_rest(form: str) -> None:
    masked = config.mask(config.parse_database_url(DOWN_FORMS[form], "DATABASE_URL"))
    assert SECRET not in masked and "***" in masked and "127.0.0.1:1/inca" in masked
    if "passfile" in DOWN_FORMS[form]:
        assert "pgpass" in masked  # a path is no secret


@pytest.mark.parametrize("form", MALFORMED)
def test_malformed_url_is_one_config_error_line_without_the_secret(form: str) -> None:
    url, why = MALFORMED[form]
    with pytest.raises(ConfigError, match=why) as error:
        config.parse_database_url(url, "DATABASE_URL")
    line = str(error.value)
    assert "\n" not in line and SECRET not in line and "DATABASE_URL" in line
    assert config.mask(url) == "<unparseable URL>"


# --- a reachable database, the secret in each place ---------------------------------------------------

@pytest.mark.parametrize("form", CARRIERS)
def test_reachable_database_outputs_never_show_the_secret(
        form: str, loaded_db: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    reader = CARRIERS[form](loaded_db.reader).render_as_string(hide_password=False)
    assert SECRET in reader
    _point(monkeypatch, reader, loaded_db.admin.render_as_string(hide_password=False))
    code, text = _cli(["status"], capsys)
    assert code == 0, text
    assert "reachable" in text and "***" in text and SECRET not in text
    code, text = _cli(["status", "--json"], capsys)
    assert code == 0 and '"url"' in text and SECRET not in text
    health_code, health, status_code, status, log = _api(caplog)
    assert (health_code, status_code) == (200, 200), health
    assert "***" in status and SECRET not in health + status
    assert "reading from" in log and SECRET not in log
    at = _dashboard("views/status.py")
    page = _page_text(at)
    assert "***" in page and SECRET not in page


# --- an unreachable database: the error lines --------------------------------------------------------

@pytest.mark.parametrize("form", DOWN_FORMS)
def test_unreachable_database_errors_never_show_the_secret(
        form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    _point(monkeypatch, DOWN_FORMS[form], DOWN_FORMS[form].replace("inca_reader", "inca"))
    monkeypatch.setenv("INCA_BACKUP_DIR", str(tmp_path / "backups"))
    code, text = _cli(["status"], capsys)
    assert code == 1 and "UNREACHABLE" in text and "127.0.0.1:1" in text and SECRET not in text
    code, text = _cli(["status", "--json"], capsys)
    assert code == 1 and '"reachable": false' in text and SECRET not in text
    code, text = _cli(["backup"], capsys)
    assert code != 0 and "127.0.0.1:1" in text and SECRET not in text, text
    health_code, health, status_code, status, log = _api(caplog)
    assert (health_code, status_code) == (503, 503)
    assert "127.0.0.1:1" in health and SECRET not in health + status + log
    for page in (None, "views/status.py"):
        at = _dashboard(page)
        assert at.error and SECRET not in _page_text(at)


# --- a malformed URL: one line everywhere ------------------------------------------------------------

@pytest.mark.parametrize("form", MALFORMED)
def test_malformed_url_is_refused_in_one_line_everywhere(
        form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    url, why = MALFORMED[form]
    _point(monkeypatch, url)
    monkeypatch.setenv("INCA_BACKUP_DIR", str(tmp_path / "backups"))
    for args in (["status"], ["status", "--json"], ["backup"]):
        code, text = _cli(args, capsys)
        assert code == 2, (args, text)
        assert text.strip().count("\n") == 0 and why in text and SECRET not in text and "Traceback" not in text
    # uvicorn runs the startup check: the API refuses to start with the line (real uvicorn: tests/test_api.py)
    from api.server import app, startup_check

    with pytest.raises(ConfigError, match=why) as refused:
        startup_check()
    assert SECRET not in str(refused.value)
    # served without the startup check (--lifespan off), every request answers 503 with the line
    client = TestClient(app)
    health, status = client.get("/health"), client.get("/status")
    assert health.status_code == 503 and why in health.json()["detail"]
    assert status.status_code == 503 and SECRET not in health.text + status.text + caplog.text
    assert "Traceback" not in health.text + status.text
    for page in (None, "views/catalog.py", "views/status.py"):
        at = _dashboard(page)
        # the error box with the line (markdown-escaped), not a traceback
        assert at.error and "DATABASE\\_URL" in at.error[0].value
        assert SECRET not in _page_text(at)
