"""Evidence findings, read side: what the load (or `python -m core upgrade`) recorded in evidence_finding.

A finding says a CONFIRMED value_text is not a complete amount in its own proposal snippet
(core/evidence_consistency.py, docs/data-quality.md). It never changes the value or the status: every
view shows the locked value verbatim with `MARKER` next to it and the fixed `NOTICE` sentence.

- `findings()`: every finding as a DataFrame (notebooks; `core.findings()`);
- `FINDINGS_QUERY`: the findings of some products, for compare()'s one-snapshot pipeline;
- `summary(conn)`: the status report's 데이터 품질 part (count, kinds, digests, the dataset's digest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection, text

from core import db
from core.evidence_consistency import MARKER, NOTICE, Finding

__all__ = ["FINDINGS_QUERY", "MARKER", "NOTICE", "Finding", "FindingRecord", "findings", "findings_by_key",
           "flagged_facts", "summary"]

# Written in the driver's parameter style (compare() sends it in its pipeline). Filtered by the names the
# caller gave (product keys, insurer keys or Korean insurer names), or every finding when `every` is true.
# Ordered by names only, never by the amount.
FINDINGS_QUERY = """
    SELECT i.insurer_key, i.name_ko AS insurer, p.product_key, p.product_name, ci.coverage_code,
           ci.coverage_name_raw, v.variant_key, f.value_text, f.kind, f.context, f.detail,
           e.doc_type, e.page, e.snippet
    FROM evidence_finding f
    JOIN coverage_instance ci ON ci.instance_id = f.instance_id
    JOIN insurer i ON i.insurer_id = ci.insurer_id
    JOIN product p ON p.product_id = ci.product_id
    LEFT JOIN product_variant v ON v.variant_id = ci.variant_id
    JOIN evidence_ref e ON e.evidence_id = f.evidence_id
    WHERE %(every)s OR p.product_key = ANY(CAST(%(names)s AS text[])) OR i.insurer_key = ANY(CAST(%(names)s AS text[]))
          OR i.name_ko = ANY(CAST(%(names)s AS text[]))
    ORDER BY i.insurer_key, p.product_key, ci.coverage_code COLLATE "C" NULLS LAST, ci.coverage_name_raw COLLATE "C",
             v.variant_key NULLS FIRST, f.kind
"""
COLUMNS = ["insurer_key", "insurer", "product_key", "product_name", "coverage_code", "coverage_name_raw",
           "variant_key", "value_text", "kind", "context", "detail", "doc_type", "page", "snippet"]


@dataclass(frozen=True)
class FindingRecord:
    """One recorded finding with where it belongs and the snippet it was found in (verbatim)."""

    insurer_key: str
    insurer: str
    product_key: str
    product_name: str
    coverage_code: str | None
    coverage_name_raw: str
    variant_key: str | None
    value_text: str
    kind: str
    context: str
    detail: str
    doc_type: str
    page: int | None
    snippet: str

    @property
    def finding(self) -> Finding:
        return Finding(self.kind, self.value_text, self.context, self.detail)

    @property
    def snippet_source(self) -> str:
        page = f"p.{self.page}" if self.page else "쪽 미상"
        return f"{self.insurer} · {self.doc_type} · {page}"


def records_from_rows(rows: list[Any]) -> list[FindingRecord]:
    """SQLAlchemy rows of FINDINGS_QUERY, read by column name."""
    return [FindingRecord(**row._mapping) for row in rows]


def findings_by_key(records: list[FindingRecord]) -> dict[tuple[str | None, str, str], tuple[Finding, ...]]:
    """(coverage_code, product_key, raw name) -> its findings (several variants of one raw name merge)."""
    found: dict[tuple[str | None, str, str], list[Finding]] = {}
    for record in records:
        bucket = found.setdefault((record.coverage_code, record.product_key, record.coverage_name_raw), [])
        if record.finding not in bucket:
            bucket.append(record.finding)
    return {key: tuple(value) for key, value in found.items()}


def _frame(records: list[FindingRecord]) -> pd.DataFrame:
    frame = pd.DataFrame([record.__dict__ for record in records], columns=COLUMNS)
    frame["snippet_source"] = [record.snippet_source for record in records]
    return frame


def findings(products: list[str] | None = None) -> pd.DataFrame:
    """Every recorded evidence finding (or those of `products`: keys, insurer keys or names), one row each:
    insurer, product, coverage code, raw name, value_text (verbatim), kind, context, detail, snippet and
    its source. An empty frame when the extraction agrees with its evidence everywhere."""
    with db.read() as conn:
        rows = conn.exec_driver_sql(FINDINGS_QUERY, {"every": products is None, "names": list(products or [])}).all()
    return _frame(records_from_rows(rows))


def flagged_facts(records: list[FindingRecord]) -> list[dict[str, Any]]:
    """One entry per flagged fact (a fact may have several kinds), in the records' order."""
    facts: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        key = (record.product_key, record.variant_key, record.coverage_code, record.coverage_name_raw)
        if key not in facts:
            facts[key] = {"insurer_key": record.insurer_key, "insurer": record.insurer,
                          "product_key": record.product_key, "product_name": record.product_name,
                          "coverage_code": record.coverage_code, "coverage_name_raw": record.coverage_name_raw,
                          "variant_key": record.variant_key, "value_text": record.value_text, "kinds": [],
                          "contexts": [], "snippet": record.snippet, "snippet_source": record.snippet_source}
        facts[key]["kinds"].append(record.kind)
        if record.context not in facts[key]["contexts"]:
            facts[key]["contexts"].append(record.context)
    return list(facts.values())


def summary(conn: Connection) -> dict[str, Any]:
    """The status report's data-quality part: how many facts are flagged, by kind, with their snippets.

    The findings themselves are locked content: every row is in the lock's digests (schema 008's
    registry), so a finding changed behind the triggers makes the lock BROKEN; findings never do.
    """
    rows = conn.exec_driver_sql(FINDINGS_QUERY, {"every": True, "names": []}).all()
    records = records_from_rows(rows)
    by_kind: dict[str, int] = {}
    for record in records:
        by_kind[record.kind] = by_kind.get(record.kind, 0) + 1
    items = flagged_facts(records)
    return {"findings": len(items), "finding_rows": len(records), "by_kind": by_kind, "items": items,
            "dataset_sha256": _dataset_sha256(conn)}


def _dataset_sha256(conn: Connection) -> str | None:
    """The manifest digest of the dataset the load locked (audit_runs.dataset_sha256)."""
    return conn.execute(text(
        "SELECT dataset_sha256 FROM audit_runs WHERE kind = 'load' ORDER BY recorded_at DESC LIMIT 1")).scalar()
