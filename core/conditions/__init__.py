"""Condition slots (대기기간·면책, 감액, 지급 횟수·한도, 갱신, 가입나이) in the documents' own words.

Pure and deterministic: text in, verbatim spans out. Nothing here parses a phrase into a number.
See docs/conditions.md for the attribution rules.
"""

from core.conditions.extract import conditions_for_card, extract_conditions, sources_for_card
from core.conditions.slots import (
    CONFLICT,
    FOUND,
    LABELS,
    NOT_FOUND,
    SLOTS,
    STATUS_LABELS,
    Phrase,
    SlotResult,
    SourceText,
)

__all__ = [
    "CONFLICT", "FOUND", "LABELS", "NOT_FOUND", "SLOTS", "STATUS_LABELS", "Phrase", "SlotResult", "SourceText",
    "conditions_for_card", "extract_conditions", "sources_for_card",
]
