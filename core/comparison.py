"""`compare(products, coverage_codes)`: amounts side by side, exactly as printed, with evidence.

The contract (see docs/api.md):
- columns are products in the order given; rows are coverages in the order given (code order
  when every code is asked for). Nothing is ever ordered, ranked, summed or coloured by amount:
  `value_text` is an opaque string from the proposal.
- a cell holds every coverage instance the product has under the code (several raw coverages
  are all shown); a product without the code is NOT_AVAILABLE, a status that is never stored.
- everything is fetched in one round trip, whatever the number of cells.
- evidence on demand (issue 16): `compare(..., include_evidence=False)` reads the cells without snippet
  text (each instance keeps its proposal snippet's document type and page, and how many snippets it
  has); `evidence(product_keys, coverage_code)` or `Comparison.evidence_for(coverage_code)` then reads
  one coverage's snippets verbatim. The default stays True: notebooks, the exports and the API's
  documented response get every snippet as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat
from typing import Any, NamedTuple

import pandas as pd
from psycopg.rows import namedtuple_row, tuple_row

from core import catalog, condition_slots, data_quality, db, explain, selection, unwritten
from core.errors import IncaError
from core.evidence_consistency import Finding
from core.lock import LOCK_PARAMS, LOCK_QUERY, lock_from_row
from core.selection import Selection

CONFIRMED, UNCONFIRMED, NOT_AVAILABLE = "CONFIRMED", "UNCONFIRMED", "NOT_AVAILABLE"
#: several raw coverages of one product under one code whose statuses differ (each keeps its own)
MIXED = "MIXED"
STATUS_LABELS = {CONFIRMED: "확인", UNCONFIRMED: "금액 미기재", NOT_AVAILABLE: "해당 담보 없음", MIXED: "복수 담보"}
UNCONFIRMED_TEXT = "금액 미기재"
NOT_AVAILABLE_TEXT = "해당 담보 없음"


# Evidence and Instance are named tuples rather than dataclasses: a 10 x 50 comparison at market scale
# builds ~600-2,000 instances and ~2,400-7,200 snippets, and a tuple is built at C speed
# (`tuple.__new__` over the fetched columns, see `_instance`) where a frozen dataclass runs a Python
# __init__ per object (~5 ms of a ~25 ms comparison). Fields, methods and immutability are the same.
class Evidence(NamedTuple):
    """One original snippet (원문): shown verbatim, never edited or checked for language."""

    doc_type: str
    page: int | None
    #: None only in a cells-only comparison (compare(..., include_evidence=False)): not read, never empty
    snippet: str | None
    source_file: str | None = None

    def source(self, insurer_name: str) -> str:
        page = f"p.{self.page}" if self.page else "쪽 미상"
        return f"{insurer_name} · {self.doc_type} · {page}"


class Instance(NamedTuple):
    """One raw coverage of a product and its locked amount."""

    raw_name: str
    status: str
    value_text: str | None
    source_doc_type: str | None
    source_priority: str | None
    proposal_evidence: Evidence | None
    supporting_evidence: tuple[Evidence, ...]
    #: how many snippets the instance has (proposal + supporting); None where they were not counted
    #: (the uncoded coverages listed without evidence). With include_evidence=False the supporting
    #: snippets are not read (supporting_evidence is empty) but this still says they exist.
    snippet_count: int | None = None

    @property
    def display_text(self) -> str:
        return self.value_text if self.status == CONFIRMED and self.value_text is not None else UNCONFIRMED_TEXT


class Cell(NamedTuple):  # a named tuple like Instance: 500 of them per 10 x 50 comparison
    coverage_code: str
    product_key: str
    instances: tuple[Instance, ...]

    @property
    def status(self) -> str:
        statuses = {instance.status for instance in self.instances}
        if not statuses:
            return NOT_AVAILABLE
        return statuses.pop() if len(statuses) == 1 else MIXED

    @property
    def display_text(self) -> str:
        if not self.instances:
            return NOT_AVAILABLE_TEXT
        if len(self.instances) == 1:
            return self.instances[0].display_text
        # Several raw coverages: each one named, none picked.
        return "\n".join(f"{instance.raw_name}: {instance.display_text}" for instance in self.instances)


@dataclass(frozen=True)
class Explanation:
    coverage_code: str
    coverage_name: str
    product_key: str
    insurer_name: str
    status: str
    raw_name: str | None
    sentence: str


@dataclass(frozen=True)
class AuditLineage:
    audit_run_id: str | None
    audit_status: str | None
    freeze_tag: str | None
    git_commit: str | None
    lock_state: str
    lock_intact: bool
    fingerprint_verified_at: str | None
    reason: str


@dataclass(frozen=True)
class Comparison:
    products: tuple[catalog.Product, ...]
    coverages: tuple[catalog.Coverage, ...]
    cells: dict[tuple[str, str], Cell]
    unmatched: dict[str, tuple[Instance, ...]]
    audit: AuditLineage
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: the stored condition slots of the cells' instances, read with them (core/condition_slots.py; None
    #: before schema 011); built into objects by conditions()
    slots: condition_slots.StoredSlots | None = None
    #: evidence findings (issue 13) by (coverage_code, product_key, raw name); read in the cells' snapshot
    findings: dict[tuple[str | None, str, str], tuple[Finding, ...]] = field(default_factory=dict)
    #: False: cells only (compare(..., include_evidence=False)); evidence_for() reads a coverage's snippets
    evidence_included: bool = True

    def evidence_for(self, coverage_code: str) -> Comparison:
        """This comparison with one coverage's snippets read (verbatim, in the full comparison's order);
        itself when every snippet is already here. The read is its own transaction (one round trip)."""
        if self.evidence_included:
            return self
        return self.with_evidence(coverage_code, evidence([product.key for product in self.products], coverage_code))

    def with_evidence(self, coverage_code: str, found: dict[str, tuple[Instance, ...]]) -> Comparison:
        """This comparison with one coverage's cells replaced by `found` (what `evidence()` read for it).
        If those instances are not the cells' own (a load happened in between), EvidenceChanged says so
        rather than pairing new snippets with the old cells."""
        cells = dict(self.cells)
        for product in self.products:
            cell = self.cells[(coverage_code, product.key)]
            cells[(coverage_code, product.key)] = cell._replace(
                instances=_same_instances(cell, found.get(product.key, ()), product.label))
        return replace(self, cells=cells)

    def with_every_snippet(self) -> Comparison:
        """This comparison with every snippet of every cell (itself when it has them): for the exports.
        One more read in its own snapshot; its cells must be the ones shown (else EvidenceChanged)."""
        if self.evidence_included:
            return self
        full = compare(Selection(self.products, self.coverages), with_unmatched=False)
        cells = {key: cell._replace(instances=_same_instances(cell, full.cells[key].instances,
                                                              cell.product_key))
                 for key, cell in self.cells.items()}
        return replace(self, cells=cells, evidence_included=True)

    def finding_for(self, coverage_code: str | None, product_key: str, raw_name: str) -> tuple[Finding, ...]:
        """The evidence findings of one raw coverage (empty: its value is a complete amount in its snippet).
        A finding never changes the value or the status; show `core.data_quality.MARKER` next to it."""
        return self.findings.get((coverage_code, product_key, raw_name), ())

    def _evidence_check(self, coverage_code: str | None, product_key: str, raw_name: str) -> str | None:
        kinds = [finding.kind for finding in self.finding_for(coverage_code, product_key, raw_name)]
        return ", ".join(kinds) if kinds else None

    def cell(self, coverage_code: str, product_key: str) -> Cell:
        return self.cells[(coverage_code, product_key)]

    def rows(self) -> Iterator[tuple[catalog.Coverage, list[Cell]]]:
        for coverage in self.coverages:
            yield coverage, [self.cells[(coverage.code, product.key)] for product in self.products]

    def _wide(self, value: Callable[[Cell], str]) -> pd.DataFrame:
        labels = [product.label for product in self.products]
        records = [[coverage.code, coverage.name, *(value(cell) for cell in cells)] for coverage, cells in self.rows()]
        return pd.DataFrame(records, columns=["코드", "담보명", *labels])

    def to_frame(self) -> pd.DataFrame:
        """One row per coverage, one column per product (chosen order), cells as display text."""
        return self._wide(lambda cell: cell.display_text)

    def to_long_frame(self) -> pd.DataFrame:
        """One row per cell and raw coverage: status, value_text, raw name, evidence source and snippet
        (a cells-only comparison reads every snippet first: an export never lacks one)."""
        if not self.evidence_included:
            return self.with_every_snippet().to_long_frame()
        records = []
        for coverage, cells in self.rows():
            for position, (product, cell) in enumerate(zip(self.products, cells, strict=True), start=1):
                base = {"coverage_code": coverage.code, "coverage_name": coverage.name, "category": coverage.category,
                        "product_position": position, "product_key": product.key, "insurer": product.insurer_name,
                        "product_name": product.name}
                if not cell.instances:
                    records.append({**base, "status": NOT_AVAILABLE, "value_text": None, "coverage_name_raw": None,
                                    "display_text": NOT_AVAILABLE_TEXT, "evidence_source": None, "evidence_snippet": None,
                                    "evidence_check": None})
                for instance in cell.instances:
                    evidence = instance.proposal_evidence
                    records.append({**base, "status": instance.status, "value_text": instance.value_text,
                                    "coverage_name_raw": instance.raw_name, "display_text": instance.display_text,
                                    "evidence_source": evidence.source(product.insurer_name) if evidence else None,
                                    "evidence_snippet": evidence.snippet if evidence else None,
                                    "evidence_check": self._evidence_check(coverage.code, product.key,
                                                                           instance.raw_name)})
        return pd.DataFrame(records)

    def conditions(self, sources: bool = True, codes: Sequence[str] | None = None,
                   ) -> list[tuple[catalog.Coverage, list[condition_slots.CellConditions]]]:
        """Per coverage (of `codes`, default all, in the comparison's order), per product in the chosen
        order, per instance: its slots (status and verbatim phrases with their source), as the audited
        load stored them.

        A cells-only comparison reads its phrases without the snippets they cite; with `sources` (the
        default) those texts are read here, one more read in its own snapshot whose slots must be the
        ones shown (else EvidenceChanged). `sources=False` leaves a snippet's `source_text` None (what
        the dashboard's table and `conditions_frame()` need: the phrase and its source label).
        """
        wanted = set(codes) if codes is not None else None
        shown = [(coverage, [condition_slots.CellConditions(product, self._slots_of(cell))
                             for product, cell in zip(self.products, cells, strict=True)])
                 for coverage, cells in self.rows() if wanted is None or coverage.code in wanted]
        if sources and self.slots is not None and not self.slots.sources and shown:
            return self._with_sources(shown)
        return shown

    def conditions_for(self, coverage_code: str) -> list[condition_slots.CellConditions]:
        """One coverage's conditions with every cited text (what its 원문 shows): one read when needed."""
        return self.conditions(codes=[coverage_code])[0][1]

    def _slots_of(self, cell: Cell) -> tuple[condition_slots.InstanceConditions, ...]:
        names = [instance.raw_name for instance in cell.instances]
        if self.slots is None:
            return condition_slots.for_instances(None, cell.coverage_code, cell.product_key, names)
        return self.slots.cell(cell.coverage_code, cell.product_key, names)

    def _with_sources(self, shown: list[tuple[catalog.Coverage, list[condition_slots.CellConditions]]],
                      ) -> list[tuple[catalog.Coverage, list[condition_slots.CellConditions]]]:
        codes = [coverage.code for coverage, _ in shown]
        with db.read() as conn:
            index = condition_slots.fetch(conn, [product.key for product in self.products],
                                          _CODES_FILTER[(False, False)], codes)
        read = []
        for coverage, cells in shown:
            found = []
            for cell in cells:
                names = [instance.raw_name for instance in cell.instances]
                with_text = condition_slots.for_instances(index, coverage.code, cell.product.key, names)
                if [_located(instance) for instance in with_text] != [_located(instance) for instance in cell.instances]:
                    raise EvidenceChanged(f"{cell.product.label} · {coverage.code}: the locked data changed since the "
                                          "table was read; reload the page to see the current conditions")
                found.append(cell._replace(instances=with_text))
            read.append((coverage, found))
        return read

    def conditions_frame(self) -> pd.DataFrame:
        """One row per coverage x slot x product (x raw coverage when several): status, phrases, sources."""
        return condition_slots.comparison_frame(self.conditions(sources=False))

    def unmatched_frame(self) -> pd.DataFrame:
        """The chosen products' coverages without a canonical code, in product order."""
        return _unmatched_frame(self.products, self.unmatched)

    def explanations(self) -> list[Explanation]:
        """Fixed-template sentences: per coverage, per product in order (per raw coverage when several)."""
        found = []
        for coverage, cells in self.rows():
            for product, cell in zip(self.products, cells, strict=True):
                if not cell.instances:
                    sentence = explain.explain(product.insurer_name, coverage.name, NOT_AVAILABLE)
                    found.append(Explanation(coverage.code, coverage.name, product.key, product.insurer_name,
                                             NOT_AVAILABLE, None, sentence))
                    continue
                several = len(cell.instances) > 1
                for instance in cell.instances:
                    # With several raw coverages each sentence names its own, so none is silently chosen.
                    subject = instance.raw_name if several else coverage.name
                    sentence = explain.explain(product.insurer_name, subject, instance.status, instance.value_text)
                    found.append(Explanation(coverage.code, coverage.name, product.key, product.insurer_name,
                                             instance.status, instance.raw_name, sentence))
        return found


class EvidenceChanged(IncaError):
    """The snippets read on demand no longer belong to the cells shown (a load happened in between)."""


def _located(conditions: condition_slots.InstanceConditions) -> list[tuple[Any, ...]]:
    return [(slot.slot, slot.status, [phrase.located for phrase in slot.phrases]) for slot in conditions.slots]


def _identity(instance: Instance) -> tuple[str, str, str | None, str | None]:
    return instance.raw_name, instance.status, instance.value_text, instance.source_doc_type


def _same_instances(cell: Cell, read: tuple[Instance, ...], where: str) -> tuple[Instance, ...]:
    """`read` (with snippets) if it is the cell's own instances, in the same order; else EvidenceChanged."""
    if [_identity(instance) for instance in read] != [_identity(instance) for instance in cell.instances]:
        raise EvidenceChanged(f"{where} · {cell.coverage_code}: the locked data changed since the table was read; "
                              "reload the page to see the current table and its evidence")
    return read


UNMATCHED_COLUMNS = ["product_key", "insurer", "coverage_name_raw", "status", "value_text", "display_text"]


def _unmatched_frame(products: Sequence[catalog.Product], found: dict[str, tuple[Instance, ...]]) -> pd.DataFrame:
    records = [(product.key, product.insurer_name, instance.raw_name, instance.status, instance.value_text,
                instance.display_text)
               for product in products for instance in found.get(product.key, ())]
    return pd.DataFrame(records, columns=UNMATCHED_COLUMNS)


# Resolution lives in core.selection (one resolver for every shell); these names stay for notebooks.
MAX_PRODUCTS, MAX_CODES = selection.MAX_PRODUCTS, selection.MAX_CODES


# --- the one round trip -----------------------------------------------------------------------

# One row per coverage instance, unordered (cells are small: they are ordered in Python, which costs less
# than sorting wide rows in the server). Every snippet of the instance comes in one lateral read of
# evidence_ref_instance_idx, in index order (doc_type, ordinal), as parallel arrays plus a flag for the
# proposal snippet that holds the printed amount (the load's audit guarantees it is one of the
# instance's own), so no second index probe per instance is needed for it. Arrays in binary results
# are decoded by psycopg without parsing text; a json_agg per instance (JSON escaping in the server,
# json.loads per row) was the largest cost at 1 M facts (docs/performance.md, "Market scale").
# The WHERE clause is one of four constant fragments, so each plan sees its exact predicate.
_COMPARE_SQL = """
    SELECT p.product_key, ci.coverage_code, ci.coverage_name_raw, af.status, af.value_text, af.source_doc_type,
           af.source_priority, s.is_proposal, s.doc_types, s.pages, s.snippets, s.source_files,
           ci.variant_id::text AS variant{slot_select}
    FROM product p
    JOIN coverage_instance ci ON ci.product_id = p.product_id
    JOIN amount_fact af ON af.instance_id = ci.instance_id
    LEFT JOIN LATERAL (
        SELECT array_agg(e.evidence_id = af.evidence_id) AS is_proposal, array_agg(e.doc_type) AS doc_types,
               array_agg(e.page) AS pages, array_agg(e.snippet) AS snippets, array_agg(e.source_file) AS source_files
        FROM (SELECT e.evidence_id, e.doc_type, e.page, e.snippet, e.source_file
              FROM evidence_ref e
              WHERE e.instance_id = ci.instance_id
              ORDER BY e.doc_type, e.ordinal) AS e
    ) AS s ON true
    WHERE p.product_key = ANY(CAST(%(product_keys)s AS text[])) AND {codes}
"""
_CODES_FILTER = {  # (every code?, with unmatched?) -> constant SQL; values travel as parameters
    (False, False): "ci.coverage_code = ANY(CAST(%(codes)s AS text[]))",
    (False, True): "(ci.coverage_code = ANY(CAST(%(codes)s AS text[])) OR ci.coverage_code IS NULL)",
    (True, False): "ci.coverage_code IS NOT NULL",
    (True, True): "true",
}
# Cells only (include_evidence=False): the same rows without any snippet text. The proposal snippet's
# document type, page and file come from one primary-key probe (restricted to the instance's own
# snippets, as the full query's is_proposal flag is), the number of snippets from the instance index;
# snippet text, the bulk of the full query's bytes, stays in the server until evidence() asks for it.
# Both queries carry each instance's condition slots as columns of its row (condition_slots.slot_sql,
# `{slot_select}`), the full one with each phrase's cited text, the cells one without.
_CELLS_SQL = """
    SELECT p.product_key, ci.coverage_code, ci.coverage_name_raw, af.status, af.value_text, af.source_doc_type,
           af.source_priority, pe.doc_type AS proposal_doc_type, pe.page AS proposal_page,
           pe.source_file AS proposal_source_file,
           (SELECT count(*) FROM evidence_ref e WHERE e.instance_id = ci.instance_id) AS snippet_count,
           ci.variant_id::text AS variant{slot_select}
    FROM product p
    JOIN coverage_instance ci ON ci.product_id = p.product_id
    JOIN amount_fact af ON af.instance_id = ci.instance_id
    LEFT JOIN evidence_ref pe ON pe.evidence_id = af.evidence_id AND af.status = 'CONFIRMED'
                             AND pe.instance_id = ci.instance_id
    WHERE p.product_key = ANY(CAST(%(product_keys)s AS text[])) AND {codes}
"""
# Cells only from schema 012's comparison_cell, when the database has it: the same columns under the same
# names, materialized by the audited load (one row per instance, stored in (product, code) order and
# indexed so), instead of six index probes per instance. Aliased `ci` so the constant code filters apply.
_VIEW_CELLS_SQL = """
    SELECT ci.product_key, ci.coverage_code, ci.coverage_name_raw, ci.status, ci.value_text, ci.source_doc_type,
           ci.source_priority, ci.proposal_doc_type, ci.proposal_page, ci.proposal_source_file, ci.snippet_count,
           ci.variant, ci.slot_statuses, ci.slot_phrases
    FROM comparison_cell ci
    WHERE ci.product_key = ANY(CAST(%(product_keys)s AS text[])) AND {codes}
"""
#: compare(..., with_unmatched=UNMATCHED_LIST): the uncoded coverages without their evidence
UNMATCHED_LIST = "list"
_new_tuple = tuple.__new__  # builds a named tuple from an iterable at C speed (what NamedTuple._make does)


def _instance(row: Any) -> Instance:
    """An instance from a cells row (a named tuple from the driver, or a SQLAlchemy Row: read by name)."""
    proposal, supporting, count = None, (), None
    if row.is_proposal is not None:
        evidence = list(map(_new_tuple, repeat(Evidence),
                            zip(row.doc_types, row.pages, row.snippets, row.source_files, strict=True)))
        count = len(evidence)
        if row.status == CONFIRMED:  # its evidence_id is one of these snippets (the load's audit checks it)
            proposal = evidence.pop(row.is_proposal.index(True))
        supporting = tuple(evidence)
    # tuple.__new__ applies no defaults: every field is given
    return _new_tuple(Instance, (row.coverage_name_raw, row.status, row.value_text, row.source_doc_type,
                                 row.source_priority, proposal, supporting, count))


# The cells-only statements (_CELLS_SQL, _VIEW_CELLS_SQL) select the same columns in the same order and
# are read into plain tuples (the driver builds them at C speed; a named tuple per row cost ~0.5 ms of a
# 10 x 50 comparison at a million facts): these are their positions. tests/test_compare.py checks them
# against both statements' column names.
CELLS_COLUMNS = ("product_key", "coverage_code", "coverage_name_raw", "status", "value_text", "source_doc_type",
                 "source_priority", "proposal_doc_type", "proposal_page", "proposal_source_file", "snippet_count",
                 "variant")
(_PRODUCT, _CODE, _RAW_NAME, _STATUS, _VALUE, _SOURCE_DOC, _PRIORITY, _PROPOSAL_DOC, _PROPOSAL_PAGE, _PROPOSAL_FILE,
 _SNIPPETS, _VARIANT) = range(len(CELLS_COLUMNS))


def _cells_only_instance(row: Any) -> Instance:
    """An instance from a cells-only row (CELLS_COLUMNS): the proposal snippet's source without its text,
    the count."""
    proposal = None
    if row[_PROPOSAL_DOC] is not None:
        proposal = _new_tuple(Evidence, (row[_PROPOSAL_DOC], row[_PROPOSAL_PAGE], None, row[_PROPOSAL_FILE]))
    return _new_tuple(Instance, (row[_RAW_NAME], row[_STATUS], row[_VALUE], row[_SOURCE_DOC], row[_PRIORITY], proposal,
                                 (), row[_SNIPPETS]))


def _display_key(row: Any) -> tuple[str, str, str]:
    # Raw names in code-point order (the C collation), then status, then the variant: never the amount.
    return row.coverage_name_raw, row.status, row.variant or ""


def _cells_display_key(row: Any) -> tuple[str, str, str]:
    """_display_key of a cells-only row (by position)."""
    return row[_RAW_NAME], row[_STATUS], row[_VARIANT] or ""


def _display_ordered(rows: list[Any] | None) -> list[Any]:
    """A cell's rows in display order; most cells hold one row, so there is nothing to order."""
    if not rows:
        return []
    if len(rows) == 1:
        return rows
    return sorted(rows, key=_display_key if hasattr(rows[0], "coverage_name_raw") else _cells_display_key)


def _instances(ordered: list[Any]) -> tuple[Instance, ...]:
    if not ordered:
        return ()
    return tuple(map(_instance if hasattr(ordered[0], "is_proposal") else _cells_only_instance, ordered))


def _in_display_order(rows: list[Any] | None) -> tuple[Instance, ...]:
    """A cell's rows as instances, in display order."""
    return _instances(_display_ordered(rows))


def _cursor(driver: Any) -> Any:
    return driver.cursor(binary=True, row_factory=namedtuple_row)


def _cells_cursor(driver: Any, include_evidence: bool) -> Any:
    """The cells statement's cursor: named rows with every snippet, plain tuples (CELLS_COLUMNS) without."""
    return _cursor(driver) if include_evidence else driver.cursor(binary=True, row_factory=tuple_row)


class _Fetched(NamedTuple):
    selection: Selection
    lock_row: Any
    rows: list[Any]
    unmatched_rows: list[Any]
    finding_rows: Sequence[data_quality.FindingRecord]
    #: whether `rows` carry the condition slots (False: the database has no slots table yet)
    slots: bool


#: keys in a pooled connection's `info`: its database has the slots table (schema 011), the comparison
#: cells (schema 012); neither is ever dropped, so a True is kept for the connection's life; until then
#: each comparison asks (in its pipeline)
_SLOTS_PRESENT = "inca_condition_slot_present"
_CELLS_PRESENT = "inca_comparison_cell_present"
_HAS_SLOTS = ("SELECT to_regclass('public.condition_slot') IS NOT NULL AS present, "
              "to_regclass('public.comparison_cell') IS NOT NULL AS cells")


def _sql(include_evidence: bool, codes_filter: str, slots: bool, cells_view: bool = False) -> str:
    if cells_view and not include_evidence:  # schema 012: the slots are columns of the view
        return _VIEW_CELLS_SQL.format(codes=codes_filter)  # constants only
    template = _COMPARE_SQL if include_evidence else _CELLS_SQL
    slot_select = condition_slots.slot_sql(include_evidence) if slots else ""
    return template.format(codes=codes_filter, slot_select=slot_select)  # constants only


def _fetch(conn: Any, asked: selection.Request | Selection, with_unmatched: bool | str, include_evidence: bool = True,
           ) -> _Fetched:
    """Selection, lock, cells with their condition slots, and findings in ONE round trip (a psycopg
    pipeline on the reading transaction).

    A resolved Selection is not resolved again. Typed names are looked up in the same pipeline and the
    cells are asked for the names as given: the dashboard, the API and most notebook calls name product
    keys and codes, so the speculation holds and compare() costs one round trip; when a name is an
    insurer, a product name or a coverage name, compare() asks again with the resolved keys and codes
    (likewise, once per pooled connection, to learn whether the database has the slots table).
    """
    resolved = asked if isinstance(asked, Selection) else None
    every_code = (resolved.coverages if resolved is not None else asked.codes) is None
    listed = with_unmatched == UNMATCHED_LIST  # the uncoded coverages by their own query, without evidence
    codes_filter = _CODES_FILTER[(every_code, bool(with_unmatched) and not listed)]
    slots_known = bool(conn.connection.info.get(_SLOTS_PRESENT))
    cells_known = bool(conn.connection.info.get(_CELLS_PRESENT))
    if resolved is not None:
        keys, codes = resolved.product_keys, resolved.codes or []
    else:
        keys, codes = list(asked.products), [code.upper() for code in asked.codes or ()]
    driver = conn.connection.driver_connection
    # the catalog lookups and the findings: kept per request while the lock's witness is unchanged
    # (core/unwritten.py), sent only when no result is kept for them
    reads = _Reads(driver, conn.engine.url)
    has_slots = None
    with driver.pipeline():
        # One snapshot for every statement: under READ COMMITTED each would take its own, and a load
        # committing in between could pair new cells with the previous load's lineage.
        driver.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if resolved is None:
            reads.ask("products", catalog.NAMED_PRODUCTS_QUERY, {"names": asked.lookup_names}, _products)
            if not every_code:
                reads.ask("coverages", catalog.NAMED_COVERAGES_QUERY, {"codes": asked.lookup_codes}, _coverages)
        if every_code:
            reads.ask("every coverage", catalog.COVERAGES_QUERY, None, _coverages)
        if not (slots_known and cells_known):
            has_slots = _cursor(driver).execute(_HAS_SLOTS)
        lock = _cursor(driver).execute(LOCK_QUERY, dict(LOCK_PARAMS))
        # Resolved keys are product keys; typed values that are not keys simply match no row.
        spoken = {"product_keys": [key for key in keys if isinstance(key, str)], "codes": codes}
        cells = _cells_cursor(driver, include_evidence).execute(
            _sql(include_evidence, codes_filter, slots_known, cells_known), spoken)
        uncoded = _cursor(driver).execute(_UNMATCHED_VIEW_SQL if cells_known else _UNMATCHED_SQL,
                                          spoken) if listed else None
        # evidence findings of the chosen products (issue 13): a small table, in the same snapshot
        reads.ask("findings", data_quality.FINDINGS_QUERY, {"every": False, "names": spoken["product_keys"]},
                  _finding_rows)
    lock_row = lock.fetchone()
    witness = unwritten.witness_of(lock_row, reads.where)
    found = reads.results(witness)  # kept ones read under another witness are read again, in this snapshot
    if resolved is None:
        resolved = selection.decide_in(conn, asked, found["products"], found.get("coverages"))
    if every_code:
        resolved = Selection(resolved.products, found["every coverage"])
    schema = None if has_slots is None else has_slots.fetchone()
    slots = slots_known or bool(schema.present)
    cells_view = cells_known or bool(schema.cells)
    if slots:
        conn.connection.info[_SLOTS_PRESENT] = True
    if cells_view:
        conn.connection.info[_CELLS_PRESENT] = True
    rows, finding_rows = cells.fetchall(), found["findings"]
    unmatched_rows = [] if uncoded is None else uncoded.fetchall()
    asked_again = resolved.product_keys != keys or not set(resolved.codes or ()) <= set(codes)
    # the cells statement read the live tables where the view was just found: the same rows, read again
    # from the view only on the next comparison (what was read is already right)
    if asked_again or slots != slots_known:
        # an insurer or a name was given (or the slots table was just found): ask again with the
        # resolved keys and codes, in the same snapshot (a second round trip)
        resolved_params = {"product_keys": resolved.product_keys, "codes": resolved.codes or []}
        again = _Reads(driver, reads.where, witness)
        with driver.pipeline():
            cells = _cells_cursor(driver, include_evidence).execute(
                _sql(include_evidence, codes_filter, slots, cells_view), resolved_params)
            uncoded = _cursor(driver).execute(_UNMATCHED_VIEW_SQL if cells_view else _UNMATCHED_SQL,
                                              resolved_params) if listed and asked_again else None
            if asked_again:
                again.ask("findings", data_quality.FINDINGS_QUERY, {"every": False, "names": resolved.product_keys},
                          _finding_rows)
        rows = cells.fetchall()
        if uncoded is not None:
            unmatched_rows = uncoded.fetchall()
        if asked_again:
            finding_rows = again.results(witness)["findings"]
    return _Fetched(resolved, lock_row, rows, unmatched_rows, finding_rows, slots)


#: compare's reads of locked relations that only a write can change: (what, database, parameters) -> result
KEPT = unwritten.Kept()


def _products(rows: list[Any]) -> tuple[catalog.Product, ...]:
    return tuple(catalog.products_from_rows(rows))


def _coverages(rows: list[Any]) -> tuple[catalog.Coverage, ...]:
    return tuple(catalog.coverages_from_rows(rows))


def _finding_rows(rows: list[Any]) -> tuple[data_quality.FindingRecord, ...]:
    return tuple(data_quality.FindingRecord(**row._asdict()) for row in rows)


def _frozen(params: dict[str, Any] | None) -> tuple[Any, ...]:
    if not params:
        return ()
    return tuple((name, tuple(value) if isinstance(value, list) else value) for name, value in sorted(params.items()))


class _Reads:
    """Statements of one compare pipeline whose results KEPT may stand for.

    `ask` sends a statement unless a result is kept for it (read under some witness: used only if the
    snapshot's own witness turns out to be the same) or, when the snapshot's witness is already known,
    kept under that witness. `results(witness)` returns every asked result, reading again in the same
    transaction (one more round trip) those kept under another witness, and keeps what was read.
    """

    def __init__(self, driver: Any, where: object, witness: unwritten.Witness | None = None) -> None:
        self.driver, self.where, self.witness = driver, where, witness
        self._asked: dict[str, tuple[object, str, dict[str, Any] | None, Callable[[list[Any]], Any]]] = {}
        self._sent: dict[str, Any] = {}
        self._kept: dict[str, tuple[unwritten.Witness, Any]] = {}

    def ask(self, name: str, sql: str, params: dict[str, Any] | None, build: Callable[[list[Any]], Any]) -> None:
        key = (name, self.where, _frozen(params))
        self._asked[name] = (key, sql, params, build)
        kept = KEPT.get(key)
        if kept is not None and (self.witness is None or kept[0] == self.witness):
            self._kept[name] = kept
        else:
            self._sent[name] = _cursor(self.driver).execute(sql, params)

    def results(self, witness: unwritten.Witness | None) -> dict[str, Any]:
        found: dict[str, Any] = {}
        stale = []
        for name, (kept_witness, value) in self._kept.items():
            if witness is not None and kept_witness == witness:
                found[name] = value
                KEPT.count(hit=True)
            else:
                stale.append(name)
        if stale:
            with self.driver.pipeline():
                for name in stale:
                    _key, sql, params, _build = self._asked[name]
                    self._sent[name] = _cursor(self.driver).execute(sql, params)
        for name, cursor in self._sent.items():
            key, _sql, _params, build = self._asked[name]
            found[name] = build(cursor.fetchall())
            KEPT.put(key, witness, found[name])
            KEPT.count(hit=False)
        return found


# The uncoded coverages of some products, without their evidence: what the dashboard lists under the
# table. Asking compare() for them instead fetches every snippet of ~70 coverages per product at market
# scale (70 % of a 10 x 50 comparison's rows) that the list never shows.
_UNMATCHED_SQL = """
    SELECT p.product_key, ci.coverage_code, ci.coverage_name_raw, af.status, af.value_text, af.source_doc_type,
           af.source_priority, NULL AS is_proposal, NULL AS doc_types, NULL AS pages, NULL AS snippets,
           NULL AS source_files, ci.variant_id::text AS variant
    FROM product p
    JOIN coverage_instance ci ON ci.product_id = p.product_id AND ci.coverage_code IS NULL
    JOIN amount_fact af ON af.instance_id = ci.instance_id
    WHERE p.product_key = ANY(CAST(%(product_keys)s AS text[]))
"""

# The same from schema 012's comparison cells, when the database has them (compare's pipeline only):
# one index range per product (code NULL) instead of a join over the product's instances and amounts
# (1.3 ms against 3.8 ms for 10 products at a million facts).
_UNMATCHED_VIEW_SQL = """
    SELECT ci.product_key, ci.coverage_code, ci.coverage_name_raw, ci.status, ci.value_text, ci.source_doc_type,
           ci.source_priority, NULL AS is_proposal, NULL AS doc_types, NULL AS pages, NULL AS snippets,
           NULL AS source_files, ci.variant
    FROM comparison_cell ci
    WHERE ci.product_key = ANY(CAST(%(product_keys)s AS text[])) AND ci.coverage_code IS NULL
"""


def unmatched_coverages(products: Selection | Sequence[str] | str) -> pd.DataFrame:
    """The coverages of `products` (in this order) without a canonical code: raw name, status, value_text.

    The same rows as `compare(products, ..., with_unmatched=True).unmatched_frame()`, without fetching
    their evidence snippets.
    """
    asked = products if isinstance(products, Selection) else selection.request(products)
    with db.read() as conn:
        chosen = asked if isinstance(asked, Selection) else selection.resolve_in(conn, asked)
        rows = conn.exec_driver_sql(_UNMATCHED_SQL, {"product_keys": chosen.product_keys}).all()
    found: dict[str, list[Any]] = {}
    for row in rows:  # the cells query's columns with NULL evidence, so instances build alike
        found.setdefault(row.product_key, []).append(row)
    return _unmatched_frame(chosen.products, {key: _in_display_order(value) for key, value in found.items()})


def compare(products: Selection | Sequence[str] | str, coverage_codes: Sequence[str] | str | None = None, *,
            with_unmatched: bool | str = True, include_evidence: bool = True) -> Comparison:
    """Compare `products` (in this order) on `coverage_codes` (None: every code any of them has).

    `with_unmatched`: True also fetches the uncoded coverages with their evidence, UNMATCHED_LIST
    ("list") without it (what the dashboard lists under the table), False not at all; either way they
    come from the cells' own snapshot.

    `include_evidence`: True (the default: notebooks, exports, the API's documented answer) reads every
    snippet; False reads the cells only (status, value_text, raw name, the proposal snippet's document
    type and page, the number of snippets) and `Comparison.evidence_for(code)` reads a coverage's
    snippets when they are shown. Amounts, statuses, condition slots and findings are the same either way.

    `products` is a resolved `core.selection.Selection` (its coverages are used, and nothing is resolved
    again) or what a user typed (resolved once, by core.selection, in the comparison's own snapshot).
    """
    if isinstance(products, Selection):
        if coverage_codes is not None:
            raise TypeError("a resolved Selection carries its coverages: pass coverage_codes to selection.resolve")
        asked: selection.Request | Selection = products
    else:
        asked = selection.request(products, coverage_codes)  # malformed, too many or none: before any query
    # One connection and one read-only transaction for the selection, the lock, the cells and their slots.
    with db.read() as conn:
        fetched = _fetch(conn, asked, with_unmatched, include_evidence)
        lock = lock_from_row(conn, fetched.lock_row)
    chosen = fetched.selection
    found: dict[tuple[str, str], list[Any]] = {}
    unmatched: dict[str, list[Any]] = {}
    for row in fetched.rows:  # every cells statement starts with product_key, coverage_code
        if row[1] is None:
            unmatched.setdefault(row[0], []).append(row)
        else:
            found.setdefault((row[1], row[0]), []).append(row)
    for row in fetched.unmatched_rows:
        unmatched.setdefault(row.product_key, []).append(row)
    wanted = chosen.coverages or ()
    if (asked.coverages if isinstance(asked, Selection) else asked.codes) is None:
        present = {code for code, _ in found}  # every code: those any of the products has, in code order
        wanted = tuple(coverage for coverage in wanted if coverage.code in present)
    cells = {}
    by_cell: dict[tuple[str, str], tuple[condition_slots.StoredRow, ...]] = {}
    build, order = (_instance, _display_key) if include_evidence else (_cells_only_instance, _cells_display_key)
    slot_start = -condition_slots.SLOT_COLUMN_COUNT
    for coverage in wanted:
        code = coverage.code
        for product in chosen.products:
            key = (code, product.key)
            rows = found.get(key)
            if rows is None:  # most cells of a market-scale grid: the product has no such coverage
                cells[key] = _new_tuple(Cell, (code, product.key, ()))
                continue
            if len(rows) > 1:
                rows.sort(key=order)
            cells[key] = _new_tuple(Cell, (code, product.key, tuple(map(build, rows))))
            if fetched.slots:  # the slot columns end each row (a plain tuple: picklable)
                by_cell[key] = tuple([row[slot_start:] for row in rows])
    audit = AuditLineage(lock.audit_run_id, lock.audit_status, lock.freeze_tag, lock.git_commit, lock.state,
                         lock.intact, lock.verified_at, lock.reason)
    findings = data_quality.findings_by_key(list(fetched.finding_rows))
    slots = condition_slots.StoredSlots(by_cell, include_evidence) if fetched.slots else None
    return Comparison(chosen.products, wanted, cells,
                      {key: _in_display_order(value) for key, value in unmatched.items()}, audit, slots=slots,
                      findings=findings, evidence_included=include_evidence)


def evidence(product_keys: Sequence[str] | str, coverage_code: str) -> dict[str, tuple[Instance, ...]]:
    """Every snippet of one coverage's instances, verbatim: product key -> its instances under the code,
    each with its proposal snippet and supporting snippets, in the order a full compare() gives them.
    One read-only statement (one round trip, its own snapshot); unknown keys simply have no instances.
    """
    keys = [product_keys] if isinstance(product_keys, str) else list(product_keys)
    sql = _sql(True, _CODES_FILTER[(False, False)], slots=False)  # constant fragments; no slots needed
    with db.read_statement() as driver:  # one statement, one round trip, no transaction around it
        rows = _cursor(driver).execute(sql, {"product_keys": keys, "codes": [coverage_code.upper()]}).fetchall()
    found: dict[str, list[Any]] = {}
    for row in rows:
        found.setdefault(row.product_key, []).append(row)
    return {key: _in_display_order(value) for key, value in found.items()}
