"""The audited one-time load: everything in one transaction, audited before it commits.

The locked tables refuse writes from any other transaction (schema/002_lock.sql); this module
is the one place that opens them, and only for a database that has never been loaded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from core import config, db
from core.errors import AuditFailed, DatasetMismatch
from core.inventory import applied_version, live_counts, loaded_run
from core.ops import bulk, conditions_load, findings_load, lock_record, migrate
from core.ops.dataset import COLUMNS, TABLE_ORDER, LoadBundle, read_bundle
from core.ops.load_audit import StreamAudit, pre_audit

__all__ = ["LOAD_AUDIT_NAME", "LoadResult", "Progress", "ensure_loaded", "load", "load_bundle", "open_audited",
           "pre_audit", "refresh_cells"]

LOAD_AUDIT_NAME = "inca_load_audit"
_LOAD_LOCK_KEY = 0x1ACA_0002
#: hook for a progress bar: (table, rows written so far, rows in the table)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LoadResult:
    changed: bool
    message: str
    audit_run_id: str
    fingerprint: str
    counts: dict[str, int]
    #: seconds per phase of the load, in order (the load report's breakdown)
    phases: dict[str, float] = field(default_factory=dict)


class _Phases:
    """Wall-clock seconds per phase, for the load report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 3)


def _truncate_if_empty(conn: Connection, tables: list[str]) -> bool:
    """TRUNCATE the (empty) tables so COPY may FREEZE; False, touching nothing, if any holds a row.

    COPY FREEZE is only allowed into a table created or truncated in the same transaction. It writes
    the rows already frozen and all-visible: no hint-bit rewrite of every page by the first readers
    after the load, no anti-wraparound vacuum of the whole market later, and the visibility map is set
    at once, so counts can use index-only scans (status page). Truncating an empty table loses nothing.
    """
    raw = conn.connection.driver_connection
    for table in tables:  # names from core.ops.dataset.TABLE_ORDER, never input
        if conn.exec_driver_sql(f"SELECT EXISTS (SELECT FROM {table})").scalar_one():
            return False
    raw.execute(f"TRUNCATE {', '.join(tables)}")
    return True


def _work_memory(raw: psycopg.Connection) -> None:
    """Sorts and HNSW graphs are built in memory when they fit, and the joins of the evidence audit, the
    foreign-key validations and the fingerprint hash in memory; both settings end with the transaction."""
    raw.execute("SET LOCAL maintenance_work_mem = '512MB'")
    raw.execute("SET LOCAL work_mem = '128MB'")


