"""Condition slots for the audited load and `python -m core upgrade`: derive, write, audit.

Runs inside the caller's audited transaction (inca_open_audited_load already called). The rows are
derived from what the locked tables hold in that transaction, never from the dataset files, so a
fresh load and an upgrade of an older database produce the same rows: raw name, then the instance's
snippets in a fixed order (doc_type in code-point order, so the proposal 가입설계서 comes first, then
ordinal), through core.conditions.extract_conditions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from itertools import groupby
from operator import attrgetter
from re import _constants as _sre  # type: ignore[attr-defined]  # the regex parser's node names
from re import _parser  # type: ignore[attr-defined]
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, text

from core.conditions import NOT_FOUND, SLOTS, SlotResult, SourceText, extract, extract_conditions
from core.conditions.rules import PATTERNS
from core.errors import AuditFailed
from core.ops import bulk

TABLES = ("condition_slot", "condition_phrase")
_EXTRACT = extract_conditions  # the real extractor (the raw-name cache is for it only)
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


# --- the prefilter -----------------------------------------------------------------------------
# Extraction is pure and costs ~1 ms per instance in Python, most of it on texts where no phrase can
# occur. Two exact tests decide which texts the extractor can draw anything from, and it runs on those
# only (the raw name always stays first, so source indexes map back as before):
# * the raw name and the proposal snippet contribute only through find_phrases, whose patterns all
#   need one of a few literal substrings (derived from the patterns themselves, below);
# * a supporting snippet contributes only next to the coverage's name (extract._occurrences finds
#   name_core in the whitespace-free text) or in a bullet group / title printing its full name
#   (own_full_name, compared whitespace-free with a line of the snippet), so it is kept only when one
#   of those two strings occurs in its whitespace-free text.
# Dropping a text that contributes nothing changes no result: each source is read on its own, and the
# phrases are ordered by source position, which the kept sources keep. tests/test_streamed_load.py
# proves the rows equal on the real dataset and the tiny market.

def _required(items: Any) -> list[frozenset[str]]:
    """What every match of this parsed regex contains: each listed set has a member in it (no list: unknown)."""
    options: list[frozenset[str]] = []
    run: list[str] = []
    for op, av in [*items, (None, None)]:
        if op is _sre.LITERAL:
            run.append(chr(av))
            continue
        if run:
            options.append(frozenset({"".join(run)}))
            run = []
        inner: list[frozenset[str]] = []
        if op is _sre.SUBPATTERN and not av[1] & re.IGNORECASE:
            inner = _required(av[3])
        elif op is _sre.BRANCH:
            # one requirement per alternative, the branch needs one of them
            alternatives = [_required(alternative) for alternative in av[1]]
            if all(alternatives):
                inner = [frozenset().union(*(min(a, key=lambda o: (len(o), -min(map(len, o)))) for a in alternatives))]
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT) and av[0] >= 1:
            inner = _required(av[2])
        options += inner
    return options


def _requirements() -> list[list[frozenset[str]]] | None:
    """Per slot pattern, what its matches contain (None: a pattern without a literal, no prefilter)."""
    found = []
    for patterns in PATTERNS.values():
        for pattern in patterns:
            required = [] if pattern.flags & re.IGNORECASE else _required(_parser.parse(pattern.pattern, pattern.flags))
            if not required:
                return None
            found.append(required)
    return found


REQUIREMENTS = _requirements()
# the same, as plain tuples checked longest (rarest) string first: this test runs on every text
_CHECKS = None if REQUIREMENTS is None else tuple(
    tuple(tuple(sorted(option, key=len, reverse=True)) for option in sorted(required, key=lambda o: -max(map(len, o))))
    for required in REQUIREMENTS)


def may_hold_phrase(text: str) -> bool:
    """False only when no slot pattern can match anywhere in `text` (find_phrases finds nothing)."""
    if _CHECKS is None:
        return True
    for required in _CHECKS:
        for option in required:
            for needle in option:
                if needle in text:
                    break
            else:
                break  # this pattern cannot match
        else:
            return True
    return False


@lru_cache(maxsize=65_536)
def _names(raw_name: str) -> tuple[str, str]:
    return extract.name_core(raw_name), extract.own_full_name(raw_name)


@lru_cache(maxsize=16_384)
def _flat(text: str) -> str:
    return "".join(text.split())  # every whitespace character removed (str.isspace), as the extractor does


def _may_contribute(snippet: _Snippet, core: str, own: str) -> bool:
    if snippet.doc_type == extract.PROPOSAL:
        return may_hold_phrase(snippet.snippet)
    flat = _flat(snippet.snippet)
    return (bool(core) and core in flat) or not own or own in flat


#: every slot NOT_FOUND: what the extractor returns when no text can hold a phrase
_NOTHING_FOUND = {slot: SlotResult(NOT_FOUND) for slot in SLOTS}


@lru_cache(maxsize=65_536)
def _from_raw_name(raw_name: str) -> dict[str, SlotResult]:
    """Slots from the raw name alone (no snippet can contribute): raw names repeat across products."""
    return extract_conditions(raw_name, [])


def conditions_of(raw_name: str, snippets: list[_Snippet]) -> tuple[dict[str, SlotResult], list[Any]]:
    """extract_conditions over the instance's texts that can contribute, and the evidence id of each
    source index (0: the raw name)."""
    core, own = _names(raw_name)
    kept = [snippet for snippet in snippets if _may_contribute(snippet, core, own)]
    if not kept:
        if not may_hold_phrase(raw_name):
            return _NOTHING_FOUND, [None]
        if extract_conditions is _EXTRACT:  # (a test may replace the extractor: then call it every time)
            return _from_raw_name(raw_name), [None]
    sources = [SourceText("evidence", s.doc_type, s.page, s.ordinal, s.snippet) for s in kept]
    return extract_conditions(raw_name, sources), [None, *(s.evidence_id for s in kept)]


def derive_batches(raw: psycopg.Connection, batch_rows: int = 20_000) -> Iterator[tuple[list[tuple[Any, ...]],
                                                                                         list[tuple[Any, ...]]]]:
    """The condition_slot and condition_phrase rows for every instance the database holds, in batches
    of about `batch_rows` slot rows (memory does not grow with the market)."""
    slots: list[tuple[Any, ...]] = []
    phrases: list[tuple[Any, ...]] = []
    for instance_id, raw_name, snippets in _instances(raw):
        results, evidence_ids = conditions_of(raw_name, snippets)
        for slot in SLOTS:
            result = results[slot]
            slots.append((instance_id, slot, result.status))
            for ordinal, phrase in enumerate(result.phrases):
                phrases.append((instance_id, slot, ordinal, evidence_ids[phrase.source_index], phrase.source_kind,
                                phrase.doc_type, phrase.page, phrase.start, phrase.end, phrase.text))
        if len(slots) >= batch_rows:
            yield slots, phrases
            slots, phrases = [], []
    if slots or phrases:
        yield slots, phrases


def derive_rows(raw: psycopg.Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every row of derive_batches at once (small databases, comparisons in tests)."""
    slots: list[tuple[Any, ...]] = []
    phrases: list[tuple[Any, ...]] = []
    for batch_slots, batch_phrases in derive_batches(raw):
        slots += batch_slots
        phrases += batch_phrases
    return slots, phrases


