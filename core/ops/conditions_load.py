"""Condition slots for the audited load and `python -m core upgrade`: derive, write, audit.

Runs inside the caller's audited transaction (inca_open_audited_load already called). The rows are
derived from what the locked tables hold in that transaction, never from the dataset files, so a
fresh load and an upgrade of an older database produce the same rows: raw name, then the instance's
snippets in a fixed order (doc_type in code-point order, so the proposal 가입설계서 comes first, then
ordinal), through core.conditions.extract_conditions.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any, NamedTuple

import psycopg
from sqlalchemy import Connection, text

from core.conditions import SLOTS, extract
from core.conditions.extract import NO_HITS, PROPOSAL, SourceHits, combine, own_hits, source_hits
from core.errors import AuditFailed
from core.ops import bulk

TABLES = ("condition_slot", "condition_phrase")
SLOT_COLUMNS = ("instance_id", "slot", "status")
PHRASE_COLUMNS = ("instance_id", "slot", "ordinal", "evidence_id", "source_kind", "doc_type", "page", "start_pos",
                  "end_pos", "phrase")

# What the audit refuses: a phrase that is not its source's text at its position, a phrase citing a
# snippet of another coverage, an instance without exactly its five slots, a status its phrases
# contradict (FOUND / CONFLICT need a phrase, NOT_FOUND has none). At a million instances the first
# form took ~18 s; these are the same tests, arranged so each join is one hash join over keys:
# * raw-name phrases and snippet phrases are checked apart (their CHECK constraint ties
#   source_kind = 'raw_name' to evidence_id IS NULL, and CHECK constraints hold throughout the load),
#   so only snippet phrases look up a snippet;
# * slots and phrases are counted per key first, then compared, instead of grouping every slot row
#   with its raw name (the raw name is only part of the message).
_AUDIT_SQL = text(
    """
    SELECT ci.coverage_name_raw || ' ' || cp.slot || ': phrase ' || quote_literal(cp.phrase)
           || ' is not its source text at ' || cp.start_pos || '-' || cp.end_pos
    FROM condition_phrase cp JOIN coverage_instance ci ON ci.instance_id = cp.instance_id
    WHERE cp.source_kind = 'raw_name'
      AND substr(ci.coverage_name_raw, cp.start_pos + 1, cp.end_pos - cp.start_pos) IS DISTINCT FROM cp.phrase
    UNION ALL
    SELECT ci.coverage_name_raw || ' ' || bad.slot || ': phrase ' || quote_literal(bad.phrase)
           || ' is not its source text at ' || bad.start_pos || '-' || bad.end_pos
    FROM (SELECT cp.instance_id, cp.slot, cp.phrase, cp.start_pos, cp.end_pos
          FROM condition_phrase cp LEFT JOIN evidence_ref e ON e.evidence_id = cp.evidence_id
          WHERE cp.source_kind <> 'raw_name'
            AND (e.instance_id IS DISTINCT FROM cp.instance_id
                 OR substr(e.snippet, cp.start_pos + 1, cp.end_pos - cp.start_pos) IS DISTINCT FROM cp.phrase)) AS bad
    JOIN coverage_instance ci ON ci.instance_id = bad.instance_id
    UNION ALL
    SELECT ci.coverage_name_raw || ': ' || coalesce(cs.slots, 0) || ' condition slots, expected ' || CAST(:slots AS int)
    FROM coverage_instance ci
    LEFT JOIN (SELECT instance_id, count(*) AS slots FROM condition_slot GROUP BY instance_id) AS cs
           ON cs.instance_id = ci.instance_id
    WHERE coalesce(cs.slots, 0) <> CAST(:slots AS int)
    UNION ALL
    SELECT ci.coverage_name_raw || ' ' || cs.slot || ': status ' || cs.status || ' with ' || coalesce(cp.phrases, 0) || ' phrases'
    FROM condition_slot cs
    LEFT JOIN (SELECT instance_id, slot, count(*) AS phrases FROM condition_phrase GROUP BY instance_id, slot) AS cp
           ON cp.instance_id = cs.instance_id AND cp.slot = cs.slot
    JOIN coverage_instance ci ON ci.instance_id = cs.instance_id
    WHERE (cs.status = 'NOT_FOUND') <> (coalesce(cp.phrases, 0) = 0)
    LIMIT 20
    """
)


class _Snippet(NamedTuple):
    evidence_id: Any
    doc_type: str
    page: int | None
    snippet: str
    ordinal: int


# --- which supporting snippets can contribute, decided before the stream ------------------------
# A market prints a few hundred supporting snippets (약관 / 사업방법서 / 상품요약서) under every one of its
# coverages: millions of rows, a few thousand distinct texts, and a coverage's name in almost none of
# them. So the distinct raw names and the distinct supporting texts are read first, every pair is put
# through the extractor's own per-source step (extract.source_hits, which rules a text out at once when
# it does not hold the coverage's name), and the stream reads a supporting snippet only when its pair
# yields a hit. Leaving a source without hits out changes no result (core.conditions.extract.combine).
# When the pairs would be too many to try (many distinct names times many distinct texts), every
# snippet is streamed and tried on its way, with the same function.

#: most (raw name, supporting text) pairs tried up front; beyond it every supporting snippet is streamed
MAX_PAIRS = 40_000_000
#: most distinct supporting texts held for that (their memory, whatever the names)
MAX_TEXTS = 200_000

_RAW_NAMES_SQL = "SELECT DISTINCT coverage_name_raw FROM coverage_instance"
_SUPPORTING_TEXTS_SQL = "SELECT snippet FROM evidence_ref WHERE doc_type <> %(proposal)s GROUP BY snippet"
_CANDIDATES_TABLE = """
    CREATE TEMP TABLE inca_condition_candidates (coverage_name_raw text NOT NULL, snippet text NOT NULL)
    ON COMMIT DROP
