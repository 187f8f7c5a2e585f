"""`python -m core status`: the lock, row counts against expected, and database health.

Built only from the reading connection, so what it reports is what the dashboard sees.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import text

if TYPE_CHECKING:
    import pandas as pd

from core import backup_folder, config, data_quality, db, embedded, inventory, server_sizing
from core.errors import IncaError
from core.inventory import COUNTED_TABLES, live_counts
from core.lock import BROKEN, INTACT, UNLOADED, UNPROVEN, LockState, read_lock, reuse_while_unwritten

EXPECTED_TABLES = ("insurer", "product", "product_variant", "document", "coverage_canonical", "coverage_instance",
                   "evidence_ref", "amount_fact", "audit_runs", "evidence_finding")


@dataclass
class DatabaseInfo:
    """What the reading connection reports about the server; None where it was never reached."""
    url: str | None = None  # password masked
    embedded: bool | None = None
    server_version: str | None = None
    pgvector_version: str | None = None
    reader_role: str | None = None
    read_only_transaction: bool | None = None
    reader_select_only: bool | None = None
    schema_version: int | None = None
    schema_latest: int | None = None
    reader_owns_nothing: bool | None = None  # the reading role owns no object and is in no owner role
    leftover_scratch_databases: list[str] = field(default_factory=list)  # left by an interrupted verify-backup
    #: "primary" or "standby" (pg_is_in_recovery()): the application only reads, so it runs on either
    role: Literal["primary", "standby"] | None = None
    #: standby: now() - pg_last_xact_replay_timestamp(). It grows on an idle primary although nothing is
    #: missing: whether the standby has caught up is receive_lsn == replay_lsn (`caught_up`).
    replay_lag_seconds: float | None = None
    last_replayed_at: str | None = None  # standby: commit time of the last replayed transaction
    receive_lsn: str | None = None  # standby: WAL received from the primary (None: not streaming)
    replay_lsn: str | None = None  # standby: WAL replayed (what the queries see)
    caught_up: bool | None = None  # standby: everything received is replayed
    wal_lsn: str | None = None  # primary: pg_current_wal_lsn() (compare with a standby's replay_lsn)
    #: the settings core/server_sizing.py sizes, as the server runs them (name -> current_setting)
    server_settings: dict[str, str] = field(default_factory=dict)
    #: embedded only: sized settings the running server does not have (name -> the value its next start
    #: takes); a server shared by other processes is never restarted under them
    server_settings_next_start: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CountRow:
    table: str
    live: int
    expected: int | None  # None: nothing recorded for this table

    @property
    def matches(self) -> bool:
        return self.expected is None or self.expected == self.live

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "live": self.live, "expected": self.expected, "matches": self.matches}


@dataclass(frozen=True)
class BackupSummary:
    """Backup health: the state and its reason typed, the backup module's full record kept for --json."""
    state: str  # OK | WARNING | FAILING | UNKNOWN
    reason: str
    record: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> BackupSummary:
        return cls(state=str(record["state"]), reason=str(record["reason"]), record=record)

    def to_dict(self) -> dict[str, Any]:
        return {**self.record, "state": self.state, "reason": self.reason}


@dataclass(frozen=True)
class DataQuality:
    """Evidence findings (docs/data-quality.md): never a lock state, always shown with their snippets."""
    findings: int  # flagged facts
    finding_rows: int  # (fact, kind) rows
    by_kind: dict[str, int]
    items: list[dict[str, Any]]  # one per flagged fact, with its snippet
    dataset_sha256: str | None  # the manifest digest of the dataset the load locked


def unread_lock(state: str, reason: str) -> LockState:
    """A lock that could not be read (database down, no schema): only its state and why."""
    # fields without a default are unknown (None); the others keep their empty defaults ((), {})
    blank: dict[str, Any] = {item.name: None for item in fields(LockState)
                             if item.default is MISSING and item.default_factory is MISSING}
    return LockState(**{**blank, "state": state, "reason": reason})


