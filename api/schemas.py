"""Request and response models of the HTTP API.

Every field carries a description so the OpenAPI schema (/openapi.json, /docs) documents the
whole contract; tests/test_api.py checks that none is missing. Amounts are plain strings:
nothing here parses, sorts or totals them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool
from pydantic_core import PydanticCustomError

from core.comparison import MAX_CODES, MAX_PRODUCTS

#: the guide's example request (also shown in /docs and docs/api.md)
EXAMPLE_REQUEST: dict[str, Any] = {
    "products": [{"insurer": "삼성화재"}, {"insurer": "메리츠화재"}],
    "target_coverages": [{"coverage_code": "A4200_1"}],
}

StoredStatus = Literal["CONFIRMED", "UNCONFIRMED"]
CellStatus = Literal["CONFIRMED", "UNCONFIRMED", "NOT_AVAILABLE", "MIXED"]


# --- request -----------------------------------------------------------------------------------

#: control characters (C0 including NUL, DEL, C1): never part of a name or a code, and PostgreSQL
#: text refuses NUL outright (the driver would raise mid-request)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: the same rule for the OpenAPI schema, so clients (and the fuzz test) see it in the contract
_PRINTABLE_PATTERN = {"pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"}


def _printable(value: str) -> str:
    """Names and codes are printed text: a NUL or other control character is a client error (422),
    caught here at the edge (PostgreSQL refuses NUL in text, which would otherwise be a 500)."""
    found = _CONTROL.search(value)
    if found:
        raise PydanticCustomError("control_character",
                                  f"contains the control character U+{ord(found.group()):04X}; send printable text only")
    return value


Printable = Annotated[str, AfterValidator(_printable)]


class ProductRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    insurer: Printable = Field(
        min_length=1, max_length=200, json_schema_extra=_PRINTABLE_PATTERN,
        description="Insurer by Korean name (e.g. 삼성화재, KB손해보험) or key (e.g. samsung, kb).",
    )
    product_name: Printable | None = Field(
        default=None, max_length=200, json_schema_extra=_PRINTABLE_PATTERN,
        description="The product's exact name or product key. Optional when the insurer has one product; "
                    "required when it has several.",
    )


class CoverageRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    coverage_code: Printable = Field(min_length=1, max_length=50, json_schema_extra=_PRINTABLE_PATTERN,
                               description="Canonical coverage code (신정원 unified code), e.g. A4200_1.")


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_REQUEST]})

    products: list[ProductRef] = Field(
        min_length=1, max_length=MAX_PRODUCTS,
        description=f"Products to show side by side, in this order (1 to {MAX_PRODUCTS}, each once).",
    )
    target_coverages: list[CoverageRef] = Field(
        min_length=1, max_length=MAX_CODES,
        description=f"Coverages to compare, in this order (1 to {MAX_CODES}; a repeated code is shown once).",
    )
    include_evidence: StrictBool = Field(
        default=True,
        description="True (default): every snippet verbatim (`evidence.snippet`, `supporting_evidence`). False: "
                    "the cells only: `evidence` keeps its doc_type, page and source with `snippet` null, "
                    "`supporting_evidence` is empty, and `snippet_count` says how many snippets exist.",
    )


# --- /compare response -------------------------------------------------------------------------

class EvidenceOut(BaseModel):
    doc_type: str = Field(description="Source document type: 가입설계서 (proposal) for the amount itself; "
                                      "약관, 사업방법서 or 상품요약서 for supporting snippets.")
    page: int | None = Field(description="Page of the source document, or null when unknown.")
    snippet: str | None = Field(description="The original text (원문), verbatim; null only when the request "
                                            "asked include_evidence=false.")
    source_file: str | None = Field(description="Source file name, when recorded.")
    source: str = Field(description="One-line citation: insurer · document type · page.")


SlotStatus = Literal["FOUND", "CONFLICT", "NOT_FOUND"]


class ConditionPhraseOut(BaseModel):
    text: str = Field(description="The phrase exactly as printed (e.g. 최초 1회한, 1년50%): a verbatim span of its "
                                  "source, never parsed, normalised or compared.")
    source_kind: Literal["raw_name", "evidence"] = Field(
        description="raw_name: a span of coverage_name_raw; evidence: a span of one of the coverage's snippets.")
    doc_type: str | None = Field(description="Document type of the cited snippet; null for the raw name.")
    page: int | None = Field(description="Page of the cited snippet, or null when unknown / the raw name.")
    start: int = Field(description="0-based character offset of the phrase in its source text.")
    end: int = Field(description="End offset (exclusive): text == source_text[start:end].")
    source: str = Field(description="One-line citation, e.g. 약관 p.12 or 가입설계서 담보명.")
    source_text: str = Field(description="The cited raw name or snippet (원문), verbatim.")


class ConditionSlotOut(BaseModel):
    slot: str = Field(description="waiting_period, reduction, payout_limit, renewal or entry_age.")
    label: str = Field(description="The dashboard's Korean name of the slot (대기기간·면책, 감액, ...).")
    status: SlotStatus = Field(description="FOUND (phrases that agree), CONFLICT (documents state different "
                                           "things: every phrase listed, none picked) or NOT_FOUND (no text ties a "
                                           "phrase to this coverage; shown as 원문에서 찾지 못함, never 없음).")
    status_label: str = Field(description="원문 확인, 문서 상충 or 원문에서 찾지 못함.")
    phrases: list[ConditionPhraseOut] = Field(description="The stored phrases in document order (empty for NOT_FOUND).")
    sentence: str = Field(description="The fixed-template sentence for this slot (passes the forbidden-language check).")
class EvidenceFindingOut(BaseModel):
    kind: str = Field(description="digit_before, digit_after, inside_longer_amount, different_amount or "
                                  "not_in_snippet (docs/data-quality.md).")
    context: str = Field(description="The snippet text around the value, verbatim.")
    detail: str = Field(description="What was found next to the value (a short technical note).")
    marker: str = Field(description="The dashboard's marker for the cell: ⚠ 원문 확인 필요.")
    notice: str = Field(description="The fixed sentence shown with the marker.")


class InstanceOut(BaseModel):
    coverage_name_raw: str = Field(description="The coverage name exactly as the insurer prints it.")
    status: StoredStatus = Field(description="Stored status of this amount: CONFIRMED (printed in the proposal) "
                                             "or UNCONFIRMED (no amount printed). Never upgraded.")
    status_label: str = Field(description="The dashboard's Korean word for the status (확인, 금액 미기재).")
    value_text: str | None = Field(description="The amount exactly as printed (e.g. 3,000만원) when CONFIRMED; "
                                               "null otherwise. An opaque string: never parsed or compared.")
    display_text: str = Field(description="What the dashboard shows for this coverage: value_text, or 금액 미기재.")
    source_doc_type: str | None = Field(description="Document the amount comes from (가입설계서), null when none.")
    source_priority: str | None = Field(description="Source priority recorded by the audited load (e.g. PRIMARY).")
    evidence: EvidenceOut | None = Field(description="The proposal snippet that prints the amount (CONFIRMED only).")
    supporting_evidence: list[EvidenceOut] = Field(
        description="Other snippets about this coverage (terms, summaries), verbatim; context only, never amounts.")
    snippet_count: int | None = Field(default=None, description="How many snippets this coverage has (the proposal "
                                                               "snippet and the supporting ones), fetched or not.")
    explanation: str = Field(description="The fixed-template sentence for this coverage (core explanations).")
    conditions: list[ConditionSlotOut] = Field(
        default_factory=list, description="The coverage's condition slots as the audited load stored them, in slot "
                                          "order (empty on a database not yet upgraded: `python -m core upgrade`).")
    evidence_findings: list[EvidenceFindingOut] | None = Field(
        default=None,
        description="Null when the value is a complete amount in its own proposal snippet; otherwise how the "
                    "extracted value_text and the 원문 may differ (issue 13). value_text and status stay as locked.")


class CellOut(BaseModel):
    position: int = Field(description="1-based position of the product in the request.")
    product_key: str = Field(description="Product key, e.g. samsung_health_v1.")
    insurer_name: str = Field(description="Insurer's Korean name.")
    status: CellStatus = Field(
        description="Cell status: CONFIRMED or UNCONFIRMED (every instance has it), NOT_AVAILABLE (the product "
                    "has no coverage under this code), or MIXED (several instances whose statuses differ; each "
                    "instance keeps its own status).")
    status_label: str = Field(description="The dashboard's Korean word for the cell status "
                                          "(확인, 금액 미기재, 해당 담보 없음, 복수 담보).")
    value_text: str | None = Field(
        description="The amount exactly as printed when the cell holds exactly one CONFIRMED instance; null "
                    "otherwise (NOT_AVAILABLE, UNCONFIRMED, or several instances: read `instances`, none is picked).")
    display_text: str = Field(description="What the dashboard cell shows; several instances are each named on "
                                          "their own line.")
    instances: list[InstanceOut] = Field(
        description="Every raw coverage of the product under this code (empty for NOT_AVAILABLE), each with its "
                    "own status, amount and evidence.")
    explanations: list[str] = Field(description="The template sentence(s) for this cell: one per instance, or one "
                                                "NOT_AVAILABLE sentence.")


class CoverageOut(BaseModel):
    coverage_code: str = Field(description="Canonical coverage code.")
    coverage_name: str = Field(description="Canonical coverage name.")
    category: str = Field(description="Coverage category derived from the code family (e.g. 암 진단).")
    cells: list[CellOut] = Field(description="One cell per requested product, in request order.")


class ProductOut(BaseModel):
    position: int = Field(description="1-based position in the request.")
    insurer_key: str = Field(description="Insurer key, e.g. samsung.")
    insurer_name: str = Field(description="Insurer's Korean name, e.g. 삼성화재.")
    product_key: str = Field(description="Product key, e.g. samsung_health_v1.")
    product_name: str = Field(description="Product name as registered.")
    label: str = Field(description="Column heading the dashboard uses for this product.")


class AuditOut(BaseModel):
    audit_run_id: str | None = Field(description="Id of the audited load (audit_runs) the amounts come from.")
    audit_status: str | None = Field(description="Status of that audit (PASS).")
    freeze_tag: str | None = Field(description="Freeze tag of the audited source dataset.")
    git_commit: str | None = Field(description="Commit of the audited source dataset.")
    lock_state: str = Field(description="Lock state when answering: INTACT (amount_fact matches the audited "
                                        "fingerprint). /compare refuses to answer when it is not INTACT.")
    lock_intact: bool = Field(description="True when lock_state is INTACT.")
    fingerprint_verified_at: str | None = Field(
        description="When the live fingerprint was last computed (UTC, ISO 8601); "
                    "reused only while the witness shows nothing written since.")
    reason: str = Field(description="Why the lock has this state, in one line.")


class CompareResponse(BaseModel):
    products: list[ProductOut] = Field(description="The resolved products, in request order.")
    coverages: list[CoverageOut] = Field(description="One entry per requested coverage, in request order.")
    audit: AuditOut = Field(description="Audit lineage and lock state of the amounts in this answer.")


# --- /health -----------------------------------------------------------------------------------

class DatabaseHealth(BaseModel):
    reachable: bool = Field(description="The reading connection answered.")
    server_version: str = Field(description="PostgreSQL server version.")
    read_only: bool = Field(description="The reading session is a read-only transaction.")


class HealthResponse(BaseModel):
    status: Literal["healthy"] = Field(description="Always `healthy` with HTTP 200.")
    database: DatabaseHealth = Field(description="The reading connection.")
    lock: dict[str, Any] = Field(description="The lock (core.lock.LockState): state INTACT, audit run, freeze tag, "
                                             "commit, recorded and live fingerprints, when verified.")


class UnhealthyResponse(BaseModel):
    status: Literal["unhealthy"] = Field(description="Always `unhealthy` with HTTP 503.")
    error: str = Field(description="database connection failed | database not loaded | lock broken | "
                                   "lock not proven yet (a standby between two proofs) | configuration error.")
    detail: str = Field(description="One line saying why; database URLs are shown without their password.")
    lock: dict[str, Any] | None = Field(default=None, description="The lock, when it could be read.")


# --- errors ------------------------------------------------------------------------------------

class FieldProblem(BaseModel):
    field: str = Field(description="Where in the body, e.g. products.0.insurer.")
    message: str = Field(description="What is wrong there.")


class ErrorResponse(BaseModel):
    error: str = Field(description="Short, stable error name (e.g. unknown insurer, too many products).")
    detail: str = Field(description="One readable line: what is wrong and what to do.")
    value: str | None = Field(default=None, description="The offending value from the request, when one.")
    valid: list[str] | None = Field(default=None, description="Every accepted value for that field, when listable.")
    closest: list[str] | None = Field(default=None, description="The accepted values closest to `value`.")
    limit: int | None = Field(default=None, description="The limit that was exceeded (items or bytes).")
    given: int | None = Field(default=None, description="How many items (or bytes) the request had.")
    errors: list[FieldProblem] | None = Field(default=None, description="Every validation problem (422 only).")
