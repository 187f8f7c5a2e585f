"""Backups: custom-format pg_dump with a manifest, restore verification, safe restore, retention, health.

A backup is `inca-YYYYmmddTHHMMSSZ.dump` plus `<dump>.json` (the manifest: checksum, counts and the
amount_fact fingerprint taken from the very snapshot pg_dump wrote) and, once verified,
`<dump>.verify.json` (every verification's outcome). The manifest is written once and never edited,
so a copy of the pair elsewhere stays checkable; the manifest's `created_at` is the backup's age.

Verification restores into a scratch database and compares counts and fingerprint with the
manifest; restore does the same into a new database and only then swaps names, keeping the old
database, so a failure at any step leaves the live database as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from core import config, db, embedded, lock, migrate
from core.errors import BackupError, IncaError
from core.loader import live_counts

if TYPE_CHECKING:
    import pandas as pd

MANIFEST_FORMAT = "inca-backup/1"
DUMP_SUFFIX = ".dump"
MANIFEST_SUFFIX = ".json"  # appended to the dump name: inca-….dump.json
VERIFY_SUFFIX = ".verify.json"  # inca-….dump.verify.json
SCRATCH_PREFIX = "inca_verify_"
OK, WARNING, FAILING = "OK", "WARNING", "FAILING"
_NAME = re.compile(r"^inca-\d{8}T\d{6}Z(-\d+)?\.dump$")
_KEEP_VERIFICATIONS = 50
_MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names silently; we refuse to rely on that


# --- files ---------------------------------------------------------------------------------------

def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name + MANIFEST_SUFFIX)


def verify_path(dump: Path) -> Path:
    return dump.with_name(dump.name + VERIFY_SUFFIX)


def _write_json_atomic(path: Path, data: object) -> None:
    """Readers never see a half-written file: write a temporary sibling, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_sha_cache: dict[tuple[str, int, int], str] = {}
_sha_lock = threading.Lock()


def _cached_sha(path: Path) -> str:
    """Health recomputes every checksum; (path, size, mtime) decides whether it must re-read the file."""
    info = path.stat()
    key = (str(path), info.st_size, info.st_mtime_ns)
    with _sha_lock:
        if key in _sha_cache:
            return _sha_cache[key]
    digest = sha256_file(path)
    with _sha_lock:
        _sha_cache[key] = digest
    return digest


def read_manifest(dump: Path) -> dict[str, Any]:
    path = manifest_path(dump)
    if not path.exists():
        raise BackupError(f"manifest missing: {path} (without it the backup cannot be checked; "
                          "restore it from the off-machine copy or take a new backup)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        _check_manifest_fields(manifest)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise BackupError(f"manifest unreadable: {path} ({error})") from None
    return manifest


def _check_manifest_fields(manifest: dict[str, Any]) -> None:
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}")
    if datetime.fromisoformat(manifest["created_at"]).tzinfo is None:
        raise ValueError("created_at has no time zone")
    if not isinstance(manifest["size_bytes"], int) or not re.fullmatch(r"[0-9a-f]{64}", manifest["sha256"]):
        raise ValueError("size_bytes or sha256 malformed")
    if not isinstance(manifest["counts"], dict):
        raise ValueError("counts malformed")


def check_checksum(dump: Path, manifest: dict[str, Any]) -> None:
    """Size first (names truncation), then the SHA-256 of the whole file."""
    size = dump.stat().st_size
    if size != manifest["size_bytes"]:
        raise BackupError(f"checksum mismatch: {dump.name} is {size} bytes, its manifest says {manifest['size_bytes']} "
                          "(truncated or replaced); do not restore it")
    actual = sha256_file(dump)
    if actual != manifest["sha256"]:
        raise BackupError(f"checksum mismatch: {dump.name} has sha256 {actual[:16]}…, its manifest says "
                          f"{str(manifest['sha256'])[:16]}… (corrupted or tampered); do not restore it")


