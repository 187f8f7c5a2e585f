"""Deterministic text → vector embedding for coverage-name search.

Analysts type an insurer's own coverage name ("암 진단비(유사암 제외)") or a colloquial
one ("뇌졸중 진단금"); we rank canonical coverage codes by cosine similarity. The vectors
go into pgvector (HNSW, `ORDER BY embedding <=> :query`), so every weighting decision is
baked into the vector itself: no corpus statistics, no model files, no downloads.

Pipeline of `embed`:
  1. cap the input at MAX_QUERY_CHARS, map roman numerals, NFKC, lower-case, drop spaces;
  2. rewrite synonyms/colloquialisms to one canonical spelling (SYNONYMS) and drop
     noise words (NOISE_WORDS) such as 담보/특약;
  3. pull out administrative qualifiers (renewal, payment frequency, day limits,
     reduction periods: ADMIN_PATTERNS) into low-weight tokens so that
     "(최초1회한)(갱신형)" does not outweigh the disease and benefit words;
  4. split what is left into the main name, parenthesised qualifiers and negated
     qualifiers ("(유사암제외)"): "암진단비(유사암제외)" must not look like "유사암진단비";
  5. emit weighted features: character 1–3-grams, whole concept words (CONCEPTS, with
     broader parents such as 갑상선암 → 유사암), subject×benefit pairs (유사암+진단 vs
     유사암+수술), negated concepts (also as a NEGATIVE weight on the positive concept,
     the only way cosine similarity can say "not this"), qualifier tokens;
  6. hash them with signed feature hashing into DIM buckets using BLAKE2b, never
     Python's salted `hash()`, so vectors are identical across processes, machines and
     Python versions; finally L2-normalise.

Quality is measured by bench/search_quality.py (leave-one-out over the mapping workbook).
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "ADMIN_PATTERNS",
    "BENEFITS",
    "CONCEPTS",
    "CONCEPT_PARENTS",
    "DIM",
    "EMPTY_QUERY_MESSAGE",
    "FEATURE_VERSION",
    "MAX_QUERY_CHARS",
    "NOISE_WORDS",
    "SYNONYMS",
    "embed",
    "normalise_name",
]

#: Vector dimension. pgvector's HNSW index accepts at most 2000 dimensions for `vector`;
#: 1024 keeps hash collisions rare for ~100 features per name at 4 KiB per row.
DIM = 1024

#: Longest input considered; longer text is truncated (bounds CPU per query, and no real
#: coverage name is anywhere near this long).
MAX_QUERY_CHARS = 200

#: Message of the ValueError raised for text that is empty after normalisation.
EMPTY_QUERY_MESSAGE = "검색어가 비어 있습니다"

#: Bump when features or weights change: stored vectors must then be rebuilt (store it next
#: to the vectors to detect stale rows). Mixed into the hash, so vectors of different
#: versions never look alike by accident.
FEATURE_VERSION = "v1"

# ---------------------------------------------------------------------------------------
# Data tables (domain knowledge, not derived from the evaluation data)
# ---------------------------------------------------------------------------------------

# Roman numerals mark product generations (암진단비Ⅱ). NFKC would turn Ⅱ into "II", which
# then looks like Latin text, so map them to digits first.
_ROMAN = {
    "Ⅰ": "1", "Ⅱ": "2", "Ⅲ": "3", "Ⅳ": "4", "Ⅴ": "5", "Ⅵ": "6", "Ⅶ": "7", "Ⅷ": "8",
    "Ⅸ": "9", "Ⅹ": "10", "Ⅺ": "11", "Ⅻ": "12",
    "ⅰ": "1", "ⅱ": "2", "ⅲ": "3", "ⅳ": "4", "ⅴ": "5", "ⅵ": "6", "ⅶ": "7", "ⅷ": "8",
    "ⅸ": "9", "ⅹ": "10", "ⅺ": "11", "ⅻ": "12",
}  # fmt: skip
# ASCII roman numerals directly after a Hangul word or bracket ("치료비II"); not "(I49)".
_ASCII_ROMAN = re.compile(r"(?<=[가-힣)\]】])(iii|ii|iv|vi|v)(?![a-z0-9])")
_ASCII_ROMAN_VALUE = {"ii": "2", "iii": "3", "iv": "4", "v": "5", "vi": "6"}

#: Variant spelling → canonical spelling, applied to the space-free lower-case text,
#: longest variant first. Benefit words collapse to their stem (진단비/진단금 → 진단)
#: because insurers and analysts use the suffixes interchangeably.
SYNONYMS: dict[str, str] = {
    # benefit kinds
    "진단보험금": "진단", "진단자금": "진단", "진단금": "진단", "진단비": "진단",
    "진단확정": "진단",
    "수술보험금": "수술", "수술자금": "수술", "수술금": "수술", "수술비": "수술",
    "치료자금": "치료", "치료금": "치료", "치료비": "치료",
    "입원일당": "입원", "입원일액": "입원", "입원자금": "입원", "입원금": "입원",
    "입원비": "입원", "입원료": "입원", "입원일": "입원",
    "사망보험금": "사망", "후유장애": "후유장해",
    # spelling variants of diseases
    "뇌졸증": "뇌졸중", "갑상샘": "갑상선", "허혈성심질환": "허혈성심장질환",
    "허혈심장": "허혈성심장", "뇌혈관질환": "뇌혈관",
    "카-티": "카티", "car-t": "카티", "cart": "카티", "항암제": "항암약물",
    "고액치료비암": "고액암", "고액치료암": "고액암", "계속받는암": "재진단암",
    "요양제외": "요양병원제외",
    # "일반" (ordinary) cancer is, by definition, cancer excluding the 유사암 group
    "일반상해": "상해", "일반암": "암(유사암제외)",
}  # fmt: skip

#: Words that carry no meaning for matching (contract-structure labels).
NOISE_WORDS: tuple[str, ...] = (
    "특별약관", "보통약관", "기본계약", "특약", "담보", "보장", "기본", "보험금", "보험",
)  # fmt: skip

#: Administrative qualifiers (renewal, frequency, limits, reductions), pulled out of the
#: name into low-weight tokens. Each pattern is a regex on the normalised text; the
#: token keeps its digits so "1회한" and "5회한" stay distinguishable.
ADMIN_PATTERNS: tuple[str, ...] = (
    r"\d+%?-\d+%",  # 3-100%: disability range
    r"\d+%이상",
    r"\d+년갱신", r"갱신형(?:_?\d+년)?", r"갱신계약", r"갱신",
    r"(?:최초|연간|세부별각|동일사고당)?\d+회(?:한|당|지급)?", r"매회(?:지급)?",
    r"\d+년주기", r"\d+년(?:50%|감액(?:지급)?)", r"감액(?:지급|없음)?", r"\d+년대기형",
    r"\d+(?:-\d+)?종",  # surgery classes: 1-5종
    r"\d+일한도?",  # "180일한": the day limit on its own
    r"\d+일?(?:이상)?(?:-\d+일?)?(?:\d+일?한도)?",
    r"종합병원", r"건강고지\d*", r"(?:외래및)?당일입원(?:제외|포함)?",
)  # fmt: skip

#: Whole words matched longest-first on the cleaned name, with their weight on top of the
#: character n-grams (so "유사암" counts as one unit, not just 유+사+암). Specific words
#: (표적, 다빈치, 뇌출혈) weigh more than generic ones (암, 질병, 치료): fixed domain
#: judgement instead of corpus statistics.
CONCEPTS: dict[str, float] = {
    # generic subjects
    "암": 1.5, "질병": 2.0, "상해": 2.0,
    # cancers
    "유사암": 2.5, "특정암": 2.5, "고액암": 3.0, "재진단암": 3.0, "제자리암": 2.5,
    "기타피부암": 2.5, "갑상선암": 2.5, "경계성종양": 2.5, "대장점막내암": 2.5, "전립선암": 2.0,
    "양성뇌종양": 2.0, "림프종": 2.0, "백혈병": 2.0,
    # brain and heart
    "뇌혈관": 2.5, "뇌출혈": 3.0, "뇌졸중": 3.0, "뇌경색": 2.5, "뇌경색증": 2.5,
    "심장질환": 2.5, "허혈성심장질환": 3.0, "심혈관": 2.0, "심혈관질환": 2.0, "심근병증": 2.5,
    "부정맥": 2.5, "심장부정맥": 2.5, "심장판막": 2.5, "심장판막협착증": 2.5, "심장염증": 2.5,
    "급성심근경색": 2.5, "급성심근경색증": 2.5, "심근경색": 2.5, "심근경색증": 2.5,
    # injuries
    "골절": 3.0, "치아파절": 2.0, "치아": 1.5, "화상": 3.0,
    # benefit kinds (see BENEFITS) and treatments
    "사망": 3.0, "후유장해": 3.0, "진단": 2.0, "재진단": 2.0, "수술": 2.0, "관혈": 1.5,
    "비관혈": 1.5, "입원": 2.0, "통원": 1.5, "치료": 1.5, "직접치료": 2.0,
    "항암": 1.5, "방사선": 2.5, "약물": 2.0, "호르몬": 2.0, "표적": 3.0, "허가": 1.5,
    "면역": 2.5, "카티": 3.0, "키트루다": 3.0, "다빈치": 3.0, "레보아이": 2.0, "로봇": 2.5,
    "혈전용해": 3.0, "요양병원": 1.0,
}  # fmt: skip

#: Concepts naming what is paid for. A coverage is "subject × benefit", so every
#: (subject, benefit) pair becomes a feature too: 유사암+진단 must differ from 유사암+수술
#: even though the names share most characters.
BENEFITS: frozenset[str] = frozenset({"사망", "후유장해", "진단", "수술", "입원", "통원", "치료", "직접치료"})

#: Concept → broader concept, emitted with reduced weight (the 유사암 "similar cancers").
CONCEPT_PARENTS: dict[str, str] = {
    "제자리암": "유사암", "기타피부암": "유사암", "갑상선암": "유사암",
    "경계성종양": "유사암", "대장점막내암": "유사암",
    "뇌경색": "뇌졸중", "뇌경색증": "뇌졸중", "급성심근경색": "허혈성심장질환",
    "급성심근경색증": "허혈성심장질환", "심근경색": "허혈성심장질환", "심근경색증": "허혈성심장질환",
    "심근병증": "심장질환", "심장판막협착증": "심장질환",
    "부정맥": "심장질환", "심장부정맥": "심장질환",
}  # fmt: skip

# Feature weights: fixed constants, chosen with bench/search_quality.py; its results stay
# within about a point when any one of them is halved or doubled.
_W_MAIN_NGRAM = {1: 0.4, 2: 1.0, 3: 1.0}
_W_QUAL_NGRAM = {2: 0.5, 3: 0.5}
_W_PARENT = 0.4  # × the child's weight
_W_QUAL = 0.5  # × weights of parenthesised (non-negated) qualifiers
_W_PAIR = 2.0
_W_NEG = 1.5
_W_ADMIN = 0.4
_W_VERSION = 0.3

# ---------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------

_BRACKETS = str.maketrans({"[": "(", "]": ")", "【": "(", "】": ")", "{": "(", "}": ")",
                           "<": "(", ">": ")", "〔": "(", "〕": ")", "~": "-", "–": "-"})  # fmt: skip
_NOT_KEPT = re.compile(r"[^0-9a-z가-힣()%\-]+")
_NOT_WORD = re.compile(r"[^0-9a-z가-힣]+")


def _alternation(words: Iterable[str]) -> re.Pattern[str]:
    ordered = sorted(set(words), key=lambda w: (-len(w), w))
    return re.compile("|".join(re.escape(w) for w in ordered))


_SYNONYM_RE = _alternation(SYNONYMS)
_NOISE_RE = _alternation(NOISE_WORDS)
_ADMIN_RE = re.compile("|".join(f"(?:{p})" for p in ADMIN_PATTERNS))
_CONCEPTS_BY_LENGTH = sorted(set(CONCEPTS), key=lambda w: (-len(w), w))
_NEGATED_GROUP = re.compile(r"\(([^()]*)제외\)")
_EMPTY_GROUP = re.compile(r"\(\)")
_NUMBER = re.compile(r"\d+(?!\d|대)")  # digits, except counts such as "4대" (4대특정암)
_ICD_LETTER_I = re.compile(r"[Ⅰⅰ](?=\d)")


def _prepare(text: str) -> str:
    """Cap, map roman numerals, NFKC, lower-case; keep Hangul/Latin/digits and ()%-."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    text = text[:MAX_QUERY_CHARS]
    # A roman numeral right before a digit is the letter I of an ICD code ("Ⅰ49").
    text = _ICD_LETTER_I.sub("i", text)
    text = "".join(_ROMAN.get(ch, ch) for ch in text)
    text = unicodedata.normalize("NFKC", text).lower().translate(_BRACKETS)
    text = _ASCII_ROMAN.sub(lambda m: _ASCII_ROMAN_VALUE[m.group(1)], text)
    return _NOT_KEPT.sub("", text)


