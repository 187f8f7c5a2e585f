"""Shared fixtures: a real PostgreSQL (embedded, or INCA_TEST_SERVER_URL) and the real dataset.

Each test session gets its own databases on that server:
- `loaded_db`: the bundled dataset loaded once through the audited load; tests only read it.
- `fresh_db`: an empty database per test, for tests that load, tamper or break things.
The environment (DATABASE_URL / INCA_ADMIN_URL) points the code under test at them, exactly as
an operator would configure a real deployment.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL, make_url

PROJECT = Path(__file__).resolve().parent.parent
TEST_DATA_DIR = PROJECT / ".inca-test"
READER = "inca_reader"


@dataclass(frozen=True)
class PgServer:
    """A PostgreSQL server on which tests may create and drop databases."""

    admin: URL  # superuser on the maintenance database

    def url(self, database: str, user: str | None = None) -> URL:
        return self.admin.set(database=database, username=user or self.admin.username)

    def conninfo(self, database: str = "postgres") -> str:
        return self.url(database).set(drivername="postgresql").render_as_string(hide_password=False)

    def create(self, prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # generated name, not input
        return name

    def drop(self, name: str) -> None:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def databases(self) -> set[str]:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


@pytest.fixture(scope="session")
def server() -> PgServer:
    external = os.environ.get("INCA_TEST_SERVER_URL", "").strip()
    if external:
        admin = make_url(external).set(drivername="postgresql+psycopg")
    else:
        os.environ["INCA_DATA_DIR"] = str(TEST_DATA_DIR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from core import embedded

            started = embedded.start(TEST_DATA_DIR / "pgdata")
        admin = started.url(embedded.ADMIN_ROLE, "postgres")
    with psycopg.connect(PgServer(admin).conninfo(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,)).fetchone() is None:
            conn.execute(f"CREATE ROLE {READER} LOGIN")
        conn.execute(f"ALTER ROLE {READER} SET default_transaction_read_only = on")
    return PgServer(admin)


def point_env_at(server: PgServer, database: str) -> None:
    from core import db, lock

    os.environ["DATABASE_URL"] = server.url(database, READER).render_as_string(hide_password=False)
    os.environ["INCA_ADMIN_URL"] = server.url(database).render_as_string(hide_password=False)
    db.dispose_all()
    lock.forget_cached_fingerprints()


@dataclass(frozen=True)
class Database:
    name: str
    reader: URL
    admin: URL

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.reader.render_as_string(hide_password=False),
                "INCA_ADMIN_URL": self.admin.render_as_string(hide_password=False)}


@pytest.fixture(scope="session")
def loaded_db_session(server: PgServer) -> Iterator[Database]:
    from core.ops import loader

    name = server.create("inca_loaded")
    point_env_at(server, name)
    loader.load()
    yield Database(name, server.url(name, READER), server.url(name))
    from core import db

    db.dispose_all()
    server.drop(name)


@pytest.fixture
def loaded_db(loaded_db_session: Database, server: PgServer) -> Database:
    """The shared, loaded, never-modified database (env re-pointed for each test)."""
    point_env_at(server, loaded_db_session.name)
    return loaded_db_session


@pytest.fixture
def fresh_db(server: PgServer) -> Iterator[Database]:
    """An empty database of its own; the environment points at it for this test."""
    name = server.create("inca_fresh")
    point_env_at(server, name)
    yield Database(name, server.url(name, READER), server.url(name))
    from core import db

    db.dispose_all()
    server.drop(name)


@pytest.fixture
def fresh_loaded_db(fresh_db: Database) -> Database:
    """A private loaded database that a test may tamper with."""
    from core.ops import loader

    loader.load()
    return fresh_db
