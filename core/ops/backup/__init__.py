"""Backups (the operations side): custom-format pg_dump with a manifest, restore
verification, safe restore, retention (health: core.backup_folder).

A backup is `inca-YYYYmmddTHHMMSSZ.dump` plus `<dump>.json` (the manifest: checksum, counts and the
amount_fact fingerprint taken from the very snapshot pg_dump wrote) and, once verified,
`<dump>.verify.json` (every verification's outcome). The manifest is written once and never edited,
so a copy of the pair elsewhere stays checkable; the manifest's `created_at` is the backup's age.

Verification restores into a scratch database and compares counts and fingerprint with the
manifest; restore does the same into a new database and only then swaps names, keeping the old
database, so a failure at any step leaves the live database as it was.

One module per job: `files` (writing manifests and verification records), `client` (pg_dump and
pg_restore, owner connections), `dump`, `verify`, `restore`, `retention`; reading the folder and
judging its health is read-only and lives on the read side (core.backup_folder).
"""

from __future__ import annotations

import subprocess  # noqa: F401  (tests spy on backup.subprocess.run)

from core.backup_folder import (
    FAILING,
    MANIFEST_FORMAT,
    OK,
    SCRATCH_PREFIX,
    WARNING,
    BackupFile,
    BackupHealth,
    check_checksum,
    health,
    health_frame,
    list_backups,
    manifest_path,
    read_manifest,
    read_verifications,
    sha256_file,
    verify_path,
)
from core.ops.backup.client import _bundled_bin, _candidates, _program_major, client_program
from core.ops.backup.dump import BackupResult, backup
from core.ops.backup.files import resolve
from core.ops.backup.restore import RestoreResult, restore
from core.ops.backup.retention import PrunePlan, plan_prune, prune
from core.ops.backup.verify import VerifyResult, restore_and_compare, verify_backup

__all__ = [
    "FAILING", "MANIFEST_FORMAT", "OK", "SCRATCH_PREFIX", "WARNING", "BackupFile", "BackupHealth", "BackupResult",
    "PrunePlan", "RestoreResult", "VerifyResult", "_bundled_bin", "_candidates", "_program_major", "backup",
    "check_checksum", "client_program", "health", "health_frame", "list_backups", "manifest_path", "plan_prune",
    "prune", "read_manifest", "read_verifications", "resolve", "restore", "restore_and_compare", "sha256_file",
    "verify_backup", "verify_path",
]