def _copy(conn: Connection, bundle: LoadBundle, audit: StreamAudit, progress: Progress | None,
          freeze: bool = False) -> dict[str, int]:
    """COPY the bundle's batches as they come (one COPY statement per batch, each checked by `audit` on
    its way); returns the rows written per table. Memory: one batch at a time."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    written = dict.fromkeys(TABLE_ORDER, 0)
    types_of: dict[str, list[int] | None] = {}  # decided on each table's first batch, as for one COPY
    for table, batch in bundle.batches():
        rows = audit.admit(table, batch)
        if not rows:
            continue
        if table not in types_of:
            types_of[table] = bulk.binary_types(raw, table, COLUMNS[table], rows[0])
        bulk.copy_rows(raw, table, COLUMNS[table], rows, types_of[table], freeze)
        written[table] += len(rows)
        if progress is not None:
            progress(table, written[table], bundle.expected_counts.get(table, 0))
    return written


#: schema 006's materialized views, in refresh order (insurer_status_count is built from catalog_raw_name)
SUMMARY_VIEWS = ("catalog_raw_name", "insurer_status_count")


def _refresh_summaries(conn: Connection) -> None:
    """Recompute the catalog summaries from the rows just loaded, in the load's own transaction.

    Only once the audits passed, so they describe exactly what commits; a failed load rolls them back
    with the rows. Migration 006 computed them over what the tables held then (nothing, before a first
    load); the load is the only writer of those tables, so it is the only place that refreshes them.
    """
    for view in SUMMARY_VIEWS:
        conn.execute(text(f"REFRESH MATERIALIZED VIEW {view}"))  # constant names above, never input


#: schema 007's distinct search vectors, derived from coverage_alias (core/search.py ranks them)
SEARCH_VIEWS = ("coverage_alias_vector",)


def _refresh_search_vectors(conn: Connection) -> None:
    """Recompute the distinct search vectors from the names just loaded, in the load's own transaction.

    REFRESH fills the view first and builds its HNSW index after, in bulk (the load's
    maintenance_work_mem still holds); the load migrated the schema first, so the view exists.
    """
    for view in SEARCH_VIEWS:
        conn.execute(text(f"REFRESH MATERIALIZED VIEW {view}"))  # constant names above, never input


#: schema 012's comparison cells (one row per coverage instance: amount, proposal source, slots), derived
#: from the amounts, the snippets and the condition slots: refreshed after the slots are derived
CELL_VIEWS = ("comparison_cell",)


def refresh_cells(conn: Connection) -> None:
    """Recompute the comparison cells from the rows and condition slots of this transaction (the load's, or
    the upgrade's after a derivation step): the view holds exactly what the cells-only read returned."""
    # Without parallel workers: each worker would build the same three aggregate hash tables again (a
    # parallel hash join shares only its own), which took 23 s against 18 s serial at a million facts.
    previous = conn.execute(text("SELECT current_setting('max_parallel_workers_per_gather')")).scalar_one()
    conn.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    for view in CELL_VIEWS:
        conn.execute(text(f"REFRESH MATERIALIZED VIEW {view}"))  # constant names above, never input
    conn.execute(text("SELECT set_config('max_parallel_workers_per_gather', :value, true)"), {"value": previous})


def _refuse_other_dataset(conn: Connection, bundle: LoadBundle) -> None:
    """A locked database is never reloaded: a different dataset is an error, the same one a no-op."""
    held = conn.execute(
        text("SELECT dataset_sha256, freeze_tag, recorded_at FROM audit_runs WHERE kind = 'load' "
             "ORDER BY recorded_at DESC LIMIT 1")
    ).one()
    if held.dataset_sha256 == bundle.dataset_sha256:
        return
    raise DatasetMismatch(
        f"this database holds dataset {held.dataset_sha256} (freeze tag {held.freeze_tag}, "
        f"loaded {held.recorded_at:%Y-%m-%d %H:%M:%S %Z}), "
        f"but the given dataset is {bundle.dataset_sha256} (freeze tag {bundle.lineage.get('freeze_tag')}); "
        "a locked database is never reloaded and nothing was changed. To use the other dataset, load it into a new, "
        "empty database: point INCA_ADMIN_URL / DATABASE_URL at it and run `python -m core load` "
        "(docs/operations.md, 'Loading a different dataset')"
    )


def open_audited(conn: Connection) -> None:
    """Open the current transaction (only it) for writing the locked tables: the load's guard, which
    `python -m core upgrade` uses too (core/ops/upgrade.py)."""
    conn.execute(text("SELECT inca_open_audited_load()"))


def load_bundle(bundle: LoadBundle, engine: Engine, progress: Progress | None = None) -> LoadResult:
    """Write `bundle` in one audited transaction, unless the database is already loaded.

    The bundle is read once, batch by batch (a streamed market never sits in memory): each row is
    checked on its way to COPY, the checks that need two tables run in SQL right after, and any failure
    rolls everything back (AuditFailed, nothing loaded), as it always did.
    """
    phase = _Phases()
    url = engine.url
    with db.translate_errors(url):
        with engine.begin() as conn:
            migrate.apply(conn)
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOAD_LOCK_KEY})
            existing = loaded_run(conn)
            if existing is not None:
                _refuse_other_dataset(conn, bundle)
                return LoadResult(False, "already loaded and locked; nothing changed", existing.audit_run_id,
                                  existing.fingerprint, live_counts(conn))
            open_audited(conn)
            raw = conn.connection.driver_connection
            assert isinstance(raw, psycopg.Connection)
            audit = StreamAudit()
            try:
                deferred = bulk.defer_keys_and_indexes(conn, list(TABLE_ORDER))
                freeze = _truncate_if_empty(conn, list(TABLE_ORDER))
                _work_memory(raw)
                with phase("copy (generate/read, pre-audit per row)"):
                    _copy(conn, bundle, audit, progress, freeze=freeze)
                with phase("audit proposal evidence (SQL)"):
                    failures, mismatches = audit.finish(raw)
                if failures:
                    raise AuditFailed(f"audit failed for {len(failures)} row(s); nothing was loaded: "
                                      + "; ".join(failures[:5]), failures)
                with phase("rebuild keys and indexes"):
                    bulk.rebuild(conn, deferred)
            except psycopg.errors.IntegrityError as error:
                raise AuditFailed(f"the database refused a row ({error.diag.constraint_name or error.sqlstate}: "
                                  f"{error.diag.message_primary}); nothing was loaded", [str(error)]) from None
            # Derived from the rows just written, by the same functions as `python -m core upgrade`:
            # condition slots, then evidence findings.
            with phase("condition slots"):
                condition_counts = conditions_load.derive_and_audit(conn)
            with phase("evidence findings"):
                findings_load.load_step(conn)
            with phase("counts"):
                counts = live_counts(conn) | condition_counts
            counts["audit_runs"] += 2  # the two runs written below
            # The load records its lock (schema 008): saying so in its audit means a deleted record reads as
            # BROKEN, never as a database loaded before the record existed.
            counts["lock_seal"] = 1
            wrong_counts = [f"{table}: {counts.get(table)} loaded, {want} expected"
                            for table, want in bundle.expected_counts.items() if counts.get(table) != want]
            if mismatches or wrong_counts:
                raise AuditFailed("audit failed; nothing was loaded: " + "; ".join((mismatches + wrong_counts)[:5]),
                                  mismatches + wrong_counts)
            with phase("summaries and search vectors"):
                _refresh_summaries(conn)
                _refresh_search_vectors(conn)
            with phase("comparison cells"):
                refresh_cells(conn)
            with phase("fingerprint"):
                fingerprint = conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one()
            audit_run_id = _record_audit(conn, bundle, audit.insurer_keys, counts, fingerprint)
            # Last: every locked relation's digest and witness, over exactly what commits (schema 008).
            with phase("lock record"):
                lock_record.record_lock(conn, audit_run_id, audit_run_id)
            committing = time.perf_counter()
        phase.seconds["commit"] = round(time.perf_counter() - committing, 3)
    with phase("analyze"), db.translate_errors(url), engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return LoadResult(True, f"loaded {counts['amount_fact']} amount facts; audit PASS; lock recorded",
                      audit_run_id, fingerprint, counts, phase.seconds)


