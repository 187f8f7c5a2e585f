"""`backup()`: a custom-format pg_dump and its manifest from the same snapshot.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from core import config, db, lock
from core.errors import BackupError
from core.inventory import live_counts
from core.ops import migrate

if TYPE_CHECKING:
    pass
from core.backup_folder import DUMP_SUFFIX, MANIFEST_FORMAT, manifest_path, sha256_file
from core.ops.backup.client import _admin_url, _program_major, _run_client, _server_major, client_program
from core.ops.backup.files import _write_json_atomic

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
    # A backup is only good when its lock was: a copy of a changed database must never become the thing
    # an operator restores to "fix" it.
    if state.state != lock.INTACT:
        raise BackupError(f"backup refused: the lock is {state.state} ({state.reason}); nothing was written. "
                          "Restore a verified backup instead (docs/operations.md)")
    fingerprint = state.live_fingerprint or str(conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one())
    return {"schema_version": schema_version, "counts": live_counts(conn), "fingerprint": fingerprint,
            "lock": {"state": state.state, "reason": state.reason, "audit_run_id": state.audit_run_id,
                     "recorded_fingerprint": state.recorded_fingerprint, "scope": state.scope,
                     "recorded_lock_digest": state.recorded_lock_digest},
            # every locked relation's digest in this very snapshot: verification compares the restored content
            "digests": state.digests}


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
