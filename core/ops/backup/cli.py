"""`python -m core backup | verify-backup | restore | prune`: the command-line side of core.ops.backup.

Registered by core.ops.cli; failures raise BackupError (exit 8) and core.ops.cli prints its one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from core import config
from core.errors import BackupError

Handler = Callable[[argparse.Namespace], int]


def _backup(args: argparse.Namespace) -> int:
    from core.ops import backup

    result = backup.backup()
    manifest = result.manifest
    print(f"backup written: {result.path}")
    print(f"  {manifest['size_bytes']} bytes  sha256 {manifest['sha256']}  in {result.seconds:.1f} s")
    print(f"  amount_fact {manifest['counts'].get('amount_fact')} rows  fingerprint {manifest['fingerprint']}  "
          f"lock {manifest['lock']['state']}")
    print(f"  manifest {backup.manifest_path(result.path).name}; check it with `python -m core verify-backup {result.path.name}`")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from core.ops import backup

    result = backup.verify_backup(args.file)
    print(f"verified {result.path}: {result.reason} ({result.seconds:.1f} s)")
    return 0


def _confirm(prompt: str) -> bool:
    try:
        return input(prompt).strip().lower() == "yes"
    except EOFError:
        return False


def _restore(args: argparse.Namespace) -> int:
    from core import db
    from core.ops import backup
    from core.status import collect, render_text

    dump = backup.resolve(args.file)
    manifest = backup.read_manifest(dump)
    backup.check_checksum(dump, manifest)  # cheap, and a corrupt file deserves that answer before any question
    if not args.yes and not sys.stdin.isatty():
        raise BackupError("restore replaces the live database and needs confirmation: run it in a terminal "
                          "or pass --yes; nothing was changed")
    verified = backup.verify_backup(dump)
    print(f"verified {dump.name}: {verified.reason} ({verified.seconds:.1f} s)")
    target = db.connections().admin
    if not args.yes:
        print(f"This replaces database {target.database} at {config.mask(target)} with the backup taken "
              f"{manifest['created_at']} ({manifest['counts'].get('amount_fact')} amount facts, lock "
              f"{manifest['lock']['state']}). The current database is kept under a new name.")
        if not _confirm("Type yes to restore: "):
            print("restore cancelled; nothing was changed", file=sys.stderr)
            return 1
    result = backup.restore(dump, verify=False)
    report = collect(fresh=True)
    print(f"restored {dump.name} into {result.database} in {result.seconds:.1f} s")
    if result.previous:
        print(f"the previous database is kept as {result.previous}: drop it once you are satisfied "
              f"(DROP DATABASE \"{result.previous}\";)")
    print(render_text(report))
    if report.lock_state != "INTACT":
        print(f"error: after the restore the lock is {report.lock_state}, not INTACT", file=sys.stderr)
    return 0 if report.ok else 1


def _prune(args: argparse.Namespace) -> int:
    from core.ops import backup

    plan = backup.prune(args.keep_daily, args.keep_weekly, dry_run=args.dry_run)
    for name, reasons in sorted(plan.kept.items(), reverse=True):
        print(f"kept     {name}  ({', '.join(reasons)})")
    verb = "would delete" if args.dry_run else "deleted"
    for name in plan.deleted:
        print(f"{verb:<8} {name}")
    for name in plan.skipped:
        print(f"skipped  {name}  (no readable manifest; left for you to inspect)")
    print(f"{len(plan.kept)} kept, {len(plan.deleted)} {verb}{' (dry run)' if args.dry_run else ''}")
    return 0


def register(commands: Any, handlers: dict[str, Handler]) -> None:
    """Add the backup commands to core.ops.cli's sub-parsers."""
    cmd = commands.add_parser("backup", help="pg_dump the database into INCA_BACKUP_DIR with a manifest")
    handlers["backup"] = _backup

    cmd = commands.add_parser("verify-backup", help="checksum + test restore into a scratch database (default: newest)")
    cmd.add_argument("file", nargs="?", help="dump file or its name in INCA_BACKUP_DIR (default: the newest backup)")
    handlers["verify-backup"] = _verify

    cmd = commands.add_parser("restore", help="verify, then restore a backup over the live database (old one kept)")
    cmd.add_argument("file", help="dump file or its name in INCA_BACKUP_DIR")
    cmd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    handlers["restore"] = _restore

    cmd = commands.add_parser("prune", help="delete old backups, keeping daily and weekly ones and the newest verified")
    daily, weekly = config.env("INCA_BACKUP_KEEP_DAILY"), config.env("INCA_BACKUP_KEEP_WEEKLY")
    cmd.add_argument("--keep-daily", type=int, metavar="N",
                     help=f"newest backup per day for the last N days having backups (default {daily})")
    cmd.add_argument("--keep-weekly", type=int, metavar="M",
                     help=f"newest backup per ISO week for the last M weeks having backups (default {weekly})")
    cmd.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    handlers["prune"] = _prune
