"""What counts as a printed amount, read side only: never parses or computes one.

A CONFIRMED fact must carry the amount as the proposal prints it. A status text or a
placeholder (`확인 불가`, `금액 미기재`, `-`, blank) in its place is not an amount, and is
refused by `core.explain` and by the load's pre-audit alike.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["PLACEHOLDER_LABELS", "is_placeholder_amount"]

#: status texts and placeholders seen in proposals and in this product's own labels
PLACEHOLDER_LABELS: frozenset[str] = frozenset(
    {
        "금액미기재", "미기재", "해당담보없음", "해당없음", "없음", "확인불가", "확인안됨", "미확인", "금액명시없음",
        "명시없음", "금액없음", "원문에서찾지못함", "해당사항없음", "na", "n/a", "none", "null", "nan", "tbd",
        "confirmed", "unconfirmed", "not_available", "notavailable",
    }
)
# A Korean-numeral amount without a digit (일천만원): a unit word run ending in 원
_HANGUL_AMOUNT = re.compile(r"[일이삼사오육칠팔구십백천만억조]+원")
_DASHES_AND_DOTS = re.compile(r"[\-‐‑‒–—―−ー~·.…_*/?×xX]+")


def is_placeholder_amount(value_text: str | None) -> bool:
    """True when `value_text` is no amount: blank, dashes/ellipsis only, a status label, or no number.

    The rule, on the NFKC, whitespace-free text: empty; only dashes, dots, ellipses or similar
    fillers; one of `PLACEHOLDER_LABELS` (case-insensitive); or neither a digit nor a
    Korean-numeral amount (`일천만원`). Every CONFIRMED value of the bundled dataset holds a digit.
    """
    if value_text is None:
        return True
    squashed = "".join(unicodedata.normalize("NFKC", value_text).split())
    if not squashed or _DASHES_AND_DOTS.fullmatch(squashed):
        return True
    if squashed.lower() in PLACEHOLDER_LABELS:
        return True
    return not any(ch.isdigit() for ch in squashed) and not _HANGUL_AMOUNT.search(squashed)
