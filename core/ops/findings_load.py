"""Evidence findings, written with the lock: the load's step and the upgrade's step are this one function.

Both read back the CONFIRMED facts as stored (value_text, the proposal snippet, the raw name) inside
their own audited transaction and run core.evidence_consistency.check_fact over them, so a database
loaded now and one loaded earlier and upgraded hold the same rows. A finding never touches a fact.
"""

from __future__ import annotations

import uuid

import psycopg
from sqlalchemy import Connection, text

from core.errors import AuditFailed
from core.evidence_consistency import Finding, check_fact
from core.ops import bulk

TABLE = "evidence_finding"
#: (amount_id, instance_id, evidence_id, kind, value_text, context, detail)
FindingRow = tuple[uuid.UUID, uuid.UUID, uuid.UUID, str, str, str, str]
COLUMNS = ("amount_id", "instance_id", "evidence_id", "kind", "value_text", "context", "detail")

# check_fact is pure: the same (value, snippet, raw name) gives the same findings, and a market repeats
# them (an insurer prints one row per coverage and value in many products). So each distinct triple
# of the CONFIRMED facts is checked once, and only the facts of a triple with findings are read with
# their ids. (A CONFIRMED fact has a value and a snippet: CHECK in schema 001; none of the three is NULL.)
_TRIPLES_SQL = """
    SELECT af.value_text, e.snippet, ci.coverage_name_raw
    FROM amount_fact af
    JOIN evidence_ref e ON e.evidence_id = af.evidence_id
    JOIN coverage_instance ci ON ci.instance_id = af.instance_id
    WHERE af.status = 'CONFIRMED'
    GROUP BY af.value_text, e.snippet, ci.coverage_name_raw
"""
_FLAGGED_TABLE = """
    CREATE TEMP TABLE inca_flagged_facts (value_text text NOT NULL, snippet text NOT NULL,
                                          coverage_name_raw text NOT NULL) ON COMMIT DROP
"""
_FLAGGED_FACTS_SQL = """
    SELECT af.amount_id, af.instance_id, af.evidence_id, af.value_text, e.snippet, ci.coverage_name_raw
    FROM inca_flagged_facts f
    JOIN amount_fact af ON af.value_text = f.value_text AND af.status = 'CONFIRMED'
    JOIN evidence_ref e ON e.evidence_id = af.evidence_id AND e.snippet = f.snippet
    JOIN coverage_instance ci ON ci.instance_id = af.instance_id AND ci.coverage_name_raw = f.coverage_name_raw
"""


def compute(conn: Connection) -> list[FindingRow]:
    """Every finding over the facts as stored now, in a fixed order (deterministic)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    flagged: dict[tuple[str, str, str], list[Finding]] = {}
    # A server-side cursor: at market scale the distinct snippets do not fit in memory at once.
    with raw.cursor(name="inca_evidence_findings") as cursor:
        cursor.itersize = 20_000
        cursor.execute(_TRIPLES_SQL)
        for value_text, snippet, raw_name in cursor:
            findings = check_fact(value_text, snippet, raw_name)
            if findings:
                flagged[value_text, snippet, raw_name] = findings
    if not flagged:
        return []
    raw.execute(_FLAGGED_TABLE)
    with raw.cursor() as cursor, cursor.copy(
            "COPY inca_flagged_facts (value_text, snippet, coverage_name_raw) FROM STDIN") as copy:
        for triple in flagged:
            copy.write_row(triple)
    found: list[FindingRow] = []
    for amount_id, instance_id, evidence_id, value_text, snippet, raw_name in raw.execute(_FLAGGED_FACTS_SQL):
        for finding in flagged[value_text, snippet, raw_name]:
            found.append((amount_id, instance_id, evidence_id, finding.kind, finding.value_text,
                          finding.context, finding.detail))
    raw.execute("DROP TABLE inca_flagged_facts")
    return sorted(found, key=lambda row: (str(row[0]), row[3]))


def stored(conn: Connection) -> list[FindingRow]:
    rows = conn.execute(text(f"SELECT {', '.join(COLUMNS)} FROM {TABLE}")).all()  # constants, never input
    return sorted((tuple(row) for row in rows), key=lambda row: (str(row[0]), row[3]))  # type: ignore[misc]


def write(conn: Connection, rows: list[FindingRow]) -> None:
    """Insert `rows` (the caller's transaction must be the audited one: the table is locked)."""
    if not rows:
        return
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    bulk.copy_rows(raw, TABLE, COLUMNS, rows, bulk.binary_types(raw, TABLE, COLUMNS, rows[0]))


def load_step(conn: Connection) -> int:
    """The load's step: findings over the rows it has just written; returns how many."""
    rows = compute(conn)
    write(conn, rows)
    return len(rows)


def upgrade_step(conn: Connection) -> int:
    """The upgrade's step: the same rows as the load would write; 0 when they are already there.

    A table that already holds other findings than the check computes is refused: the findings are
    locked content, and replacing them is not an upgrade.
    """
    rows = compute(conn)
    held = stored(conn)
    if held == rows:
        return 0
    if held:
        raise AuditFailed(f"{TABLE} holds {len(held)} row(s) that differ from the {len(rows)} the check computes; "
                          "nothing was changed (a locked table is never rewritten)", [])
    write(conn, rows)
    return len(rows)
