"""Attribution: which condition phrases a coverage's own texts tie to that coverage.

Sources, in document order: the raw name, the proposal snippet (the coverage's own row), then the
supporting snippets (약관 / 사업방법서 / 상품요약서) by ordinal. In a supporting snippet a phrase
counts only next to an occurrence of the coverage's own name (rules A-E in docs/conditions.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from core.conditions.rules import agree, agreement_key, find_phrases, is_condition_group, squash
from core.conditions.slots import CONFLICT, FOUND, NOT_FOUND, SLOTS, Phrase, SlotResult, SourceText

PROPOSAL = "가입설계서"
_WORD = re.compile(r"[0-9A-Za-z\uac00-\ud7a3\u2160-\u217f]")
_MARKER = re.compile(r"^(?:\d+(?:[-.]\d+)*[.)]?|주\d+\)|[-·•○●■□▶※ㆍ]|<\d종>|[가-하]\.|\(\d+\))$")
_NAME_SUFFIXES = ("보장", "담보", "특별약관", "특약")
_NAME_LIKE = re.compile(r"(?:비|담보|특약|특별약관|진단|수술|치료|일당|사망|장해)(?=$|[\s(,\[])")
_PARTICLE_TAIL = re.compile(r"^(?:(?:보장|담보|특약|특별약관)\s*)?(?:의\s*경우|은|는|:)")
# a 지급사유 cell that wraps before its conditions: `뇌졸중로 진단 확정된 경우` ⏎ `(1회한, 1년미만 50%)`
_CAUSE_LINE = re.compile(r"(?:경우|진단\s*확정\s*시|진단시)\s*$|^보장개시일\s*이후")
_SENTENCE_CHARS = 240
_CAUSE_END = re.compile(r"(?:시|경우|때)\s*$")  # `관상동맥성형술(최초1회한)` is a rider, not a cause cell
_TRAILING_GROUP = re.compile(r"\(([^()]*)\)\s*$")
_PREFIX_RENEWAL = re.compile(r"^(?:\[갱신형\]|\(\d+년갱신\)갱신형)")
_BULLETS = "▪∙·•ㆍ-"
_GROUP_SLOTS = ("waiting_period", "reduction", "payout_limit")
_QUALIFIER = re.compile(r"의\s*경우\s*$")  # `13대특정암의 경우` ⏎ `가입 후 90일간 보장제외`
_TITLE_SUFFIX = re.compile(r"(?:보장)?(?:특별약관|특약)[·.…\s\d]*$")
_NON_RENEWABLE_TITLE = re.compile(r"^(?:\d+(?:[-.]\d+)*\.?\s*)?(.+?)\(비갱신형\)\s*(?:보장\s*)?(?:특별약관|특약)")
_CELL_MAX = 12  # a table cell between a name and its value: `암(유사암 제외)`


def _is_word(ch: str) -> bool:
    return bool(_WORD.match(ch))


def name_core(raw_name: str) -> str:
    """The raw name without spaces, renewal prefix, condition-only brackets and a trailing 담보:
    what a snippet prints for the same coverage (`혈전용해 치료비(최초 1회한)` -> `혈전용해치료비`)."""
    flat = _PREFIX_RENEWAL.sub("", squash(raw_name))
    flat = re.sub(r"\(([^()]*)\)", lambda m: "" if is_condition_group(m.group(1)) else m.group(0), flat)
    flat = re.sub(r"\(([^()]*)$", lambda m: "" if is_condition_group(m.group(1)) else m.group(0), flat)
    return flat[:-2] if flat.endswith("담보") and len(flat) > 2 else flat


def _left_ok(text: str, begin: int) -> bool:
    """The occurrence starts a name: after a line break, punctuation or a list marker, never glued to
    another word (`주요상해뇌출혈진단비` is not `뇌출혈진단비`, `종합병원 질병입원일당` not `질병입원일당`)."""
    j = begin - 1
    while j >= 0 and text[j] in " \t":
        j -= 1
    if j < 0 or text[j] == "\n":
        return True
    if j == begin - 1:
        return not _is_word(text[j])
    token_start = j
    while token_start > 0 and not text[token_start - 1].isspace():
        token_start -= 1
    token = text[token_start:j + 1]
    return bool(_MARKER.match(token)) or not _is_word(token[-1])


@lru_cache(maxsize=4_096)
def _layout(text: str) -> tuple[list[int], str]:
    """Where each non-space character of `text` sits, and those characters (the text read without spaces)."""
    positions = [i for i, ch in enumerate(text) if not ch.isspace()]
    return positions, "".join(text[i] for i in positions)


def _occurrences(core: str, text: str) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """(start, end, condition-bracket spans) in original positions for each tolerant match of core."""
    positions, flat = _layout(text)
    found = []
    at = flat.find(core) if core else -1
    while at >= 0:
        q = at + len(core)
        groups: list[tuple[int, int]] = []
        ok = _left_ok(text, positions[at])
        while ok and q < len(flat) and flat[q] in "([":
            close = flat.find(")" if flat[q] == "(" else "]", q)
            if close < 0:
                break
            if flat[q] == "(":
                if not is_condition_group(flat[q + 1:close]):
                    ok = False  # another variant: `질병수술비(10년후2배체증)` is not `질병수술비`
                    break
                groups.append((positions[q + 1], positions[close - 1] + 1))
            q = close + 1
        # A space or line break in the original ends the name (`질병사망 ⏎ 1회한`); glued text must be
        # a name suffix or the particle of a sentence (`질병사망(감액없음)의 경우`).
        if ok and q < len(flat) and _is_word(flat[q]) and positions[q] - positions[q - 1] == 1:
            glued_bi = flat[q] == "비" and core.endswith(("진단", "치료", "수술")) and (
                q + 1 == len(flat) or not _is_word(flat[q + 1]))
            ok = flat.startswith((*_NAME_SUFFIXES, "의경우"), q) or glued_bi
        if ok:
            end = positions[q - 1] + 1
            found.append((positions[at], end, groups))
        at = flat.find(core, at + 1)
    return found


def _line_bounds(text: str, index: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return start, len(text) if end < 0 else end


def _block_spans(text: str, begin: int, end: int) -> list[tuple[str, int, int]]:
    """Phrases in the occurrence's own block: the rest of its sentence, or the lines under a name that
    stands alone on its line, up to the next list item or name (rules C-D)."""
    spans: list[tuple[str, int, int]] = []
    line_start = _line_bounds(text, begin)[0]
    line_end = _line_bounds(text, max(end - 1, begin))[1]  # a name wrapped over two lines ends on the second
    prefix = text[line_start:begin].strip()
    tail = text[end:line_end]
    if _PARTICLE_TAIL.match(tail.strip()):  # `암사망, 질병사망(감액없음)의 경우 만15세부터 가입이 가능함`
        # the sentence whose subject is the name, across wrapped lines, up to its full stop
        stop = text.find(".", end, min(len(text), end + _SENTENCE_CHARS))
        stop = min(len(text), end + _SENTENCE_CHARS) if stop < 0 else stop
        if prefix and not _MARKER.match(prefix) and not prefix.endswith(","):
            stop = min(stop, line_end)
        for slot in ("waiting_period", "entry_age"):
            spans += [(slot, a, b) for a, b in find_phrases(slot, text, end, stop)]
        return spans
    if prefix and not _MARKER.match(prefix):
        return spans
    if "/" in tail:  # `X/ ⏎ 갱신형 X`: the next line starts a sibling rider
        return spans
    if tail.strip(" \t,·…0123456789") and tail.strip() not in _NAME_SUFFIXES:
        return spans
    cursor, lines = line_end + 1, 0
    while cursor < len(text) and lines < 3:
        start, stop = cursor, _line_bounds(text, cursor)[1]
        cursor, line = stop + 1, text[start:stop].strip()
        if not line:
            continue
        lines += 1
        if line.startswith("▶"):
            for slot in ("waiting_period", "entry_age", "reduction"):
                spans += [(slot, a, b) for a, b in find_phrases(slot, text, start, stop)]
            continue
        trailing = _TRAILING_GROUP.search(line)
        if (trailing and is_condition_group(trailing.group(1)) and not _MARKER.match(line.split()[0])
                and (line.startswith("(") or _CAUSE_END.search(line[:trailing.start()]))):
            # the row's 지급사유 cell ends with its conditions: `고액치료비암 진단시 (1회한, 1년미만 50%)`;
            # the first such bracket closes the row (the next bracket is the next row's)
            g_start = start + text[start:stop].rfind("(") + 1
            spans += [(slot, a, b) for slot in SLOTS for a, b in find_phrases(slot, text, g_start, stop)]
            break
        if _CAUSE_LINE.search(line) and not _MARKER.match(line.split()[0]):
            continue  # `뇌졸중로 진단 확정된 경우` ⏎ `(1회한, 1년미만 50%)`: the cell wraps
        if _MARKER.match(line.split()[0]) or _NAME_LIKE.search(line):
            break
        lead = start + (len(text[start:stop]) - len(text[start:stop].lstrip()))
        hits = [(slot, a, b) for slot in SLOTS for a, b in find_phrases(slot, text, start, stop)]
        if not hits and lines == 1 and len(squash(line)) <= _CELL_MAX:
            cell = _next_cell_value(text, stop + 1)  # `보험료납입면제대상 ⏎ 암(유사암 제외) ⏎ 90일면책`
            spans += cell
            if cell:
                break
        if not any(a == lead for _, a, _ in hits):
            break
        spans += hits
    return spans


def _next_cell_value(text: str, cursor: int) -> list[tuple[str, int, int]]:
    """The row's value cell: the next non-empty line when it is one condition phrase and nothing else."""
    while cursor < len(text):
        start, stop = cursor, _line_bounds(text, cursor)[1]
        line = text[start:stop].strip()
        if line:
            lead = start + (len(text[start:stop]) - len(text[start:stop].lstrip()))
            return [(slot, a, b) for slot in SLOTS for a, b in find_phrases(slot, text, start, stop)
                    if a == lead and b == lead + len(line)]
        cursor = stop + 1
    return []


