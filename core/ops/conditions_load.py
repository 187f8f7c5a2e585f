"""Condition slots for the audited load and `python -m core upgrade`: derive, write, audit.

Runs inside the caller's audited transaction (inca_open_audited_load already called). The rows are
derived from what the locked tables hold in that transaction, never from the dataset files, so a
fresh load and an upgrade of an older database produce the same rows: raw name, then the instance's
snippets in a fixed order (doc_type in code-point order, so the proposal 가입설계서 comes first, then
ordinal), through core.conditions.extract_conditions.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import groupby
from operator import attrgetter
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, text

from core.conditions import SLOTS, SourceText, extract_conditions
from core.errors import AuditFailed

TABLES = ("condition_slot", "condition_phrase")
SLOT_COLUMNS = ("instance_id", "slot", "status")
PHRASE_COLUMNS = ("instance_id", "slot", "ordinal", "evidence_id", "source_kind", "doc_type", "page", "start_pos",
                  "end_pos", "phrase")

# Every instance with its snippets, grouped by instance. The snippet text breaks a tie between two
# snippets of one type and ordinal (none in the dataset), so the order never depends on random ids.
_SOURCES_SQL = """
    SELECT ci.instance_id, ci.coverage_name_raw, e.evidence_id, e.doc_type, e.page, e.snippet, e.ordinal
    FROM coverage_instance ci
    LEFT JOIN evidence_ref e ON e.instance_id = ci.instance_id
    ORDER BY ci.instance_id, e.doc_type COLLATE "C", e.ordinal, e.snippet COLLATE "C"
"""

# What the audit refuses: a phrase that is not its source's text at its position, a phrase citing a
# snippet of another coverage, an instance without exactly its five slots, a status its phrases
# contradict (FOUND / CONFLICT need a phrase, NOT_FOUND has none).
_AUDIT_SQL = text(
    """
    SELECT ci.coverage_name_raw || ' ' || cp.slot || ': phrase ' || quote_literal(cp.phrase)
           || ' is not its source text at ' || cp.start_pos || '-' || cp.end_pos
    FROM condition_phrase cp
    JOIN coverage_instance ci ON ci.instance_id = cp.instance_id
    LEFT JOIN evidence_ref e ON e.evidence_id = cp.evidence_id
    WHERE (cp.evidence_id IS NOT NULL AND e.instance_id IS DISTINCT FROM cp.instance_id)
       OR substr(CASE WHEN cp.source_kind = 'raw_name' THEN ci.coverage_name_raw ELSE e.snippet END,
                 cp.start_pos + 1, cp.end_pos - cp.start_pos) IS DISTINCT FROM cp.phrase
    UNION ALL
    SELECT ci.coverage_name_raw || ': ' || count(cs.slot) || ' condition slots, expected ' || CAST(:slots AS int)
    FROM coverage_instance ci LEFT JOIN condition_slot cs ON cs.instance_id = ci.instance_id
    GROUP BY ci.instance_id, ci.coverage_name_raw HAVING count(cs.slot) <> CAST(:slots AS int)
    UNION ALL
    SELECT ci.coverage_name_raw || ' ' || cs.slot || ': status ' || cs.status || ' with ' || count(cp.ordinal) || ' phrases'
    FROM condition_slot cs
    JOIN coverage_instance ci ON ci.instance_id = cs.instance_id
    LEFT JOIN condition_phrase cp ON cp.instance_id = cs.instance_id AND cp.slot = cs.slot
    GROUP BY cs.instance_id, cs.slot, cs.status, ci.coverage_name_raw
    HAVING (cs.status = 'NOT_FOUND') <> (count(cp.ordinal) = 0)
    LIMIT 20
    """
)


class _Snippet(NamedTuple):
    evidence_id: Any
    doc_type: str
    page: int | None
    snippet: str
    ordinal: int


def _instances(raw: psycopg.Connection) -> Iterator[tuple[Any, str, list[_Snippet]]]:
    """(instance_id, raw name, snippet rows) per instance, streamed (bounded memory at market scale)."""
    with raw.cursor(name="inca_condition_sources", row_factory=namedtuple_row) as cursor:
        cursor.itersize = 20_000
        cursor.execute(_SOURCES_SQL)
        for instance_id, group in groupby(cursor, key=attrgetter("instance_id")):
            rows = list(group)
            yield instance_id, rows[0].coverage_name_raw, [
                _Snippet(row.evidence_id, row.doc_type, row.page, row.snippet, row.ordinal)
                for row in rows if row.evidence_id is not None]


def derive_rows(raw: psycopg.Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The condition_slot and condition_phrase rows for every instance the database holds."""
    slots: list[tuple[Any, ...]] = []
    phrases: list[tuple[Any, ...]] = []
    for instance_id, raw_name, snippets in _instances(raw):
        sources = [SourceText("evidence", s.doc_type, s.page, s.ordinal, s.snippet) for s in snippets]
        evidence_ids = [None, *(s.evidence_id for s in snippets)]  # source index 0 is the raw name
        results = extract_conditions(raw_name, sources)
        for slot in SLOTS:
            result = results[slot]
            slots.append((instance_id, slot, result.status))
            for ordinal, phrase in enumerate(result.phrases):
                phrases.append((instance_id, slot, ordinal, evidence_ids[phrase.source_index], phrase.source_kind,
                                phrase.doc_type, phrase.page, phrase.start, phrase.end, phrase.text))
    return slots, phrases


def _copy(raw: psycopg.Connection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:  # table and columns are the constants above, never input
            copy.write_row(row)


def missing(conn: Connection) -> bool:
    """True when the database has instances but no condition slots yet (loaded by an earlier version)."""
    return bool(conn.execute(text(
        "SELECT EXISTS (SELECT FROM coverage_instance) AND NOT EXISTS (SELECT FROM condition_slot)")).scalar_one())


def derive_and_audit(conn: Connection) -> dict[str, int]:
    """Write every instance's slots and phrases, then audit them; AuditFailed rolls the caller back.

    Returns the row counts written (recorded with the load's counts, which the lock's witness reads).
    """
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    slots, phrases = derive_rows(raw)
    _copy(raw, "condition_slot", SLOT_COLUMNS, slots)
    _copy(raw, "condition_phrase", PHRASE_COLUMNS, phrases)
    failures = list(conn.execute(_AUDIT_SQL, {"slots": len(SLOTS)}).scalars())
    if failures:
        raise AuditFailed("condition audit failed; nothing was written: " + "; ".join(failures[:5]), failures)
    return {"condition_slot": len(slots), "condition_phrase": len(phrases)}
