"""What the store holds, read-only: the schema version expected and applied, row counts, the latest load.

The read side's view of the database's shape (status, the dashboard's first-start probe); the
operations side (core.ops) writes it: migrations apply these schema files, the load fills the tables.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    found = []
    for path in sorted(SCHEMA_DIR.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"schema file {path.name} is not named NNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"schema versions must be 1..N without gaps, found {versions}")
    return found


def latest_version() -> int:
    return migrations()[-1].version


def applied_version(conn: Connection) -> int:
    """The schema version recorded in the database (0 when none)."""
    exists = conn.execute(text("SELECT to_regclass('public.schema_migrations') IS NOT NULL")).scalar_one()
    if not exists:
        return 0
    return int(conn.execute(text("SELECT coalesce(max(version), 0) FROM schema_migrations")).scalar_one())


#: the tables live_counts() reads
COUNTED_TABLES = ("insurer", "product", "product_variant", "document", "coverage_canonical", "coverage_instance",
                  "evidence_ref", "amount_fact", "coverage_alias", "audit_runs", "evidence_finding")


def live_counts(conn: Connection) -> dict[str, int]:
    """Row counts of every table plus the status split, in one round trip (two before schema 004)."""
    # A database not yet migrated to 004 (a reader cannot migrate; tests/test_search.py covers it) has no
    # search index: report 0 rows rather than fail the whole status.
    has_alias = conn.execute(text("SELECT to_regclass('public.coverage_alias') IS NOT NULL")).scalar_one()
    alias_count = "(SELECT count(*) FROM coverage_alias)" if has_alias else "0"  # constant SQL, never input
    # Likewise before schema 010 (evidence findings).
    has_findings = conn.execute(text("SELECT to_regclass('public.evidence_finding') IS NOT NULL")).scalar_one()
    finding_count = "(SELECT count(*) FROM evidence_finding)" if has_findings else "0"  # constant SQL
    row = conn.execute(
        text(
            f"""
            SELECT (SELECT count(*) FROM insurer), (SELECT count(*) FROM product),
                   (SELECT count(*) FROM product_variant), (SELECT count(*) FROM document),
                   (SELECT count(*) FROM coverage_canonical), ci.total, ci.unmatched,
                   (SELECT count(*) FROM evidence_ref), af.total, af.confirmed, af.unconfirmed,
                   {alias_count},
                   (SELECT count(*) FROM audit_runs), {finding_count}
            -- one pass over each big table for its total and its split (was three over amount_fact)
            FROM (SELECT count(*) AS total, count(*) FILTER (WHERE coverage_code IS NULL) AS unmatched
                  FROM coverage_instance) AS ci,
                 (SELECT count(*) AS total, count(*) FILTER (WHERE status = 'CONFIRMED') AS confirmed,
                         count(*) FILTER (WHERE status = 'UNCONFIRMED') AS unconfirmed
                  FROM amount_fact) AS af
            """
        )
    ).one()
    names = ("insurer", "product", "product_variant", "document", "coverage_canonical", "coverage_instance",
             "coverage_instance_unmatched", "evidence_ref", "amount_fact", "amount_fact_confirmed",
             "amount_fact_unconfirmed", "coverage_alias", "audit_runs", "evidence_finding")
    return dict(zip(names, (int(value) for value in row), strict=True))


def loaded_run(conn: Connection) -> tuple[str, str] | None:
    """(audit_run_id, fingerprint) of the load, or None for a database never loaded."""
    row = conn.execute(
        text("SELECT audit_run_id::text, fingerprint FROM audit_runs WHERE kind = 'load' ORDER BY recorded_at DESC LIMIT 1")
    ).first()
    return (row[0], row[1]) if row else None
