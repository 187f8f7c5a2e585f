"""Condition slots: verbatim spans over the real dataset, quality gates on the dev split, hard cases."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from core.conditions import CONFLICT, FOUND, NOT_FOUND, SLOTS, SourceText, conditions_for_card, extract_conditions
from core.conditions.extract import all_sources, read_evidence_pack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import conditions_quality  # noqa: E402


def _ev(text: str, doc_type: str = "약관", page: int = 1, ordinal: int = 0) -> SourceText:
    return SourceText("evidence", doc_type, page, ordinal, text)


def test_every_phrase_over_the_real_dataset_is_a_verbatim_span() -> None:
    pack = read_evidence_pack(ROOT / "data" / "dataset")
    checked = 0
    for card in conditions_quality.load_cards():
        supporting = pack.get((card["insurer"], card["coverage_name_raw"]), [])
        from core.conditions.extract import sources_for_card
        sources = all_sources(card["coverage_name_raw"], sources_for_card(card, supporting))
        for result in conditions_for_card(card, supporting).values():
            for phrase in result.phrases:
                assert sources[phrase.source_index].text[phrase.start:phrase.end] == phrase.text
                checked += 1
    assert checked > 100


def test_dev_split_meets_the_quality_gate() -> None:
    precision, recall = conditions_quality.totals(conditions_quality.evaluate("dev"))
    assert precision >= 0.97
    assert recall >= 0.85


def test_blind_split_meets_the_maintainers_gate() -> None:
    # labelled before the extractor was run on it (docs/conditions.md); gate = the check
    precision, recall = conditions_quality.totals(conditions_quality.evaluate("blind"))
    assert precision >= 0.95
    assert recall >= 0.80


def test_phrase_of_the_next_rider_in_a_multi_coverage_snippet_is_not_attributed() -> None:
    snippet = "가입금액 한도 \n기타 \n- 보험료 납입면제대상Ⅱ \n최초 1회한 \n- 창상봉합술 치료비(1일1회한)"
    own = extract_conditions("보험료 납입면제대상Ⅱ", [_ev(snippet)])
    assert own["payout_limit"].status == FOUND and own["payout_limit"].phrases[0].text == "최초 1회한"
    other = extract_conditions("상해 입원일당", [_ev(snippet)])
    assert other["payout_limit"].status == NOT_FOUND
    longer = extract_conditions("뇌출혈진단비", [_ev("31. 주요상해뇌출혈진단비(최초1회한) 특별약관")])
    assert longer["payout_limit"].status == NOT_FOUND


def test_sibling_rider_brackets_only_corroborate() -> None:
    result = extract_conditions("질병사망", [_ev("질병사망(갱신형)\n질병사망(비갱신형/갱신형) 특별약관")])
    assert result["renewal"].status == NOT_FOUND
    result = extract_conditions("질병사망(갱신형)", [_ev("질병사망(갱신형)")])
    assert result["renewal"].status == FOUND and len(result["renewal"].phrases) == 2


def test_documents_that_disagree_give_conflict_with_every_phrase() -> None:
    result = extract_conditions("보험료 납입면제대상Ⅱ", [
        _ev("- 보험료 납입면제대상Ⅱ\n최초 1회한\n- 다른담보"),
        _ev("- 보험료 납입면제대상Ⅱ\n연간 1회한\n- 다른담보", "상품요약서", 3, 1),
    ])
    assert result["payout_limit"].status == CONFLICT
    assert [p.text for p in result["payout_limit"].phrases] == ["최초 1회한", "연간 1회한"]


def test_whitespace_does_not_make_a_conflict_and_names_carry_conditions() -> None:
    result = extract_conditions("혈전용해 치료비(최초 1회한)", [_ev("- 혈전용해치료비\n최초1회한\n- 다른담보")])
    assert result["payout_limit"].status == FOUND
    assert extract_conditions("유사암 진단비(갑상선암)(1년50%)", [])["reduction"].phrases[0].text == "1년50%"
    assert extract_conditions("[갱신형] 특정암 다빈치로봇 수술비", [])["renewal"].status == FOUND


def test_cause_cell_conditions_belong_to_their_row_only() -> None:
    snippet = "(연간1회한, 1년미만 50%)\n가입금액\n뇌졸중진단비\n뇌졸중로 진단 확정된 경우\n(1회한, 1년미만 50%)\n다음담보"
    result = extract_conditions("뇌졸중진단비", [_ev(snippet, "상품요약서")])
    assert [p.text for p in result["payout_limit"].phrases] == ["1회한"]
    assert [p.text for p in result["reduction"].phrases] == ["1년미만 50%"]
    rider_list = extract_conditions("심근병증진단", [_ev("- 심근병증진단\n관상동맥성형술(최초1회한)")])
    assert rider_list["payout_limit"].status == NOT_FOUND


def test_no_numeric_parsing_in_the_module() -> None:
    source = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "core" / "conditions").glob("*.py"))
    for forbidden in ("int(", "float(", "Decimal", "sorted(phrases", "key=len"):
        if forbidden == "int(":
            # the only int() reads a page number from `가입설계서 p.N`, never a phrase
            assert source.count("int(") == 2
            continue
        assert forbidden not in source


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="질병사망암진단비갱신형비최초연간1회한90일년50%감액없음만세~부터()[]/-·\n ,.", max_size=80),
       st.text(alphabet="질병사망암진단비갱신형최초1회한()", max_size=20))
def test_any_text_gives_verbatim_spans_and_never_raises(snippet: str, name: str) -> None:
    sources = all_sources(name, [_ev(snippet)])
    result = extract_conditions(name, [_ev(snippet)])
    assert set(result) == set(SLOTS)
    for slot_result in result.values():
        assert (slot_result.status == NOT_FOUND) == (not slot_result.phrases)
        for phrase in slot_result.phrases:
            assert sources[phrase.source_index].text[phrase.start:phrase.end] == phrase.text
