"""The audited one-time load: everything in one transaction, audited before it commits.

The locked tables refuse writes from any other transaction (schema/002_lock.sql); this module
is the one place that opens them, and only for a database that has never been loaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from core import config, db, migrate
from core.dataset import COLUMNS, PROPOSAL, TABLE_ORDER, LoadBundle, read_bundle
from core.errors import AuditFailed

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
    raw_names = {row[0]: (row[5], row[4]) for row in bundle.rows["coverage_instance"]}
    evidence = {row[0]: row for row in bundle.rows["evidence_ref"]}
    failures = []
    for _amount_id, instance_id, status, value_text, source_doc_type, source_priority, evidence_id, _ in bundle.rows[
        "amount_fact"
    ]:
        raw_name, code = raw_names.get(instance_id, ("?", None))
        where = f"{raw_name} ({code or 'unmatched'})"
        if status == "CONFIRMED":
            if not value_text or not value_text.strip():
                failures.append(f"{where}: CONFIRMED without value_text")
            elif evidence_id not in evidence:
                failures.append(f"{where}: CONFIRMED without proposal evidence")
            elif _squash(value_text) not in _squash(evidence[evidence_id][5]):
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
    for row in bundle.rows["evidence_ref"]:
        if not str(row[5]).strip():
            failures.append(f"evidence {row[0]}: empty snippet")
        if row[4] is not None and row[4] <= 0:
            failures.append(f"evidence {row[0]}: page {row[4]} is not positive")
    return failures


_POST_AUDIT_SQL = text(
    """
    SELECT ci.coverage_name_raw, af.value_text
    FROM amount_fact af
    JOIN coverage_instance ci ON ci.instance_id = af.instance_id
    LEFT JOIN evidence_ref e ON e.evidence_id = af.evidence_id
    WHERE af.status = 'CONFIRMED'
      AND (e.snippet IS NULL
           OR strpos(regexp_replace(e.snippet, '\\s', '', 'g'), regexp_replace(af.value_text, '\\s', '', 'g')) = 0)
    """
)


def live_counts(conn: Connection) -> dict[str, int]:
    """Row counts of every table plus the status split, in one round trip."""
    row = conn.execute(
        text(
            """
            SELECT (SELECT count(*) FROM insurer), (SELECT count(*) FROM product),
                   (SELECT count(*) FROM product_variant), (SELECT count(*) FROM document),
                   (SELECT count(*) FROM coverage_canonical), (SELECT count(*) FROM coverage_instance),
                   (SELECT count(*) FROM coverage_instance WHERE coverage_code IS NULL),
                   (SELECT count(*) FROM evidence_ref), (SELECT count(*) FROM amount_fact),
                   (SELECT count(*) FROM amount_fact WHERE status = 'CONFIRMED'),
                   (SELECT count(*) FROM amount_fact WHERE status = 'UNCONFIRMED'),
                   (SELECT count(*) FROM audit_runs)
            """
        )
    ).one()
    names = ("insurer", "product", "product_variant", "document", "coverage_canonical", "coverage_instance",
             "coverage_instance_unmatched", "evidence_ref", "amount_fact", "amount_fact_confirmed",
             "amount_fact_unconfirmed", "audit_runs")
    return dict(zip(names, (int(value) for value in row), strict=True))


def _copy(conn: Connection, bundle: LoadBundle, progress: Progress | None) -> None:
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    with raw.cursor() as cursor:
        for table in TABLE_ORDER:
            rows = bundle.rows[table]
            columns = ", ".join(COLUMNS[table])  # constants from core.dataset, never input
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for written, row in enumerate(rows, start=1):
                    copy.write_row(row)
                    if progress is not None and written % 50_000 == 0:
                        progress(table, written, len(rows))
            if progress is not None:
                progress(table, len(rows), len(rows))


def loaded_run(conn: Connection) -> tuple[str, str] | None:
    """(audit_run_id, fingerprint) of the load, or None for a database never loaded."""
    row = conn.execute(
        text("SELECT audit_run_id::text, fingerprint FROM audit_runs WHERE kind = 'load' ORDER BY recorded_at DESC LIMIT 1")
    ).first()
    return (row[0], row[1]) if row else None


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
                return LoadResult(False, "already loaded and locked; nothing changed", existing[0], existing[1],
                                  live_counts(conn))
            conn.execute(text("SELECT inca_open_audited_load()"))
            try:
                _copy(conn, bundle, progress)
            except psycopg.errors.IntegrityError as error:
                raise AuditFailed(f"the database refused a row ({error.diag.constraint_name or error.sqlstate}: "
                                  f"{error.diag.message_primary}); nothing was loaded", [str(error)]) from None
            mismatches = [f"{name}: {value!r} not in its proposal snippet" for name, value in conn.execute(_POST_AUDIT_SQL)]
            counts = live_counts(conn)
            counts["audit_runs"] += 2  # the two runs written below
            wrong_counts = [f"{table}: {counts.get(table)} loaded, {want} expected"
                            for table, want in bundle.expected_counts.items() if counts.get(table) != want]
            if mismatches or wrong_counts:
                raise AuditFailed("audit failed; nothing was loaded: " + "; ".join((mismatches + wrong_counts)[:5]),
                                  mismatches + wrong_counts)
            fingerprint = conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one()
            audit_run_id = _record_audit(conn, bundle, counts, fingerprint)
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
             "insurers": [row[1] for row in bundle.rows["insurer"]], "counts": json.dumps(counts),
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
