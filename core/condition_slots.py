"""Condition slots as stored by the audited load (schema 011), for the comparison and notebooks.

Read side only. A phrase is shown exactly as stored: never parsed, normalised, ranked, summed or
compared; the only sentences about a slot come from the fixed TEMPLATES below and pass the
forbidden-language check.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import pandas as pd
from psycopg.rows import namedtuple_row

from core import catalog, db, explain, selection
from core.conditions.slots import CONFLICT, FOUND, LABELS, NOT_FOUND, SLOTS, STATUS_LABELS
from core.errors import SelectionError
from core.forbidden_language import validate_text

__all__ = ["TEMPLATES", "CellConditions", "ConditionPhrase", "InstanceConditions", "SlotConditions", "comparison_frame",
           "conditions_of", "sentence"]

RAW_NAME_SOURCE = "가입설계서 담보명"


class ConditionPhrase(NamedTuple):
    """One stored phrase: `text == source_text[start:end]` (checked by the load's audit)."""

    text: str
    source_kind: str  # raw_name | evidence
    doc_type: str | None
    page: int | None
    start: int
    end: int
    #: the raw name or the cited snippet (원문), verbatim; None only for a snippet not read yet
    #: (`Comparison.conditions(sources=False)` of a cells-only comparison: `conditions()` reads it)
    source_text: str | None

    @property
    def located(self) -> tuple[str, str, str | None, int | None, int, int]:
        """Everything but the cited text: what a cells-only read and a full read must agree on."""
        return self.text, self.source_kind, self.doc_type, self.page, self.start, self.end

    @property
    def source(self) -> str:
        """`약관 p.12`; `가입설계서 담보명` for a phrase of the raw name."""
        if self.source_kind == "raw_name":
            return RAW_NAME_SOURCE
        return f"{self.doc_type} p.{self.page}" if self.page else f"{self.doc_type} 쪽 미상"


class SlotConditions(NamedTuple):
    slot: str
    status: str  # FOUND | CONFLICT | NOT_FOUND
    phrases: tuple[ConditionPhrase, ...]

    @property
    def label(self) -> str:
        return LABELS[self.slot]

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


class InstanceConditions(NamedTuple):
    """Every slot of one coverage instance, in SLOTS order."""

    raw_name: str
    slots: tuple[SlotConditions, ...]


# One row per (instance, slot) with its phrases as parallel arrays in stored order, read by column name
# (the aliases below are the names `_SlotRow` and the psycopg namedtuple rows carry). `{codes}` is one
# of compare's constant filters; the instance columns are those compare orders its cells by.
CONDITIONS_SQL = """
    SELECT p.product_key, ci.coverage_code, ci.coverage_name_raw, af.status AS amount_status,
           ci.variant_id::text AS variant_id, cs.slot, cs.status AS slot_status,
           ph.texts, ph.kinds, ph.doc_types, ph.pages, ph.starts, ph.ends, ph.sources
    FROM product p
    JOIN coverage_instance ci ON ci.product_id = p.product_id
    JOIN amount_fact af ON af.instance_id = ci.instance_id
    JOIN condition_slot cs ON cs.instance_id = ci.instance_id
    LEFT JOIN LATERAL (
        SELECT array_agg(cp.phrase ORDER BY cp.ordinal) AS texts, array_agg(cp.source_kind ORDER BY cp.ordinal) AS kinds,
               array_agg(cp.doc_type ORDER BY cp.ordinal) AS doc_types, array_agg(cp.page ORDER BY cp.ordinal) AS pages,
               array_agg(cp.start_pos ORDER BY cp.ordinal) AS starts, array_agg(cp.end_pos ORDER BY cp.ordinal) AS ends,
               array_agg(coalesce(e.snippet, ci.coverage_name_raw) ORDER BY cp.ordinal) AS sources
        FROM condition_phrase cp LEFT JOIN evidence_ref e ON e.evidence_id = cp.evidence_id
        WHERE cp.instance_id = cs.instance_id AND cp.slot = cs.slot
    ) AS ph ON cs.status <> 'NOT_FOUND'
    WHERE p.product_key = ANY(CAST(%(product_keys)s AS text[])) AND {codes}
"""
_HAS_TABLE = "SELECT to_regclass('public.condition_slot') IS NOT NULL AS present"
_SLOT_INDEX = {slot: index for index, slot in enumerate(SLOTS)}

#: (code, product key, raw name) -> that raw name's instances in (amount status, variant) order, which
#: is how compare orders a cell's instances after the raw name (core.comparison._display_key)
ConditionsIndex = dict[tuple[str | None, str, str], list[InstanceConditions]]


# --- one row per instance: the slots as columns of compare's cells query ---------------------------

# compare()'s cells query (core/comparison.py) carries each instance's slots as two columns of its own
# row, in the same statement and snapshot: no second statement, no row per (instance, slot) (that read
# cost 52 of a 71 ms cells-only comparison, docs/performance.md). Both are text, decoded only when a
# cell's conditions are shown (a 10 x 50 grid's ~1,000 instances mostly are not): the statuses as
# `slot:status,...` (both are CHECKed identifiers, so the separators cannot occur in them) and the
# phrases as a JSON array of [slot, text, kind, doc type, page, start, end] in (slot, ordinal) order,
# plus the cited text (the snippet, or the raw name for a phrase of the raw name) in a full read only:
# a cells-only read leaves the snippets in the server until a coverage's 원문 is opened.
SLOT_SELECT = """,
           (SELECT string_agg(cs.slot || ':' || cs.status, ',') FROM condition_slot cs
            WHERE cs.instance_id = ci.instance_id) AS slot_statuses,
           (SELECT json_agg(json_build_array(cp.slot, cp.phrase, cp.source_kind, cp.doc_type, cp.page, cp.start_pos,
                                             cp.end_pos{source}) ORDER BY cp.slot, cp.ordinal)::text
            FROM condition_phrase cp{source_join} WHERE cp.instance_id = ci.instance_id) AS slot_phrases"""
_SOURCE = ", coalesce(e.snippet, ci.coverage_name_raw)"
_SOURCE_JOIN = " LEFT JOIN evidence_ref e ON e.evidence_id = cp.evidence_id"
#: how many columns SLOT_SELECT adds at the end of a row
SLOT_COLUMN_COUNT = 2


def slot_sql(sources: bool) -> str:
    """The select-list tail to append to compare's cells query (constants only)."""
    if sources:
        return SLOT_SELECT.format(source=_SOURCE, source_join=_SOURCE_JOIN)
    return SLOT_SELECT.format(source="", source_join="")


#: one instance's SLOT_SELECT columns, as read (a plain tuple: picklable, for the dashboard's cache)
StoredRow = tuple[Any, ...]


class StoredSlots(NamedTuple):
    """The slots of a comparison's cells, as read with them: built into objects only when shown."""

    #: (code, product key) -> per instance of the cell, in the cell's order, its SLOT_SELECT columns
    by_cell: dict[tuple[str, str], tuple[StoredRow, ...]]
    #: whether evidence phrases carry their snippet text (a full read) or None (cells only)
    sources: bool

    def cell(self, code: str, product_key: str, raw_names: Sequence[str]) -> tuple[InstanceConditions, ...]:
        """The slots of one cell's instances (raw names in the cell's order)."""
        stored = self.by_cell.get((code, product_key), ())
        return tuple(instance_conditions(name, row) for name, row in zip(raw_names, stored, strict=True))


def instance_conditions(raw_name: str, row: StoredRow) -> InstanceConditions:
    """One instance's SLOT_SELECT columns as its slots in SLOTS order (`slots == ()` when none stored).
    Phrases of a NOT_FOUND slot are not shown (as CONDITIONS_SQL never reads them)."""
    statuses, phrases = row
    if not statuses:
        return InstanceConditions(raw_name, ())
    by_slot: dict[str, list[ConditionPhrase]] = {}
    for slot, text, kind, doc_type, page, start, end, *source in json.loads(phrases) if phrases else ():
        # cells only: no cited text was read; a phrase of the raw name cites the raw name, known here
        cited = source[0] if source else (raw_name if kind == "raw_name" else None)
        by_slot.setdefault(slot, []).append(ConditionPhrase(text, kind, doc_type, page, start, end, cited))
    slots = []
    for pair in statuses.split(","):
        slot, status = pair.split(":")
        slots.append(SlotConditions(slot, status, () if status == NOT_FOUND else tuple(by_slot.get(slot, ()))))
    slots.sort(key=lambda found: _SLOT_INDEX[found.slot])
    return InstanceConditions(raw_name, tuple(slots))


def fetch(conn: Any, product_keys: list[str], codes_filter: str, codes: list[str] | None) -> ConditionsIndex | None:
    """The stored slots of the instances compare shows (None: the schema has no slots table yet).

    `conn` is compare's reading connection: the query runs in its REPEATABLE READ snapshot, so the
    slots belong to the same load as the amounts.
    """
    driver = conn.connection.driver_connection
    # namedtuple_row: a class per query, a tuple per row; as fast as plain tuples, read by name
    with driver.cursor(binary=True, row_factory=namedtuple_row) as cursor:
        present = cursor.execute(_HAS_TABLE).fetchone()
        if present is None or not present.present:
            return None
        rows = cursor.execute(CONDITIONS_SQL.format(codes=codes_filter),  # constant fragments only
                              {"product_keys": product_keys, "codes": codes or []}).fetchall()
    return index_rows(rows)


def _slot(row: Any) -> SlotConditions:
    """One row of CONDITIONS_SQL (any row with its column names as attributes) as its slot."""
    phrases: tuple[ConditionPhrase, ...] = ()
    if row.texts is not None:
        phrases = tuple(map(ConditionPhrase._make, zip(row.texts, row.kinds, row.doc_types, row.pages, row.starts,
                                                        row.ends, row.sources, strict=True)))
    return SlotConditions(row.slot, row.slot_status, phrases)


class _InstanceKey(NamedTuple):
    product_key: str
    coverage_code: str | None
    coverage_name_raw: str
    amount_status: str
    variant_id: str | None


def index_rows(rows: Sequence[Any]) -> ConditionsIndex:
    """Rows of CONDITIONS_SQL, read by column name, indexed the way compare looks cells up."""
    by_instance: dict[_InstanceKey, list[SlotConditions]] = {}
    for row in rows:
        key = _InstanceKey(row.product_key, row.coverage_code, row.coverage_name_raw, row.amount_status,
                           row.variant_id)
        by_instance.setdefault(key, []).append(_slot(row))
    index: ConditionsIndex = {}
    for key in sorted(by_instance, key=lambda k: (k.amount_status, k.variant_id or "")):
        slots = tuple(sorted(by_instance[key], key=lambda s: _SLOT_INDEX[s.slot]))
        index.setdefault((key.coverage_code, key.product_key, key.coverage_name_raw), []).append(
            InstanceConditions(key.coverage_name_raw, slots))
    return index


def for_instances(index: ConditionsIndex | None, code: str | None, product_key: str,
                  raw_names: Sequence[str]) -> tuple[InstanceConditions, ...]:
    """The slots of a cell's instances (given by raw name, in the cell's order); an instance without
    stored slots (a database not yet upgraded) gets `slots == ()`."""
    taken: dict[str, int] = {}
    found = []
    for name in raw_names:
        same = (index or {}).get((code, product_key, name), [])
        position = taken.get(name, 0)
        taken[name] = position + 1
        found.append(same[position] if position < len(same) else InstanceConditions(name, ()))
    return tuple(found)


class CellConditions(NamedTuple):
    """One product's instances under one coverage (empty: the product has no such coverage)."""

    product: catalog.Product
    instances: tuple[InstanceConditions, ...]


NOT_AVAILABLE, NOT_AVAILABLE_TEXT = "NOT_AVAILABLE", "해당 담보 없음"
NOT_STORED_TEXT = "조건 미적재 (python -m core upgrade)"
COMPARISON_COLUMNS = ["coverage_code", "coverage_name", "slot", "slot_label", "product_position", "product_key",
                      "insurer", "coverage_name_raw", "status", "status_label", "phrases", "sources", "sentence"]


def comparison_frame(conditions: Sequence[tuple[catalog.Coverage, Sequence[CellConditions]]]) -> pd.DataFrame:
    """One row per coverage x slot x product (x raw coverage when several), products in the given order.

    `phrases` and `sources` hold one line per stored phrase, verbatim and in stored order.
    """
    records = []
    for coverage, cells in conditions:
        for slot_name in SLOTS:
            for position, cell in enumerate(cells, start=1):
                base = [coverage.code, coverage.name, slot_name, LABELS[slot_name], position, cell.product.key,
                        cell.product.insurer_name]
                if not cell.instances:
                    records.append([*base, None, NOT_AVAILABLE, NOT_AVAILABLE_TEXT, None, None, None])
                for instance in cell.instances:
                    slot = next((s for s in instance.slots if s.slot == slot_name), None)
                    if slot is None:
                        records.append([*base, instance.raw_name, None, NOT_STORED_TEXT, None, None, None])
                        continue
                    subject = instance.raw_name if len(cell.instances) > 1 else coverage.name
                    records.append([*base, instance.raw_name, slot.status, slot.status_label,
                                    "\n".join(p.text for p in slot.phrases) or None,
                                    "\n".join(p.source for p in slot.phrases) or None,
                                    sentence(cell.product.insurer_name, subject, slot)])
    return pd.DataFrame(records, columns=COMPARISON_COLUMNS)


# --- fixed sentences ---------------------------------------------------------------------------

TEMPLATES: dict[str, str] = {
    FOUND: "{insurer}의 {coverage}{은/는} {slot} 조건이 원문에 ‘{phrases}’{으로/로} 기재되어 있습니다.",
    CONFLICT: "{insurer}의 {coverage}{은/는} {slot} 조건이 문서마다 다르게 기재되어 있습니다(문서 상충).",
    NOT_FOUND: "{insurer}의 {coverage}{은/는} {slot} 조건이 원문에서 확인되지 않았습니다.",
}
def sentence(insurer_name: str, coverage_name: str, slot: SlotConditions) -> str:
    """The fixed sentence for one slot of one insurer's coverage, validated before return."""
    # verbatim, in stored order; a text printed in several places is named once (exact equality only)
    phrases = " / ".join(dict.fromkeys(phrase.text for phrase in slot.phrases))
    text = TEMPLATES[slot.status].format_map({
        "insurer": insurer_name, "coverage": coverage_name, "slot": slot.label, "phrases": phrases,
        # explain.particle reads the word before a bracketed qualifier: 진단비(갑상선암)는
        "은/는": explain.particle(coverage_name, "은", "는"),
        "으로/로": explain.particle(phrases, "으로", "로") if phrases else "",
    })
    return validate_text(text)


# --- notebooks: one product's conditions ---------------------------------------------------------

FRAME_COLUMNS = ["coverage_code", "coverage_name_raw", "slot", "slot_label", "status", "status_label", "phrase",
                 "source", "start", "end"]
_PRODUCT_SQL = CONDITIONS_SQL.replace("p.product_key = ANY(CAST(%(product_keys)s AS text[])) AND {codes}",
                                    "p.product_key = %(product_key)s")


def conditions_of(product: str) -> pd.DataFrame:
    """Every stored condition of one product (key, insurer key or name): one row per phrase, one row
    per NOT_FOUND slot; coverages in code then raw-name order, slots in SLOTS order."""
    with db.read() as conn:
        # the one resolver (product key, insurer key or name, product name), with its input checks
        chosen = selection.resolve(product, conn=conn).products[0]
        if not conn.exec_driver_sql(_HAS_TABLE).scalar_one():
            raise SelectionError("this database has no condition slots yet: run `python -m core upgrade`")
        rows = conn.exec_driver_sql(_PRODUCT_SQL, {"product_key": chosen.key}).all()
    records = []
    for row in sorted(rows, key=lambda r: (r.coverage_code or "\uffff", r.coverage_name_raw, r.amount_status,
                                           r.variant_id or "", _SLOT_INDEX[r.slot])):
        slot = _slot(row)
        base = [row.coverage_code, row.coverage_name_raw, slot.slot, slot.label, slot.status, slot.status_label]
        if not slot.phrases:
            records.append([*base, None, None, None, None])
        records += [[*base, p.text, p.source, p.start, p.end] for p in slot.phrases]
    return pd.DataFrame(records, columns=FRAME_COLUMNS)
