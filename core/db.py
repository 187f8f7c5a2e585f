"""Engines for reading and administering, and the translation of driver errors into one clear line."""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, ProgrammingError

from core import config, embedded
from core.config import Connections
from core.errors import ConfigError, DatabaseUnavailable, IncaError, SchemaMissing


def connections() -> Connections:
    """The configured URLs, or the embedded server's (started on demand)."""
    configured = config.configured_urls()
    if configured is not None:
        reader, admin = configured
        return Connections(reader=reader, admin=admin, embedded=False)
    server = embedded.start(config.data_dir() / "pgdata")
    return Connections(reader=server.url(embedded.READER_ROLE), admin=server.url(embedded.ADMIN_ROLE), embedded=True)


def _reader_options() -> str:
    timeout = config.settings().statement_timeout_ms
    # Read-only by default even if the role itself was not configured so (belt and braces).
    return f"-c default_transaction_read_only=on -c statement_timeout={timeout}"


_engines: dict[tuple[str, bool], Engine] = {}


def _engine(url: URL, read_only: bool) -> Engine:
    key = (url.render_as_string(hide_password=False), read_only)
    if key in _engines:
        return _engines[key]
    connect_args: dict[str, object] = {"connect_timeout": 5, "application_name": "inca-rag-scope"}
    if read_only:
        connect_args["options"] = _reader_options()
    engine = create_engine(url, pool_size=5, max_overflow=5, connect_args=connect_args)
    _ping_when_idle(engine)
    _engines[key] = engine
    return engine


#: a pooled connection back in use within this many seconds is not pinged first (HikariCP's default window)
PING_AFTER_IDLE_S = 0.5
_RETURNED_AT = "inca_returned_at"