def read_verifications(dump: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(verify_path(dump).read_text(encoding="utf-8"))
        return [entry for entry in data.get("verifications", []) if isinstance(entry, dict)]
    except (OSError, ValueError, AttributeError):
        return []


def _record_verification(dump: Path, record: dict[str, Any]) -> None:
    history = [*read_verifications(dump), record][-_KEEP_VERIFICATIONS:]
    with suppress(OSError):  # a read-only backup folder must not hide the verification's own outcome
        _write_json_atomic(verify_path(dump), {"file": dump.name, "verifications": history})


@dataclass
class BackupFile:
    path: Path
    manifest: dict[str, Any] | None
    problem: str | None  # why the manifest cannot be used
    verifications: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def created_at(self) -> datetime | None:
        return datetime.fromisoformat(self.manifest["created_at"]) if self.manifest else None

    @property
    def last_verification(self) -> dict[str, Any] | None:
        return self.verifications[-1] if self.verifications else None

    @property
    def last_ok_verification(self) -> dict[str, Any] | None:
        return next((v for v in reversed(self.verifications) if v.get("outcome") == "ok"), None)


def list_backups(directory: Path | None = None) -> list[BackupFile]:
    """Every `inca-*.dump` in the folder, newest first by the manifest's created_at (no manifest: last)."""
    folder = directory or config.backup_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob(f"inca-*{DUMP_SUFFIX}"):
        try:
            manifest, problem = read_manifest(path), None
        except BackupError as error:
            manifest, problem = None, str(error)
        found.append(BackupFile(path, manifest, problem, read_verifications(path)))
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda b: (b.created_at or oldest, b.name), reverse=True)


def resolve(file: str | Path | None) -> Path:
    """A dump path from the command line: a path, a bare name in the backup folder, or None for the newest."""
    folder = config.backup_dir()
    if file is None:
        backups = [b for b in list_backups(folder) if b.manifest is not None] or list_backups(folder)
        if not backups:
            raise BackupError(f"no backup in {folder}: run `python -m core backup` first")
        return backups[0].path
    path = Path(file).expanduser()
    if path.name.endswith(DUMP_SUFFIX + MANIFEST_SUFFIX) or path.name.endswith(DUMP_SUFFIX + VERIFY_SUFFIX):
        path = path.with_name(path.name[: path.name.index(DUMP_SUFFIX) + len(DUMP_SUFFIX)])
    if not path.exists() and len(path.parts) == 1 and (folder / path).exists():
        path = folder / path
    if not path.is_file():
        raise BackupError(f"backup file not found: {path} (backups are in {folder})")
    return path.resolve()


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


# --- backup ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict[str, Any]
    seconds: float


def _target_path(folder: Path, now: datetime) -> Path:
    stem = f"inca-{now:%Y%m%dT%H%M%SZ}"
    path, n = folder / f"{stem}{DUMP_SUFFIX}", 1
    while path.exists() or manifest_path(path).exists():
        path, n = folder / f"{stem}-{n}{DUMP_SUFFIX}", n + 1
    return path


def _snapshot_facts(conn: Connection) -> dict[str, Any]:
    """What the manifest promises about the dump, read in pg_dump's own snapshot."""
    schema_version = migrate.applied_version(conn)
    if schema_version == 0:
        raise BackupError("nothing to back up: the database has no inca schema yet (run `python -m core load` first)")
    state = lock.read_lock(conn, fresh=True)
    fingerprint = state.live_fingerprint or str(conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one())
    return {"schema_version": schema_version, "counts": live_counts(conn), "fingerprint": fingerprint,
            "lock": {"state": state.state, "reason": state.reason, "audit_run_id": state.audit_run_id,
                     "recorded_fingerprint": state.recorded_fingerprint}}


