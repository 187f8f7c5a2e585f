"""The catalog page at market scale (issue 16): pages of codes, chosen insurer columns, search, the URL,
and every page's size per rerun bounded (AppTest against the real dataset and the tiny market).

Expected names come from the dataset files (tests/dataset_facts.py), never from core.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from bench import market
from core import catalog, db
from core.ops import loader
from dashboard.lib import catalog_view, compare_view
from tests import dataset_facts as facts
from tests.conftest import PROJECT, Database, PgServer, point_env_at
from tests.test_dashboard import parse_table, walk

APP = str(PROJECT / "dashboard" / "app.py")
#: what one rerun of any page may send on the tiny market with the small settings below (element protos)
SMALL_PAGE_BUDGET = 48_000
SMALL_SETTINGS = {"INCA_CATALOG_PAGE_ROWS": "6", "INCA_CATALOG_MAX_INSURERS": "2", "INCA_PICKER_MAX_OPTIONS": "10"}


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [exception.value for exception in at.exception]
    return at


def catalog_page(query: dict[str, str] | None = None) -> AppTest:
    at = run(AppTest.from_file(APP, default_timeout=60))
    at.switch_page("views/catalog.py")
    if query:
        at.query_params.clear()
        at.query_params.update(query)
    return run(at)


def tables(at: AppTest) -> list[Any]:
    return [parse_table(element.value) for element in at.html if "inca-catalog" in element.value]


def shown_codes(at: AppTest) -> list[str]:
    return [code for frame in tables(at) for code in frame["코드"]]


def sent_bytes(at: AppTest) -> int:
    """Serialized size of every element and block of the last run: what Streamlit sends per rerun."""
    return sum(node.proto.ByteSize() for node in walk(at._tree) if getattr(node, "proto", None) is not None)


def warnings_text(at: AppTest) -> str:
    return " ".join(warning.value for warning in at.warning).replace("\\", "")


# --- the real dataset -----------------------------------------------------------------------------

def test_catalog_shows_one_page_of_rows_and_reaches_every_code(loaded_db: Database,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCA_CATALOG_PAGE_ROWS", "7")
    known = sorted(facts.canonical_names())
    at = catalog_page()
    pages = -(-len(known) // 7)
    seen: list[str] = []
    for number in range(1, pages + 1):
        if number > 1:
            at.number_input(key="catalog_page").increment()
            run(at)
        codes = shown_codes(at)
        assert 0 < len(codes) <= 7
        assert at.query_params.get("page", "1") == str(number)
        seen += codes
    assert sorted(seen) == known and len(seen) == len(set(seen))  # every code once, none twice
    assert f"검색 결과 {len(known)}개" in " ".join(caption.value for caption in at.caption)


def test_search_finds_a_raw_name_and_shows_it_verbatim(loaded_db: Database) -> None:
    # a raw name that is neither its code nor its canonical name: found through the insurer's own name
    card = next(card for card in facts.cards() if card.code is not None and len(card.raw_name) >= 6
                and card.raw_name not in facts.canonical_names()[card.code])
    insurer = facts.insurer_names()[card.insurer]
    at = catalog_page({"ins": card.insurer})
    at.text_input(key="catalog_search").input(card.raw_name)
    run(at)
    codes = shown_codes(at)
    assert card.code in codes
    frame = next(frame for frame in tables(at) if card.code in list(frame["코드"]))
    row = frame[frame["코드"] == card.code].iloc[0]
    assert list(frame.columns) == ["코드", "표준 담보명", "보험사 수", insurer]
    assert card.raw_name in row[insurer].split("\n")  # verbatim, one line per name
    assert at.query_params["q"] == card.raw_name and at.query_params["ins"] == card.insurer


def test_a_match_in_a_column_not_chosen_is_said(loaded_db: Database) -> None:
    card = next(card for card in facts.cards() if card.code is not None and len(card.raw_name) >= 6)
    other = next(key for key in sorted(facts.insurer_names()) if key != card.insurer
                 and card.raw_name not in {c.raw_name for c in facts.cards() if c.insurer == key})
    at = catalog_page({"ins": other, "q": card.raw_name})
    assert card.code in shown_codes(at)
    captions = " ".join(caption.value for caption in at.caption).replace("\\", "")
    assert "열로 고르지 않은 보험사" in captions and facts.insurer_names()[card.insurer] in captions


def test_view_round_trips_through_the_url(loaded_db: Database) -> None:
    keys = sorted(facts.insurer_names())
    chosen = [keys[2], keys[0]]  # not key order: the columns follow it
    at = catalog_page({"q": "암", "cat": "암 진단", "ins": ",".join(chosen), "page": "1"})
    assert at.text_input(key="catalog_search").value == "암"
    assert at.multiselect(key="catalog_categories").value == ["암 진단"]
    assert at.multiselect(key="catalog_insurers").value == chosen
    assert [list(frame.columns)[3:] for frame in tables(at)] == [[facts.insurer_names()[key] for key in chosen]]
    assert at.query_params == {"q": "암", "cat": "암 진단", "ins": ",".join(chosen)}  # page 1 is the default
    # a shared link opens the same view in a new session
    again = catalog_page(dict(at.query_params))
    assert shown_codes(again) == shown_codes(at)
    at.multiselect(key="catalog_insurers").set_value(list(reversed(chosen)))
    run(at)
    assert at.query_params["ins"] == ",".join(reversed(chosen))


def test_unknown_filter_values_are_named_not_a_traceback(loaded_db: Database) -> None:
    at = catalog_page({"cat": "암진단,없는분류", "ins": "nosuch_insurer", "page": "x1"})
    text = warnings_text(at)
    assert "없는분류" in text and "nosuch_insurer" in text and "x1" in text
    assert "암 진단" in text  # the closest category is suggested
    assert not at.error and shown_codes(at)
    assert at.number_input(key="catalog_page").value == 1
    far = catalog_page({"page": "999"})
    assert "999" in warnings_text(far) and not far.error
    assert far.number_input(key="catalog_page").value == far.number_input(key="catalog_page").max
    hostile = catalog_page({"ins": "[x](https://example.com)", "q": "a\x00b"})
    raw = " ".join(warning.value for warning in hostile.warning)
    assert "\\[x\\]\\(https\\:" in raw  # escaped: no link can be injected
    assert not hostile.error


# --- every page bounded: the tiny market with small page settings ---------------------------------

@pytest.fixture(scope="module")
def tiny_market(server: PgServer) -> Iterator[str]:
    name = server.create("inca_bench_pages")
    point_env_at(server, name)
    result = loader.load_bundle(market.generate("tiny", seed=8, progress=False), db.admin_engine())
    assert result.changed and "audit PASS" in result.message
    yield name
    db.dispose_all()
    server.drop(name)


@pytest.fixture
def tiny_db(tiny_market: str, server: PgServer) -> str:
    point_env_at(server, tiny_market)
    return tiny_market


def test_every_page_stays_within_its_budget_on_the_tiny_market(tiny_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SMALL_SETTINGS.items():
        monkeypatch.setenv(name, value)
    products = catalog.products()
    assert len(products) > int(SMALL_SETTINGS["INCA_PICKER_MAX_OPTIONS"])  # so the picker must narrow
    # The comparison's own sections grow with the selection the analyst made (at most MAX_PRODUCTS x
    # MAX_CODES): two products and two codes here; what every view sends besides them (the picker) must
    # not grow with the market.
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"p": f"{products[0].key},{products[-1].key}",
                            "c": ",".join(coverage.code for coverage in catalog.coverages()[:2])})
    run(at)
    sizes = {"compare": sent_bytes(at)}
    picker = at.multiselect(key=compare_view.PRODUCTS_KEY)
    assert len(picker.options) <= int(SMALL_SETTINGS["INCA_PICKER_MAX_OPTIONS"]) + len(picker.value)
    assert len(picker.options) < len(products)
    at.switch_page("views/catalog.py")
    run(at)
    sizes["catalog"] = sent_bytes(at)
    assert len(shown_codes(at)) == 6 and all(len(frame.columns) == 3 + 2 for frame in tables(at))
    at.switch_page("views/status.py")
    run(at)
    sizes["status"] = sent_bytes(at)
    assert all(0 < size <= SMALL_PAGE_BUDGET for size in sizes.values()), sizes
    # the budget means something: the whole catalog of this market, every insurer a column, exceeds it
    whole = catalog_view.catalog_html(catalog.coverage_table(), [product.insurer_name for product in products])
    assert len(whole.encode()) > SMALL_PAGE_BUDGET


def test_any_product_is_reachable_through_the_narrowed_picker(tiny_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SMALL_SETTINGS.items():
        monkeypatch.setenv(name, value)
    products = catalog.products()
    last = products[-1]  # not among the defaults (the first products)
    at = run(AppTest.from_file(APP, default_timeout=60))
    assert last.label not in at.multiselect(key=compare_view.PRODUCTS_KEY).options  # options are labels
    at.multiselect(key=compare_view.INSURERS_KEY).set_value([last.insurer_key])
    run(at)
    assert last.label in at.multiselect(key=compare_view.PRODUCTS_KEY).options
    at.multiselect(key=compare_view.PRODUCTS_KEY).select(last.key)
    run(at)
    assert at.query_params["p"].split(",")[-1] == last.key
    # and by URL, whatever the filter lists
    opened = AppTest.from_file(APP, default_timeout=60)
    opened.query_params["p"] = last.key
    run(opened)
    assert opened.multiselect(key=compare_view.PRODUCTS_KEY).value == [last.key]
