"""What the store holds, read-only: the schema version expected and applied, row counts, the latest load.

The read side's view of the database's shape (status, the dashboard's first-start probe); the
operations side (core.ops) writes it: migrations apply these schema files, the load fills the tables.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

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


def missing_versions(conn: Connection) -> list[int]:
    """The schema files not yet applied to a database that has a schema (`python -m core migrate` applies them)."""
    applied = set(conn.execute(text("SELECT version FROM schema_migrations")).scalars())
    return [m.version for m in migrations() if m.version not in applied]


#: the tables live_counts() reads
COUNTED_TABLES = ("insurer", "product", "product_variant", "document", "coverage_canonical", "coverage_instance",
                  "evidence_ref", "amount_fact", "coverage_alias", "audit_runs", "evidence_finding")


def live_counts(conn: Connection) -> dict[str, int]:
    """Row counts of every table plus the status split, in one round trip.

    For a database at the latest schema (core.status asks for `migrate` before counting an older one).
    """
    row = conn.execute(
        text(
            """
            SELECT (SELECT count(*) FROM insurer) AS insurer, (SELECT count(*) FROM product) AS product,
                   (SELECT count(*) FROM product_variant) AS product_variant,
                   (SELECT count(*) FROM document) AS document,
                   (SELECT count(*) FROM coverage_canonical) AS coverage_canonical,
                   ci.total AS coverage_instance, ci.unmatched AS coverage_instance_unmatched,
                   (SELECT count(*) FROM evidence_ref) AS evidence_ref, af.total AS amount_fact,
                   af.confirmed AS amount_fact_confirmed, af.unconfirmed AS amount_fact_unconfirmed,
                   (SELECT count(*) FROM coverage_alias) AS coverage_alias,
                   (SELECT count(*) FROM audit_runs) AS audit_runs,
                   (SELECT count(*) FROM evidence_finding) AS evidence_finding
            -- one pass over each big table for its total and its split (was three over amount_fact)
            FROM (SELECT count(*) AS total, count(*) FILTER (WHERE coverage_code IS NULL) AS unmatched
                  FROM coverage_instance) AS ci,
                 (SELECT count(*) AS total, count(*) FILTER (WHERE status = 'CONFIRMED') AS confirmed,
                         count(*) FILTER (WHERE status = 'UNCONFIRMED') AS unconfirmed
                  FROM amount_fact) AS af
            """
        )
    ).one()
    return {name: int(value) for name, value in row._mapping.items()}  # named by the SELECT's aliases


class LoadedRun(NamedTuple):
    audit_run_id: str
    fingerprint: str


def loaded_run(conn: Connection) -> LoadedRun | None:
    """(audit_run_id, fingerprint) of the load, or None for a database never loaded."""
    row = conn.execute(
        text("SELECT audit_run_id::text AS audit_run_id, fingerprint FROM audit_runs WHERE kind = 'load' "
             "ORDER BY recorded_at DESC LIMIT 1")
    ).first()
    return LoadedRun(row.audit_run_id, row.fingerprint) if row else None
