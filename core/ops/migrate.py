"""Versioned schema: `core/schema/NNN_name.sql` files applied in order, once each, recorded."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text

from core.errors import SchemaMissing

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# Concurrent first starts (dashboard + tests) must not both apply 001.
_MIGRATION_LOCK_KEY = 0x1ACA_0001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    found = []
    for path in sorted(SCHEMA_DIR.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"schema file {path.name} is not named NNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"schema versions must be 1..N without gaps, found {versions}")
    return found


def latest_version() -> int:
    return migrations()[-1].version


def applied_version(conn: Connection) -> int:
    """The schema version recorded in the database (0 when none)."""
    exists = conn.execute(text("SELECT to_regclass('public.schema_migrations') IS NOT NULL")).scalar_one()
    if not exists:
        return 0
    return int(conn.execute(text("SELECT coalesce(max(version), 0) FROM schema_migrations")).scalar_one())


def apply(conn: Connection) -> list[Migration]:
    """Apply pending migrations inside the caller's transaction; returns what was applied."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
    )
    recorded = dict(conn.execute(text("SELECT version, checksum FROM schema_migrations")).all())
    applied = []
    for migration in migrations():
        if migration.version in recorded:
            if recorded[migration.version] != migration.checksum:
                raise SchemaMissing(
                    f"schema file {migration.version:03d}_{migration.name}.sql changed after it was applied; "
                    "add a new numbered file instead of editing an applied one"
                )
            continue
        # Raw psycopg: the files hold several statements and literal % signs (format()).
        conn.connection.driver_connection.execute(migration.sql)
        conn.execute(
            text("INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)"),
            {"v": migration.version, "n": migration.name, "c": migration.checksum},
        )
        applied.append(migration)
    return applied
