"""POST /compare: resolve the guide's request shape, call core.compare, and shape its answer.

Everything shown comes from `core.compare` as it is: cells in request order, every instance of a
cell listed with its own status, sentences only from `Comparison.explanations()`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import cast

from api.errors import ApiError
from api.schemas import (
    AuditOut,
    CellOut,
    CellStatus,
    CompareRequest,
    CompareResponse,
    CoverageOut,
    EvidenceFindingOut,
    EvidenceOut,
    InstanceOut,
    ProductOut,
    ProductRef,
    StoredStatus,
)
from core import BROKEN, INTACT, catalog
from core.comparison import (
    CONFIRMED,
    STATUS_LABELS,
    Cell,
    Comparison,
    Evidence,
    Instance,
    compare,
    resolve_codes,
)
from core.data_quality import MARKER, NOTICE, Finding
from core.errors import SelectionError


def _closest(value: str, choices: Sequence[str]) -> list[str] | None:
    """Names containing the value (a fragment of a long product name), then similar spellings."""
    containing = [choice for choice in choices if value and value in choice]
    similar = difflib.get_close_matches(value, choices, n=3, cutoff=0.4)
    return list(dict.fromkeys(containing + similar))[:3] or None


def resolve_products(refs: Sequence[ProductRef], known: Sequence[catalog.Product]) -> list[catalog.Product]:
    """{insurer, product_name?} entries -> products, in request order (each at most once)."""
    if not known:
        raise ApiError(503, "database not loaded", "the database holds no products: run `python -m core load`")
    by_insurer: dict[str, list[catalog.Product]] = {}
    for product in known:
        for name in dict.fromkeys((product.insurer_name, product.insurer_key)):
            by_insurer.setdefault(name, []).append(product)
    insurer_names = list(dict.fromkeys(p.insurer_name for p in known))
    insurer_keys = list(dict.fromkeys(p.insurer_key for p in known))
    chosen: list[catalog.Product] = []
    for ref in refs:
        insurer = ref.insurer.strip()
        candidates = by_insurer.get(insurer) or by_insurer.get(insurer.lower())
        if not candidates:
            valid = [*insurer_names, *insurer_keys]
            raise ApiError(404, "unknown insurer",
                           f"no insurer {insurer!r}; use a Korean name (e.g. {insurer_names[0]}) or a key "
                           f"(e.g. {insurer_keys[0]})",
                           value=insurer, valid=valid, closest=_closest(insurer, valid))
        name = (ref.product_name or "").strip()
        if name:
            matches = [p for p in candidates if name in (p.name, p.key)]
            if not matches:
                valid = [p.name for p in candidates]
                raise ApiError(404, "unknown product",
                               f"{candidates[0].insurer_name} has no product named {name!r}; give its exact name "
                               "or product key, or leave product_name out when the insurer has one product",
                               value=name, valid=valid + [p.key for p in candidates], closest=_closest(name, valid))
            product = matches[0]
        elif len(candidates) > 1:
            raise ApiError(422, "product_name required",
                           f"{candidates[0].insurer_name} has {len(candidates)} products; name one in product_name",
                           value=insurer, valid=[p.name for p in candidates])
        else:
            product = candidates[0]
        if product in chosen:
            raise ApiError(422, "duplicate product",
                           f"{product.label} ({product.key}) is listed twice; list each product once",
                           value=insurer)
        chosen.append(product)
    return chosen


def resolve_coverages(codes: Sequence[str], known: Sequence[catalog.Coverage]) -> list[str]:
    try:
        return [coverage.code for coverage in resolve_codes(codes, known)]
    except SelectionError as error:
        raise ApiError(404, "unknown coverage code", str(error), value=error.bad_value,
                       valid=[coverage.code for coverage in known], closest=error.suggestions or None) from None


def run(request: CompareRequest) -> Comparison:
    # Only the named insurers' products are read (every product of each, so the decision is the full
    # catalog's); an error is re-decided on the full catalog so it lists every valid name.
    insurers = [name for ref in request.products for name in dict.fromkeys((ref.insurer.strip(),
                                                                            ref.insurer.strip().lower()))]
    try:
        products = resolve_products(request.products, catalog.products(insurers))
    except ApiError:
        products = resolve_products(request.products, catalog.products())
    codes = resolve_coverages([ref.coverage_code for ref in request.target_coverages], catalog.coverages())
    comparison = compare([product.key for product in products], codes, with_unmatched=False)
    audit = comparison.audit
    if audit.lock_state != INTACT:
        # Amounts that no longer match their audit are not served as if they did.
        error = "lock broken" if audit.lock_state == BROKEN else "database not loaded"
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
        explanation=sentence,
        evidence_findings=_findings(findings),
    )


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
    audit = comparison.audit
    return CompareResponse(
        products=products,
        coverages=coverages,
        audit=AuditOut(audit_run_id=audit.audit_run_id, audit_status=audit.audit_status, freeze_tag=audit.freeze_tag,
                       git_commit=audit.git_commit, lock_state=audit.lock_state, lock_intact=audit.lock_intact,
                       fingerprint_verified_at=audit.fingerprint_verified_at, reason=audit.reason),
    )
