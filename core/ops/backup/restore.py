"""`restore()`: into a new database, verified, then switched by renaming; the old database is kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg.rows import namedtuple_row
from sqlalchemy import text

from core import db, lock
from core.errors import BackupError
from core.ops import migrate

if TYPE_CHECKING:
    pass
from core.backup_folder import _MAX_IDENTIFIER, check_checksum, read_manifest
from core.ops.backup.client import _admin_url, _autocommit, _create_database, _drop_database, _maintenance_url, _sqlalchemy
from core.ops.backup.files import resolve
from core.ops.backup.verify import restore_and_compare, verify_backup

# --- restore --------------------------------------------------------------------------------------------

@dataclass
class RestoreResult:
    path: Path
    database: str
    previous: str | None  # the old live database, kept for the operator to drop
    seconds: float


def _restore_names(live: str, now: datetime) -> tuple[str, str]:
    stamp = f"{now:%Y%m%d%H%M%S}"
    new, old = f"_restore_{stamp}", f"_before_restore_{stamp}"
    base = live[: _MAX_IDENTIFIER - len(old)]
    return base + new, base + old


def _check_reader(database: str) -> None:
    """The reading role must be able to open and read the restored database before it goes live."""
    reader = db.connections().reader.username
    if not reader:
        return
    with _sqlalchemy(_admin_url(database)) as conn:
        if conn.execute(text("SELECT to_regrole(:r)"), {"r": reader}).scalar() is None:
            return
        can_read = conn.execute(
            text("SELECT has_database_privilege(:r, current_database(), 'CONNECT') "
                 "AND has_table_privilege(:r, 'public.amount_fact', 'SELECT')"), {"r": reader}).scalar()
    if not can_read:
        raise BackupError(f"the reading role {reader} could not read the restored database; "
                          "the live database was not changed")


def _copy_database_acl(live: str, new: str) -> None:
    """Database-level GRANTs (CONNECT, TEMP) are not in a dump: carry a hardened live ACL over."""
    with _autocommit(_maintenance_url()) as conn:
        rows = conn.execute(
            "SELECT coalesce(r.rolname, 'PUBLIC'), a.privilege_type FROM pg_database d, aclexplode(d.datacl) a "
            "LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE d.datname = %s", (live,)).fetchall()
        if not rows:  # no live database, or the default ACL (PUBLIC may connect), which the new one has too
            return
        target = sql.Identifier(new)
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(target))
        for grantee, privilege in rows:
            who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
            conn.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(sql.SQL(privilege), target, who))


def _terminate(conn: psycopg.Connection, names: list[str]) -> None:
    for _ in range(50):
        left = conn.cursor(row_factory=namedtuple_row).execute(
            "SELECT count(pg_terminate_backend(pid)) AS terminated FROM pg_stat_activity "
            "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", (names,)).fetchone()
        if not left or left.terminated == 0:
            return
        time.sleep(0.1)


def _switch(live: str, new: str, old: str) -> str | None:
    """Swap names in one transaction; returns the kept database's name (None when there was no live one)."""
    db.dispose_all()  # our own pools must not hold the databases open
    ident = sql.Identifier
    with _autocommit(_maintenance_url()) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (live,)).fetchone() is not None
        if exists:
            # Refuse new sessions first, so nobody sneaks in between terminating them and the rename.
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(ident(live)))
        try:
            _terminate(conn, [live, new])
            with conn.transaction():
                if exists:
                    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(live), ident(old)))
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(new), ident(live)))
        except psycopg.Error as error:  # e.g. a session that would not die: the transaction rolled back
            raise BackupError(f"could not switch databases ({error.diag.message_primary or error}); "
                              f"the live database {live} was not changed") from None
        finally:
            if exists:
                current = old if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (old,)).fetchone() else live
                conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(ident(current)))
    return old if exists else None


def restore(file: str | Path, verify: bool = True) -> RestoreResult:
    """Restore a backup over the owner connection's database; the old one is kept under a new name.

    `verify=False` only for a caller that has just run `verify_backup` itself (the CLI, to show the
    result before asking for confirmation); the checksum is checked again either way.
    """
    started = time.perf_counter()
    dump = resolve(file)
    if verify:
        verify_backup(dump)
    manifest = read_manifest(dump)
    check_checksum(dump, manifest)
    if int(manifest.get("schema_version", 0)) > migrate.latest_version():
        raise BackupError(f"the backup has schema v{manifest['schema_version']}, this code knows up to "
                          f"v{migrate.latest_version()}: upgrade the code before restoring it")
    live = str(_admin_url().database)
    if live in ("postgres", "template0", "template1"):
        raise BackupError(f"refusing to restore over the system database {live}: point INCA_ADMIN_URL at the inca database")
    new, old = _restore_names(live, datetime.now(UTC))
    _create_database(new)
    try:
        restore_and_compare(dump, manifest, new)
        _copy_database_acl(live, new)
        _check_reader(new)
        previous = _switch(live, new, old)
    except psycopg.Error as error:
        raise BackupError(f"restore failed ({error.diag.message_primary or error}); "
                          f"the live database {live} was not changed") from None
    finally:
        _drop_database(new)  # a no-op after a successful switch (the name is gone); else the live one is untouched
    db.dispose_all()
    lock.forget_cached_fingerprints()
    return RestoreResult(dump, live, previous, time.perf_counter() - started)
