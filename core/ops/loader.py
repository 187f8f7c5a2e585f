"""The audited one-time load: everything in one transaction, audited before it commits.

The locked tables refuse writes from any other transaction (schema/002_lock.sql); this module
is the one place that opens them, and only for a database that has never been loaded.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from core import config, db
from core.amounts import is_placeholder_amount
from core.errors import AuditFailed, DatasetMismatch
from core.inventory import applied_version, live_counts, loaded_run
from core.ops import conditions_load, findings_load, lock_record, migrate
from core.ops.dataset import COLUMNS, PROPOSAL, TABLE_ORDER, LoadBundle, fields, read_bundle

LOAD_AUDIT_NAME = "inca_load_audit"
_LOAD_LOCK_KEY = 0x1ACA_0002
_WHITESPACE = re.compile(r"\s+")
#: hook for a progress bar: (table, rows written so far, rows in the table)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LoadResult:
    changed: bool
    message: str
    audit_run_id: str
    fingerprint: str
    counts: dict[str, int]


def _squash(value: str) -> str:
    return _WHITESPACE.sub("", value)


def pre_audit(bundle: LoadBundle) -> list[str]:
    """Check every fact against its status rule before anything is written; returns failures."""
    instance = fields("coverage_instance", "instance_id", "coverage_name_raw", "coverage_code")
    raw_names = {instance_id: (raw, code) for instance_id, raw, code in map(instance, bundle.rows["coverage_instance"])}
    snippet = fields("evidence_ref", "evidence_id", "instance_id", "snippet", "page")
    owner_of: dict[object, object] = {}
    text_of: dict[object, str] = {}
    for evidence_id, owner, snippet_text, _page in map(snippet, bundle.rows["evidence_ref"]):
        owner_of[evidence_id], text_of[evidence_id] = owner, snippet_text
    fact = fields("amount_fact", "instance_id", "status", "value_text", "source_doc_type", "source_priority",
                  "evidence_id")
    failures = []
    for instance_id, status, value_text, source_doc_type, source_priority, evidence_id in map(fact, bundle.rows[
        "amount_fact"
    ]):
        raw_name, code = raw_names.get(instance_id, ("?", None))
        where = f"{raw_name} ({code or 'unmatched'})"
        if status == "CONFIRMED":
            if not value_text or not value_text.strip():
                failures.append(f"{where}: CONFIRMED without value_text")
            elif is_placeholder_amount(value_text):
                failures.append(f"{where}: CONFIRMED value_text {value_text!r} is a placeholder, not an amount")
            elif evidence_id not in owner_of:
                failures.append(f"{where}: CONFIRMED without proposal evidence")
            # The amount's evidence is a snippet of this coverage: compare() reads it with the instance's
            # own snippets (one index probe), and an amount proven by another coverage's text proves nothing.
            elif owner_of[evidence_id] != instance_id:
                failures.append(f"{where}: its proposal evidence belongs to another coverage")
            # The plain substring test first: when it holds, the whitespace-free one holds too, and it
            # spares two regex passes per fact (seconds at a million facts).
            elif value_text not in text_of[evidence_id] and _squash(value_text) not in _squash(text_of[evidence_id]):
                failures.append(f"{where}: value_text {value_text!r} not found in its proposal snippet")
            if source_doc_type != PROPOSAL:
                failures.append(f"{where}: CONFIRMED amount sourced from {source_doc_type!r}, not {PROPOSAL}")
        elif status == "UNCONFIRMED":
            if value_text is not None or evidence_id is not None:
                failures.append(f"{where}: UNCONFIRMED but carries an amount or evidence")
        else:
            failures.append(f"{where}: unknown status {status!r} (stored statuses: CONFIRMED, UNCONFIRMED)")
        if source_priority == "PRIMARY" and source_doc_type != PROPOSAL:
            failures.append(f"{where}: PRIMARY source must be {PROPOSAL}")
    for evidence_id, _owner, snippet_text, page in map(snippet, bundle.rows["evidence_ref"]):
        if not str(snippet_text).strip():
            failures.append(f"evidence {evidence_id}: empty snippet")
        if page is not None and page <= 0:
            failures.append(f"evidence {evidence_id}: page {page} is not positive")
    return failures


_POST_AUDIT_SQL = text(
    """
    SELECT ci.coverage_name_raw, af.value_text,
           CASE WHEN e.instance_id <> af.instance_id THEN 'its proposal evidence belongs to another coverage'
                ELSE 'not in its proposal snippet' END
    FROM amount_fact af
    JOIN coverage_instance ci ON ci.instance_id = af.instance_id
    LEFT JOIN evidence_ref e ON e.evidence_id = af.evidence_id
    WHERE af.status = 'CONFIRMED'
      AND (e.snippet IS NULL
           OR e.instance_id <> af.instance_id
           -- plain strpos first: when it finds the value the whitespace-free test would too (cheap filter)
           OR (strpos(e.snippet, af.value_text) = 0
               AND strpos(regexp_replace(e.snippet, '\\s', '', 'g'), regexp_replace(af.value_text, '\\s', '', 'g')) = 0))
    """
)


# --- bulk path --------------------------------------------------------------------------------
# The load only ever writes an empty database, inside one transaction. Maintaining every primary key,
# unique key, foreign key and secondary index row by row while COPY runs (random uuid keys, one
# foreign-key probe per row, an HNSW insert per alias) made a million facts take ~10 minutes on two
# cores. So the keys and indexes of the tables about to be copied are dropped inside the load's
# transaction and recreated right after COPY: sorted index builds and one validating join per foreign
# key. The end state is the same schema, every constraint is still checked against every row before
# anything commits, a violation still fails the load (AuditFailed), and a failed load rolls the DDL
# back with the rows. CHECK and NOT NULL constraints and the lock triggers stay in place throughout.
_DEFERRED_SQL = text(
    """
    WITH copied AS (SELECT to_regclass(name) AS oid FROM unnest(CAST(:tables AS text[])) AS name)
    SELECT step, drop_sql, create_sql FROM (
        -- foreign keys on the copied tables, or pointing into them (they depend on the keys below)
        SELECT 1 AS step, c.conname AS name,
               format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname) AS drop_sql,
               format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
                      pg_get_constraintdef(c.oid)) AS create_sql
        FROM pg_constraint c
        WHERE c.contype = 'f' AND (c.conrelid IN (SELECT oid FROM copied) OR c.confrelid IN (SELECT oid FROM copied))
        UNION ALL
        -- primary and unique keys of the copied tables
        SELECT 2, c.conname,
               format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname),
               format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
        FROM pg_constraint c
        WHERE c.contype IN ('p', 'u') AND c.conrelid IN (SELECT oid FROM copied)
        UNION ALL
        -- every other index of the copied tables (btree, HNSW, ...)
        SELECT 3, ic.relname, format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid IN (SELECT oid FROM copied)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
    ) AS deferred
    ORDER BY step, name
    """
)


def _defer_keys_and_indexes(conn: Connection, tables: list[str]) -> list[tuple[int, str]]:
    """Drop the keys and indexes of `tables` (in this transaction); returns how to recreate them."""
    deferred = conn.execute(_DEFERRED_SQL, {"tables": tables}).all()
    raw = conn.connection.driver_connection
    for _step, drop_sql, _create_sql in deferred:
        raw.execute(drop_sql)  # generated by the catalog query above (format with %I), never input
    return [(step, create_sql) for step, _drop_sql, create_sql in deferred]


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


def _rebuild(conn: Connection, deferred: list[tuple[int, str]]) -> None:
    """Keys first (foreign keys need them), then the other indexes, then the foreign keys."""
    raw = conn.connection.driver_connection
    # Sorts and HNSW graphs are built in memory when they fit, and the joins that validate the foreign
    # keys, the post-audit and the fingerprint hash in memory; both settings end with the transaction.
    raw.execute("SET LOCAL maintenance_work_mem = '512MB'")
    raw.execute("SET LOCAL work_mem = '128MB'")
    for _step, create_sql in sorted(deferred, key=lambda item: {2: 0, 3: 1, 1: 2}[item[0]]):
        raw.execute(create_sql)


# Binary COPY spares the server the text parsing of every field and psycopg the text escaping: about
# 1.8x the rows per second for evidence_ref (400 k rows: 4.3 s -> 2.4 s on two cores). Only for tables
# whose columns all have one of these types and whose first row holds the matching Python types (what
# core.ops.dataset produces); jsonb and vector columns arrive as text, so their tables are copied as text.
_BINARY_COPY_TYPES: dict[str, type | tuple[type, ...]] = {"uuid": uuid.UUID, "text": str, "int4": int, "int2": int,
                                                          "date": date}


def _binary_types(raw: psycopg.Connection, table: str, rows: list[tuple[object, ...]]) -> list[int] | None:
    """The column type oids for a binary COPY of `rows` into `table`, or None to copy as text."""
    found = raw.execute(
        "SELECT a.atttypid::int, t.typname FROM unnest(%s::text[]) WITH ORDINALITY AS c(name, position) "
        "JOIN pg_attribute a ON a.attrelid = to_regclass(%s) AND a.attname = c.name "
        "JOIN pg_type t ON t.oid = a.atttypid ORDER BY c.position",
        (list(COLUMNS[table]), table),
    ).fetchall()
    if not rows or len(found) != len(COLUMNS[table]):
        return None
    for (_oid, type_name), value in zip(found, rows[0], strict=True):
        expected = _BINARY_COPY_TYPES.get(type_name)
        if expected is None or (value is not None and not isinstance(value, expected)):
            return None
    return [oid for oid, _type_name in found]


def _copy(conn: Connection, bundle: LoadBundle, progress: Progress | None, freeze: bool = False) -> None:
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    with raw.cursor() as cursor:
        for table in TABLE_ORDER:
            rows = bundle.rows[table]
            columns = ", ".join(COLUMNS[table])  # constants from core.ops.dataset, never input
            types = _binary_types(raw, table, rows)
            options = ", ".join([*(["FORMAT binary"] if types else []), *(["FREEZE"] if freeze else [])])
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN" + (f" WITH ({options})" if options else "")) as copy:
                if types:
                    copy.set_types(types)
                for written, row in enumerate(rows, start=1):
                    copy.write_row(row)
                    if progress is not None and written % 50_000 == 0:
                        progress(table, written, len(rows))
            if progress is not None:
                progress(table, len(rows), len(rows))


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
    """Write `bundle` in one audited transaction, unless the database is already loaded."""
    failures = pre_audit(bundle)
    if failures:
        raise AuditFailed(f"audit failed for {len(failures)} row(s); nothing was loaded: " + "; ".join(failures[:5]),
                          failures)
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
            try:
                copied = [table for table in TABLE_ORDER if bundle.rows.get(table)]
                deferred = _defer_keys_and_indexes(conn, copied)
                _copy(conn, bundle, progress, freeze=_truncate_if_empty(conn, copied))
                _rebuild(conn, deferred)
            except psycopg.errors.IntegrityError as error:
                raise AuditFailed(f"the database refused a row ({error.diag.constraint_name or error.sqlstate}: "
                                  f"{error.diag.message_primary}); nothing was loaded", [str(error)]) from None
            mismatches = [f"{name}: {value!r} {reason}" for name, value, reason in conn.execute(_POST_AUDIT_SQL)]
            # Derived from the rows just written, by the same functions as `python -m core upgrade`:
            # condition slots, then evidence findings.
            condition_counts = conditions_load.derive_and_audit(conn)
            findings_load.load_step(conn)
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
            _refresh_summaries(conn)
            _refresh_search_vectors(conn)
            fingerprint = conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one()
            audit_run_id = _record_audit(conn, bundle, counts, fingerprint)
            # Last: every locked relation's digest and witness, over exactly what commits (schema 008).
            lock_record.record_lock(conn, audit_run_id, audit_run_id)
    with db.translate_errors(url), engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return LoadResult(True, f"loaded {counts['amount_fact']} amount facts; audit PASS; lock recorded",
                      audit_run_id, fingerprint, counts)


def _record_audit(conn: Connection, bundle: LoadBundle, counts: dict[str, int], fingerprint: str) -> str:
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
             "insurers": list(map(fields("insurer", "insurer_key"), bundle.rows["insurer"])), "counts": json.dumps(counts),
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
