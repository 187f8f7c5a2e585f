"""Slot names, statuses and the value types the extractor returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SLOTS = ("waiting_period", "reduction", "payout_limit", "renewal", "entry_age")
LABELS = {
    "waiting_period": "대기기간·면책",
    "reduction": "감액",
    "payout_limit": "지급 횟수·한도",
    "renewal": "갱신",
    "entry_age": "가입나이",
}
FOUND, CONFLICT, NOT_FOUND = "FOUND", "CONFLICT", "NOT_FOUND"
STATUS_LABELS = {FOUND: "원문 확인", CONFLICT: "문서 상충", NOT_FOUND: "원문에서 찾지 못함"}

SourceKind = Literal["raw_name", "evidence"]


@dataclass(frozen=True)
class SourceText:
    """One text the extractor reads: the raw name, the proposal snippet or a supporting snippet."""

    source_kind: SourceKind
    doc_type: str | None
    page: int | None
    ordinal: int
    text: str


@dataclass(frozen=True)
class Phrase:
    """A verbatim span: `text == sources[source_index].text[start:end]`, always."""

    slot: str
    text: str
    source_index: int
    source_kind: SourceKind
    doc_type: str | None
    page: int | None
    ordinal: int
    start: int
    end: int


@dataclass(frozen=True)
class SlotResult:
    status: str
    phrases: tuple[Phrase, ...] = ()
