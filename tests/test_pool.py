"""The connection pool: a connection the server dropped is replaced without a user-visible error, and a
connection just used is not pinged again (core.db._ping_when_idle)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from core import db
from tests.conftest import Database, PgServer


@pytest.fixture
def pings(loaded_db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Engine, list[float]]]:
    """The reader engine and the times its dialect pinged (the real ping still runs)."""
    engine = db.reader_engine()
    seen: list[float] = []
    real = engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        seen.append(time.monotonic())
        return real(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    yield engine, seen


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_back_to_back_reads_reuse_the_connection_without_a_ping(pings: tuple[Engine, list[float]]) -> None:
    engine, seen = pings
    first = _backend_pid(engine)  # a new connection: just proven by connecting
    assert [_backend_pid(engine) for _ in range(5)] == [first] * 5
    assert seen == []


def test_an_idle_connection_is_pinged_before_use(pings: tuple[Engine, list[float]]) -> None:
    engine, seen = pings
    first = _backend_pid(engine)
    time.sleep(db.PING_AFTER_IDLE_S + 0.1)
    assert _backend_pid(engine) == first
    assert len(seen) == 1


def test_a_connection_the_server_dropped_is_replaced_at_once(pings: tuple[Engine, list[float]], server: PgServer,
                                                              loaded_db: Database) -> None:
    engine, seen = pings
    first = _backend_pid(engine)
    with psycopg.connect(server.conninfo(), autocommit=True) as admin:
        # as a restart or an operator does; wait (5 s at most) until the backend is gone, as a restarted
        # server's old backends are before it accepts connections again
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first,)).fetchone() == (True,)
    # well inside the idle window: only the socket says the server hung up
    second = _backend_pid(engine)
    assert second != first
    assert len(seen) == 1
