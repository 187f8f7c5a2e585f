"""Tests for core.explain: particles, fixed templates, status validation."""

from __future__ import annotations

import pytest

from core.explain import TEMPLATES, explain, has_final_consonant, particle
from core.forbidden_language import ForbiddenLanguageError

# --- particles -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "topic"),
    [
        ("질병사망", "은"),
        ("암진단비", "는"),
        ("암진단비(유사암제외)", "는"),  # qualifier skipped: 비
        ("뇌출혈진단비(1-5종)", "는"),  # 비, not 종
        ("표적항암약물허가치료비(1회한)", "는"),  # 비, not 한
        ("(20년갱신)갱신형중증질환자(뇌혈관질환) 산정특례대상진단비(연간1회한", "는"),  # unclosed qualifier: 비
        ("다빈치로봇 갑상선암 및 전립선암 수술비(최초1회한)【갱신계약】", "는"),  # two groups: 비
        ("혈전용해치료비Ⅱ(최초1회한)(뇌졸중) 보장", "은"),
        ("상해후유장해(3-100%)(1804)", "는"),  # 해
        ("급성심근경색증(I21)", "은"),  # 증
        ("부정맥질환(I49)진단비", "는"),
        ("일반암진단비Ⅱ", "는"),  # Ⅱ → 이
        ("재진단암Ⅲ", "은"),  # Ⅲ → 삼
        ("표적항암면역치료비(Ⅰ)", "는"),  # 비, not Ⅰ(일)
        ("표적항암약물허가치료비II", "는"),  # 이 / 아이
        ("카티(CAR-T)", "는"),  # 티 of 카티
        ("관상동맥성형수술비(PTCA)", "는"),  # 비
        ("XL", "은"),  # 엘
        ("ABM", "은"),  # 엠
        ("'암진단비' ", "는"),  # quote and space skipped
        ("유사암(8대)", "은"),  # 암, not 대
        ("상해 후유장해(3~100%)", "는"),  # 해
        ("(3~100%)", "는"),  # only a group: its content, 퍼센트
        ("CAR-T", "는"),  # 티
        ("I21", "은"),  # 이십일 → 일
        ("갱신형_10년", "은"),
        ("3,000만원", "은"),
        ("1천만원", "은"),
        ("10만원", "은"),
        ("10", "은"),  # 십
        ("100", "은"),  # 백
        ("1000", "은"),  # 천
        ("3,000", "은"),  # 삼천
        ("10000", "은"),  # 만
        ("0", "은"),  # 영
        ("2", "는"),  # 이
        ("4", "는"),  # 사
        ("5", "는"),  # 오
        ("9", "는"),  # 구
        ("3", "은"),  # 삼
        ("6", "은"),  # 육
        ("1000000000000", "는"),  # 조
        ("smile", "은"),  # 스마일
    ],
)
def test_topic_particle(word: str, topic: str) -> None:
    assert particle(word, "은", "는") == topic


@pytest.mark.parametrize(
    ("word", "direction"),
    [
        ("3,000만원", "으로"),
        ("1천만원", "으로"),
        ("10만원", "으로"),
        ("000만원", "으로"),
        ("서울", "로"),  # final ㄹ takes 로
        ("1", "로"),  # 일
        ("7", "로"),  # 칠
        ("8", "로"),  # 팔
        ("3", "으로"),  # 삼
        ("2", "로"),  # 이
        ("10", "으로"),  # 십
        ("I21", "로"),  # 일
        ("ABL", "로"),  # 엘
        ("CAR-T", "로"),  # 티
        ("암진단비", "로"),
    ],
)
def test_direction_particle(word: str, direction: str) -> None:
    assert particle(word, "으로", "로") == direction


@pytest.mark.parametrize("word", ["", "   ", "()", "~", "Plus", "Good", "(…)"])
def test_unknown_final_sound_uses_combined_form(word: str) -> None:
    assert has_final_consonant(word) is None
    assert particle(word, "은", "는") == "은(는)"
    assert particle(word, "이", "가") == "이(가)"
    assert particle(word, "으로", "로") == "(으)로"