@dataclass
class StatusReport:
    reachable: bool
    problems: list[str] = field(default_factory=list)
    database: DatabaseInfo = field(default_factory=DatabaseInfo)
    lock: LockState = field(default_factory=lambda: unread_lock("UNKNOWN", "the lock was not read"))
    counts: list[CountRow] = field(default_factory=list)
    backups: BackupSummary | None = None  # None: not asked for (include_backups=False) or not reached
    #: evidence findings (core.data_quality.summary) and the locked dataset's manifest digest
    data_quality: DataQuality | None = None

    @property
    def lock_state(self) -> str:
        return self.lock.state

    @property
    def ok(self) -> bool:
        """Monitoring contract: reachable and the lock intact (backups count only with --strict)."""
        return self.reachable and self.lock_state == INTACT

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `python -m core status --json` and GET /status (keys in docs/api.md)."""
        return {"ok": self.ok, "reachable": self.reachable, "problems": self.problems,
                "database": asdict(self.database), "lock": self.lock.to_dict(),
                "counts": [row.to_dict() for row in self.counts],
                "backups": self.backups.to_dict() if self.backups is not None else {},
                "data_quality": asdict(self.data_quality) if self.data_quality is not None else {}}

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
        return StatusReport(reachable=False, problems=[str(error)], lock=unread_lock("UNKNOWN", str(error)))
    report = StatusReport(reachable=False)
    database = report.database = DatabaseInfo(url=config.mask(conns.reader), embedded=conns.embedded)
    try:
        with db.read() as conn:
            info = conn.execute(
                text(
                    """
                    SELECT current_setting('server_version') AS server_version,
                           (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector_version,
                           current_setting('transaction_read_only') AS transaction_read_only,
                           current_user AS reader_role,
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
                                                                   ELSE false END))) AS reader_select_only
                    """
                )
            ).one()
            report.reachable = True
            database.server_version, database.pgvector_version = info.server_version, info.pgvector_version
            database.reader_role = info.reader_role
            database.read_only_transaction = info.transaction_read_only == "on"
            database.reader_select_only = bool(info.reader_select_only)
            _replication(conn, database)
            _server_settings(conn, database, sized=embedded.sized_settings() if conns.embedded else None)
            if database.server_settings_next_start:
                report.problems.append(next_start_line(database))
            database.leftover_scratch_databases = leftover_scratch_databases(conn)
            database.schema_version = inventory.applied_version(conn)
            database.schema_latest = inventory.latest_version()
            if database.schema_version == 0:
                report.problems.append("the database has no inca schema yet: run `python -m core load`")
                report.lock = unread_lock(UNLOADED, "no schema")
                return report
            missing = inventory.missing_versions(conn)
            if missing:
                # One line, no SQL per old version: the migrations always bring a schema forward.
                problem = outdated_schema(missing[0] - 1, database.schema_latest)
                report.problems.append(problem)
                report.lock = unread_lock("UNKNOWN", problem)
                return report
            report.lock = read_lock(conn, fresh=fresh)
            database.reader_owns_nothing = bool(conn.execute(_READER_OWNS_NOTHING).scalar())
            recorded = conn.execute(
                # the latest run that wrote: the load, or an upgrade that added derived rows since
                text("SELECT counts FROM audit_runs WHERE kind IN ('load', 'upgrade') ORDER BY recorded_at DESC LIMIT 1")
            ).scalar()
            # The latest audited recording (load or upgrade) holds the counts it proved (upgrades add audit runs).
            expected = {**_expected_counts(recorded),
                        **{k: v for k, v in report.lock.recorded_counts.items() if k in COUNTED_TABLES}}
            # Counting reads every row of the big tables (~0.5 s per million facts): page views reuse
            # the counts while no counted table was written (core.lock.reuse_while_unwritten).
            counts = live_counts(conn) if fresh else reuse_while_unwritten(
                conn, "live_counts", COUNTED_TABLES, lambda: live_counts(conn))
            report.counts = [CountRow(table, live, expected.get(table)) for table, live in counts.items()]
            report.data_quality = DataQuality(**data_quality.summary(conn))
    except IncaError as error:
        report.problems.append(str(error))
        if report.lock.audit_run_id is None and report.lock.state == "UNKNOWN":  # failed before the lock was read
            report.lock = unread_lock("UNKNOWN", str(error))
        return report
    if database.leftover_scratch_databases:
        leftovers = database.leftover_scratch_databases
        report.problems.append(
            f"{len(leftovers)} scratch verification database(s) left on the server ({', '.join(leftovers)}), "
            "by an interrupted `verify-backup` (or one running now): drop them as the owner "
            "(DROP DATABASE … WITH (FORCE)) once no verification runs")
    if not database.read_only_transaction:
        report.problems.append("the reading connection is not read-only: see docs/deployment.md (reader role)")
    if database.reader_owns_nothing is False:
        report.problems.append("the reading role owns an object or is a member of its owner or of inca_gatekeeper: "
                               "run-time roles must own nothing (docs/operations.md, the lock)")
    if not database.reader_select_only:
        report.problems.append("the reading role can write, own or refresh some table: "
                               "connect DATABASE_URL with the SELECT-only role")
    _lock_section_extras(report)
    if report.lock_state == BROKEN:
        report.problems.append(f"lock BROKEN: {report.lock.reason}")
    elif report.lock_state in (UNLOADED, UNPROVEN):
        report.problems.append(report.lock.reason)
    for row in report.counts:
        if not row.matches:
            report.problems.append(f"{row.table}: {row.live} rows, {row.expected} expected")
    if include_backups:
        report.backups = BackupSummary.from_record(backup_health())
    return report


def outdated_schema(version: int, latest: int) -> str:
    return (f"schema v{version}, this version needs v{latest}: run `python -m core migrate` then "
            "`python -m core upgrade` with the owner connection")


_REPLICATION = text(
    """
    SELECT pg_is_in_recovery() AS standby,
           CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END AS lag,
           CASE WHEN pg_is_in_recovery() THEN pg_last_xact_replay_timestamp() END AS replayed_at,
           CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()::text END AS receive_lsn,
           CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END AS replay_lsn,
           CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() END AS caught_up,
           CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END AS wal_lsn
    """
)


def _replication(conn: Any, database: DatabaseInfo) -> None:
    """Primary or standby, and on a standby how far replay is behind (docs/scaling.md)."""
    row = conn.execute(_REPLICATION).one()
    database.role = "standby" if row.standby else "primary"
    database.replay_lag_seconds = None if row.lag is None else round(float(row.lag), 3)
    database.last_replayed_at = None if row.replayed_at is None else row.replayed_at.isoformat()
    database.receive_lsn, database.replay_lsn, database.wal_lsn = row.receive_lsn, row.replay_lsn, row.wal_lsn
    database.caught_up = None if row.caught_up is None else bool(row.caught_up)


_SERVER_SETTINGS = text("SELECT name, current_setting(name) FROM unnest(CAST(:names AS text[])) AS name")


def _server_settings(conn: Any, database: DatabaseInfo, sized: list[server_sizing.Sized] | None) -> None:
    """The sized settings as the server runs them; for the embedded server, those that differ from its sizing."""
    database.server_settings = {str(name): str(value) for name, value in
                                conn.execute(_SERVER_SETTINGS, {"names": list(server_sizing.CHECKS)})}
    database.server_settings_next_start = {
        item.name: item.value for item in sized or ()
        if not server_sizing.same_value(item.name, item.value, database.server_settings.get(item.name, ""))}


def next_start_line(database: DatabaseInfo) -> str:
    """One line: the embedded server runs with other settings than sized, and when they apply."""
    differ = ", ".join(f"{name} {database.server_settings.get(name)} (next start: {value})"
                       for name, value in database.server_settings_next_start.items())
    return (f"the embedded server runs with settings other than those sized for it: {differ}. It was started "
            "before they changed or by another process, and is never restarted under the processes using it: "
            "they apply when it next starts (docs/operations.md, server settings)")


def settings_line(database: DatabaseInfo) -> str:
    return ", ".join(f"{name} {value}" for name, value in database.server_settings.items()) or "—"


def replication_line(database: DatabaseInfo) -> str:
    """One line on the server's role and, on a standby, its replay position and lag."""
    if database.role == "primary":
        return f"primary (WAL at {database.wal_lsn})"
    if database.role != "standby":
        return "—"
    if database.receive_lsn is None:
        received = "not streaming (nothing received since start)"
    else:
        received = f"received {database.receive_lsn}, replayed {database.replay_lsn}, " + (
            "caught up" if database.caught_up else "replay behind what was received")
    lag = ("no transaction replayed since start" if database.replay_lag_seconds is None else
           f"last replayed transaction {database.replay_lag_seconds:g} s ago (grows on an idle primary)")
    return f"standby: {received}; {lag}"


