"""`compare(products, coverage_codes)`: amounts side by side, exactly as printed, with evidence.

The contract (see docs/api.md):
- columns are products in the order given; rows are coverages in the order given (code order
  when every code is asked for). Nothing is ever ordered, ranked, summed or coloured by amount:
  `value_text` is an opaque string from the proposal.
- a cell holds every coverage instance the product has under the code (several raw coverages
  are all shown); a product without the code is NOT_AVAILABLE, a status that is never stored.
- everything is fetched in one round trip, whatever the number of cells.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, NamedTuple

import pandas as pd
from psycopg.rows import namedtuple_row

from core import catalog, data_quality, db, explain
from core.errors import SelectionError
from core.evidence_consistency import Finding
from core.lock import LOCK_PARAMS, LOCK_QUERY, lock_from_row

CONFIRMED, UNCONFIRMED, NOT_AVAILABLE = "CONFIRMED", "UNCONFIRMED", "NOT_AVAILABLE"
#: several raw coverages of one product under one code whose statuses differ (each keeps its own)
MIXED = "MIXED"
STATUS_LABELS = {CONFIRMED: "확인", UNCONFIRMED: "금액 미기재", NOT_AVAILABLE: "해당 담보 없음", MIXED: "복수 담보"}
UNCONFIRMED_TEXT = "금액 미기재"
NOT_AVAILABLE_TEXT = "해당 담보 없음"
#: limits that keep one request bounded (the API and dashboard refuse more)
MAX_PRODUCTS = 50
MAX_CODES = 500
_CODE_FORMAT = re.compile(r"^[A-Z]\d{4}(_\d+)?$")


# Evidence and Instance are named tuples rather than dataclasses: a 10 x 50 comparison at market scale
# builds ~600-2,000 instances and ~2,400-7,200 snippets, and a tuple is built at C speed
# (`tuple.__new__` over the fetched columns, see `_instance`) where a frozen dataclass runs a Python
# __init__ per object (~5 ms of a ~25 ms comparison). Fields, methods and immutability are the same.
class Evidence(NamedTuple):
    """One original snippet (원문): shown verbatim, never edited or checked for language."""

    doc_type: str
    page: int | None
    snippet: str
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
    #: evidence findings (issue 13) by (coverage_code, product_key, raw name); read in the cells' snapshot
    findings: dict[tuple[str | None, str, str], tuple[Finding, ...]] = field(default_factory=dict)

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
        """One row per cell and raw coverage: status, value_text, raw name, evidence source."""
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


UNMATCHED_COLUMNS = ["product_key", "insurer", "coverage_name_raw", "status", "value_text", "display_text"]


def _unmatched_frame(products: Sequence[catalog.Product], found: dict[str, tuple[Instance, ...]]) -> pd.DataFrame:
    records = [(product.key, product.insurer_name, instance.raw_name, instance.status, instance.value_text,
                instance.display_text)
               for product in products for instance in found.get(product.key, ())]
    return pd.DataFrame(records, columns=UNMATCHED_COLUMNS)


# --- resolving what the user asked for ---------------------------------------------------------

def _closest(value: str, choices: Sequence[str], limit: int = 3) -> list[str]:
    # A choice that starts with what was typed ("암진단비" -> "암진단비(유사암제외)") beats edit distance.
    prefixed = [choice for choice in choices if value and choice.startswith(value)]
    close = difflib.get_close_matches(value, choices, n=limit, cutoff=0.4)
    return list(dict.fromkeys([*prefixed, *close]))[:limit] or list(choices[:limit])


def _requested_products(requested: Sequence[str] | str) -> list[str]:
    """The asked names, stripped; refused before any query when there are none or too many."""
    names = [requested] if isinstance(requested, str) else list(requested)
    if not names:
        raise SelectionError("비교할 상품을 하나 이상 선택하세요 (choose at least one product; see core.catalog.products())")
    if len(names) > MAX_PRODUCTS:
        raise SelectionError(f"한 번에 최대 {MAX_PRODUCTS}개 상품까지 비교할 수 있습니다 ({len(names)}개 요청)")
    return [str(name).strip() for name in names]


def _requested_codes(requested: Sequence[str] | str) -> list[str]:
    codes = [requested] if isinstance(requested, str) else list(requested)
    if not codes:
        raise SelectionError("비교할 담보 코드를 하나 이상 지정하세요, or pass coverage_codes=None for every code")
    if len(codes) > MAX_CODES:
        raise SelectionError(f"한 번에 최대 {MAX_CODES}개 담보까지 비교할 수 있습니다 ({len(codes)}개 요청)")
    return codes


def resolve_products(requested: Sequence[str], known: Sequence[catalog.Product]) -> tuple[catalog.Product, ...]:
    """Product keys, insurer keys or Korean insurer names -> products, keeping the given order."""
    requested = _requested_products(requested)
    if not known:
        raise SelectionError("the database holds no products: run `python -m core load` (see core.status.collect())")
    by_key = {product.key: product for product in known}
    by_insurer: dict[str, list[catalog.Product]] = {}
    for product in known:
        by_insurer.setdefault(product.insurer_key, []).append(product)
        by_insurer.setdefault(product.insurer_name, []).append(product)
    chosen: list[catalog.Product] = []
    for raw in requested:
        value = str(raw).strip()
        if value in by_key:
            product = by_key[value]
        elif value in by_insurer and len(by_insurer[value]) == 1:
            product = by_insurer[value][0]
        elif value in by_insurer:
            options = [p.key for p in by_insurer[value]]
            raise SelectionError(f"{value!r} has {len(options)} products; name one of: {', '.join(options)}",
                                 bad_value=value, suggestions=options)
        else:
            names = [*by_key, *sorted({p.insurer_key for p in known}), *sorted({p.insurer_name for p in known})]
            suggestions = _closest(value, names)
            raise SelectionError(f"unknown product or insurer {value!r}; closest: {', '.join(suggestions)}",
                                 bad_value=value, suggestions=suggestions)
        if product in chosen:
            raise SelectionError(f"{value!r} is listed twice (as {product.key}); list each product once",
                                 bad_value=value)
        chosen.append(product)
    return tuple(chosen)


def resolve_codes(requested: Sequence[str], known: Sequence[catalog.Coverage]) -> tuple[catalog.Coverage, ...]:
    requested = _requested_codes(requested)
    by_code = {coverage.code: coverage for coverage in known}
    chosen: list[catalog.Coverage] = []
    seen: set[str] = set()
    for raw in requested:
        code = str(raw).strip().upper()
        if code not in by_code:
            by_name = {coverage.name: coverage.code for coverage in known}
            suggestions = _closest(code, list(by_code)) if _CODE_FORMAT.match(code) else [
                by_name[name] for name in _closest(str(raw), list(by_name))]
            shape = "" if _CODE_FORMAT.match(code) else " (codes look like A4200_1)"
            raise SelectionError(f"unknown coverage code {raw!r}{shape}; closest: {', '.join(suggestions)}",
                                 bad_value=str(raw), suggestions=suggestions)
        if code not in seen:  # a code asked twice is shown once
            seen.add(code)
            chosen.append(by_code[code])
    return tuple(chosen)


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
           ci.variant_id::text
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
_new_tuple = tuple.__new__  # builds a named tuple from an iterable at C speed (what NamedTuple._make does)


def _instance(row: tuple[Any, ...]) -> Instance:
    proposal, supporting = None, ()
    if row[7] is not None:
        evidence = list(map(_new_tuple, repeat(Evidence), zip(row[8], row[9], row[10], row[11], strict=True)))
        if row[3] == CONFIRMED:  # its evidence_id is one of these snippets (the load's audit checks it)
            proposal = evidence.pop(row[7].index(True))
        supporting = tuple(evidence)
    return _new_tuple(Instance, (row[2], row[3], row[4], row[5], row[6], proposal, supporting))


def _display_key(row: tuple[Any, ...]) -> tuple[str, str, str]:
    # Raw names in code-point order (the C collation), then status, then the variant: never the amount.
    return row[2], row[3], row[12] or ""


def _in_display_order(rows: list[tuple[Any, ...]] | None) -> tuple[Instance, ...]:
    """A cell's rows as instances; most cells hold one row, so there is nothing to order."""
    if not rows:
        return ()
    return tuple(map(_instance, rows if len(rows) == 1 else sorted(rows, key=_display_key)))


