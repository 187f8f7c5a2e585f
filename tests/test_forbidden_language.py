"""Tests for core.forbidden_language: rules, normalisation, held-out corpus, dataset names."""

from __future__ import annotations

import csv
import dataclasses
import json
import unicodedata
from pathlib import Path

import openpyxl
import pytest

from core.explain import explain
from core.forbidden_language import (
    ALLOWLIST,
    RULES,
    ForbiddenLanguageError,
    find_violations,
    normalise,
    validate_text,
)

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / "data" / "dataset"
CORPUS = json.loads((Path(__file__).parent / "data" / "forbidden_corpus.json").read_text(encoding="utf-8"))


def rule_ids(text: str) -> set[str]:
    return {v.rule for v in find_violations(text)}


# --- the rules as data ---------------------------------------------------------------


def test_rule_ids_unique_and_families_present() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    assert {r.family for r in RULES} >= {
        "superiority",
        "comparative",
        "contrast",
        "extreme_ranking",
        "recommendation_judgement",
        "calculation_aggregate",
    }
    assert all(r.examples_bad for r in RULES)


@pytest.mark.parametrize(
    ("rule_id", "example"),
    [(r.id, ex) for r in RULES for ex in r.examples_bad],
)
def test_rule_examples_bad_caught_by_that_rule(rule_id: str, example: str) -> None:
    assert rule_id in rule_ids(example)


@pytest.mark.parametrize(
    ("rule_id", "example"),
    [(r.id, ex) for r in RULES for ex in r.examples_ok],
)
def test_rule_examples_ok_not_flagged(rule_id: str, example: str) -> None:
    assert find_violations(example) == [], rule_id


# --- families: positive and neutral cases --------------------------------------------

FAMILY_CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "superiority": (
        (
            "현대해상이 더 유리한 구조입니다.",
            "이 담보는 불리합니다.",
            "메리츠화재 보장이 탁월합니다.",
            "보장 내용이 괜찮고 좋아요.",
            "B사가 A사만 못합니다.",
        ),
        ("이 담보는 특약이라고 불리는 형태입니다.", "금액을 확인하지 못했습니다."),
    ),
    "comparative": (
        ("A사가 덜 비쌉니다.", "B사보다 큰 금액입니다.", "상대적으로 적습니다.", "타사 대비 낮습니다.", "금액이 높은 편입니다."),
        ("두 회사의 차이를 확인합니다.", "약관의 한도가 적용됩니다."),
    ),
    "contrast": (
        ("그런데 B사는 없습니다.", "반대로 A사는 있습니다.", "이에 반해 B사는 명시되어 있지 않습니다."),
        ("A사와 B사의 금액을 표시합니다.",),
    ),
    "extreme_ranking": (
        ("가장 적은 금액입니다.", "최다 보장 담보", "3위에 해당합니다.", "금액 순위를 매겼습니다.", "업계 최고 수준"),
        ("표적항암약물허가치료비(최초1회한)", "장해 1등급", "최대5회까지 지급합니다."),
    ),
    "recommendation_judgement": (
        ("추천 상품입니다.", "가입을 권유합니다.", "이 담보가 유용합니다.", "합리적인 선택입니다.", "지금 가입하세요."),
        ("DB손해보험의 질병사망", "제안서 번호"),
    ),
    "calculation_aggregate": (
        ("평균은 1,000만원입니다.", "총액 5,000만원", "1.5배 많습니다.", "10% 감소했습니다.", "차이가 500만원입니다."),
        ("일반상해후유장해(3~100%)", "유사암진단비Ⅱ(1년감액지급)", "3,000만원으로 명시되어 있습니다."),
    ),
}


@pytest.mark.parametrize(
    ("family", "text"),
    [(f, t) for f, (bad, _) in FAMILY_CASES.items() for t in bad],
)
def test_family_positive(family: str, text: str) -> None:
    assert family in {v.family for v in find_violations(text)}