def backup(directory: Path | None = None) -> BackupResult:
    """pg_dump -Fc of the owner connection's database into the backup folder, with its manifest."""
    started = time.perf_counter()
    url = _admin_url()
    major, server_version = _server_major(url)
    pg_dump = client_program("pg_dump", major)
    folder = directory or config.backup_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise BackupError(f"cannot create the backup folder {folder}: {error.strerror}; set INCA_BACKUP_DIR") from None
    now = datetime.now(UTC).replace(microsecond=0)
    target = _target_path(folder, now)
    partial = folder / f".{target.name}.{os.getpid()}.partial"
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})
    try:
        # One REPEATABLE READ snapshot, exported to pg_dump: counts and fingerprint describe exactly the dump.
        with db.translate_errors(url), engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                snapshot = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar_one())
                facts = _snapshot_facts(conn)
                _run_client(pg_dump, ["--format=custom", f"--file={partial}", f"--snapshot={snapshot}"], url, "pg_dump")
        os.chmod(partial, 0o600)
        manifest = {"format": MANIFEST_FORMAT, "file": target.name, "created_at": now.isoformat(),
                    "size_bytes": partial.stat().st_size, "sha256": sha256_file(partial),
                    "database": url.database, "source": config.mask(url), "server_version": server_version,
                    "pg_dump": f"{pg_dump} ({_program_major(pg_dump)})", **facts,
                    "dump_seconds": round(time.perf_counter() - started, 3)}
        # Manifest first: a visible .dump always has its manifest; a crash leaves at most an orphan manifest.
        _write_json_atomic(manifest_path(target), manifest)
        os.replace(partial, target)
    except OSError as error:
        raise BackupError(f"cannot write the backup into {folder}: {error.strerror or error}") from None
    finally:
        engine.dispose()
        partial.unlink(missing_ok=True)
    return BackupResult(target, manifest, time.perf_counter() - started)


# --- verification -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyResult:
    path: Path
    ok: bool
    reason: str
    seconds: float
    manifest: dict[str, Any] | None


def _restore_into(dump: Path, database: str) -> None:
    url = _admin_url(database)
    major, _ = _server_major(url)
    pg_restore = client_program("pg_restore", major)
    # Privileges stay in (no --no-acl): the reading role's GRANTs travel with the dump.
    _run_client(pg_restore, ["--no-owner", "--exit-on-error", "--single-transaction", str(dump)], url, "pg_restore")


def _inspect(database: str) -> dict[str, Any]:
    with _sqlalchemy(_admin_url(database)) as conn:
        fingerprint = str(conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one())
        return {"schema_version": migrate.applied_version(conn), "counts": live_counts(conn), "fingerprint": fingerprint}


def _compare(manifest: dict[str, Any], found: dict[str, Any]) -> None:
    differences = [f"{table}: {found['counts'].get(table)} rows restored, {want} in the manifest"
                   for table, want in manifest["counts"].items() if found["counts"].get(table) != want]
    if found["fingerprint"] != manifest.get("fingerprint"):
        differences.append(f"amount_fact fingerprint {found['fingerprint'][:16]}… restored, "
                           f"{str(manifest.get('fingerprint'))[:16]}… in the manifest")
    if found["schema_version"] != manifest.get("schema_version"):
        differences.append(f"schema v{found['schema_version']} restored, v{manifest.get('schema_version')} in the manifest")
    if differences:
        raise BackupError("restored content differs from the manifest: " + "; ".join(differences))


def restore_and_compare(dump: Path, manifest: dict[str, Any], database: str) -> None:
    """pg_restore into an existing empty database, then prove it holds what the manifest promises."""
    _restore_into(dump, database)
    _compare(manifest, _inspect(database))


def _scratch_name() -> str:
    return f"{SCRATCH_PREFIX}{secrets.token_hex(5)}"


def _verify_steps(dump: Path) -> dict[str, Any]:
    manifest = read_manifest(dump)
    check_checksum(dump, manifest)
    scratch = _scratch_name()
    _create_database(scratch)
    try:
        restore_and_compare(dump, manifest, scratch)
    finally:
        _drop_database(scratch)  # always: a failed verification must leave nothing behind
    return manifest


def verify_backup(file: str | Path | None = None) -> VerifyResult:
    """Checksum, then a real restore into a scratch database; the outcome is recorded beside the backup."""
    dump = resolve(file)
    started = time.perf_counter()
    at = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        manifest = _verify_steps(dump)
    except IncaError as error:
        _record_verification(dump, {"at": at, "outcome": "failed", "seconds": round(time.perf_counter() - started, 3),
                                    "reason": str(error)})
        raise
    seconds = time.perf_counter() - started
    reason = (f"restored into a scratch database; {len(manifest['counts'])} counts and the amount_fact fingerprint "
              "match the manifest")
    _record_verification(dump, {"at": at, "outcome": "ok", "seconds": round(seconds, 3), "reason": reason})
    return VerifyResult(dump, True, reason, seconds, manifest)


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
        left = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", (names,)).fetchone()
        if not left or left[0] == 0:
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


# --- retention --------------------------------------------------------------------------------------------

