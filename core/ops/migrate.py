"""Applies the versioned schema (`core/schema/NNN_name.sql`, read by core.inventory) in order, once each."""

from __future__ import annotations

from sqlalchemy import Connection, text

from core.errors import SchemaMissing
from core.inventory import Migration, applied_version, latest_version, migrations

__all__ = ["Migration", "applied_version", "apply", "latest_version", "migrations"]

# Concurrent first starts (dashboard + tests) must not both apply 001.
_MIGRATION_LOCK_KEY = 0x1ACA_0001


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
