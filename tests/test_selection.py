"""core.selection: the one resolver, at the library's edge (typed text in, products and codes out)."""

from __future__ import annotations

import unicodedata

import pytest

import core
from core import catalog, selection
from core.errors import SelectionError
from tests.conftest import Database

SAMSUNG_NAME = "무배당 삼성화재 건강보험 마이헬스 파트너(2508.12)3종(납입면제해약환급금 미지급형Ⅱ)"


def _product(key: str, name: str, insurer: str = "acme", insurer_name: str = "에이크미손해보험") -> catalog.Product:
    return catalog.Product(key, name, insurer, insurer_name, None, None, None, (), f"{insurer_name} {name}")


KNOWN = [_product("acme_a", "상품 A"), _product("acme_b", "상품 B"), _product("solo_v1", "단독 상품", "solo", "솔로생명")]
COVERAGES = [catalog.Coverage("A4200_1", "암진단비(유사암제외)", "암 진단", ()),
             catalog.Coverage("A4101", "뇌혈관질환진단비", "뇌·심장 진단", ()),
             catalog.Coverage("A9999", "같은이름", "기타", ()), catalog.Coverage("A9998", "같은이름", "기타", ())]


# --- deciding against a catalog (no database) ---------------------------------------------------

def test_every_spelling_of_a_product_resolves_in_the_given_order() -> None:
    chosen = selection.pick_products(["SOLO", "acme_b", "상품 A"], KNOWN)  # insurer key in any case, key, name
    assert [product.key for product in chosen] == ["solo_v1", "acme_b", "acme_a"]
    assert selection.pick_products(["솔로생명"], KNOWN)[0].key == "solo_v1"
    assert selection.pick_products([selection.ProductRef("acme", "상품 B")], KNOWN)[0].key == "acme_b"


def test_an_insurer_with_several_products_is_ambiguous_and_lists_them() -> None:
    with pytest.raises(SelectionError, match="has 2 products") as refused:
        selection.pick_products(["acme"], KNOWN)
    assert refused.value.kind == selection.AMBIGUOUS and refused.value.suggestions == ["acme_a", "acme_b"]


def test_coverages_by_code_any_case_or_unambiguous_name() -> None:
    chosen = selection.pick_coverages(["a4101", "암진단비(유사암제외)", "A4101"], COVERAGES)
    assert [coverage.code for coverage in chosen] == ["A4101", "A4200_1"]  # asked twice: shown once
    with pytest.raises(SelectionError, match="name of 2 codes") as refused:
        selection.pick_coverages(["같은이름"], COVERAGES)
    assert refused.value.suggestions == ["A9998", "A9999"] or refused.value.suggestions == ["A9999", "A9998"]


def test_one_closest_rule_fragments_first_then_spellings() -> None:
    assert selection.closest("상품", ["상품 A", "상품 B", "다른 것"]) == ["상품 A", "상품 B"]
    assert selection.closest("samsnug", ["samsung", "kb", "db"]) == ["samsung"]
    assert selection.closest("zzzz", ["samsung", "kb"]) == []


@pytest.mark.parametrize(("value", "expected"), [
    ("ＡＣＭＥ＿Ａ", "ACME_A"),                                         # full-width ASCII folds to half-width
    ("acme_a\u3000", "acme_a"),                                        # an ideographic space is a space
    (unicodedata.normalize("NFD", "솔로생명"), "솔로생명"),                 # decomposed Hangul (macOS) -> NFC
    ("미지급형Ⅱ", "미지급형Ⅱ"),                                           # a compatibility character is kept
])
def test_values_are_normalised_before_lookup(value: str, expected: str) -> None:
    assert selection.clean(value) == expected


@pytest.mark.parametrize("value", ["acme\x00", "ac\nme", "\x1bacme", "acme\x7f", "acme\x85"])
def test_control_characters_are_refused_with_their_position(value: str) -> None:
    with pytest.raises(SelectionError, match=r"control character \(U\+00[0-9A-F]{2}\) at character") as refused:
        selection.pick_products(["solo", value], KNOWN)
    assert refused.value.kind == selection.INVALID
    assert "product #2" in str(refused.value) and "\x00" not in str(refused.value)