def _record_audit(conn: Connection, bundle: LoadBundle, insurer_keys: list[str], counts: dict[str, int],
                  fingerprint: str) -> str:
    lineage = bundle.lineage
    original_id = conn.execute(
        text(
            """
            INSERT INTO audit_runs (kind, audit_name, status, freeze_tag, git_commit, generated_at, rows_audited,
                                    value_mismatches, type_mismatches, insurers)
            VALUES ('original', :name, :status, :tag, :commit, :generated, :rows, :value_mm, :type_mm, :insurers)
            RETURNING audit_run_id
            """
        ),
        {"name": lineage["audit_name"], "status": lineage["status"], "tag": lineage["freeze_tag"],
         "commit": lineage["git_commit"], "generated": datetime.fromisoformat(lineage["generated_at"]),
         "rows": lineage["rows_audited"], "value_mm": lineage["value_mismatches"],
         "type_mm": lineage["type_mismatches"], "insurers": lineage["insurers"]},
    ).scalar_one()
    return str(
        conn.execute(
            text(
                """
                INSERT INTO audit_runs (kind, audit_name, status, freeze_tag, git_commit, generated_at, rows_audited,
                                        insurers, counts, fingerprint, dataset_sha256, based_on)
                VALUES ('load', :name, 'PASS', :tag, :commit, :generated, :rows, :insurers,
                        CAST(:counts AS jsonb), :fingerprint, :dataset, :based_on)
                RETURNING audit_run_id
                """
            ),
            {"name": LOAD_AUDIT_NAME, "tag": lineage["freeze_tag"], "commit": lineage["git_commit"],
             "generated": datetime.now(UTC), "rows": counts["amount_fact"],
             "insurers": insurer_keys, "counts": json.dumps(counts),
             "fingerprint": fingerprint, "dataset": bundle.dataset_sha256, "based_on": original_id},
        ).scalar_one()
    )


def load(dataset_root: Path | None = None, progress: Progress | None = None) -> LoadResult:
    """Load the bundled dataset into the configured (or embedded) database, once."""
    bundle = read_bundle(dataset_root or config.dataset_dir())
    try:
        return load_bundle(bundle, db.admin_engine(), progress)
    except IntegrityError as error:  # a constraint SQLAlchemy saw before psycopg's copy did
        raise AuditFailed(f"the database refused a row ({error.orig}); nothing was loaded", [str(error)]) from None


def ensure_loaded() -> LoadResult | None:
    """Load the bundled dataset if the embedded database has never been loaded (notebooks, first
    start); returns the load's result, or None when nothing had to be done.

    A configured database (DATABASE_URL / INCA_ADMIN_URL) is left alone: its operator loads it with
    `python -m core load`, and reading code must never write to it by accident.
    """
    if not db.connections().embedded:
        return None
    engine = db.admin_engine()
    with db.translate_errors(engine.url), engine.connect() as conn:
        if applied_version(conn) > 0 and loaded_run(conn) is not None:
            return None
    return load()
