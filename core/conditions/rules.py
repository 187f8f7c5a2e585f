"""The phrase patterns of each slot and the agreement key. Patterns find spans; nothing is converted.

Each pattern matches the whole phrase as printed (spaces and line breaks inside allowed), so the span
is shown verbatim. Agreement is decided on text only: see `agreement_key`.
"""

from __future__ import annotations

import re
from re import _constants as _sre  # type: ignore[attr-defined]  # the regex parser's node names
from re import _parser  # type: ignore[attr-defined]

_S = r"[ \t\n]*"  # printed phrases wrap and space freely

PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    "waiting_period": (
        re.compile(rf"\d+{_S}(?:일|년)이{_S}지난{_S}날의{_S}다음{_S}날"),
        re.compile(rf"가입{_S}후{_S}\d+{_S}일간"),
        re.compile(rf"\d+{_S}년{_S}대기형"),
        re.compile(rf"면책{_S}없음"),
        re.compile(rf"\d+{_S}일{_S}면책"),
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
        re.compile(rf"최초{_S}\d+{_S}회에{_S}한(?:해|하여)"),
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
# `유사암(90일면책) 진단비` is a rider of its own, not 유사암 진단비 with a condition (samsung lists both)
_WAITING_VARIANT = re.compile(r"\d+일면책")
# `최초 1회에 한해` and `최초1회한` say the same in other words: one key, text only
_ONCE_WORDS = re.compile(r"^최초|(?<=회)에한(?:해|하여)$")


def squash(text: str) -> str:
    return _WS.sub("", text)


# --- what each pattern's matches must contain -------------------------------------------------------
# Running 21 patterns over every text costs ~20 us per text, and a market has hundreds of thousands of
# distinct proposal rows. Every match of a pattern contains the literal runs of its parsed form (one
# of each alternation's, inside a repeat of at least once), so a pattern is skipped on a text that
# lacks one of them: the same spans, found without running the regex. Derived from the patterns
# themselves (never listed by hand, so they cannot drift); a pattern the derivation does not
# understand gets no requirement and always runs.

def _required(items: object) -> list[frozenset[str]]:
    """What every match of this parsed regex contains: each listed set has a member in it."""
    options: list[frozenset[str]] = []
    run: list[str] = []
    for op, av in [*items, (None, None)]:  # type: ignore[misc]
        if op is _sre.LITERAL:
            run.append(chr(av))
            continue
        if run:
            options.append(frozenset({"".join(run)}))
            run = []
        inner: list[frozenset[str]] = []
        if op is _sre.SUBPATTERN and not av[1] & re.IGNORECASE:
            inner = _required(av[3])
        elif op is _sre.BRANCH:
            # one requirement per alternative, the branch needs one of them
            alternatives = [_required(alternative) for alternative in av[1]]
            if all(alternatives):
                inner = [frozenset().union(*(min(a, key=lambda o: (len(o), -min(map(len, o)))) for a in alternatives))]
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT) and av[0] >= 1:
            inner = _required(av[2])
        options += inner
    return options


def _checks(pattern: re.Pattern[str]) -> tuple[tuple[str, ...], ...]:
    """The requirements as plain tuples (checked on every text)."""
    if pattern.flags & re.IGNORECASE:
        return ()
    try:
        required = _required(_parser.parse(pattern.pattern, pattern.flags))
    except Exception:  # a parser that changed: no requirement, the pattern always runs
        return ()
    return tuple(tuple(sorted(option)) for option in required)  # (sorted: a fixed order, whatever the set's)


#: per slot, (pattern, what its matches contain) in pattern order
CHECKED: dict[str, tuple[tuple[re.Pattern[str], tuple[tuple[str, ...], ...]], ...]] = {
    slot: tuple((pattern, _checks(pattern)) for pattern in patterns) for slot, patterns in PATTERNS.items()}


def may_match(checks: tuple[tuple[str, ...], ...], text: str) -> bool:
    """False only when a match of the pattern these checks describe cannot occur anywhere in `text`."""
    for option in checks:
        for needle in option:
            if needle in text:
                break
        else:
            return False
    return True


def find_phrases(slot: str, text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) spans of `slot` phrases in text[start:end], earlier patterns first."""
    stop = len(text) if end is None else end
    taken: list[tuple[int, int]] = []
    for pattern, checks in CHECKED[slot]:
        if not may_match(checks, text):  # (in the whole text: a match in the range is in the text)
            continue
        for match in pattern.finditer(text, start, stop):
            if match.end() > match.start() and not any(s < match.end() and match.start() < e for s, e in taken):
                taken.append((match.start(), match.end()))
    return sorted(taken)


def is_condition_group(content: str) -> bool:
    """True when a bracket's content is nothing but condition phrases (e.g. `최초1회한`, `갱신형_10년`)."""
    rest = squash(content)
    if not rest or _WAITING_VARIANT.search(rest):
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
    if slot == "payout_limit":
        return _ONCE_WORDS.sub(lambda m: "" if m.group(0) == "최초" else "한", flat)
    return flat


def agree(slot: str, keys: set[str]) -> bool:
    if slot == "renewal":
        keys = keys - {"BOTH"}
    return len(keys) <= 1