def own_full_name(raw_name: str) -> str:
    """The raw name as one line prints it, brackets kept: rows and titles must match it whole, because
    `X` and `X(갱신형)`, `X(1회한)` and `X(매회)` are different riders."""
    flat = squash(raw_name)
    return flat[:-2] if flat.endswith("담보") and len(flat) > 2 else flat


def _group_spans(raw_name: str, text: str) -> list[tuple[str, int, int]]:
    """Rule F: a group of bullet rows closed by a value line (`▪ A ⏎ ▪ B ⏎ 가입 후 90일간 보장제외`): the value
    governs every rider of the group. The coverage's row must print its whole name; the group ends at a
    blank line, the value, or anything that is neither a bullet row nor the value."""
    own = own_full_name(raw_name)
    lines = text.split("\n")
    offsets = [0]
    for line in lines[:-1]:
        offsets.append(offsets[-1] + len(line) + 1)
    spans: list[tuple[str, int, int]] = []
    for i, line in enumerate(lines):
        body = line.strip()
        if not body or body[0] not in _BULLETS or _TITLE_SUFFIX.sub("", squash(body[1:])) != own:
            continue
        bullet, j = body[0], i + 1
        while j < len(lines) and lines[j].strip()[:1] in (bullet, "("):  # rows of the group and their wraps
            j += 1
        for value_line in range(j, min(j + 2, len(lines))):
            value = lines[value_line].strip()
            # a value line prints no bracket: `관상동맥성형술(최초1회한)` is the next rider, not a value
            if not value or value[0] in _BULLETS or "(" in value or _NAME_LIKE.search(value):
                break
            start, stop = offsets[value_line], offsets[value_line] + len(lines[value_line])
            hits = [(slot, a, b) for slot in _GROUP_SLOTS for a, b in find_phrases(slot, text, start, stop)]
            if hits:
                spans += hits
                break
            if not _QUALIFIER.search(value):
                break
    return spans