def normalise_name(text: str) -> str:
    """Canonical compact form: NFKC, lower-case, roman numerals as digits, no spaces or
    punctuation; only Hangul, Latin letters and digits remain. Synonyms are not applied
    (that is part of `embed`), so this stays a faithful, display-safe key.

    >>> normalise_name("암 진단비Ⅱ(유사암 제외)")
    '암진단비2유사암제외'
    """
    return _NOT_WORD.sub("", _prepare(text))


# ---------------------------------------------------------------------------------------
# Feature extraction
# ---------------------------------------------------------------------------------------


def _concepts(text: str) -> list[str]:
    """Greedy longest-match of CONCEPTS, left to right, non-overlapping."""
    found: list[str] = []
    i = 0
    while i < len(text):
        for word in _CONCEPTS_BY_LENGTH:
            if text.startswith(word, i):
                found.append(word)
                i += len(word)
                break
        else:
            i += 1
    return found


def _ngrams(text: str, n: int) -> Iterator[str]:
    for i in range(len(text) - n + 1):
        yield text[i : i + n]


def _features(text: str) -> list[tuple[str, float]]:
    s = _prepare(text)
    for _ in range(3):  # a replacement may expose another variant; 3 passes are plenty
        rewritten = _SYNONYM_RE.sub(lambda m: SYNONYMS[m.group(0)], s)
        if rewritten == s:
            break
        s = rewritten
    s = _NOISE_RE.sub("", s)

    features: list[tuple[str, float]] = []
    admin = _ADMIN_RE.findall(s)
    s = _ADMIN_RE.sub("", s)
    features.extend((f"a:{token}", _W_ADMIN) for token in admin if token)
    versions = _NUMBER.findall(s)
    s = _NUMBER.sub("", s)
    features.extend((f"v:{token}", _W_VERSION) for token in versions)
    s = s.replace("%", "").replace("-", "")

    # Negated qualifiers, innermost first: "(암(특정암제외))" → negate 특정암, keep 암.
    negated: list[str] = []
    while True:
        match = _NEGATED_GROUP.search(s)
        if match is None:
            break
        negated.append(match.group(1))
        s = s[: match.start()] + s[match.end() :]
    s = _EMPTY_GROUP.sub("", s)

    # Split the rest into the main name (depth 0) and parenthesised qualifiers.
    main: list[str] = []
    quals: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in s:
        if ch == "(":
            if depth == 0:
                current = []
            depth += 1
        elif ch == ")":
            if depth > 0:
                depth -= 1
                if depth == 0:
                    quals.append("".join(current))
        elif depth > 0:
            current.append(ch)
        else:
            main.append(ch)
    if depth > 0:  # unbalanced "(": treat the tail as a qualifier
        quals.append("".join(current))
    main_text = "".join(main)
    # Unparenthesised "…제외" (typed queries): the concept right before it is negated.
    for word in _CONCEPTS_BY_LENGTH:
        if word + "제외" in main_text:
            negated.append(word)
            main_text = main_text.replace(word + "제외", "")
    main_text = main_text.replace("제외", "")

    for n, weight in _W_MAIN_NGRAM.items():
        features.extend((f"m{n}:{g}", weight) for g in _ngrams(main_text, n))
    main_concepts = _concepts(main_text)
    qual_concepts: list[str] = []
    for qual in quals:
        qual = qual.replace("포함", "").replace("(", "").replace(")", "")
        for n, weight in _W_QUAL_NGRAM.items():
            features.extend((f"q{n}:{g}", weight) for g in _ngrams(qual, n))
        qual_concepts += _concepts(qual)
    negated_concepts = [w for neg in negated for w in _concepts(neg.replace("(", "").replace(")", ""))]

    for words, scale in ((main_concepts, 1.0), (qual_concepts, _W_QUAL)):
        for word in words:
            features.append((f"c:{word}", CONCEPTS[word] * scale))
            if word in CONCEPT_PARENTS:
                features.append((f"c:{CONCEPT_PARENTS[word]}", CONCEPTS[word] * scale * _W_PARENT))
    benefits = [w for w in main_concepts + qual_concepts if w in BENEFITS]
    for words, scale in ((main_concepts, 1.0), (qual_concepts, _W_QUAL)):
        for word in words:
            if word not in BENEFITS:
                features.extend((f"p:{word}+{b}", _W_PAIR * scale) for b in benefits)
    for word in negated_concepts:
        features.append((f"n:{word}", _W_NEG))
        # Negative weight on the positive concept: "(유사암제외)" actively repels
        # queries about 유사암, which cosine similarity can only express this way.
        features.append((f"c:{word}", -_W_NEG * 0.5))
    return features