_READER_OWNS_NOTHING = text(
    """
    SELECT NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
                       AND pg_has_role(p.proowner, 'USAGE'))
           AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
                           AND pg_has_role(c.relowner, 'USAGE'))
           AND (to_regrole('inca_gatekeeper') IS NULL OR NOT pg_has_role('inca_gatekeeper', 'USAGE'))
    """
)


def _lock_section_extras(report: StatusReport) -> None:
    """Issue 17: a count mismatch makes the lock BROKEN (not a side note); say what the lock covers."""
    wrong = [f"{row.table}: {row.live} rows, {row.expected} expected" for row in report.counts if not row.matches]
    if wrong and report.lock_state == INTACT:
        report.lock = dataclasses.replace(report.lock, state=BROKEN,
                                          reason="row counts differ from the audited load: " + "; ".join(wrong))
    if report.lock.scope == "amount_fact only":
        report.problems.append("only the amount fingerprint is recorded for this database (loaded before schema "
                               "008): run `python -m core upgrade` to record the full lock")
    elif report.lock.not_covered:
        report.problems.append(f"not yet covered by the recorded lock: {', '.join(report.lock.not_covered)}; "
                               "run `python -m core upgrade`")


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
    lines.append(f"lock:      {report.lock_state}  ({lock.reason})")
    if lock.audit_run_id:
        lines.append(f"audit:     {lock.audit_status}  run {lock.audit_run_id}  loaded {lock.loaded_at}")
        lines.append(f"freeze:    {lock.freeze_tag}  commit {lock.git_commit}")
        lines.append(f"recorded:  {lock.recorded_fingerprint}")
        lines.append(f"live:      {lock.live_fingerprint}  (verified {lock.verified_at}, {lock.verify_seconds} s)")
    if lock.scope:
        lines.append(f"covers:    {lock.scope}: {len(lock.covers)} relation(s), every row and column: "
                     f"{', '.join(lock.covers)}")
        if lock.recorded_lock_digest:
            lines.append(f"lock:      recorded {lock.recorded_lock_digest}  live {lock.live_lock_digest}  ({lock.proof})")
    if lock.proof_replay_lsn:
        lines.append(f"proof:     as of replay LSN {lock.proof_replay_lsn} ({lock.proof})")
    database = report.database
    lines.append(f"database:  {'reachable' if report.reachable else 'UNREACHABLE'}  {database.url or ''}")
    if report.reachable:
        lines.append(f"           PostgreSQL {database.server_version}, pgvector {database.pgvector_version}, "
                     f"schema v{database.schema_version}/{database.schema_latest}, "
                     f"reader {database.reader_role} read-only={database.read_only_transaction} "
                     f"select-only={database.reader_select_only}")
        lines.append(f"role:      {replication_line(database)}")
        lines.append(f"settings:  {settings_line(database)}")
    if report.counts:
        lines.append("rows:      table                         live   expected")
        for row in report.counts:
            mark = "" if row.matches else "   <- MISMATCH"
            expected = "-" if row.expected is None else row.expected
            lines.append(f"           {row.table:<28}{row.live:>6}   {expected:>8}{mark}")
    quality = report.data_quality
    if quality is not None:
        lines.append(f"dataset:   {quality.dataset_sha256 or '-'}  (manifest digest of the loaded dataset)")
        kinds = ", ".join(f"{kind} {count}" for kind, count in quality.by_kind.items())
        lines.append(f"findings:  {quality.findings} evidence finding(s){f' ({kinds})' if kinds else ''}")
    if report.backups is not None:
        lines.append(f"backups:   {report.backups.state}  {report.backups.reason}")
    for problem in report.problems:
        lines.append(f"problem:   {problem}")
    return "\n".join(lines)
