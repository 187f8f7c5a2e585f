"""Evidence consistency: is a CONFIRMED `value_text` a complete amount in its own snippet?

The load's audit proves that `value_text` occurs in its proposal snippet; it does not prove that
the value is the whole amount printed there. `000만원` occurs in `1,⏎000만원` (the extraction lost
`1,` at a line break). This module finds such facts; it never edits a value, never guesses the
"right" amount and never changes a status: a finding only tells the reader to look at the 원문.

Pure and deterministic: text in, findings out; no parsing of amounts into numbers. Matching runs
on the snippet with all whitespace (spaces, line breaks) removed, as the audit does; each finding
quotes the original snippet around the value. Kinds (docs/data-quality.md):

- `digit_before`: a digit, a comma or decimal point after a digit, or a unit word (억 천 백 만 십)
  after a digit stands directly before the value (`000만원` in `1,⏎000만원`: preceded by `,`);
- `digit_after`: the same directly after it (`1억` in `1억5천만원`: followed by `5`); a value
  ending in 원 is complete on the right, so a following column (`1,000만원 20년납`) is no finding;
- `inside_longer_amount`: every occurrence of the value lies inside a longer printed amount
  (`00만원` inside `3,000만원`);
- `different_amount`: the coverage's own row (the first amount printed after its raw name, within
  three lines) is another amount that does not contain the value (`1,000만원` while the row reads
  `2,000만원`);
- `not_in_snippet`: the value does not occur at all (the load's audit refuses these already).

A value with at least one complete occurrence (nothing amount-like on either side, not inside a
longer amount) raises no adjacency finding; `different_amount` is checked on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["KINDS", "MARKER", "NOTICE", "Finding", "check_fact"]

#: shown next to a flagged value; states no amount of its own
MARKER = "⚠ 원문 확인 필요"
#: the fixed sentence for a flagged cell (passes core.forbidden_language)
NOTICE = "추출된 금액 텍스트와 원문이 다를 수 있습니다. 원문을 확인하세요."
KINDS = ("digit_before", "digit_after", "inside_longer_amount", "different_amount", "not_in_snippet")

_UNITS = frozenset("억천백만십")
_SEPARATORS = frozenset(",.")
# a printed amount in whitespace-free text: digits (with , and .) and unit words, ending in 원
_AMOUNT = re.compile(r"[\d.,]*\d(?:[\d.,]|[십백천만억조])*원")
_CONTEXT = 12  # characters of the original snippet quoted on each side
_ROW_LINES = 3  # the coverage's amount must start within this many lines of its name


@dataclass(frozen=True)
class Finding:
    """One reason to check the 원문: `context` is verbatim snippet text around the value."""

    kind: str
    value_text: str
    context: str
    detail: str


@lru_cache(maxsize=65_536)
def _squash(text: str) -> tuple[str, tuple[int, ...]]:
    """`text` without whitespace, and for each kept character its index in `text` (remembered: the load
    checks every CONFIRMED fact, and raw names and snippets repeat across a market)."""
    kept = [(i, ch) for i, ch in enumerate(text) if not ch.isspace()]
    return "".join(ch for _, ch in kept), tuple(i for i, _ in kept)


def _is_digit(ch: str) -> bool:
    return ch.isascii() and ch.isdigit()


def _amount_char_before(s: str, i: int) -> str | None:
    """The amount-like character directly before position i, or None."""
    if i == 0:
        return None
    ch = s[i - 1]
    if _is_digit(ch):
        return ch
    if (ch in _SEPARATORS or ch in _UNITS) and i >= 2 and (_is_digit(s[i - 2]) or s[i - 2] in _UNITS):
        return ch
    return None


def _amount_char_after(s: str, j: int) -> str | None:
    """The amount-like character directly after position j (exclusive end), or None.

    A value ending in 원 is closed on the right: what follows is the next column (`1,000만원 20년납`).
    """
    if j >= len(s) or s[j - 1] == "원":
        return None
    ch = s[j]
    if _is_digit(ch):
        return ch
    if ch in _SEPARATORS and j + 1 < len(s) and _is_digit(s[j + 1]):
        return ch
    if ch in _UNITS and (_is_digit(s[j - 1]) or s[j - 1] in _UNITS):
        return ch
    return None


def _context(snippet: str, where: tuple[int, ...], start: int, end: int) -> str:
    first, last = where[start], where[end - 1] + 1
    return snippet[max(0, first - _CONTEXT) : last + _CONTEXT]


def _occurrences(s: str, v: str) -> list[int]:
    found, at = [], s.find(v)
    while at != -1:
        found.append(at)
        at = s.find(v, at + 1)
    return found


def _row_amount(s: str, where: tuple[int, ...], snippet: str, raw_name: str) -> re.Match[str] | None:
    """The first amount printed after the coverage's raw name, within its row (three lines)."""
    name, _ = _squash(raw_name)
    at = s.find(name) if name else -1
    if at == -1:
        return None  # the name is not in the snippet: no row to compare, flag nothing
    row_start = at + len(name)
    for match in _AMOUNT.finditer(s, row_start):
        lines_between = snippet.count("\n", where[row_start - 1] if row_start else 0, where[match.start()])
        return match if lines_between < _ROW_LINES else None
    return None


def check_fact(value_text: str, snippet: str, coverage_name_raw: str | None = None) -> list[Finding]:
    """Findings for one CONFIRMED fact; an empty list when the value is a complete amount there."""
    v, _ = _squash(value_text)
    s, where = _squash(snippet)
    if not v:
        return []
    starts = _occurrences(s, v)
    if not starts:
        return [Finding("not_in_snippet", value_text, snippet[: 2 * _CONTEXT], "the value does not occur in the snippet")]
    tokens = list(_AMOUNT.finditer(s))
    findings: list[Finding] = []
    classified = []
    for i in starts:
        j = i + len(v)
        before, after = _amount_char_before(s, i), _amount_char_after(s, j)
        longer = next((t for t in tokens if t.start() <= i and j <= t.end() and t.end() - t.start() > len(v)), None)
        classified.append((i, j, before, after, longer))
    if not any(before is None and after is None and longer is None for _, _, before, after, longer in classified):
        i, j, before, after, longer = classified[0]
        context = _context(snippet, where, i, j)
        if before is not None:
            findings.append(Finding("digit_before", value_text, context, f"preceded by {before!r}"))
        if after is not None:
            findings.append(Finding("digit_after", value_text, context, f"followed by {after!r}"))
        if longer is not None:
            findings.append(Finding("inside_longer_amount", value_text, context, f"inside {longer.group()!r}"))
    if coverage_name_raw:
        row = _row_amount(s, where, snippet, coverage_name_raw)
        if row is not None and v not in row.group():
            findings.append(Finding("different_amount", value_text, _context(snippet, where, row.start(), row.end()),
                                    f"the coverage's row shows {row.group()!r}"))
    return findings