@pytest.mark.parametrize("text", [t for _, ok in FAMILY_CASES.values() for t in ok])
def test_family_neutral(text: str) -> None:
    assert find_violations(text) == []


# --- normalisation tricks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule_id"),
    [
        ("유 리 합 니 다", "SUP_FAVOURABLE"),
        ("추  천", "REC_RECOMMEND"),
        ("추\t천\n합니다", "REC_RECOMMEND"),
        ("최\u3000고 수준", "EXT_SUPERLATIVE"),  # ideographic space
        ("가\u200b장 많은", "EXT_MOST"),  # zero-width space
        ("가\u200d장", "EXT_MOST"),  # zero-width joiner
        ("가\u2060장", "EXT_MOST"),  # word joiner
        ("가\ufeff장", "EXT_MOST"),  # BOM
        ("추\u00ad천", "REC_RECOMMEND"),  # soft hyphen
        ("추\u034f천", "REC_RECOMMEND"),  # combining grapheme joiner
        ("추\u3164천", "REC_RECOMMEND"),  # Hangul filler
        ("추\uffa0천", "REC_RECOMMEND"),  # half-width Hangul filler
        ("추\u180e천", "REC_RECOMMEND"),  # Mongolian vowel separator
        (unicodedata.normalize("NFD", "유리합니다"), "SUP_FAVOURABLE"),
        ("１위입니다", "EXT_RANK"),  # full-width digit
        ("２배", "CALC_RATIO"),
        ("ㅇㅠㄹㅣ합니다", "SUP_FAVOURABLE"),  # compatibility jamo spelled out
    ],
)
def test_normalisation_defeats_tricks(text: str, rule_id: str) -> None:
    assert rule_id in rule_ids(text)


def test_nfd_with_invisible_between_jamo_is_recomposed() -> None:
    decomposed = unicodedata.normalize("NFD", "유리")
    tricky = decomposed[0] + "\u200b" + decomposed[1:] + "합니다"
    assert normalise(tricky) == "유리합니다"


def test_normalise_removes_all_whitespace_and_is_idempotent() -> None:
    text = " A사의\u3000암진단비는\n가입설계서에 "
    assert normalise(text) == "A사의암진단비는가입설계서에"
    assert normalise(normalise(text)) == normalise(text)


def test_violation_span_and_match_index_normalised_text() -> None:
    text = "보장이 가 장 많고, 추\u200b천합니다."
    norm = normalise(text)
    violations = find_violations(text)
    assert {v.rule for v in violations} >= {"EXT_MOST", "REC_RECOMMEND"}
    for v in violations:
        assert norm[v.span[0] : v.span[1]] == v.matched
    assert violations == sorted(violations, key=lambda v: v.span)