@dataclass
class PrunePlan:
    kept: dict[str, list[str]]  # file name -> why it is kept
    deleted: list[str]
    skipped: list[str]  # dumps without a readable manifest: never touched


def plan_prune(backups: list[BackupFile], keep_daily: int, keep_weekly: int) -> PrunePlan:
    """Newest per UTC day for the last N days having backups, newest per ISO week for M weeks, plus the
    newest backup and the newest verified one, whatever N and M say."""
    if keep_daily < 0 or keep_weekly < 0:
        raise BackupError("--keep-daily and --keep-weekly must be 0 or more")
    dated = sorted((b for b in backups if b.manifest is not None), key=lambda b: (b.created_at, b.name), reverse=True)
    kept: dict[str, list[str]] = {}

    def keep_newest_per(period: str, count: int, key: Any) -> None:
        seen: list[object] = []
        for b in dated:  # newest first, so the first one seen in a period is its newest
            bucket = key(b.created_at)
            if bucket not in seen:
                seen.append(bucket)
                if len(seen) <= count:
                    kept.setdefault(b.name, []).append(period)

    keep_newest_per("daily", keep_daily, lambda t: t.astimezone(UTC).date())
    keep_newest_per("weekly", keep_weekly, lambda t: t.astimezone(UTC).isocalendar()[:2])
    if dated:
        kept.setdefault(dated[0].name, []).append("newest")
    verified = [b for b in dated if b.last_ok_verification is not None]
    if verified:
        kept.setdefault(verified[0].name, []).append("newest verified")
    return PrunePlan(kept, [b.name for b in dated if b.name not in kept], [b.name for b in backups if b.manifest is None])


def prune(keep_daily: int | None = None, keep_weekly: int | None = None, dry_run: bool = False,
          directory: Path | None = None) -> PrunePlan:
    folder = directory or config.backup_dir()
    daily = config.env_int("INCA_BACKUP_KEEP_DAILY") if keep_daily is None else keep_daily
    weekly = config.env_int("INCA_BACKUP_KEEP_WEEKLY") if keep_weekly is None else keep_weekly
    plan = plan_prune(list_backups(folder), daily, weekly)
    if not dry_run:
        for name in plan.deleted:
            dump = folder / name
            try:  # manifest last: an interrupted prune leaves a manifest-less dump, never an unchecked one
                for path in (verify_path(dump), dump, manifest_path(dump)):
                    path.unlink(missing_ok=True)
            except OSError as error:
                raise BackupError(f"cannot delete {path}: {error.strerror}") from None
    return plan


# --- health -----------------------------------------------------------------------------------------------

@dataclass
class BackupHealth:
    state: str  # OK | WARNING | FAILING
    reason: str
    directory: str
    rpo_hours: int
    verify_objective_days: int
    newest_backup: str | None = None
    newest_backup_at: str | None = None
    newest_backup_age_hours: float | None = None
    last_verified_ok_at: str | None = None
    last_verified_ok_age_days: float | None = None
    backups: list[dict[str, Any]] = field(default_factory=list)
    checked_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _checksum_state(backup: BackupFile) -> str:
    if backup.manifest is None:
        return "manifest missing" if backup.problem and backup.problem.startswith("manifest missing") else "manifest unreadable"
    try:
        if backup.path.stat().st_size != backup.manifest["size_bytes"]:
            return "mismatch"
        return "ok" if _cached_sha(backup.path) == backup.manifest["sha256"] else "mismatch"
    except OSError:
        return "unreadable"


def _describe(backup: BackupFile, checksum: str) -> dict[str, Any]:
    last = backup.last_verification or {}
    return {"file": backup.name, "created_at": backup.manifest["created_at"] if backup.manifest else None,
            "size_bytes": backup.path.stat().st_size if backup.path.exists() else None,
            "checksum": checksum, "sha_ok": checksum == "ok",
            "verification": last.get("outcome", "never"), "verified_at": last.get("at"),
            "verification_reason": last.get("reason")}


def _hours_since(moment: datetime, now: datetime) -> float:
    return max(0.0, (now - moment).total_seconds() / 3600)


