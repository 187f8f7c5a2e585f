"""The PostgreSQL client programs (pg_dump, pg_restore) and the owner connections backups use.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from core import config, db, embedded
from core.errors import BackupError

if TYPE_CHECKING:
    pass

# --- client programs and connections ---------------------------------------------------------------

_version_cache: dict[Path, int | None] = {}


def _program_major(program: Path) -> int | None:
    """Major version of pg_dump/pg_restore (`pg_dump (PostgreSQL) 18.4` -> 18), None if unusable."""
    if program not in _version_cache:
        try:
            out = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=10).stdout
            match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
            _version_cache[program] = int(match.group(1)) if match else None
        except (OSError, subprocess.SubprocessError):
            _version_cache[program] = None
    return _version_cache[program]


def _bundled_bin() -> Path | None:
    try:
        return embedded.bin_dir()
    except (ImportError, KeyError, AttributeError):
        return None


def _candidates(program: str) -> list[Path]:
    """Bundled first, then PATH, then Debian/Ubuntu's per-version folders (newest first)."""
    found = []
    bundled = _bundled_bin()
    if bundled is not None:
        found.append(bundled / program)
    on_path = shutil.which(program)
    if on_path:
        found.append(Path(on_path))
    debian = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{program}"),
                    key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0, reverse=True)
    return found + debian


def client_program(program: str, server_major: int) -> Path:
    """A pg_dump/pg_restore at least as new as the server (older clients refuse newer servers)."""
    pinned = config.env("INCA_PG_BIN")
    if pinned:
        path = Path(pinned).expanduser() / program
        major = _program_major(path) if path.is_file() else None
        if major is None:
            raise BackupError(f"INCA_PG_BIN={pinned} holds no usable {program}: point it at the folder of "
                              f"PostgreSQL {server_major} client programs")
        if major < server_major:
            raise BackupError(f"INCA_PG_BIN={pinned} has {program} {major}, the server is PostgreSQL {server_major}: "
                              f"point it at version {server_major} or newer client programs")
        return path
    for path in _candidates(program):
        major = _program_major(path) if path.is_file() else None
        if major is not None and major >= server_major:
            return path
    raise BackupError(f"no {program} for PostgreSQL {server_major} found: install postgresql-client-{server_major} "
                      "or set INCA_PG_BIN to the folder holding it")


def _admin_url(database: str | None = None) -> URL:
    admin = db.connections().admin
    if not admin.username:
        raise BackupError(f"INCA_ADMIN_URL names no user ({config.mask(admin)}): add it, e.g. postgresql://postgres@…; "
                          "libpq would otherwise try the operating-system user")
    return admin.set(database=database) if database else admin


def _maintenance_url() -> URL:
    """CREATE/DROP/RENAME DATABASE run from `postgres`, never from a database they act on."""
    return _admin_url("postgres")


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """(conninfo without password, child environment with PGPASSWORD): no secret in argv or process listings."""
    params = {k: v for k, v in conninfo_to_dict(db.psycopg_conninfo(url)).items() if v is not None}
    password = params.pop("password", None)
    params.setdefault("connect_timeout", "10")
    # The URLs hold passwords too and pg_dump has no use for them.
    child = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "INCA_ADMIN_URL")}
    if password:
        child["PGPASSWORD"] = str(password)
    return make_conninfo(**params), child


def _scrub(message: str, url: URL) -> str:
    return message.replace(url.password, "***") if url.password else message


def _run_client(program: Path, args: list[str], url: URL, what: str) -> None:
    conninfo, child_env = _libpq(url)
    result = subprocess.run([str(program), *args, "--no-password", f"--dbname={conninfo}"], capture_output=True,
                            text=True, env=child_env, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()] or lines or ["no output"]
        detail = re.sub(r"^\S+:\s*(error:\s*)?", "", errors[0]).strip()
        if re.search(r'role ".*" does not exist', detail):  # GRANTs in the dump name roles of the source server
            detail += "; create that role on this server first (`python -m core migrate` creates inca_read)"
        raise BackupError(_scrub(f"{what} failed ({program.name} exit {result.returncode}): {detail}", url))


@contextmanager
def _autocommit(url: URL) -> Iterator[psycopg.Connection]:
    with db.translate_errors(url):
        conn = psycopg.connect(db.psycopg_conninfo(url), autocommit=True, connect_timeout=10)
        try:
            yield conn
        finally:
            conn.close()


def _server_major(url: URL) -> tuple[int, str]:
    with _autocommit(url) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int, current_setting('server_version')")
        num, version = row.fetchone() or (0, "")
    return int(num) // 10000, str(version)


def _create_database(name: str) -> None:
    # template0: a clean database, whatever extensions someone added to template1.
    try:
        with _autocommit(_maintenance_url()) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    except psycopg.errors.InsufficientPrivilege:
        raise BackupError("the owner role may not create databases; verify-backup and restore need CREATEDB") from None
    except psycopg.errors.DuplicateDatabase:
        raise BackupError(f"database {name} already exists: drop it or retry in a second") from None


def _drop_database(name: str) -> None:
    with _autocommit(_maintenance_url()) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def _sqlalchemy(url: URL) -> Iterator[Connection]:
    """A one-off connection (no pool left behind: the database may be renamed or dropped right after)."""
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})
    try:
        with db.translate_errors(url), engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()