def _fetch(conn: Any, names: list[str], codes: list[str] | None, with_unmatched: bool,
           ) -> tuple[list[Any], list[Any], Any, list[tuple[Any, ...]], str, list[Any]]:
    """Selection, lock and cells in ONE round trip (a psycopg pipeline on the reading transaction).

    The cells are asked for the names as given: the dashboard, the API and most notebook calls name
    product keys, so the speculation holds and compare() costs one round trip; when a name is an insurer
    (resolved to its product afterwards) compare() asks again with the resolved keys.
    """
    sql = _COMPARE_SQL.format(codes=_CODES_FILTER[(codes is None, with_unmatched)])  # constants only
    driver = conn.connection.driver_connection
    with driver.pipeline():
        # One snapshot for the four statements: under READ COMMITTED each would take its own, and a load
        # committing in between could pair new cells with the previous load's lineage.
        driver.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        products = driver.cursor(binary=True).execute(catalog.NAMED_PRODUCTS_QUERY, {"names": names})
        coverages = (driver.cursor(binary=True).execute(catalog.COVERAGES_QUERY) if codes is None else
                     driver.cursor(binary=True).execute(catalog.NAMED_COVERAGES_QUERY, {"codes": codes}))
        lock = driver.cursor(binary=True, row_factory=namedtuple_row).execute(LOCK_QUERY, dict(LOCK_PARAMS))
        cells = driver.cursor(binary=True).execute(sql, {"product_keys": names, "codes": codes or []})
        # evidence findings of the named products (or insurers): a small table, filtered again below
        findings = driver.cursor(binary=True).execute(data_quality.FINDINGS_QUERY, {"every": False, "names": names})
    return products.fetchall(), coverages.fetchall(), lock.fetchone(), cells.fetchall(), sql, findings.fetchall()