def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8, person=FEATURE_VERSION.encode()).digest()
    value = int.from_bytes(digest, "big")
    # Signed hashing: collisions cancel out on average instead of adding fake similarity.
    return value % DIM, (1.0 if value >> 63 else -1.0)


def embed(text: str) -> list[float]:
    """L2-normalised DIM-dimensional vector of `text`, identical in every process.

    Raises ValueError(EMPTY_QUERY_MESSAGE) when nothing searchable is left after
    normalisation (empty, whitespace, punctuation only); callers should check
    `normalise_name(text)` first or catch it. Text beyond MAX_QUERY_CHARS is ignored.
    """
    if not normalise_name(text):
        raise ValueError(EMPTY_QUERY_MESSAGE)
    vector = [0.0] * DIM
    features = _features(text)
    if not features:
        # Only noise words or qualifiers ("담보", "1회한"): fall back to raw characters.
        compact = normalise_name(text)
        features = [(f"r:{g}", 1.0) for n in (1, 2) for g in _ngrams(compact, n)]
    for feature, weight in features:
        index, sign = _bucket(feature)
        vector[index] += sign * weight
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0:  # all features cancelled out; practically impossible, stay defined
        index, sign = _bucket("r:" + normalise_name(text))
        vector[index] = sign
        return vector
    return [x / norm for x in vector]


def vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form ('[x,y,...]'): what COPY's text format and a CAST(:param AS vector) accept."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"