"""

# Three streams in instance order, merged here by equality (every snippet's instance is an instance:
# its foreign key is validated before the derivation): the instances, their proposal rows, and the
# supporting rows that can contribute (all of them when the pairs were not tried up front). Each on
# its own index scan: one ordered join of all three cost the server twice as much. Within an instance
# the snippets are ordered here by (doc_type, ordinal, snippet) in code-point order, which is what
# COLLATE "C" compares; ids travel as text (a uuid object per row costs more than the rest of its work).
_INSTANCES_SQL = "SELECT ci.instance_id::text AS id, ci.coverage_name_raw FROM coverage_instance ci ORDER BY ci.instance_id"
_PROPOSAL_ROWS_SQL = """
    SELECT e.instance_id::text AS id, e.evidence_id::text, e.doc_type, e.page, e.snippet, e.ordinal
    FROM evidence_ref e WHERE e.doc_type = %(proposal)s ORDER BY e.instance_id
"""
# The pair as one text (the name's length first, so no two pairs read alike): one hashed lookup per
# snippet of a candidate text, after one pass over the table (a join on the two columns was planned
# as a nested loop over every instance of every candidate name).
_SUPPORTING_ROWS_SQL = """
    SELECT e.instance_id::text AS id, e.evidence_id::text, e.doc_type, e.page, e.snippet, e.ordinal
    FROM evidence_ref e JOIN coverage_instance ci ON ci.instance_id = e.instance_id
    WHERE e.doc_type <> %(proposal)s AND e.snippet IN (SELECT snippet FROM inca_condition_candidates)
      AND (char_length(ci.coverage_name_raw) || ':' || ci.coverage_name_raw || e.snippet)
          IN (SELECT char_length(coverage_name_raw) || ':' || coverage_name_raw || snippet FROM inca_condition_candidates)
    ORDER BY e.instance_id
"""
_ALL_SUPPORTING_ROWS_SQL = """
    SELECT e.instance_id::text AS id, e.evidence_id::text, e.doc_type, e.page, e.snippet, e.ordinal
    FROM evidence_ref e WHERE e.doc_type <> %(proposal)s ORDER BY e.instance_id