# The uncoded coverages of some products, without their evidence: what the dashboard lists under the
# table. Asking compare() for them instead fetches every snippet of ~70 coverages per product at market
# scale (70 % of a 10 x 50 comparison's rows) that the list never shows.
_UNMATCHED_SQL = """
    SELECT p.product_key, ci.coverage_code, ci.coverage_name_raw, af.status, af.value_text, af.source_doc_type,
           af.source_priority, NULL, NULL, NULL, NULL, NULL, ci.variant_id::text
    FROM product p
    JOIN coverage_instance ci ON ci.product_id = p.product_id AND ci.coverage_code IS NULL
    JOIN amount_fact af ON af.instance_id = ci.instance_id
    WHERE p.product_key = ANY(CAST(%(product_keys)s AS text[]))
"""


def unmatched_coverages(products: Sequence[str]) -> pd.DataFrame:
    """The coverages of `products` (in this order) without a canonical code: raw name, status, value_text.

    The same rows as `compare(products, ..., with_unmatched=True).unmatched_frame()`, without fetching
    their evidence snippets.
    """
    names = _requested_products(products)
    with db.read() as conn:
        try:
            chosen = resolve_products(names, catalog._products(conn, names))
        except SelectionError:
            chosen = resolve_products(names, catalog._products(conn))
        rows = conn.exec_driver_sql(_UNMATCHED_SQL, {"product_keys": [product.key for product in chosen]}).all()
    found: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:  # the cells query's shape without the evidence columns, so instances build alike
        found.setdefault(row[0], []).append(tuple(row))
    return _unmatched_frame(chosen, {key: _in_display_order(value) for key, value in found.items()})


def compare(products: Sequence[str], coverage_codes: Sequence[str] | None = None, *,
            with_unmatched: bool = True) -> Comparison:
    """Compare `products` (in this order) on `coverage_codes` (None: every code any of them has)."""
    names = _requested_products(products)  # too many or none: refused before any query
    codes = None if coverage_codes is None else [str(code).strip().upper() for code in
                                                 _requested_codes(coverage_codes)]
    # One connection and one read-only transaction for the selection, the lock and the cells.
    with db.read() as conn:
        product_rows, coverage_rows, lock_row, rows, sql, finding_rows = _fetch(conn, names, codes, with_unmatched)
        try:  # the named products (with every product of a named insurer): decides as the full catalog would
            chosen = resolve_products(names, catalog.products_from_rows(product_rows))
        except SelectionError:  # re-decided on the full catalog so the suggestions are the same
            chosen = resolve_products(names, catalog._products(conn))
        if codes is None:
            wanted, known_coverages = (), catalog.coverages_from_rows(coverage_rows)
        else:
            known_coverages = None
            try:
                wanted = resolve_codes(coverage_codes, catalog.coverages_from_rows(coverage_rows))
            except SelectionError:
                wanted = resolve_codes(coverage_codes, catalog._coverages(conn))
        keys = [product.key for product in chosen]
        if keys != names:  # an insurer was named: ask again with its product's key (a second round trip)
            with conn.connection.driver_connection.cursor(binary=True) as cursor:
                rows = cursor.execute(sql, {"product_keys": keys, "codes": codes or []}).fetchall()
        lock = lock_from_row(conn, lock_row)
    found: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    unmatched: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        if row[1] is None:
            unmatched.setdefault(row[0], []).append(row)
        else:
            found.setdefault((row[1], row[0]), []).append(row)
    if known_coverages is not None:
        present = {code for code, _ in found}
        wanted = tuple(coverage for coverage in known_coverages if coverage.code in present)
    cells = {(coverage.code, product.key): _new_tuple(Cell, (coverage.code, product.key,
                                                             _in_display_order(found.get((coverage.code, product.key)))))
             for coverage in wanted for product in chosen}
    audit = AuditLineage(lock.audit_run_id, lock.audit_status, lock.freeze_tag, lock.git_commit, lock.state,
                         lock.intact, lock.verified_at, lock.reason)
    chosen_keys = {product.key for product in chosen}
    findings = data_quality.findings_by_key([record for record in data_quality.records_from_rows(finding_rows)
                                             if record.product_key in chosen_keys])
    return Comparison(chosen, wanted, cells, {key: _in_display_order(value) for key, value in unmatched.items()},
                      audit, findings=findings)
