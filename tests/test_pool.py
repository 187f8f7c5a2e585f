"""The connection pool: a connection the server dropped is replaced without a user-visible error, and a
connection just used is not pinged again (core.db._ping_when_idle)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from core import db
from core.errors import SchemaMissing
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


def test_a_single_statement_read_runs_outside_a_transaction_and_returns_the_connection_as_it_came(
        loaded_db: Database) -> None:
    """db.read_statement() (evidence of one coverage) runs without BEGIN; the pooled connection goes back
    to transactions, also after a failing statement, so the next compare() still reads one snapshot."""
    engine = db.reader_engine()
    with db.read_statement() as driver:
        assert driver.autocommit
        assert driver.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid() "
                              "AND backend_xid IS NULL AND xact_start = query_start").fetchone() == (1,)
        assert driver.execute("SHOW transaction_read_only").fetchone() == ("on",)
        pid = driver.info.backend_pid
    with pytest.raises(SchemaMissing), db.read_statement() as driver:  # (translated, as for any read)
        driver.execute("SELECT * FROM no_such_table")
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert not driver.autocommit
        assert driver.info.backend_pid == pid  # the same pooled connection, back in transaction mode
        conn.execute(text("SELECT 1"))
        assert driver.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