def _has_news(dbapi_connection: Any) -> bool:
    """Whether the server wrote to an idle connection: a terminated backend or a stopping server sends its
    FATAL message and closes the socket, which makes it readable; a healthy idle one has nothing to say.
    One poll of the socket, no round trip."""
    try:
        readable, _, _ = select.select([dbapi_connection.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):  # no socket any more: certainly not usable as it is
        return True
    return bool(readable)


def _ping_when_idle(engine: Engine) -> None:
    """A restarted server costs one failed ping, not a user-visible error; but only a connection that sat
    idle, or that the server wrote to while idle, is pinged. pool_pre_ping pinged on every checkout: one
    extra round trip per query, the largest part of a small read's time (evidence of one coverage). A
    connection returned less than PING_AFTER_IDLE_S ago with nothing to read was just used successfully."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:  # a new connection was just proven too
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.pop(_RETURNED_AT, None)
        if (returned is not None and time.monotonic() - returned < PING_AFTER_IDLE_S
                and not _has_news(dbapi_connection)):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping runs (autocommit, SELECT 1)
        except psycopg.Error as error:
            raise DisconnectionError(str(error)) from error  # the pool replaces the connection and retries


def reader_engine() -> Engine:
    return _engine(connections().reader, True)


def admin_engine() -> Engine:
    return _engine(connections().admin, False)


def psycopg_conninfo(url: URL) -> str:
    """libpq keyword form of a SQLAlchemy URL (for psycopg.connect, pg_dump and pg_restore)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


# Errors the server sends carry a SQLSTATE, whatever its lc_messages language: decide by that code.
_BY_SQLSTATE = {
    "28P01": "login refused for {where}: wrong user name or password; check DATABASE_URL / INCA_ADMIN_URL",
    "28000": "login refused for {where}: the user does not exist on the server; create it or fix the URL",
    "3D000": "database missing at {where}: create it (createdb) or fix the database name in the URL",
    "57P03": "database at {where} is restarting: wait a few seconds and try again",  # cannot_connect_now
    "57P01": "database at {where} is restarting: wait a few seconds and try again",  # admin_shutdown
    "57P02": "database at {where} is restarting: wait a few seconds and try again",  # crash_shutdown
}
# A failed connection attempt carries no SQLSTATE: libpq reports the server's refusal (or its own
# failure to reach it) only as text, and psycopg cannot give more (checked: `error.sqlstate` is None
# for a wrong database, role or password). Those, and only those, are matched by text.
_CLIENT_SIDE = (
    (("password authentication failed", "no password supplied"),
     "login refused for {where}: wrong user name or password; check DATABASE_URL / INCA_ADMIN_URL"),
    (("role", "does not exist"), "login refused for {where}: the user does not exist on the server; create it or fix the URL"),
    (("database", "does not exist"), "database missing at {where}: create it (createdb) or fix the database name in the URL"),
    (("the database system is starting up", "shutting down"),
     "database at {where} is restarting: wait a few seconds and try again"),
    (("timeout", "timed out"), "database at {where} did not answer within 5 s: is the server up and the host/port right?"),
    (("could not translate host name", "name or service not known"),
     "database host in {where} is unknown: check the host name in the URL"),
    (("connection refused", "no such file or directory", "is the server running"),
     "database unreachable at {where}: start PostgreSQL (or fix host/port) and try again"),
)


def _sqlstate(error: BaseException) -> str | None:
    cause = getattr(error, "orig", None) or error
    return getattr(cause, "sqlstate", None)


def describe_connection_error(error: BaseException, url: URL) -> str:
    """One line a person can act on, from whatever the driver raised. Never contains a password."""
    where = config.mask(url)
    message = str(getattr(error, "orig", None) or error).strip().splitlines()[0] if str(error).strip() else ""
    known = _BY_SQLSTATE.get(_sqlstate(error) or "")
    if known:
        return known.format(where=where)
    lowered = message.lower()
    for needles, line in _CLIENT_SIDE:
        # ("role", "does not exist") needs both words; the other entries are alternatives
        found = all(n in lowered for n in needles) if needles[-1] == "does not exist" else any(n in lowered for n in needles)
        if found:
            return line.format(where=where)
    return f"database error at {where}: {message}"


@contextlib.contextmanager
def translate_errors(url: URL) -> Iterator[None]:
    """Turn driver exceptions into IncaError subclasses with one actionable line."""
    try:
        yield
    except IncaError:
        raise
    except (ProgrammingError, psycopg.ProgrammingError) as error:
        # compare() queries on the driver connection (a pipeline): its errors arrive unwrapped
        cause = getattr(error, "orig", error)
        if isinstance(cause, psycopg.errors.UndefinedTable):
            raise SchemaMissing(
                "the database has no inca schema yet: run `python -m core load` with the owner connection"
            ) from None
        if isinstance(cause, psycopg.errors.InsufficientPrivilege):
            raise ConfigError(
                f"the reading role at {config.mask(url)} may not read some table "
                f"({str(cause).splitlines()[0]}): make it a member of inca_read (docker/create-reader.sql)"
            ) from None
        raise
    except (OperationalError, psycopg.OperationalError) as error:
        raise DatabaseUnavailable(describe_connection_error(error, url)) from None
    except DBAPIError as error:
        if error.connection_invalidated:
            raise DatabaseUnavailable(describe_connection_error(error, url)) from None
        raise


@contextlib.contextmanager
def read() -> Iterator[object]:
    """A read-only transaction on the reading connection."""
    conns = connections()
    with translate_errors(conns.reader), _engine(conns.reader, True).connect() as conn:
        yield conn
        # A read that succeeded ends with COMMIT rather than the pool's ROLLBACK: a read-only transaction
        # has nothing to keep either way, but psycopg forgets every prepared statement of the connection
        # on a rollback, so each comparison planned its five statements again (~4 ms of a ~8 ms
        # cells-only comparison at a million facts; docs/performance.md). A failed read still rolls back.
        conn.commit()  # SQLAlchemy's transaction, when it began one
        conn.connection.driver_connection.commit()  # the driver's, when compare() used it directly


@contextlib.contextmanager
def read_statement() -> Iterator[psycopg.Connection]:
    """The reading connection's driver for ONE statement, outside any transaction (autocommit).

    A single statement is its own snapshot, so it needs no transaction; BEGIN and COMMIT around it cost
    ~0.25 ms of a ~1 ms read (a coverage's evidence, docs/performance.md). Read-only all the same: the
    connection's default_transaction_read_only applies to every statement. Several statements that must
    agree take `read()`.
    """
    conns = connections()
    with translate_errors(conns.reader), _engine(conns.reader, True).connect() as conn:
        driver = conn.connection.driver_connection
        driver.autocommit = True
        try:
            yield driver
        finally:
            if not driver.closed:  # back to the pool as it came: transactions for read()
                driver.autocommit = False


def ping(url: URL, read_only: bool = True) -> str:
    """Server version string; raises DatabaseUnavailable with the reason."""
    with translate_errors(url), _engine(url, read_only).connect() as conn:
        return str(conn.execute(text("SHOW server_version")).scalar_one())


def shutdown() -> None:
    """A long-lived process's clean exit: close pooled connections, release the embedded server."""
    dispose_all()
    embedded.release_all()


def dispose_all() -> None:
    """Drop pooled connections (after a restore switched databases, or in tests)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
