"""`prune()`: keep the newest daily and weekly backups and the newest verified one; delete the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import config
from core.errors import BackupError

if TYPE_CHECKING:
    pass
from core.backup_folder import BackupFile, list_backups, manifest_path, verify_path

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
