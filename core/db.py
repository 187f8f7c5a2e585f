"""Engines for reading and administering, and the translation of driver errors into one clear line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

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
    timeout = config.env_int("INCA_STATEMENT_TIMEOUT_MS")
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
    # pool_pre_ping: a restarted server costs one failed ping, not a user-visible error.
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=connect_args)
    _engines[key] = engine
    return engine


def reader_engine() -> Engine:
    return _engine(connections().reader, True)


def admin_engine() -> Engine:
    return _engine(connections().admin, False)


def psycopg_conninfo(url: URL) -> str:
    """libpq keyword form of a SQLAlchemy URL (for psycopg.connect, pg_dump and pg_restore)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def describe_connection_error(error: BaseException, url: URL) -> str:
    """One line a person can act on, from whatever the driver raised. Never contains a password."""
    where = config.mask(url)
    message = str(getattr(error, "orig", None) or error).strip().splitlines()[0] if str(error).strip() else ""
    lowered = message.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return f"login refused for {where}: wrong user name or password; check DATABASE_URL / INCA_ADMIN_URL"
    if "role" in lowered and "does not exist" in lowered:
        return f"login refused for {where}: the user does not exist on the server; create it or fix the URL"
    if "database" in lowered and "does not exist" in lowered:
        return f"database missing at {where}: create it (createdb) or fix the database name in the URL"
    if "timeout" in lowered or "timed out" in lowered:
        return f"database at {where} did not answer within 5 s: is the server up and the host/port right?"
    if "could not translate host name" in lowered or "name or service not known" in lowered:
        return f"database host in {where} is unknown: check the host name in the URL"
    if "connection refused" in lowered or "no such file or directory" in lowered or "is the server running" in lowered:
        return f"database unreachable at {where}: start PostgreSQL (or fix host/port) and try again"
    if "the database system is starting up" in lowered or "shutting down" in lowered:
        return f"database at {where} is restarting: wait a few seconds and try again"
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


def ping(url: URL, read_only: bool = True) -> str:
    """Server version string; raises DatabaseUnavailable with the reason."""
    with translate_errors(url), _engine(url, read_only).connect() as conn:
        return str(conn.execute(text("SHOW server_version")).scalar_one())


def dispose_all() -> None:
    """Drop pooled connections (after a restore switched databases, or in tests)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