def _judge(backups: list[BackupFile], checksums: dict[str, str], result: BackupHealth, now: datetime) -> list[tuple[str, str]]:
    """Every problem as (severity, words), per the rules in docs/operations.md."""
    dated = [b for b in backups if b.manifest is not None]
    if not dated:
        return [(FAILING, f"no usable backup: {len(backups)} file(s) without a readable manifest")]
    problems: list[tuple[str, str]] = []
    newest = dated[0]
    age = _hours_since(newest.created_at or now, now)
    result.newest_backup, result.newest_backup_age_hours = newest.name, round(age, 2)
    result.newest_backup_at = (newest.created_at or now).isoformat()
    if checksums[newest.name] != "ok":
        problems.append((FAILING, f"newest backup {newest.name} fails its checksum ({checksums[newest.name]}): "
                                  "take a new backup"))
    if age > 2 * result.rpo_hours:
        problems.append((FAILING, f"newest backup is {age:.0f} h old (objective {result.rpo_hours} h, failing at 2×)"))
    elif age > result.rpo_hours:
        problems.append((WARNING, f"newest backup is {age:.0f} h old (objective {result.rpo_hours} h)"))
    attempted = next((b for b in dated if b.last_verification is not None), None)
    if attempted is not None and attempted.last_verification and attempted.last_verification.get("outcome") != "ok":
        problems.append((FAILING, f"latest restore verification of {attempted.name} failed: "
                                  f"{attempted.last_verification.get('reason', 'no reason recorded')}"))
    ok_times = [datetime.fromisoformat(v["at"]) for b in dated for v in b.verifications if v.get("outcome") == "ok"]
    if not ok_times:
        problems.append((WARNING, "no backup has passed a restore verification yet: run `python -m core verify-backup`"))
    else:
        last_ok = max(ok_times)
        days = _hours_since(last_ok, now) / 24
        result.last_verified_ok_at, result.last_verified_ok_age_days = last_ok.isoformat(), round(days, 2)
        if days > result.verify_objective_days:
            problems.append((WARNING, f"last successful restore verification {days:.0f} days ago "
                                      f"(objective {result.verify_objective_days} days)"))
    bad_older = [b.name for b in backups if b is not newest and checksums[b.name] != "ok"]
    if bad_older:
        problems.append((WARNING, f"{len(bad_older)} older backup file(s) fail their checksum or lack a manifest: "
                                  + ", ".join(bad_older[:3])))
    return problems


def health(directory: Path | None = None) -> BackupHealth:
    """The backups' state from the files alone (no database needed); never raises for a user-caused problem."""
    try:
        rpo, objective = config.env_int("INCA_BACKUP_RPO_HOURS"), config.env_int("INCA_VERIFY_OBJECTIVE_DAYS")
        folder = directory or config.backup_dir()
    except IncaError as error:
        return BackupHealth(FAILING, str(error), "", 0, 0)
    result = BackupHealth(OK, "", str(folder), rpo, objective)
    try:
        backups = list_backups(folder)
        checksums = {b.name: _checksum_state(b) for b in backups}
        result.backups = [_describe(b, checksums[b.name]) for b in backups]
    except OSError as error:
        result.state, result.reason = FAILING, f"cannot read the backup folder {folder}: {error.strerror or error}"
        return result
    if not backups:
        result.state, result.reason = FAILING, f"no backup yet in {folder}: run `python -m core backup`"
        return result
    problems = _judge(backups, checksums, result, datetime.now(UTC))
    if problems:
        problems.sort(key=lambda p: p[0] != FAILING)
        result.state, result.reason = problems[0][0], "; ".join(words for _, words in problems)
    else:
        result.reason = (f"newest backup {result.newest_backup_age_hours:.1f} h old (objective {rpo} h); "
                         f"restore verified {result.last_verified_ok_age_days:.1f} days ago (objective {objective} days)")
    return result


def health_frame(directory: Path | None = None) -> pd.DataFrame:
    """One row per backup (oldest first) for a size-over-time chart: created_at, size_bytes, file, checksum,
    verification, verified_at."""
    import pandas as pd

    rows = [row for row in health(directory).backups if row["created_at"] is not None]
    frame = pd.DataFrame(rows, columns=["created_at", "size_bytes", "file", "checksum", "verification", "verified_at"])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["size_bytes"] = frame["size_bytes"].astype("Int64")
    frame["verified_at"] = pd.to_datetime(frame["verified_at"], utc=True)
    return frame.sort_values("created_at").reset_index(drop=True)
