"""Backup folder inspection, read-only: names, manifests, checksums, verification records, health.

The read side (`core.status`, the status page) reports backup health from here without importing
the operations side; core.ops.backup writes, verifies, restores and prunes the same files.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import config
from core.errors import BackupError, IncaError

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
        current = config.settings()
        rpo, objective = current.backup_rpo_hours, current.verify_objective_days
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