"""


def _supporting_hits(raw: psycopg.Connection) -> dict[tuple[str, str], SourceHits] | None:
    """The (raw name, supporting text) pairs that yield a hit, with their hits; None: too many to try.

    The distinct texts are read through a cursor and given up on as soon as they are too many, so a
    market whose snippets rarely repeat never holds them all in memory (it streams them instead)."""
    raw_names = [row[0] for row in raw.execute(_RAW_NAMES_SQL)]
    limit = min(MAX_TEXTS, MAX_PAIRS // max(1, len(raw_names)))
    texts: list[str] = []
    for (snippet,) in _rows(raw, "inca_condition_texts", _SUPPORTING_TEXTS_SQL):
        if len(texts) >= limit:
            return None
        texts.append(snippet)
    return supporting_pairs(raw_names, texts)


def supporting_pairs(raw_names: list[str], texts: list[str]) -> dict[tuple[str, str], SourceHits]:
    """Every (raw name, supporting text) pair that yields a hit, through extract.source_hits."""
    by_names: dict[tuple[str, str], list[str]] = {}
    for name in raw_names:
        by_names.setdefault(extract.names(name), []).append(name)
    found: dict[tuple[str, str], SourceHits] = {}
    for snippet in texts:
        for pair in extract.mentioned(extract.flat_text(snippet), by_names):
            for name in by_names[pair]:
                hits = source_hits(False, name, snippet)
                if hits is not NO_HITS:
                    found[name, snippet] = hits
    return found


def _rows(raw: psycopg.Connection, name: str, sql: str) -> Iterator[tuple[Any, ...]]:
    with raw.cursor(name=name) as cursor:
        cursor.itersize = 20_000
        cursor.execute(sql, {"proposal": PROPOSAL})
        yield from cursor


def _snippet_key(snippet: _Snippet) -> tuple[str, int, str]:
    return snippet.doc_type, snippet.ordinal, snippet.snippet


def _instances(raw: psycopg.Connection, filtered: bool) -> Iterator[tuple[str, str, list[_Snippet]]]:
    """(instance_id, raw name, snippet rows) per instance, streamed (bounded memory at market scale)."""
    streams = [_rows(raw, "inca_condition_proposals", _PROPOSAL_ROWS_SQL),
               _rows(raw, "inca_condition_supporting", _SUPPORTING_ROWS_SQL if filtered else _ALL_SUPPORTING_ROWS_SQL)]
    heads: list[tuple[Any, ...] | None] = [next(stream, None) for stream in streams]
    for instance_id, raw_name in _rows(raw, "inca_condition_instances", _INSTANCES_SQL):
        snippets: list[_Snippet] = []
        for index, stream in enumerate(streams):
            head = heads[index]
            while head is not None and head[0] == instance_id:
                snippets.append(_Snippet(head[1], head[2], head[3], head[4], head[5]))
                head = next(stream, None)
            heads[index] = head
        if len(snippets) > 1:
            snippets.sort(key=_snippet_key)
        yield instance_id, raw_name, snippets
    if heads != [None, None]:  # (the foreign key makes this impossible; never a silent loss)
        raise AuditFailed("condition audit failed; nothing was written (a snippet's instance is out of order)", [])


#: one instance's rows without its ids: per slot (slot, status), and per phrase
#: (slot, ordinal, kept source index, start, end, phrase text)
class _Shape(NamedTuple):
    slots: tuple[tuple[str, str], ...]
    phrases: tuple[tuple[str, int, int, int, int, str], ...]


@lru_cache(maxsize=65_536)
def _shape(own_sources: tuple[bool, ...], hits: tuple[SourceHits, ...]) -> _Shape:
    """The extractor's verdict (extract.combine) over these hits, as rows: instances repeat it."""
    combined = combine(own_sources, hits)
    return _Shape(tuple((slot, status) for slot, (status, _found) in zip(SLOTS, combined, strict=True)),
                  tuple((slot, ordinal, index, a, b, phrase)
                        for slot, (_status, found) in zip(SLOTS, combined, strict=True)
                        for ordinal, (index, a, b, phrase) in enumerate(found)))


def conditions_of(raw_name: str, snippets: list[_Snippet],
                  supporting: dict[tuple[str, str], SourceHits] | None = None) -> tuple[_Shape, list[_Snippet | None]]:
    """The instance's rows without ids, and the snippet of each kept source index (None: the raw name).

    `supporting`: the pairs tried up front (_supporting_hits); a supporting snippet outside it yields
    nothing. Without it every snippet goes through extract.source_hits here.
    """
    own_sources = [True]
    hits = [own_hits(raw_name)]
    kept: list[_Snippet | None] = [None]
    for snippet in snippets:
        own_source = snippet.doc_type == PROPOSAL
        if own_source or supporting is None:
            found = source_hits(own_source, raw_name, snippet.snippet)
        else:
            found = supporting.get((raw_name, snippet.snippet), NO_HITS)
        if found.own or found.attached:
            own_sources.append(own_source)
            hits.append(found)
            kept.append(snippet)
    return _shape(tuple(own_sources), tuple(hits)), kept


def derive_batches(raw: psycopg.Connection, batch_rows: int = 20_000) -> Iterator[tuple[list[tuple[Any, ...]],
                                                                                         list[tuple[Any, ...]]]]:
    """The condition_slot and condition_phrase rows for every instance the database holds, in batches
    of about `batch_rows` slot rows (memory does not grow with the market)."""
    _shape.cache_clear()  # (per run: bounded memory, and a replaced combine is never answered from cache)
    supporting = _supporting_hits(raw)
    if supporting is not None:
        raw.execute(_CANDIDATES_TABLE)
        with raw.cursor() as cursor, cursor.copy(
                "COPY inca_condition_candidates (coverage_name_raw, snippet) FROM STDIN") as copy:
            for pair in supporting:
                copy.write_row(pair)
        raw.execute("ANALYZE inca_condition_candidates")
    slots: list[tuple[Any, ...]] = []
    phrases: list[tuple[Any, ...]] = []
    for instance_id, raw_name, snippets in _instances(raw, supporting is not None):
        shape, kept = conditions_of(raw_name, snippets, supporting)
        slots += [(instance_id, slot, status) for slot, status in shape.slots]  # (ids as text: a text COPY)
        for slot, ordinal, index, a, b, phrase in shape.phrases:
            source = kept[index]
            if source is None:
                phrases.append((instance_id, slot, ordinal, None, "raw_name", None, None, a, b, phrase))
            else:
                phrases.append((instance_id, slot, ordinal, source.evidence_id, "evidence", source.doc_type,
                                source.page, a, b, phrase))
        if len(slots) >= batch_rows:
            yield slots, phrases
            slots, phrases = [], []
    if supporting is not None:
        raw.execute("DROP TABLE inca_condition_candidates")
    _shape.cache_clear()
    own_hits.cache_clear()  # (the load goes on: its memory is not kept for texts it is done with)
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
