"""Reads the bundled dataset (`data/dataset/`) into a `LoadBundle`: rows per table, ready to COPY.

Nothing here normalises a value: raw names, amounts and snippets travel exactly as printed.
Every file problem becomes a DatasetError naming the file (and line) so a broken dataset
loads nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import operator
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from core.errors import DatasetError
from core.search_vectors import FEATURE_VERSION, embed, vector_literal

MANIFEST = "manifest.json"
TABLE_ORDER = (
    "insurer", "product", "product_variant", "document", "coverage_canonical",
    "coverage_instance", "evidence_ref", "amount_fact", "coverage_alias",
)
COLUMNS: dict[str, tuple[str, ...]] = {
    "insurer": ("insurer_id", "insurer_key", "mapping_code", "name_ko", "name_en", "insurer_type"),
    "product": ("product_id", "insurer_id", "product_key", "product_name", "product_code", "version", "effective_date"),
    "product_variant": ("variant_id", "product_id", "variant_key", "variant_name", "attributes"),
    "document": ("document_id", "product_id", "variant_id", "document_key", "doc_type", "title", "file_name"),
    "coverage_canonical": ("coverage_code", "canonical_name", "other_names"),
    "coverage_instance": (
        "instance_id", "insurer_id", "product_id", "variant_id", "coverage_code", "coverage_name_raw", "mapping_status",
    ),
    "evidence_ref": (
        "evidence_id", "instance_id", "document_id", "doc_type", "page", "snippet", "match_keyword", "source_file",
        "ordinal",
    ),
    "amount_fact": (
        "amount_id", "instance_id", "status", "value_text", "source_doc_type", "source_priority", "evidence_id", "notes",
    ),
    "coverage_alias": (
        "alias_id", "coverage_code", "alias_text", "source", "insurer_key", "feature_version", "embedding",
    ),
}
PROPOSAL = "가입설계서"


def fields(table: str, *names: str) -> operator.itemgetter[Any]:
    """A getter of the named columns of `table`'s bundle rows (plain tuples in COLUMNS order, what COPY
    takes): `instance_id, code = fields("coverage_instance", "instance_id", "coverage_code")(row)`.
    A renamed or moved column fails here (KeyError), not as a silently wrong field."""
    positions = [COLUMNS[table].index(name) if name in COLUMNS[table] else _no_column(table, name) for name in names]
    return operator.itemgetter(*positions)


def _no_column(table: str, name: str) -> int:
    raise KeyError(f"{table} has no column {name!r} (columns: {', '.join(COLUMNS[table])})")


@dataclass(frozen=True)
class MappingRow:
    """One row of the mapping workbook: an insurer's own name for a canonical code."""

    mapping_code: str
    insurer_key: str
    coverage_code: str
    canonical_name: str
    raw_name: str


Row = tuple[Any, ...]
#: rows of one table, in COPY column order: what the load writes with one COPY statement
Batch = tuple[str, list[Row]]
#: rows per batch: large enough that the per-statement cost of COPY vanishes, small enough that a batch
#: of snippets stays a few MB (memory of the load does not grow with the data)
BATCH_ROWS = 50_000


@dataclass
class LoadBundle:
    """Everything one audited load writes, in COPY column order.

    Either held in `rows` (the bundled dataset: ~3 k rows), or streamed: `stream` is a re-iterable
    factory whose every call yields the same batches again, generated or read lazily, so a market of
    millions of facts never sits in memory. A stream may fill `expected_counts` and `lineage` while it
    runs (what it produced), which the load reads once the rows are written.
    """

    rows: dict[str, list[Row]] = field(default_factory=lambda: {t: [] for t in TABLE_ORDER})
    mapping: list[MappingRow] = field(default_factory=list)
    lineage: dict[str, Any] = field(default_factory=dict)
    expected_counts: dict[str, int] = field(default_factory=dict)
    dataset_sha256: str = ""
    stream: Callable[[], Iterator[Batch]] | None = None

    def batches(self, size: int = BATCH_ROWS) -> Iterator[Batch]:
        """Every row once, in batches of one table each (held tables in TABLE_ORDER, sliced)."""
        if self.stream is not None:
            yield from self.stream()
            return
        for table in TABLE_ORDER:
            rows = self.rows.get(table) or []
            for start in range(0, len(rows), size):
                yield table, rows[start:start + size]

    def table(self, name: str) -> Iterator[Row]:
        """The rows of one table, in order (a pass over the whole stream for a streamed bundle)."""
        for table, rows in self.batches():
            if table == name:
                yield from rows

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(TABLE_ORDER, 0)
        for table, rows in self.batches():
            found[table] = found.get(table, 0) + len(rows)
        return found

    def in_memory(self) -> LoadBundle:
        """The same bundle with every table held as a list (tests, small markets)."""
        held: dict[str, list[Row]] = {table: [] for table in TABLE_ORDER}
        for table, rows in self.batches():
            held.setdefault(table, []).extend(rows)
        return LoadBundle(held, list(self.mapping), dict(self.lineage), dict(self.expected_counts), self.dataset_sha256)