def test_violation_is_frozen() -> None:
    v = find_violations("가장")[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.rule = "X"  # type: ignore[misc]


# --- validate_text and the allowlist -------------------------------------------------


def test_validate_text_returns_input_unchanged() -> None:
    text = "  A사의 암진단비는 가입설계서에 3,000만원으로 명시되어 있습니다. "
    assert validate_text(text) is text


def test_validate_text_raises_with_violations_and_bilingual_message() -> None:
    with pytest.raises(ForbiddenLanguageError) as info:
        validate_text("A사가 가장 유리합니다.")
    err = info.value
    assert isinstance(err, ValueError)
    assert {v.rule for v in err.violations} == {"EXT_MOST", "SUP_FAVOURABLE"}
    assert "금지 표현" in str(err) and "forbidden language" in str(err)
    assert "EXT_MOST" in str(err) and "SUP_FAVOURABLE" in str(err)


@pytest.mark.parametrize("phrase", ALLOWLIST)
def test_allowlist_phrases_pass(phrase: str) -> None:
    assert find_violations(phrase) == []


def test_allowlist_does_not_hide_neighbouring_violations() -> None:
    assert "EXT_MOST" in rule_ids("가장 비교합니다")
    assert "REC_RECOMMEND" in rule_ids("명시되어 있습니다. 추천합니다.")


# --- 보다: the adverb "more" is not a comparison; the particle "than" always is -------------------

ADVERB_BODA = [
    "보다 자세한 내용은 약관을 참조하세요.",
    "보다  자세한 내용은 약관을 참조하세요.",
    "보다\u3000자세한 내용은 약관을 참조하세요.",
    "\uff08보다 자세한 내용은 약관 참조\uff09",  # full-width brackets
    unicodedata.normalize("NFD", "보다 자세한 내용은 약관을 참조하세요."),
    "보\u200b다 자세한 내용은 약관을 참조하세요.",
    "３,０００만원으로 명시되어 있습니다. 보다 정확한 조건은 원문을 확인하세요.",
    "약관을 보다 상세히 확인할 수 있습니다.",
    "(보다 구체적인 조건은 약관 참조)",
    "보다 더 자세한 내용은 상품요약서에 있습니다.",
    "보다 많은 정보는 약관에 있습니다.",
]

THAN_BODA = [
    "A보다 B가 높습니다.",
    "A 보다 B가 높습니다.",
    "A보다B가높습니다.",
    "KB보다 높다.",
    "ＫＢ보다 높다.",
    "ＫＢ　보다　높다.",
    "K\u200bB보\u200d다 높다.",
    unicodedata.normalize("NFD", "KB보다 높다."),
    "삼성화재보다 보장이 큽니다.",
    "삼성화재 보다 보장이 큽니다.",
    unicodedata.normalize("NFD", "삼성화재보다 보장이 큽니다."),
    "삼성화재\ufeff보다 보장이 큽니다.",
    "메리츠화재보다 자세히 명시되어 있습니다.",  # the information word does not excuse a compared noun
    "암진단비(갱신형)보다 정확합니다.",
    "보다 높은 금액입니다.",  # the adverb before a level word is a judgement
    "이 상품은 보다 많이 보장합니다.",
]


@pytest.mark.parametrize("text", ADVERB_BODA)
def test_adverb_boda_before_an_information_word_passes(text: str) -> None:
    assert find_violations(text) == []


@pytest.mark.parametrize("text", THAN_BODA)
def test_comparative_boda_stays_refused(text: str) -> None:
    assert "comparative" in {v.family for v in find_violations(text)}
    with pytest.raises(ForbiddenLanguageError):
        validate_text(text)


# --- a level judgement is refused whatever its subject --------------------------------------------

LEVEL_SUBJECTS = ["삼성화재는", "메리츠화재가", "이 상품은", "KB손해보험이", "현대해상 쪽이", "그 회사는", "금액이"]
LEVEL_PREDICATES = ["높습니다", "높아요", "높음", "높네요", "낮습니다", "낮아요", "많습니다", "많아요", "많음", "적습니다",
                    "적어요", "적음", "큽니다", "커요", "큼", "작습니다", "작아요", "높다", "낮게 책정되어 있습니다",
                    "크지만", "많았습니다", "넉넉합니다", "유리합니다", "불리해요", "우수합니다", "좋습니다", "나쁩니다",
                    "나빠요", "가장 높습니다"]


@pytest.mark.parametrize("subject", LEVEL_SUBJECTS)
@pytest.mark.parametrize("predicate", LEVEL_PREDICATES)
def test_level_predicate_refused_for_any_subject(subject: str, predicate: str) -> None:
    with pytest.raises(ForbiddenLanguageError):
        validate_text(f"{subject} {predicate}.")


@pytest.mark.parametrize("predicate", ["높습니다", "많습니다", "적습니다", "큽니다"])
def test_level_predicate_is_caught_by_the_level_rule_itself(predicate: str) -> None:
    for subject in ("금액이", "삼성화재는", "이 상품은"):
        assert "CMP_LEVEL" in rule_ids(f"{subject} {predicate}.")


@pytest.mark.parametrize(
    "text",
    [
        "삼성화재의 암진단비는 가입설계서에 3,000만원으로 명시되어 있습니다.",
        "메리츠화재의 질병사망은 가입설계서에 금액이 명시되어 있지 않습니다.",
        "KB손해보험에는 해당 담보가 존재하지 않습니다.",
        "금액이 기재되어 있지 않습니다.",
        "금액이 적혀 있습니다.",
        "최초 1회한",
        "연간 1회한으로 적용됩니다.",
        "적립금은 만기에 지급됩니다.",
        "크론병 진단비",
        "높이 제한 없음",
        "가입설계서 p.3에 명시되어 있습니다.",
        "지급률은 1년50%입니다.",
        "90일 면책기간이 적용됩니다.",
    ],
)
def test_neutral_statements_pass(text: str) -> None:
    assert find_violations(text) == []


# --- held-out corpus -----------------------------------------------------------------


def test_corpus_size() -> None:
    assert len(CORPUS["reject"]) >= 80
    assert len(CORPUS["accept"]) >= 50


@pytest.mark.parametrize("text", CORPUS["reject"])
def test_corpus_evaluative_sentences_rejected(text: str) -> None:
    with pytest.raises(ForbiddenLanguageError):
        validate_text(text)


@pytest.mark.parametrize("text", CORPUS["accept"])
def test_corpus_neutral_sentences_pass(text: str) -> None:
    assert find_violations(text) == []


# --- every template sentence over the real dataset names -----------------------------


def _insurer_rows() -> list[dict[str, str]]:
    with (DATASET / "insurers.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _dataset_names_and_values() -> tuple[set[str], set[str]]:
    names: set[str] = set()
    values: set[str] = set()
    cards = sorted((DATASET / "cards").glob("*.jsonl"))
    assert cards, f"no card files under {DATASET / 'cards'}"
    for path in cards:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            card = json.loads(line)
            names.add(card["coverage_name_raw"])
            if card.get("coverage_name_canonical"):
                names.add(card["coverage_name_canonical"])
            if card["amount"].get("value_text"):
                values.add(card["amount"]["value_text"])
    workbook = openpyxl.load_workbook(DATASET / "mapping" / "coverage_mapping.xlsx", read_only=True)
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = list(next(rows))
        cols = [header.index("신정원코드명"), header.index("담보명(가입설계서)")]
        for row in rows:
            names.update(str(row[c]) for c in cols if row[c] is not None and str(row[c]).strip())
    finally:
        workbook.close()
    return names, values


INSURERS = [row["insurer_name_ko"] for row in _insurer_rows()]
NAMES, VALUES = _dataset_names_and_values()


def test_dataset_loaded() -> None:
    assert len(INSURERS) == 8
    assert len(NAMES) > 200 and len(VALUES) > 10


@pytest.mark.parametrize("insurer", INSURERS)
def test_every_template_sentence_passes(insurer: str) -> None:
    failures = []
    for name in sorted(NAMES):
        cases = [("UNCONFIRMED", None), ("NOT_AVAILABLE", None)]
        cases += [("CONFIRMED", value) for value in sorted(VALUES)]
        for status, value in cases:
            try:
                sentence = explain(insurer, name, status, value)
            except ForbiddenLanguageError as err:
                failures.append((name, status, value, [(v.rule, v.matched) for v in err.violations]))
                continue
            assert validate_text(sentence) == sentence
    assert failures == []


def test_dataset_coverage_names_alone_pass() -> None:
    failures = {name: [(v.rule, v.matched) for v in find_violations(name)] for name in NAMES}
    assert {name: hits for name, hits in failures.items() if hits} == {}


@pytest.mark.parametrize("row", _insurer_rows(), ids=lambda r: r["insurer_key"])
def test_insurer_and_product_names_pass(row: dict[str, str]) -> None:
    for field in ("insurer_name_ko", "mapping_name", "product_name"):
        assert find_violations(row[field]) == [], row[field]
