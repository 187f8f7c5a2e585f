"""Command line: load, status, migrate, upgrade, and the backup commands (core.ops.backup.cli).

Every user-caused failure prints one line to stderr and exits non-zero; tracebacks are bugs.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from core.errors import IncaError
from core.ops.backup import cli as backup_cli

Handler = Callable[[argparse.Namespace], int]


def _load(args: argparse.Namespace) -> int:
    from core.ops import loader

    def progress(table: str, written: int, total: int) -> None:
        if not args.quiet and written == total:
            print(f"  {table:<20} {written:>8} rows", file=sys.stderr)

    result = loader.load(progress=progress)
    print(result.message)
    print(f"audit run {result.audit_run_id}  fingerprint {result.fingerprint}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from core import config
    from core.status import collect, render_text

    # A malformed setting or URL is a configuration error (exit 2, one line), not an unhealthy report.
    config.configured_urls()
    report = collect(fresh=True)
    print(report.to_json() if args.json else render_text(report))
    if not report.ok:
        return 1
    if args.strict and report.backups is not None and report.backups.state != "OK":
        return 1
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from core import db
    from core.ops import migrate

    engine = db.admin_engine()
    with db.translate_errors(engine.url), engine.begin() as conn:
        applied = migrate.apply(conn)
    print(f"schema at v{migrate.latest_version()}; applied {[m.version for m in applied] or 'nothing'}")
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    from core.ops import upgrade

    result = upgrade.upgrade()
    print(result.message)
    if result.changed:
        print(f"audit run {result.audit_run_id}  rows {result.counts}  fingerprint {result.fingerprint}")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(prog="python -m core", description="inca-rag-scope: locked coverage amounts")
    commands = parser.add_subparsers(dest="command", required=True)
    handlers: dict[str, Handler] = {}

    load = commands.add_parser("load", help="audited one-time load of the bundled dataset")
    load.add_argument("--quiet", action="store_true", help="no per-table progress")
    handlers["load"] = _load

    status = commands.add_parser("status", help="lock, row counts, database and backup health (exit 0 = healthy)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--strict", action="store_true", help="also exit non-zero when backup health is not OK")
    handlers["status"] = _status

    commands.add_parser("migrate", help="apply pending schema files (load does this too)")
    handlers["migrate"] = _migrate

    commands.add_parser("upgrade", help="add what an earlier version's load did not record (condition slots, "
                                        "evidence findings, the full lock); audited, idempotent")
    handlers["upgrade"] = _upgrade

    backup_cli.register(commands, handlers)
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except IncaError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted; nothing was changed", file=sys.stderr)
        return 130
