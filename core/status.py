"""`python -m core status`: the lock, row counts against expected, and database health.

Built only from the reading connection, so what it reports is what the dashboard sees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

if TYPE_CHECKING:
    import pandas as pd

from core import backup_folder, config, db, inventory
from core.errors import IncaError
from core.inventory import COUNTED_TABLES, live_counts
from core.lock import BROKEN, INTACT, UNLOADED, LockState, read_lock, reuse_while_unwritten

EXPECTED_TABLES = ("insurer", "product", "product_variant", "document", "coverage_canonical", "coverage_instance",
                   "evidence_ref", "amount_fact", "audit_runs")


@dataclass
class StatusReport:
    reachable: bool
    problems: list[str] = field(default_factory=list)
    database: dict[str, Any] = field(default_factory=dict)
    lock: dict[str, Any] = field(default_factory=dict)
    counts: list[dict[str, Any]] = field(default_factory=list)
    backups: dict[str, Any] = field(default_factory=dict)

    @property
    def lock_state(self) -> str:
        return str(self.lock.get("state", "UNKNOWN"))

    @property
    def ok(self) -> bool:
        """Monitoring contract: reachable and the lock intact (backups count only with --strict)."""
        return self.reachable and self.lock_state == INTACT

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reachable": self.reachable, "problems": self.problems, "database": self.database,
                "lock": self.lock, "counts": self.counts, "backups": self.backups}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2, default=str)


def _expected_counts(recorded: dict[str, int] | None) -> dict[str, int]:
    if recorded:
        return recorded
    manifest = config.dataset_dir() / "manifest.json"
    try:
        return dict(json.loads(manifest.read_text(encoding="utf-8"))["expected_counts"])
    except (OSError, ValueError, KeyError):
        return {}


def collect(fresh: bool = True, include_backups: bool = True) -> StatusReport:
    """Everything an operator needs; never raises for a user-caused failure, it reports it."""
    try:
        conns = db.connections()
    except IncaError as error:
        return StatusReport(reachable=False, problems=[str(error)], lock={"state": "UNKNOWN"})
    report = StatusReport(reachable=False)
    report.database = {"url": config.mask(conns.reader), "embedded": conns.embedded}
    try:
        with db.read() as conn:
            info = conn.execute(
                text(
                    """
                    SELECT current_setting('server_version'),
                           (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
                           current_setting('transaction_read_only'), current_user,
                           NOT EXISTS (
                               SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')
                                 -- an owner (or a member of the owner role) may alter or refresh anything
                                 AND (pg_has_role(c.relowner, 'USAGE')
                                      OR (c.relkind = 'r' AND (
                                          has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE')
                                          OR has_table_privilege(c.oid, 'DELETE')
                                          OR has_table_privilege(c.oid, 'TRUNCATE')))
                                      -- materialized views (schemas 006, 007) take no writes; since
                                      -- PostgreSQL 17 MAINTAIN would let a grantee REFRESH them
                                      OR (c.relkind = 'm' AND CASE WHEN current_setting('server_version_num')::int
                                                                        >= 170000
                                                                   THEN has_table_privilege(c.oid, 'MAINTAIN')
                                                                   ELSE false END)))
                    """
                )
            ).one()
            report.reachable = True
            report.database.update(server_version=info[0], pgvector_version=info[1], reader_role=info[3],
                                   read_only_transaction=info[2] == "on", reader_select_only=bool(info[4]))
            report.database["leftover_scratch_databases"] = leftover_scratch_databases(conn)
            report.database["schema_version"] = inventory.applied_version(conn)
            report.database["schema_latest"] = inventory.latest_version()
            if report.database["schema_version"] == 0:
                report.problems.append("the database has no inca schema yet: run `python -m core load`")
                report.lock = {"state": UNLOADED, "reason": "no schema"}
                return report
            lock = read_lock(conn, fresh=fresh)
            report.lock = lock.to_dict()
            recorded = conn.execute(
                text("SELECT counts FROM audit_runs WHERE kind = 'load' ORDER BY recorded_at DESC LIMIT 1")
            ).scalar()
            expected = _expected_counts(recorded)
            # Counting reads every row of the big tables (~0.5 s per million facts): page views reuse
            # the counts while no counted table was written (core.lock.reuse_while_unwritten).
            counts = live_counts(conn) if fresh else reuse_while_unwritten(
                conn, "live_counts", COUNTED_TABLES, lambda: live_counts(conn))
            for table, live in counts.items():
                want = expected.get(table)
                report.counts.append({"table": table, "live": live, "expected": want,
                                      "matches": want is None or want == live})
    except IncaError as error:
        report.problems.append(str(error))
        report.lock = report.lock or {"state": "UNKNOWN"}
        return report
    leftovers = report.database.get("leftover_scratch_databases") or []
    if leftovers:
        report.problems.append(
            f"{len(leftovers)} scratch verification database(s) left on the server ({', '.join(leftovers)}), "
            "by an interrupted `verify-backup` (or one running now): drop them as the owner "
            "(DROP DATABASE … WITH (FORCE)) once no verification runs")
    if not report.database.get("read_only_transaction"):
        report.problems.append("the reading connection is not read-only: see docs/deployment.md (reader role)")
    if not report.database.get("reader_select_only"):
        report.problems.append("the reading role can write, own or refresh some table: "
                               "connect DATABASE_URL with the SELECT-only role")
    if report.lock_state == BROKEN:
        report.problems.append(f"lock BROKEN: {report.lock['reason']}")
    elif report.lock_state == UNLOADED:
        report.problems.append(report.lock["reason"])
    for row in report.counts:
        if not row["matches"]:
            report.problems.append(f"{row['table']}: {row['live']} rows, {row['expected']} expected")
    if include_backups:
        report.backups = backup_health()
    return report


#: the scratch names core/ops/backup/verify.py creates: SCRATCH_PREFIX + 10 hex digits
_SCRATCH_PATTERN = "^" + backup_folder.SCRATCH_PREFIX + "[0-9a-f]{10}$"


def leftover_scratch_databases(conn: Any) -> list[str]:
    """Scratch verification databases on the server (pg_database is readable by every role)."""
    rows = conn.execute(text("SELECT datname FROM pg_database WHERE datname ~ :pattern ORDER BY datname"),
                        {"pattern": _SCRATCH_PATTERN})
    return [str(name) for (name,) in rows]


def backup_health() -> dict[str, Any]:
    """Backup health from the backup folder alone (what the report holds when the database is down)."""
    return backup_folder.health().to_dict()


def backup_frame() -> pd.DataFrame:
    """One row per backup file: age, size, checksum and verification state (the status page's list)."""
    return backup_folder.health_frame()


def connections() -> config.Connections:
    """Where the app reads and administers (starts or joins the embedded server when nothing is configured)."""
    return db.connections()


def is_loaded() -> bool:
    """Whether the schema exists and the audited load was recorded (uncached: decides a first start)."""
    with db.read() as conn:
        return inventory.applied_version(conn) > 0 and inventory.loaded_run(conn) is not None


@dataclass(frozen=True)
class Quick:
    """The cheap health check (container healthcheck): one query plus the reused lock proof."""

    server_version: str
    read_only: bool
    lock: LockState


def quick() -> Quick:
    with db.read() as conn:
        version, read_only = conn.execute(
            text("SELECT current_setting('server_version'), current_setting('transaction_read_only')")
        ).one()
        return Quick(str(version), read_only == "on", read_lock(conn, fresh=False))


def render_text(report: StatusReport) -> str:
    """The human form of the report (what `python -m core status` prints)."""
    lines = []
    lock = report.lock
    lines.append(f"lock:      {report.lock_state}  ({lock.get('reason', '')})")
    if lock.get("audit_run_id"):
        lines.append(f"audit:     {lock['audit_status']}  run {lock['audit_run_id']}  loaded {lock['loaded_at']}")
        lines.append(f"freeze:    {lock['freeze_tag']}  commit {lock['git_commit']}")
        lines.append(f"recorded:  {lock['recorded_fingerprint']}")
        lines.append(f"live:      {lock['live_fingerprint']}  (verified {lock['verified_at']}, "
                     f"{lock['verify_seconds']} s)")
    database = report.database
    lines.append(f"database:  {'reachable' if report.reachable else 'UNREACHABLE'}  {database.get('url', '')}")
    if report.reachable:
        lines.append(f"           PostgreSQL {database.get('server_version')}, pgvector {database.get('pgvector_version')}, "
                     f"schema v{database.get('schema_version')}/{database.get('schema_latest')}, "
                     f"reader {database.get('reader_role')} read-only={database.get('read_only_transaction')} "
                     f"select-only={database.get('reader_select_only')}")
    if report.counts:
        lines.append("rows:      table                         live   expected")
        for row in report.counts:
            mark = "" if row["matches"] else "   <- MISMATCH"
            expected = "-" if row["expected"] is None else row["expected"]
            lines.append(f"           {row['table']:<28}{row['live']:>6}   {expected:>8}{mark}")
    if report.backups:
        lines.append(f"backups:   {report.backups.get('state')}  {report.backups.get('reason', '')}")
    for problem in report.problems:
        lines.append(f"problem:   {problem}")
    return "\n".join(lines)