def _title_renewal(raw_name: str, text: str) -> list[tuple[str, int, int]]:
    """Rule G: `30. 암수술비(유사암제외)(최초1회한)(비갱신형) 특별약관` gives 비갱신형 to the rider printed
    `암수술비(유사암제외)(최초1회한)`, the title's name matched whole, brackets included."""
    own, spans, offset = own_full_name(raw_name), [], 0
    for line in text.split("\n"):
        match = _NON_RENEWABLE_TITLE.match(line.strip())
        if match and squash(match.group(1)) == own:
            lead = offset + len(line) - len(line.lstrip())
            at = lead + match.start(0) + match.group(0).rfind("비갱신형")
            spans.append(("renewal", at, at + len("비갱신형")))
        offset += len(line) + 1
    return spans


def all_sources(raw_name: str, snippets: Sequence[SourceText]) -> tuple[SourceText, ...]:
    """The texts phrase source indexes refer to: the raw name first, then the snippets as given."""
    return (SourceText("raw_name", None, None, 0, raw_name), *snippets)


# --- one source at a time, then the instance ----------------------------------------------------
# extract_conditions is two steps: what each source text yields on its own (`source_hits`, a pure
# function of whether the text is the coverage's own, the raw name and the text), then the
# instance's verdict over those hits (`combine`). The audited load calls the same two functions
# (core/ops/conditions_load.py): it memoizes source_hits per distinct text and combine per distinct
# list of hits, and leaves out the sources that yield nothing, which changes no result (combine never
# reads a source without hits; the kept ones stay in order, so phrases keep their order).

