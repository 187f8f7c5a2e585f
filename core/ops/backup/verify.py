"""`verify_backup()`: checksum, then a test restore into a scratch database compared with the manifest.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from core import lock
from core.errors import BackupError, IncaError
from core.inventory import live_counts
from core.ops import migrate

if TYPE_CHECKING:
    pass
from core.backup_folder import SCRATCH_PREFIX, check_checksum, read_manifest
from core.ops.backup.client import (
    _admin_url,
    _create_database,
    _drop_database,
    _run_client,
    _server_major,
    _sqlalchemy,
    client_program,
)
from core.ops.backup.files import _record_verification, resolve

#: schema 008 introduced the recorded lock (lock_record, lock_seal)
LOCK_SCHEMA_VERSION = 8

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
        found = {"schema_version": migrate.applied_version(conn), "counts": live_counts(conn), "fingerprint": fingerprint}
        if found["schema_version"] >= LOCK_SCHEMA_VERSION:
            # the restored database's own lock: its recorded digests against its live content
            state = lock.read_lock(conn, fresh=True)
            found["lock"] = {"state": state.state, "reason": state.reason,
                             "recorded_lock_digest": state.recorded_lock_digest}
            found["digests"] = state.digests
        return found


def _compare_lock(manifest: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """The manifest's lock must have been INTACT, and the restored content must match both the digests the
    manifest recorded and the restored database's own lock record (a dump swapped for another one, with
    the manifest's checksum rewritten, fails here)."""
    recorded = manifest.get("lock") or {}
    if recorded.get("state") != lock.INTACT:
        return [f"the backup was taken while the lock was {recorded.get('state')} ({recorded.get('reason')}): "
                "it is not a good copy"]
    differences = []
    if "lock" in found:
        if found["lock"]["state"] != lock.INTACT:
            differences.append(f"the restored database's own lock is {found['lock']['state']} "
                               f"({found['lock']['reason']})")
        if recorded.get("recorded_lock_digest") != found["lock"]["recorded_lock_digest"]:
            differences.append("the restored lock record differs from the one in the manifest")
    for name, digest in sorted((manifest.get("digests") or {}).items()):
        if (found.get("digests") or {}).get(name) != digest:
            differences.append(f"{name}: restored content differs from the digest in the manifest")
    return differences


def _compare(manifest: dict[str, Any], found: dict[str, Any]) -> None:
    differences = _compare_lock(manifest, found) + [f"{table}: {found['counts'].get(table)} rows restored, {want} in the manifest"
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
    reason = (f"restored into a scratch database; {len(manifest['counts'])} counts, the amount_fact fingerprint and "
              f"{len(manifest.get('digests') or {})} relation digests match the manifest; its own lock is INTACT")
    _record_verification(dump, {"at": at, "outcome": "ok", "seconds": round(seconds, 3), "reason": reason})
    return VerifyResult(dump, True, reason, seconds, manifest)
