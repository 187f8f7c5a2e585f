"""Every sentence the dataset can generate has the particle of the word before any bracketed qualifier.

The checker below is written independently of core.explain: its own bracket scan (left to right,
where the generator strips from the right), its own read-out of numbers, roman numerals and Latin
letters as Korean syllables, and the final consonant (받침) by Unicode arithmetic on that syllable.
"""

from __future__ import annotations

import pytest

from core.errors import InvalidAmount
from core.explain import explain, particle
from tests.test_forbidden_language import INSURERS, NAMES, VALUES

_PAIRS = {"(": ")", "[": "]", "{": "}", "（": "）", "［": "］", "｛": "｝", "〔": "〕", "【": "】", "〖": "〗",
          "〘": "〙", "〚": "〛"}
_CLOSE = set(_PAIRS.values())
_IGNORED_AT_END = set(" \t\n'\"’”`.,;:!?>〉》」』\u3000")
_DIGIT = dict(zip("0123456789", "영일이삼사오육칠팔구", strict=True))
_ROMAN = dict(zip("ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩⅪⅫ", ["일", "이", "삼", "사", "오", "육", "칠", "팔", "구", "십", "십일", "십이"], strict=True))
_ROMAN |= {chr(ord(k) + 0x10): v for k, v in _ROMAN.items()}
_LETTER = dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                   ["에이", "비", "씨", "디", "이", "에프", "지", "에이치", "아이", "제이", "케이", "엘", "엠", "엔", "오", "피",
                    "큐", "알", "에스", "티", "유", "브이", "더블유", "엑스", "와이", "제트"], strict=True))