#: (slot, start, end, the phrase text == text[start:end])
Hit = tuple[str, int, int, str]


class SourceHits(NamedTuple):
    own: tuple[Hit, ...]       # phrases that are the coverage's own (its rows, its block, its title)
    attached: tuple[Hit, ...]  # condition brackets right after its name elsewhere: only if its own rows agree


NO_HITS = SourceHits((), ())
#: per slot (status, ((source index, start, end, phrase text), ...)), phrases in source order
Combined = tuple[tuple[str, tuple[tuple[int, int, int, str], ...]], ...]


def is_own_source(source: SourceText) -> bool:
    """The raw name and the proposal row are always the coverage's own (rule A)."""
    return source.source_kind == "raw_name" or source.doc_type == PROPOSAL


@lru_cache(maxsize=65_536)
def names(raw_name: str) -> tuple[str, str]:
    """(name_core, own_full_name): all a supporting snippet is read for, besides the raw name itself."""
    return name_core(raw_name), own_full_name(raw_name)


@lru_cache(maxsize=16_384)
def flat_text(text: str) -> str:
    return "".join(text.split())  # every whitespace character removed (str.isspace), as _occurrences does


def mentioned(flat: str, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The `names` pairs whose coverage a supporting text (`flat`: its flat_text) can yield anything for.

    Every rule for a supporting snippet needs the coverage's name in it: _occurrences finds name_core in
    the whitespace-free text; rules F and G compare own_full_name with a whitespace-free part of one
    line, which is a part of the whitespace-free text (an empty own_full_name is never ruled out).
    """
    return [pair for pair in pairs if (pair[0] and pair[0] in flat) or not pair[1] or pair[1] in flat]


@lru_cache(maxsize=131_072)
def own_hits(text: str) -> SourceHits:
    """Every pattern in the coverage's own text (rule A); a pure function of the text."""
    return SourceHits(tuple((slot, a, b, text[a:b]) for slot in SLOTS for a, b in find_phrases(slot, text)), ())


def source_hits(own_source: bool, raw_name: str, text: str) -> SourceHits:
    """What one source text yields for the coverage `raw_name` on its own (NO_HITS: nothing)."""
    if own_source:
        return own_hits(text)
    core, own_name = names(raw_name)
    if not mentioned(flat_text(text), [(core, own_name)]):
        return NO_HITS
    own: list[tuple[str, int, int]] = []
    attached: list[tuple[str, int, int]] = []
    for begin, end, groups in _occurrences(core, text):
        for g_start, g_end in groups:
            attached += [(slot, a, b) for slot in SLOTS for a, b in find_phrases(slot, text, g_start, g_end)]
        own += _block_spans(text, begin, end)
    own += _group_spans(raw_name, text) + _title_renewal(raw_name, text)
    if not own and not attached:
        return NO_HITS
    return SourceHits(tuple((slot, a, b, text[a:b]) for slot, a, b in own),
                      tuple((slot, a, b, text[a:b]) for slot, a, b in attached))


def combine(own_sources: Sequence[bool], hits: Sequence[SourceHits]) -> Combined:
    """Every slot's status and phrases from each source's hits (`own_sources[i]`: is_own_source of source i)."""
    own = [(slot, index, a, b, phrase) for index, found in enumerate(hits) for slot, a, b, phrase in found.own]
    own_keys: dict[str, set[str]] = {slot: set() for slot in SLOTS}
    for slot, index, _a, _b, phrase in own:
        if own_sources[index]:
            own_keys[slot].add(agreement_key(slot, phrase))
    # A bracket after the name only corroborates what the coverage's own row says: products list
    # `X` and `X(갱신형)`, `X(1회한)` and `X(연간1회한)` as separate riders (rule B).
    chosen = own + [(slot, index, a, b, phrase) for index, found in enumerate(hits) for slot, a, b, phrase in found.attached
                    if agreement_key(slot, phrase) in own_keys[slot] - {"BOTH"}]
    results = []
    for slot in SLOTS:
        phrases = tuple(sorted({(index, a, b, phrase) for s, index, a, b, phrase in chosen if s == slot}))
        if not phrases:
            results.append((NOT_FOUND, phrases))
        else:
            keys = {agreement_key(slot, phrase) for _i, _a, _b, phrase in phrases}
            results.append((FOUND if agree(slot, keys) else CONFLICT, phrases))
    return tuple(results)


def extract_conditions(raw_name: str, snippets: Sequence[SourceText]) -> dict[str, SlotResult]:
    """Every slot's status and verbatim phrases for one coverage instance (see docs/conditions.md)."""
    sources = all_sources(raw_name, snippets)
    own_sources = [is_own_source(source) for source in sources]
    hits = [source_hits(own_source, raw_name, source.text or "") for own_source, source in zip(own_sources, sources, strict=True)]
    results: dict[str, SlotResult] = {}
    for slot, (status, found) in zip(SLOTS, combine(own_sources, hits), strict=True):
        phrases = tuple(
            Phrase(slot, phrase, i, sources[i].source_kind, sources[i].doc_type, sources[i].page, sources[i].ordinal, a, b)
            for i, a, b, phrase in found
        )
        results[slot] = SlotResult(status, phrases)
    return results


# --- the dataset side: the same rows the audited load writes as evidence_ref (core/dataset.py) ---

def _page(reference: dict[str, Any]) -> int | None:
    if isinstance(reference.get("page_num"), int):
        return int(reference["page_num"])
    source = str(reference.get("source") or "")
    tail = source.rsplit(" p.", 1)[1] if " p." in source else ""
    return int(tail) if tail.isdigit() else None


def read_evidence_pack(root: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Supporting snippets per (insurer, raw name), exact repeats (type, page, text) kept once, as the load does."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in sorted((root / "evidence_pack").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            bucket = found.setdefault((record["insurer"], record["coverage_name_raw"]), [])
            seen = {(s["doc_type"], s.get("page"), s["snippet"]) for s in bucket}
            for snippet in record["evidences"]:
                key = (snippet["doc_type"], snippet.get("page"), snippet["snippet"])
                if key not in seen:
                    seen.add(key)
                    bucket.append(snippet)
    return found


def sources_for_card(card: dict[str, Any], supporting: Sequence[dict[str, Any]] | None = None) -> list[SourceText]:
    """The proposal snippet (ordinal 0) then the supporting snippets (ordinal 0..n-1). `supporting`
    defaults to the card's own `evidences`; pass the evidence pack's list to mirror the load exactly."""
    sources: list[SourceText] = []
    reference = (card.get("amount") or {}).get("evidence_ref")
    if reference:
        sources.append(SourceText("evidence", reference.get("doc_type") or PROPOSAL, _page(reference), 0,
                                  reference.get("snippet") or ""))
    for ordinal, snippet in enumerate(card.get("evidences", []) if supporting is None else supporting):
        sources.append(SourceText("evidence", snippet["doc_type"], snippet.get("page"), ordinal, snippet["snippet"]))
    return sources


def conditions_for_card(card: dict[str, Any], supporting: Sequence[dict[str, Any]] | None = None) -> dict[str, SlotResult]:
    """One call for a card of cards/*.jsonl (pass the pack's snippets to read what the load stores)."""
    return extract_conditions(card["coverage_name_raw"], sources_for_card(card, supporting))