def test_over_long_and_non_text_values_are_refused() -> None:
    with pytest.raises(SelectionError, match="201 characters long") as refused:
        selection.pick_products(["가" * 201], KNOWN)
    assert refused.value.bad_value == "가" * 40 + "…"
    with pytest.raises(SelectionError, match="must be text, not int"):
        selection.pick_coverages([4101], COVERAGES)  # type: ignore[list-item]


# --- against the database ---------------------------------------------------------------------

def test_resolve_then_compare_does_not_resolve_again(loaded_db: Database) -> None:
    chosen = core.resolve([unicodedata.normalize("NFD", "삼성화재"), "ＫＢ", "lotte"], ["ａ４２００＿１", "뇌혈관질환진단비"])
    assert chosen.product_keys == ["samsung_health_v1", "kb_health_v1", "lotte_health_v1"]
    assert chosen.codes == ["A4200_1", "A4101"]
    by_selection, by_keys = core.compare(chosen), core.compare(chosen.product_keys, chosen.codes)
    assert by_selection.to_frame().equals(by_keys.to_frame())
    assert core.resolve([SAMSUNG_NAME]).product_keys == ["samsung_health_v1"]  # a product's own name
    with pytest.raises(TypeError):
        core.compare(chosen, ["A4101"])


@pytest.mark.parametrize("bad", ["samsung\x00", "\x00", "kb\x9b"])
def test_a_nul_never_reaches_the_driver(loaded_db: Database, bad: str) -> None:
    for call in (lambda: core.compare(["lotte", bad], ["A4200_1"]), lambda: core.unmatched_coverages([bad]),
                 lambda: core.resolve(["lotte"], ["A4200_1", bad])):
        with pytest.raises(SelectionError, match="control character"):
            call()


def test_the_library_and_its_errors_suggest_alike(loaded_db: Database) -> None:
    with pytest.raises(SelectionError) as by_resolve:
        core.resolve(["samsnug"])
    with pytest.raises(SelectionError) as by_compare:
        core.compare(["samsnug"], ["A4200_1"])
    assert by_resolve.value.suggestions == by_compare.value.suggestions
    assert "samsung" in by_resolve.value.suggestions
    assert "samsung_health_v1" in by_resolve.value.valid  # decided on the whole catalog


# --- every public read call refuses a control character before any query ----------------------

PUBLIC_CALLS = {
    "catalog.products(list)": lambda bad: core.catalog.products(["samsung", f"kb{bad}"]),
    "catalog.products(str)": lambda bad: core.catalog.products(f"samsung{bad}"),
    "catalog.raw_names": lambda bad: core.catalog.raw_names(f"A4200_1{bad}"),
    "search.find_coverages": lambda bad: core.search.find_coverages(f"암{bad}진단비"),
    "conditions_of": lambda bad: core.conditions_of(f"samsung{bad}"),
    "selection.resolve": lambda bad: core.resolve([f"samsung{bad}"]),
    "compare(products)": lambda bad: core.compare([f"samsung{bad}"]),
    "compare(codes)": lambda bad: core.compare(["samsung"], [f"A4200_1{bad}"]),
    "unmatched_coverages": lambda bad: core.comparison.unmatched_coverages([f"samsung{bad}"]),
}


@pytest.mark.parametrize("bad", ["\x00", "\x07"], ids=["NUL", "BEL"])
@pytest.mark.parametrize("call", list(PUBLIC_CALLS), ids=list(PUBLIC_CALLS))
def test_public_calls_refuse_control_characters_with_one_selection_error(loaded_db: Database, call: str,
                                                                          bad: str) -> None:
    # SelectionError and nothing else: a NUL reaching the driver would raise psycopg's DataError
    with pytest.raises(SelectionError, match=rf"control character \(U\+{ord(bad):04X}\)") as refused:
        PUBLIC_CALLS[call](bad)
    assert refused.value.kind == selection.INVALID
    assert bad not in str(refused.value)  # echoed escaped, never raw
