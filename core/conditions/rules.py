"""The phrase patterns of each slot and the agreement key. Patterns find spans; nothing is converted.

Each pattern matches the whole phrase as printed (spaces and line breaks inside allowed), so the span
is shown verbatim. Agreement is decided on text only: see `agreement_key`.
"""

from __future__ import annotations

import re

_S = r"[ \t\n]*"  # printed phrases wrap and space freely

PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    "waiting_period": (
        re.compile(rf"\d+{_S}(?:일|년)이{_S}지난{_S}날의{_S}다음{_S}날"),
        re.compile(rf"가입{_S}후{_S}\d+{_S}일간"),
        re.compile(rf"\d+{_S}년{_S}대기형"),
        re.compile(rf"면책{_S}없음"),
        re.compile(r"(?:^|(?<=\())면책(?=\)|$)"),
    ),
    "reduction": (
        re.compile(rf"\d+{_S}년{_S}(?:미만{_S})?\d+{_S}%"),
        re.compile(rf"\d+{_S}년{_S}감액(?:{_S}지급)?"),
        re.compile(rf"감액{_S}없음"),
    ),
    "payout_limit": (
        re.compile(rf"\d+{_S}회당{_S}\d+{_S}일{_S}한(?:{_S}도)?"),
        re.compile(rf"\d+{_S}일{_S}이상{_S}\d+{_S}일{_S}한{_S}도"),
        re.compile(rf"(?<![\d-])\d+{_S}(?:일)?{_S}-{_S}\d+{_S}일(?![\d이])"),
        re.compile(rf"(?:(?:최초|연간|평생|1일|동일{_S}(?:사고|질병){_S}당){_S})?\d+{_S}회{_S}(?:한{_S}도|한|지급)"),
        re.compile(rf"매회{_S}지급|(?:^|(?<=\())매회(?=\)|$)"),
    ),
    "renewal": (
        re.compile(rf"비갱신형{_S}/{_S}갱신형"),
        re.compile(r"비갱신형"),
        re.compile(rf"(?<!비)갱{_S}신{_S}형(?:_\d+년)?"),
        re.compile(rf"\d+{_S}년{_S}갱신"),
    ),
    "entry_age": (
        re.compile(rf"만{_S}\d+{_S}세{_S}~{_S}(?:만{_S})?\d+{_S}세"),
        re.compile(rf"만{_S}\d+{_S}세{_S}부터"),
    ),
}

_WS = re.compile(r"\s+")


def squash(text: str) -> str:
    return _WS.sub("", text)


def find_phrases(slot: str, text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) spans of `slot` phrases in text[start:end], earlier patterns first."""
    stop = len(text) if end is None else end
    taken: list[tuple[int, int]] = []
    for pattern in PATTERNS[slot]:
        for match in pattern.finditer(text, start, stop):
            if match.end() > match.start() and not any(s < match.end() and match.start() < e for s, e in taken):
                taken.append((match.start(), match.end()))
    return sorted(taken)


def is_condition_group(content: str) -> bool:
    """True when a bracket's content is nothing but condition phrases (e.g. `최초1회한`, `갱신형_10년`)."""
    rest = squash(content)
    if not rest:
        return False
    for slot in PATTERNS:
        for a, b in reversed(find_phrases(slot, rest)):
            rest = rest[:a] + "," + rest[b:]
    return not rest.strip(",_ ")


def agreement_key(slot: str, text: str) -> str:
    """Two phrases agree when their keys are equal. Text only, never a number:

    renewal compares the pattern class (갱신형 / 비갱신형; `비갱신형/갱신형` names both forms and
    contradicts neither, see `agree`); waiting_period compares the printed duration token (`90일`);
    every other slot compares the phrase with all whitespace removed (`최초 1회한` == `최초1회한`).
    """
    flat = squash(text)
    if slot == "renewal":
        if "비갱신형/갱신형" in flat:
            return "BOTH"
        return "NON_RENEWABLE" if flat.startswith("비갱신") else "RENEWABLE"
    if slot == "waiting_period":
        duration = re.search(r"\d+(?:일|년)", flat)
        return duration.group(0) if duration else flat
    return flat


def agree(slot: str, keys: set[str]) -> bool:
    if slot == "renewal":
        keys = keys - {"BOTH"}
    return len(keys) <= 1
