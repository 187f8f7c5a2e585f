"""Edges of issue 17: leftover scratch databases, control characters at the API, the compare page
when the database goes down after a good render, and rejected URL values echoed short."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

from core import db
from core.ops import cli
from tests.conftest import PROJECT, Database, PgServer

APP = str(PROJECT / "dashboard" / "app.py")
LEFTOVER = "inca_verify_0123456789"


def test_status_lists_a_leftover_scratch_database(loaded_db: Database, server: PgServer,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{LEFTOVER}"')  # what a killed verify-backup leaves
    try:
        assert cli.main(["status"]) == 0  # a warning, not a broken lock
        assert LEFTOVER in capsys.readouterr().out
        cli.main(["status", "--json"])
        text = capsys.readouterr().out
        assert f'"leftover_scratch_databases": [\n      "{LEFTOVER}"' in text
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        at.switch_page("views/status.py")
        at.run()
        assert not at.exception
        shown = "\n".join(str(getattr(e, "value", "")) for e in [*at.markdown, *at.warning, *at.error, *at.caption])
        assert LEFTOVER.replace("_", "\\_") in shown or LEFTOVER in shown
    finally:
        server.drop(LEFTOVER)
    cli.main(["status", "--json"])
    assert LEFTOVER not in capsys.readouterr().out


@pytest.mark.parametrize("body", [
    {"products": [{"insurer": "삼성\x00화재"}], "target_coverages": [{"coverage_code": "A4200_1"}]},
    {"products": [{"insurer": "삼성화재", "product_name": "x\x1by"}], "target_coverages": [{"coverage_code": "A4200_1"}]},
    {"products": [{"insurer": "삼성화재"}], "target_coverages": [{"coverage_code": "A4200\x00_1"}]},
    {"products": [{"insurer": "삼성화재\x7f"}], "target_coverages": [{"coverage_code": "A4200_1"}]},
])
def test_control_characters_in_compare_are_a_clear_422(body: dict[str, Any], loaded_db: Database) -> None:
    from api.server import app

    answer = TestClient(app).post("/compare", json=body)
    assert answer.status_code == 422, answer.text
    assert "control character" in answer.json()["detail"]


def test_compare_page_never_shows_intact_while_the_database_is_down(
        loaded_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception and any("잠금 INTACT" in caption.value for caption in at.caption)
    monkeypatch.setenv("DATABASE_URL", "postgresql://inca_reader@127.0.0.1:1/inca")  # a closed port
    db.dispose_all()
    at.run()  # the comparison itself is cached; the lock is not
    assert not at.exception
    assert at.error and "데이터베이스에 연결할 수 없습니다" in at.error[0].value
    assert not any("INTACT" in caption.value for caption in at.caption)
    assert not [element for element in at.html if "inca-compare" in element.value]


def test_a_rejected_url_value_is_echoed_short(loaded_db: Database) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"p": "x" * 10_000, "c": "A4200_1"})
    at.run()
    assert not at.exception
    warning = next(w.value for w in at.warning if "x" * 40 in w.value)
    assert "x" * 41 not in warning and "…" in warning and len(warning) < 1000


@pytest.mark.parametrize("raw", [b'{"products": [{"insurer": "\xff\xfe"}]}', b"[" * 5000 + b"]" * 5000],
                         ids=["invalid UTF-8", "deep nesting"])
def test_undecodable_bodies_get_the_documented_422(raw: bytes) -> None:
    from api.server import app

    answer = TestClient(app).post("/compare", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 422 and answer.json()["error"] == "malformed JSON", answer.text