def word_before_qualifiers(name: str) -> str:
    """Left-to-right scan: the name up to the first opener after which only bracket groups follow."""
    text = name.rstrip("".join(_IGNORED_AT_END))
    stack: list[str] = []
    start: int | None = None  # where the trailing run of groups starts
    for i, ch in enumerate(text):
        if not stack and ch in _PAIRS:
            if start is None:
                start = i
        elif not stack and not ch.isspace():
            start = None  # text outside brackets after a group: that group was inside the word
        if ch in _PAIRS:
            stack.append(_PAIRS[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
    if start is None:
        return text
    before = text[:start].rstrip("".join(_IGNORED_AT_END))
    if before:
        return before
    inner = text[1:].rstrip("".join(_IGNORED_AT_END))  # only brackets: read the first group's content
    return word_before_qualifiers(inner[:-1] if inner and inner[-1] in _CLOSE else inner)


def _number_reading(number: str) -> str:
    digits = number.replace(",", "")
    if "." in digits:
        return _DIGIT[digits[-1]]
    if int(digits) == 0:
        return "영"
    zeros = len(digits) - len(digits.rstrip("0"))
    if zeros == 0:
        return _DIGIT[digits[-1]]
    if zeros < 4:
        return "십백천"[zeros - 1]
    return "만억조경"[zeros // 4 - 1]


def last_syllable(word: str) -> str | None:
    """The last syllable of `word` read aloud, or None when it cannot be told."""
    text = word.rstrip("".join(_IGNORED_AT_END) + "".join(_CLOSE))
    if not text:
        return None
    last = text[-1]
    if 0xAC00 <= ord(last) <= 0xD7A3:
        return last
    if last.isascii() and last.isdigit():
        i = len(text)
        while i and ((text[i - 1].isascii() and text[i - 1].isdigit()) or text[i - 1] in ",."):
            i -= 1
        return _number_reading(text[i:].strip(",."))[-1]
    if last in _ROMAN:
        return _ROMAN[last][-1]
    if last == "%":
        return "트"  # 퍼센트
    if last.isascii() and last.isupper():
        return _LETTER[last][-1]
    return None


def expected(word: str, with_final: str, without_final: str) -> str | None:
    syllable = last_syllable(word_before_qualifiers(word))
    if syllable is None:
        return None
    jong = (ord(syllable) - 0xAC00) % 28
    if with_final == "으로":
        return "로" if jong in (0, 8) else "으로"  # 8: ㄹ
    return without_final if jong == 0 else with_final


# --- the checker itself, on hand-written cases ------------------------------------------------

@pytest.mark.parametrize(
    ("word", "topic", "direction"),
    [
        ("진단비(대동맥판막)", "는", "로"),
        ("커피(coffee)", "는", "로"),
        ("치료비(급성심근경색증)", "는", "로"),
        ("심장판막협착증진단비(대동맥판막)", "는", "로"),
        ("질병사망(감액없음)", "은", "으로"),
        ("A(B)(C)", "는", "로"),  # 에이
        ("수술비((갑상선암)제외)", "는", "로"),  # nested
        ("진단비Ⅲ(최초1회한)", "은", "으로"),  # 삼
        ("진단비Ⅱ(1년50%)", "는", "로"),  # 이
        ("(1년50%)", "는", "로"),  # only a bracket: its content, 퍼센트
        ("[갱신형]", "은", "으로"),  # 형
        ("수술비[갱신형]", "는", "로"),
        ("치료비〔갱신형〕", "는", "로"),
        ("입원일당(1일이상)【갱신계약】", "은", "으로"),  # 당
        ("진단비(유사암", "는", "로"),  # unclosed, a truncated name
        ("「암진단비」", "는", "로"),  # a quotation mark wraps the word itself
        ("《보험법》", "은", "으로"),
        ("골절(치아파절제외)진단비Ⅱ", "는", "로"),  # bracket inside the word
        ("질병 사망 (갱신형)", "은", "으로"),
        ("3,000만원", "은", "으로"),
        ("1억원(최초1회)", "은", "으로"),
        ("서울(특별시)", "은", "로"),  # ㄹ takes 로
        ("표적항암약물허가치료비(최초1회한)(갱신형)", "는", "로"),
        ("상해후유장해(3-100%)", "는", "로"),
        ("10(만원)", "은", "으로"),  # 십
        ("7(일)", "은", "로"),  # 칠
    ],
)
def test_hand_written_cases(word: str, topic: str, direction: str) -> None:
    assert expected(word, "은", "는") == topic
    assert expected(word, "으로", "로") == direction
    assert particle(word, "은", "는") == topic
    assert particle(word, "으로", "로") == direction
    assert particle(word, "이", "가") == ("이" if topic == "은" else "가")
    assert particle(word, "을", "를") == ("을" if topic == "은" else "를")


@pytest.mark.parametrize(("word", "subject"), [("진단비(대동맥판막)", "가"), ("질병사망(감액없음)", "이"), ("ABM(갱신)", "이")])
def test_subject_particle_follows_the_word_before_the_bracket(word: str, subject: str) -> None:
    assert particle(word, "이", "가") == subject == expected(word, "이", "가")


# --- every sentence the dataset can generate --------------------------------------------------

def dataset_sentences() -> list[tuple[str, str, str, str | None, str]]:
    """(insurer, name, status, value, sentence) for every insurer x name x status (x value)."""
    out = []
    for insurer in INSURERS:
        for name in sorted(NAMES):
            cases = [("UNCONFIRMED", None), ("NOT_AVAILABLE", None)] + [("CONFIRMED", v) for v in sorted(VALUES)]
            out.extend((insurer, name, status, value, explain(insurer, name, status, value)) for status, value in cases)
    return out


SENTENCES = dataset_sentences()


def test_sentence_count() -> None:
    assert len(SENTENCES) == len(INSURERS) * len(NAMES) * (2 + len(VALUES))
    assert len(SENTENCES) > 50_000


def test_every_generated_sentence_has_the_particle_of_the_word_before_the_bracket() -> None:
    wrong = []
    for insurer, name, status, value, sentence in SENTENCES:
        if status == "NOT_AVAILABLE":
            assert sentence == f"{insurer}에는 해당 담보가 존재하지 않습니다."
            continue
        prefix = f"{insurer}의 {name}"
        assert sentence.startswith(prefix)
        rest = sentence[len(prefix):]
        want = expected(name, "은", "는") or "은(는)"
        if not rest.startswith(f"{want} 가입설계서에 "):
            wrong.append((name, rest[:4], want))
        if value is not None:
            direction = expected(value, "으로", "로") or "(으)로"
            if f" {value}{direction} 명시되어 있습니다." not in sentence:
                wrong.append((value, sentence, direction))
    assert wrong == []


def test_no_dataset_name_needs_the_combined_form() -> None:
    assert [name for name in NAMES if expected(name, "은", "는") is None] == []


# --- a placeholder is not an amount ------------------------------------------------------------

@pytest.mark.parametrize("placeholder", ["확인 불가", "금액 미기재", "해당 담보 없음", "금액 명시 없음", "-", "—", "…", "N/A",
                                         "원문에서 찾지 못함", "미확인", " - ", "원"])
def test_placeholder_amount_is_refused(placeholder: str) -> None:
    with pytest.raises(InvalidAmount, match="placeholder"):
        explain("삼성화재", "암진단비", "CONFIRMED", placeholder)


def test_placeholder_error_is_a_value_error_and_an_inca_error() -> None:
    from core.errors import IncaError

    with pytest.raises(ValueError) as info:
        explain("삼성화재", "암진단비", "CONFIRMED", "확인 불가")
    assert isinstance(info.value, IncaError)


@pytest.mark.parametrize("amount", ["3,000만원", "000만원", "1천만원", "일천만원", "1.5억원", "10만원(연간)"])
def test_printed_amounts_are_not_placeholders(amount: str) -> None:
    assert amount in explain("삼성화재", "암진단비", "CONFIRMED", amount)


def test_every_confirmed_value_of_the_dataset_is_an_amount() -> None:
    from core.amounts import is_placeholder_amount

    assert VALUES and [v for v in VALUES if is_placeholder_amount(v)] == []
