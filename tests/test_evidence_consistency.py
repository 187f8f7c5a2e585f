"""core.evidence_consistency: which CONFIRMED values are not a complete amount in their own snippet."""

from __future__ import annotations

import json

import pytest

from core.evidence_consistency import KINDS, MARKER, NOTICE, Finding, check_fact
from core.forbidden_language import find_violations
from tests.test_store import DATASET


def _confirmed_cards() -> list[dict]:
    cards = [json.loads(line) for path in sorted((DATASET / "cards").glob("*.jsonl"))
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [card for card in cards if card["amount"]["status"] == "CONFIRMED"]


def test_real_data_flags_exactly_the_three_truncated_hanwha_amounts() -> None:
    cards = _confirmed_cards()
    assert len(cards) == 222
    flagged = {}
    for card in cards:
        amount = card["amount"]
        findings = check_fact(amount["value_text"], amount["evidence_ref"]["snippet"], card["coverage_name_raw"])
        if findings:
            flagged[(card["insurer"], card["coverage_name_raw"], amount["value_text"])] = findings
    assert set(flagged) == {
        ("hanwha", "상해 후유장해(3-100%)", "000만원"),
        ("hanwha", "뇌졸중 진단비", "000만원"),
        ("hanwha", "허혈성심장질환 진단비", "000만원"),
    }
    for findings in flagged.values():
        assert {f.kind for f in findings} == {"digit_before", "inside_longer_amount"}
        before = next(f for f in findings if f.kind == "digit_before")
        assert before.detail == "preceded by ','"
        assert "1,\n000만원" in before.context
        assert next(f for f in findings if f.kind == "inside_longer_amount").detail == "inside '1,000만원'"


def test_real_rows_are_compared_not_skipped() -> None:
    """The row rule is live on the real data: a changed row amount would be caught for every card."""
    caught, nameless = 0, []
    for card in _confirmed_cards():
        amount = card["amount"]
        snippet = amount["evidence_ref"]["snippet"]
        if amount["value_text"] == "000만원":
            continue
        swapped = snippet.replace(amount["value_text"], "9,999만원", 1) + f"\n{amount['value_text']}"
        kinds = {f.kind for f in check_fact(amount["value_text"], swapped, card["coverage_name_raw"])}
        caught += "different_amount" in kinds
        if "different_amount" not in kinds:
            nameless.append(card["coverage_name_raw"])
            assert "".join(card["coverage_name_raw"].split()) not in "".join(snippet.split())
    assert caught == 217
    # two KB snippets print another coverage's row (no own name, so no row to compare): not flagged
    assert sorted(nameless) == ["심장판막협착증(대동맥판막)진단비", "항암약물치료비"]


# --- synthetic truncations and mismatches (none of these is in the real data) -----------------------

@pytest.mark.parametrize(
    ("value", "snippet", "raw", "kinds", "detail"),
    [
        ("00만원", "암진단비\n3,000만원", "암진단비", {"digit_before", "inside_longer_amount"}, "preceded by '0'"),
        ("5천만원", "뇌출혈진단비 1억5천만원", None, {"digit_before", "inside_longer_amount"}, "preceded by '억'"),
        ("5억원", "상해사망\n1.5억원", None, {"digit_before", "inside_longer_amount"}, "preceded by '.'"),
        (".5억원", "상해사망\n1.5억원", None, {"digit_before", "inside_longer_amount"}, "preceded by '1'"),
        ("000만원", "질병사망 1, 000만원", "질병사망", {"digit_before", "inside_longer_amount"}, "preceded by ','"),
        ("1억", "암수술비\n1억5천만원", None, {"digit_after", "inside_longer_amount"}, "followed by '5'"),
        ("1천", "암수술비 1천만원", None, {"digit_after", "inside_longer_amount"}, "followed by '만'"),
        ("1,00", "암수술비 1,000만원", None, {"digit_after", "inside_longer_amount"}, "followed by '0'"),
        ("1,000만", "암수술비 1,000만원", None, {"inside_longer_amount"}, "inside '1,000만원'"),
        ("1,000만원", "암진단비 2,000만원\n질병사망 1,000만원", "암진단비", {"different_amount"},
         "the coverage's row shows '2,000만원'"),
        ("3천만원", "12. 암진단비Ⅱ(유사암제외)\n20년납 100세만기\n5천만원\n13. 질병사망 3천만원", "암진단비Ⅱ(유사암제외)",
         {"different_amount"}, "the coverage's row shows '5천만원'"),
        ("7,000만원", "암진단비 1,000만원", None, {"not_in_snippet"}, "the value does not occur in the snippet"),
    ],
)
def test_synthetic_mismatches_are_flagged_with_their_kind(
    value: str, snippet: str, raw: str | None, kinds: set[str], detail: str
) -> None:
    findings = check_fact(value, snippet, raw)
    assert {f.kind for f in findings} == kinds
    assert detail in {f.detail for f in findings}
    assert all(f.kind in KINDS and f.value_text == value and f.context for f in findings)
    assert all(f.context in snippet for f in findings)  # verbatim 원문


@pytest.mark.parametrize(
    ("value", "snippet", "raw"),
    [
        ("1,000만원", "1,000만원 암진단비", "암진단비"),  # value at the start, name after it: no row to compare
        ("1,000만원", "암진단비\n1,000만원", "암진단비"),  # value at the end
        ("1,000만원", "암진단비 1,000만원 20년납 100세만기", "암진단비"),  # a space, then another column
        ("1,000만원", "뇌졸중진단비\n20년납 100세만기\n1,000만원", "뇌졸중진단비"),
        ("1천만원", "8 질병사망 / 1천만원", "질병사망"),
        ("1,000만원", "암진단비 1,000만원 12,340원", "암진단비"),  # the premium after the amount
        ("1,000만원", "암진단비 1,000만원 / 합계 11,000만원", "암진단비"),  # one complete occurrence suffices
        ("2,000만원", "질병사망 1,000만원\n암진단비 2,000만원", "암진단비"),  # another row's amount
        ("1,000만원", "암진단비\n보험기간\n납입기간\n가입금액\n1,000만원", "암진단비"),  # too far for a row: not compared
        ("1,000만원", "다른담보 2,000만원\n1,000만원", "암진단비"),  # its name is not in the snippet
        ("10만원", "질병입원일당(1일이상180일한도)\n10만원", "질병입원일당(1일이상180일한도)"),
        ("3,000만원", "상해후유장해(3~100%)\n3,000만원", "상해후유장해(3~100%)"),
        ("1,000만원", "암진단비 1,000만원.", "암진단비"),  # a full stop, not a decimal point
        ("1,000만원", "암진단비 1,000만원, 뇌졸중 500만원", None),  # a list comma
    ],
)
def test_complete_amounts_are_not_flagged(value: str, snippet: str, raw: str | None) -> None:
    assert check_fact(value, snippet, raw) == []


def test_deterministic_and_frozen() -> None:
    args = ("000만원", "상해후유장해(3-100%)\n1,\n000만원", "상해 후유장해(3-100%)")
    assert check_fact(*args) == check_fact(*args)
    finding = check_fact(*args)[0]
    assert isinstance(finding, Finding)
    with pytest.raises(AttributeError):
        finding.kind = "x"  # type: ignore[misc]


def test_notice_and_marker_are_neutral_and_state_no_amount() -> None:
    assert MARKER == "⚠ 원문 확인 필요"
    for text in (NOTICE, MARKER, f"000만원 {MARKER}"[8:]):
        assert find_violations(text) == []
        assert not any(ch.isdigit() for ch in text)
