"""POST /compare: resolve the guide's request shape, call core.compare, and shape its answer.

Everything shown comes from `core.compare` as it is: cells in request order, every instance of a
cell listed with its own status, sentences only from `Comparison.explanations()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from api.errors import ApiError
from api.schemas import (
    AuditOut,
    CellOut,
    CellStatus,
    CompareRequest,
    CompareResponse,
    ConditionPhraseOut,
    ConditionSlotOut,
    CoverageOut,
    EvidenceFindingOut,
    EvidenceOut,
    InstanceOut,
    ProductOut,
    ProductRef,
    StoredStatus,
)
from core import BROKEN, INTACT, UNPROVEN, catalog, condition_slots, selection
from core.comparison import (
    CONFIRMED,
    STATUS_LABELS,
    Cell,
    Comparison,
    Evidence,
    Instance,
    compare,
)
from core.data_quality import MARKER, NOTICE, Finding
from core.errors import SelectionError

# core.selection decides (the same rule and suggestions as the library and the dashboard); this maps
# its error kinds to the HTTP answers docs/api.md lists.
_ANSWERS = {
    selection.UNKNOWN_INSURER: (404, "unknown insurer"),
    selection.UNKNOWN_PRODUCT: (404, "unknown product"),
    selection.UNKNOWN_COVERAGE: (404, "unknown coverage code"),
    selection.AMBIGUOUS: (422, "product_name required"),
    selection.DUPLICATE: (422, "duplicate product"),
    selection.NOT_LOADED: (503, "database not loaded"),
}


def _answer(error: SelectionError) -> ApiError:
    status, name = _ANSWERS.get(error.kind or "", (422, "invalid selection"))
    return ApiError(status, name, str(error), value=error.bad_value, valid=error.valid or None,
                    closest=(error.suggestions or None) if status == 404 else None)


def _refs(refs: Sequence[ProductRef]) -> list[selection.ProductRef]:
    return [selection.ProductRef(ref.insurer, ref.product_name) for ref in refs]


def resolve_products(refs: Sequence[ProductRef], known: Sequence[catalog.Product]) -> list[catalog.Product]:
    """{insurer, product_name?} entries -> products among `known`, in request order (each at most once)."""
    try:
        return list(selection.pick_products(_refs(refs), known))
    except SelectionError as error:
        raise _answer(error) from None


def run(request: CompareRequest) -> Comparison:
    try:
        chosen = selection.resolve(_refs(request.products), [ref.coverage_code for ref in request.target_coverages])
        comparison = compare(chosen, with_unmatched=False, include_evidence=request.include_evidence)
    except SelectionError as error:
        raise _answer(error) from None
    audit = comparison.audit
    if audit.lock_state != INTACT:
        # Amounts that no longer match their audit are not served as if they did.
        error = {BROKEN: "lock broken", UNPROVEN: "lock not proven yet"}.get(audit.lock_state, "database not loaded")
        raise ApiError(503, error, f"lock {audit.lock_state}: {audit.reason}; see `python -m core status`")
    return comparison


# --- shaping the answer ------------------------------------------------------------------------

def _evidence(evidence: Evidence, insurer_name: str) -> EvidenceOut:
    return EvidenceOut(doc_type=evidence.doc_type, page=evidence.page, snippet=evidence.snippet,
                       source_file=evidence.source_file, source=evidence.source(insurer_name))


def _findings(findings: tuple[Finding, ...]) -> list[EvidenceFindingOut] | None:
    return [EvidenceFindingOut(kind=f.kind, context=f.context, detail=f.detail, marker=MARKER, notice=NOTICE)
            for f in findings] or None


def _instance(instance: Instance, insurer_name: str, sentence: str,
              findings: tuple[Finding, ...] = ()) -> InstanceOut:
    confirmed = instance.status == CONFIRMED
    return InstanceOut(
        coverage_name_raw=instance.raw_name,
        status=cast(StoredStatus, instance.status),  # the database stores only these two
        status_label=STATUS_LABELS[instance.status],
        value_text=instance.value_text if confirmed else None,
        display_text=instance.display_text,
        source_doc_type=instance.source_doc_type,
        source_priority=instance.source_priority,
        evidence=_evidence(instance.proposal_evidence, insurer_name) if instance.proposal_evidence else None,
        supporting_evidence=[_evidence(e, insurer_name) for e in instance.supporting_evidence],
        snippet_count=instance.snippet_count,
        explanation=sentence,
        evidence_findings=_findings(findings),
    )


def _conditions(conditions: condition_slots.InstanceConditions, insurer_name: str, subject: str,
                ) -> list[ConditionSlotOut]:
    return [ConditionSlotOut(slot=slot.slot, label=slot.label, status=cast(Any, slot.status),
                             status_label=slot.status_label,
                             phrases=[ConditionPhraseOut(text=p.text, source_kind=cast(Any, p.source_kind),
                                                         doc_type=p.doc_type, page=p.page, start=p.start, end=p.end,
                                                         source=p.source, source_text=p.source_text)
                                      for p in slot.phrases],
                             sentence=condition_slots.sentence(insurer_name, subject, slot))
            for slot in conditions.slots]


def _with_conditions(out: list[InstanceOut], cell: condition_slots.CellConditions, coverage_name: str) -> None:
    for instance_out, conditions in zip(out, cell.instances, strict=False):
        subject = conditions.raw_name if len(cell.instances) > 1 else coverage_name
        instance_out.conditions = _conditions(conditions, cell.product.insurer_name, subject)


def _cell(position: int, product: catalog.Product, cell: Cell, sentences: list[str],
          comparison: Comparison | None = None) -> CellOut:
    only = cell.instances[0] if len(cell.instances) == 1 else None
    return CellOut(
        position=position,
        product_key=product.key,
        insurer_name=product.insurer_name,
        status=cast(CellStatus, cell.status),
        status_label=STATUS_LABELS[cell.status],
        value_text=only.value_text if only is not None and only.status == CONFIRMED else None,
        display_text=cell.display_text,
        # explanations() yields one sentence per instance in the same order (one for an empty cell)
        instances=[_instance(i, product.insurer_name, s,
                             comparison.finding_for(cell.coverage_code, product.key, i.raw_name) if comparison else ())
                   for i, s in zip(cell.instances, sentences, strict=False)],
        explanations=sentences,
    )


def shape(comparison: Comparison) -> CompareResponse:
    sentences: dict[tuple[str, str], list[str]] = {}
    for explanation in comparison.explanations():
        sentences.setdefault((explanation.coverage_code, explanation.product_key), []).append(explanation.sentence)
    products = [ProductOut(position=n, insurer_key=p.insurer_key, insurer_name=p.insurer_name, product_key=p.key,
                           product_name=p.name, label=p.label) for n, p in enumerate(comparison.products, start=1)]
    coverages = []
    for coverage, cells in comparison.rows():
        coverages.append(CoverageOut(
            coverage_code=coverage.code, coverage_name=coverage.name, category=coverage.category,
            cells=[_cell(n, product, cell, sentences.get((coverage.code, product.key), []), comparison)
                   for n, (product, cell) in enumerate(zip(comparison.products, cells, strict=True), start=1)],
        ))
    for (coverage, condition_cells), coverage_out in zip(comparison.conditions(), coverages, strict=True):
        for condition_cell, cell_out in zip(condition_cells, coverage_out.cells, strict=True):
            _with_conditions(cell_out.instances, condition_cell, coverage.name)
    audit = comparison.audit
    return CompareResponse(
        products=products,
        coverages=coverages,
        audit=AuditOut(audit_run_id=audit.audit_run_id, audit_status=audit.audit_status, freeze_tag=audit.freeze_tag,
                       git_commit=audit.git_commit, lock_state=audit.lock_state, lock_intact=audit.lock_intact,
                       fingerprint_verified_at=audit.fingerprint_verified_at, reason=audit.reason),
    )