def coalesce(batches: Iterable[Batch], size: int = BATCH_ROWS) -> Iterator[Batch]:
    """Small batches (a generator's per-variant rows) merged per table into batches of `size` rows,
    each table's rows kept in order; what is left is flushed in TABLE_ORDER at the end."""
    pending: dict[str, list[Row]] = {}
    for table, rows in batches:
        held = pending.setdefault(table, [])
        held.extend(rows)
        if len(held) >= size:
            yield table, held
            pending[table] = []
    for table in sorted(pending, key=lambda name: TABLE_ORDER.index(name) if name in TABLE_ORDER else len(TABLE_ORDER)):
        if pending[table]:
            yield table, pending[table]


def _fail(path: Path, problem: str) -> DatasetError:
    return DatasetError(f"dataset file {path}: {problem}; restore it from the repository (git checkout -- data/)")


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise _fail(path, f"cannot be read ({error.strerror or error})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise _fail(path, f"line {number} is not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise _fail(path, f"line {number} is not a JSON object")
        yield number, record


def _require(path: Path, number: int, record: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if key not in record]
    if missing:
        raise _fail(path, f"line {number} lacks {', '.join(missing)}")


def file_digests(root: Path) -> dict[str, str]:
    """SHA-256 of every dataset file (the manifest itself excluded), by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != MANIFEST and path.suffix in {".jsonl", ".json", ".csv", ".yml", ".xlsx"}
    }


def _manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.exists():
        raise DatasetError(f"dataset manifest missing: {path}; is INCA_DATASET_DIR pointing at the project's data/dataset?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise _fail(path, f"is not valid JSON ({error.msg})") from None
    expected = manifest.get("files", {})
    for relative, digest in expected.items():
        file = root / relative
        if not file.exists():
            raise DatasetError(f"dataset file missing: {file}; restore it from the repository (git checkout -- data/)")
        if hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            raise _fail(file, "differs from the manifest checksum (edited or corrupted)")
    return manifest


def _new_id() -> uuid.UUID:
    return uuid.uuid4()


def read_mapping(path: Path) -> list[MappingRow]:
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True)
    except Exception as error:  # openpyxl raises several unrelated types for a bad file
        raise _fail(path, f"is not a readable workbook ({type(error).__name__})") from None
    rows = list(workbook.active.iter_rows(values_only=True))
    header = ("ins_cd", "보험사명", "cre_cvr_cd", "신정원코드명", "담보명(가입설계서)")
    if not rows or tuple(rows[0][:5]) != header:
        raise _fail(path, f"header must be {header}")
    mapping = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(row):
            continue
        if any(cell is None or not str(cell).strip() for cell in row[:5]):
            raise _fail(path, f"row {number} has an empty cell")
        cells = dict(zip(header, (str(cell) for cell in row[:5]), strict=True))
        mapping.append(MappingRow(mapping_code=cells["ins_cd"], insurer_key=cells["보험사명"],
                                  coverage_code=cells["cre_cvr_cd"], canonical_name=cells["신정원코드명"],
                                  raw_name=cells["담보명(가입설계서)"]))
    return mapping


def _page_of(evidence_ref: dict[str, Any]) -> int | None:
    if isinstance(evidence_ref.get("page_num"), int):
        return int(evidence_ref["page_num"])
    source = str(evidence_ref.get("source") or "")
    if " p." in source:
        tail = source.rsplit(" p.", 1)[1]
        return int(tail) if tail.isdigit() else None
    return None


def read_bundle(root: Path) -> LoadBundle:
    """Parse and cross-check the dataset in `root` (see data/dataset/README.md)."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder missing: {root}; set INCA_DATASET_DIR or restore data/dataset")
    manifest = _manifest(root)
    bundle = LoadBundle(
        lineage=manifest["lineage"],
        expected_counts=manifest["expected_counts"],
        dataset_sha256=hashlib.sha256(json.dumps(file_digests(root), sort_keys=True).encode()).hexdigest(),
    )
    rows = bundle.rows

    insurers_path = root / "insurers.csv"
    try:
        insurer_records = list(csv.DictReader(insurers_path.read_text(encoding="utf-8").splitlines()))
    except OSError:
        raise DatasetError(f"dataset file missing: {insurers_path}") from None
    metadata_path = root / "metadata" / "products.yml"
    try:
        metadata = yaml.safe_load(metadata_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise _fail(metadata_path, f"is not readable YAML ({type(error).__name__})") from None

    insurer_ids: dict[str, uuid.UUID] = {}
    by_mapping_code: dict[str, str] = {}
    for record in insurer_records:
        key = record["insurer_key"]
        insurer_ids[key] = _new_id()
        by_mapping_code[record["mapping_code"]] = key
        rows["insurer"].append((insurer_ids[key], key, record["mapping_code"], record["insurer_name_ko"],
                                record["insurer_name_en"], record["insurer_type"]))
    product_names = {r["insurer_key"]: r["product_name"] for r in insurer_records}

    product_ids: dict[str, uuid.UUID] = {}
    product_of_insurer: dict[str, str] = {}
    for product in metadata["products"]:
        key, insurer_key = product["product_key"], product["insurer_key"]
        if insurer_key not in insurer_ids:
            raise _fail(metadata_path, f"product {key} names unknown insurer {insurer_key}")
        info_path = root / "product_info" / f"{insurer_key}.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
        effective = date.fromisoformat(info["effective_date"]) if info.get("effective_date") else None
        product_ids[key] = _new_id()
        product_of_insurer[insurer_key] = key
        # insurers.csv holds the product name as printed on the proposal (the yml's is a placeholder).
        rows["product"].append((product_ids[key], insurer_ids[insurer_key], key, product_names[insurer_key],
                                info.get("product_code"), info.get("version"), effective))

    variant_ids: dict[str, uuid.UUID] = {}
    for variant in metadata.get("variants") or []:
        variant_ids[variant["variant_key"]] = _new_id()
        rows["product_variant"].append((variant_ids[variant["variant_key"]], product_ids[variant["product_key"]],
                                        variant["variant_key"], variant["variant_display_name"],
                                        json.dumps(variant.get("variant_attrs") or {}, ensure_ascii=False)))

    documents: dict[tuple[str, str, str], uuid.UUID] = {}
    proposal_of_product: dict[str, uuid.UUID | None] = {}
    for document in metadata.get("documents") or []:
        document_id = _new_id()
        product_key = document["product_key"]
        file_name = Path(document["file_path"]).name
        documents[(product_key, document["doc_type"], file_name)] = document_id
        if document["doc_type"] == PROPOSAL:
            # Amounts are recorded once per product; a per-variant proposal makes the source ambiguous.
            proposal_of_product[product_key] = None if product_key in proposal_of_product else document_id
        variant_key = document.get("variant_key")
        rows["document"].append((document_id, product_ids[product_key],
                                 variant_ids[variant_key] if variant_key else None, document["document_key"],
                                 document["doc_type"], document.get("doc_title_raw") or file_name, file_name))

    mapping_path = root / "mapping" / "coverage_mapping.xlsx"
    bundle.mapping = [
        MappingRow(m.mapping_code, by_mapping_code.get(m.mapping_code, m.insurer_key), m.coverage_code,
                   m.canonical_name, m.raw_name)
        for m in read_mapping(mapping_path)
    ]
    names: dict[str, list[str]] = {}
    for m in bundle.mapping:
        names.setdefault(m.coverage_code, [])
        if m.canonical_name not in names[m.coverage_code]:
            names[m.coverage_code].append(m.canonical_name)
    for code, spelled in names.items():
        rows["coverage_canonical"].append((code, spelled[0], spelled[1:]))

    snippets = _evidence_pack(root)
    for insurer_key in insurer_ids:
        cards_path = root / "cards" / f"{insurer_key}.jsonl"
        if not cards_path.exists():
            raise DatasetError(f"dataset file missing: {cards_path}; restore it from the repository")
        product_key = product_of_insurer[insurer_key]
        for number, card in _read_jsonl(cards_path):
            _require(cards_path, number, card, "insurer", "coverage_name_raw", "coverage_code", "amount")
            if card["insurer"] != insurer_key:
                raise _fail(cards_path, f"line {number} belongs to insurer {card['insurer']!r}")
            code = card["coverage_code"]
            if code is not None and code not in names:
                raise _fail(cards_path, f"line {number} uses code {code} that the mapping workbook lacks")
            instance_id = _new_id()
            rows["coverage_instance"].append((instance_id, insurer_ids[insurer_key], product_ids[product_key], None,
                                              code, card["coverage_name_raw"],
                                              "matched" if code is not None else "unmatched"))
            for ordinal, snippet in enumerate(snippets.get((insurer_key, card["coverage_name_raw"]), [])):
                document_id = documents.get((product_key, snippet["doc_type"], Path(snippet.get("file_path", "")).name))
                rows["evidence_ref"].append((_new_id(), instance_id, document_id, snippet["doc_type"],
                                             snippet.get("page"), snippet["snippet"], snippet.get("match_keyword"),
                                             Path(snippet["file_path"]).name if snippet.get("file_path") else None,
                                             ordinal))
            amount = card["amount"]
            if not isinstance(amount, dict) or "status" not in amount:
                raise _fail(cards_path, f"line {number} has no amount status")
            evidence_id = None
            reference = amount.get("evidence_ref")
            if reference:
                evidence_id = _new_id()
                rows["evidence_ref"].append((evidence_id, instance_id, proposal_of_product.get(product_key),
                                             reference.get("doc_type") or amount.get("source_doc_type") or PROPOSAL,
                                             _page_of(reference), reference.get("snippet") or "", None,
                                             None, 0))
            rows["amount_fact"].append((_new_id(), instance_id, amount["status"], amount.get("value_text"),
                                        amount.get("source_doc_type"), amount.get("source_priority"), evidence_id,
                                        json.dumps(amount.get("notes") or [], ensure_ascii=False)))
    rows["coverage_alias"] = coverage_aliases(bundle)
    return bundle


def coverage_aliases(bundle: LoadBundle) -> list[tuple[Any, ...]]:
    """The search index rows: every canonical spelling, every distinct (insurer, raw name, code) of
    the workbook, then card raw names the workbook lacks; one row per (code, text, insurer).

    Vectors are computed here, in Python, so the database needs no embedding code and the stored
    vectors are exactly what `core.search` computes for a query.
    """
    insurer_keys = dict(map(fields("insurer", "insurer_id", "insurer_key"), bundle.rows["insurer"]))
    coded = fields("coverage_instance", "coverage_code", "coverage_name_raw", "insurer_id")
    cards = ((code, raw_name, insurer_keys[insurer_id])
             for code, raw_name, insurer_id in map(coded, bundle.rows["coverage_instance"]))
    return alias_rows(bundle.rows["coverage_canonical"], bundle.mapping, cards)


def alias_rows(canonical: Iterable[Row], mapping: Iterable[MappingRow],
               cards: Iterable[tuple[str | None, str, str]]) -> list[Row]:
    """coverage_aliases from its parts: canonical rows, workbook rows, then (code, raw name, insurer key)
    of each card in order (None codes skipped); a streamed market passes its distinct cards."""
    found: dict[tuple[str, str, str | None], str] = {}  # (code, text as printed, insurer) -> source
    for code, name, other_names in canonical:
        for spelling in (name, *other_names):
            found.setdefault((code, spelling, None), "canonical")
    for m in mapping:
        found.setdefault((m.coverage_code, m.raw_name, m.insurer_key), "workbook")
    for code, raw_name, insurer_key in cards:
        if code is not None:
            found.setdefault((code, raw_name, insurer_key), "card")
    vectors: dict[str, str] = {}  # the same text under several insurers is embedded once
    aliases = []
    for (code, alias_text, insurer_key), source in found.items():
        if alias_text not in vectors:
            vectors[alias_text] = vector_literal(embed(alias_text))
        aliases.append((_new_id(), code, alias_text, source, insurer_key, FEATURE_VERSION, vectors[alias_text]))
    return aliases


def _evidence_pack(root: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Supporting snippets per (insurer, raw name); exact repeats (same type, page, text) kept once."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in sorted((root / "evidence_pack").glob("*.jsonl")):
        for number, line in _read_jsonl(path):
            _require(path, number, line, "insurer", "coverage_name_raw", "evidences")
            bucket = found.setdefault((line["insurer"], line["coverage_name_raw"]), [])
            seen = {(s["doc_type"], s.get("page"), s["snippet"]) for s in bucket}
            for snippet in line["evidences"]:
                _require(path, number, snippet, "doc_type", "snippet")
                key = (snippet["doc_type"], snippet.get("page"), snippet["snippet"])
                if key not in seen:
                    seen.add(key)
                    bucket.append(snippet)
    return found