@pytest.mark.parametrize(
    ("word", "expected"),
    [("질병사망", True), ("암진단비", False), ("서울", True), ("1", True), ("2", False), ("CAR-T", False)],
)
def test_has_final_consonant(word: str, expected: bool) -> None:
    assert has_final_consonant(word) is expected


# --- templates -----------------------------------------------------------------------


def test_templates_are_fixed() -> None:
    assert TEMPLATES == {
        "CONFIRMED": "{insurer}의 {coverage}{은/는} 가입설계서에 {value}{으로/로} 명시되어 있습니다.",
        "UNCONFIRMED": "{insurer}의 {coverage}{은/는} 가입설계서에 금액이 명시되어 있지 않습니다.",
        "NOT_AVAILABLE": "{insurer}에는 해당 담보가 존재하지 않습니다.",
    }


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (
            ("삼성화재", "암진단비(유사암제외)", "CONFIRMED", "3,000만원"),
            "삼성화재의 암진단비(유사암제외)는 가입설계서에 3,000만원으로 명시되어 있습니다.",
        ),
        (
            ("DB손해보험", "질병사망", "CONFIRMED", "1천만원"),
            "DB손해보험의 질병사망은 가입설계서에 1천만원으로 명시되어 있습니다.",
        ),
        (
            ("한화손해보험", "뇌출혈진단비", "UNCONFIRMED", None),
            "한화손해보험의 뇌출혈진단비는 가입설계서에 금액이 명시되어 있지 않습니다.",
        ),
        (
            ("롯데손해보험", "질병사망", "UNCONFIRMED", None),
            "롯데손해보험의 질병사망은 가입설계서에 금액이 명시되어 있지 않습니다.",
        ),
        (("KB손해보험", "다빈치로봇암수술비", "NOT_AVAILABLE", None), "KB손해보험에는 해당 담보가 존재하지 않습니다."),
    ],
)
def test_explain_sentences(args: tuple[str, str, str, str | None], sentence: str) -> None:
    assert explain(*args) == sentence


@pytest.mark.parametrize("value", ["3,000만원", "000만원", " 1,000 만원 ", "1백만원", "10만원(연간)"])
def test_value_text_inserted_verbatim(value: str) -> None:
    sentence = explain("메리츠화재", "질병사망", "CONFIRMED", value)
    assert f"가입설계서에 {value}으로 명시되어" in sentence or f"가입설계서에 {value}로 명시되어" in sentence


def test_raw_coverage_name_inserted_verbatim() -> None:
    raw = "다빈치로봇암수술비(갑상선암및전립선암제외)(최초1회\n한)(갱신형)"
    assert explain("현대해상", raw, "UNCONFIRMED").startswith(f"현대해상의 {raw}는 ")  # 수술비는


# --- invalid input -------------------------------------------------------------------


@pytest.mark.parametrize("status", ["confirmed", "UNKNOWN", "", "NOT AVAILABLE"])
def test_unknown_status_rejected(status: str) -> None:
    with pytest.raises(ValueError, match="unknown status"):
        explain("삼성화재", "질병사망", status, "1,000만원")


@pytest.mark.parametrize("value", [None, "", "   "])
def test_confirmed_requires_value(value: str | None) -> None:
    with pytest.raises(ValueError, match="value_text"):
        explain("삼성화재", "질병사망", "CONFIRMED", value)


@pytest.mark.parametrize("status", ["UNCONFIRMED", "NOT_AVAILABLE"])
@pytest.mark.parametrize("value", ["1,000만원", ""])
def test_status_without_amount_rejects_value(status: str, value: str) -> None:
    with pytest.raises(ValueError, match="carries no amount"):
        explain("삼성화재", "질병사망", status, value)


@pytest.mark.parametrize(("insurer", "coverage"), [("", "질병사망"), ("삼성화재", " "), ("삼성화재", None)])
def test_empty_names_rejected(insurer: str, coverage: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        explain(insurer, coverage, "UNCONFIRMED")


def test_explain_validates_its_output() -> None:
    with pytest.raises(ForbiddenLanguageError):
        explain("삼성화재", "가장 좋은 담보", "UNCONFIRMED")