def missing(conn: Connection) -> bool:
    """True when the database has instances but no condition slots yet (loaded by an earlier version)."""
    return bool(conn.execute(text(
        "SELECT EXISTS (SELECT FROM coverage_instance) AND NOT EXISTS (SELECT FROM condition_slot)")).scalar_one())


def derive(conn: Connection) -> dict[str, int]:
    """Write every instance's slots and phrases (binary COPY, batch by batch while the sources are read:
    a cursor stays open across COPY in a transaction); returns the row counts written (recorded with
    the load's counts, which the lock's witness reads)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    written = {"condition_slot": 0, "condition_phrase": 0}
    types: dict[str, list[int] | None] = {}
    for slots, phrases in derive_batches(raw):
        for table, columns, rows in (("condition_slot", SLOT_COLUMNS, slots), ("condition_phrase", PHRASE_COLUMNS, phrases)):
            if not rows:
                continue
            if table not in types:
                types[table] = bulk.binary_types(raw, table, columns, rows[0])
            bulk.copy_rows(raw, table, columns, rows, types[table])
            written[table] += len(rows)
    return written


def audit(conn: Connection) -> None:
    """AuditFailed (which rolls the caller back) for any slot or phrase the rules refuse."""
    failures = list(conn.execute(_AUDIT_SQL, {"slots": len(SLOTS)}).scalars())
    if failures:
        raise AuditFailed("condition audit failed; nothing was written: " + "; ".join(failures[:5]), failures)


def derive_and_audit(conn: Connection) -> dict[str, int]:
    """Write every instance's slots and phrases, then audit them; AuditFailed rolls the caller back.

    The two tables' keys and indexes are dropped for the COPY and rebuilt before the audit (as the load
    does for the tables it copies): millions of slot rows would otherwise pay a foreign-key probe and
    two key inserts each. A key the rows violate fails the audit.
    """
    deferred = bulk.defer_keys_and_indexes(conn, list(TABLES))
    written = derive(conn)
    try:
        bulk.rebuild(conn, deferred)
    except psycopg.errors.IntegrityError as error:
        raise AuditFailed(f"condition audit failed; nothing was written ({error.diag.constraint_name or error.sqlstate}: "
                          f"{error.diag.message_primary})", [str(error)]) from None
    audit(conn)
    return written
