"""The dashboard, driven in-process with Streamlit's AppTest against the real loaded database.

The comparison table is static HTML (st.html, so it cannot be sorted by amount): tests parse it and
compare it cell by cell with the dataset's own facts, read from data/dataset by tests/dataset_facts.py
(never with core.compare, which would carry any bug of core into the expected answer).
"""

from __future__ import annotations

import html
import io
import re
import unicodedata
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pandas as pd
import psycopg
import pytest
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

from core import catalog, db, forbidden_language
from core.comparison import STATUS_LABELS
from dashboard.lib import exports, params, status_view
from tests import dataset_facts as facts
from tests.conftest import PROJECT, Database, PgServer

APP = str(PROJECT / "dashboard" / "app.py")
DEFAULT_CODES = list(params.DEFAULT_CODES)
DOWN_URL = "postgresql://inca_reader:s3cret-pw@127.0.0.1:1/inca"


# --- helpers -----------------------------------------------------------------------------------

class TableParser(HTMLParser):
    """Header texts and cell texts of the first <table>; a cell's lines are its `.inst` divs."""

    def __init__(self) -> None:
        super().__init__()
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._lines: list[str] = []
        self._in_inst = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell, self._lines = [], []
        elif tag == "div" and self._cell is not None and "inst" in (dict(attrs).get("class") or "").split():
            self._lines.append("")
            self._in_inst = True

    def handle_data(self, data: str) -> None:
        if self._cell is None:
            return
        if self._in_inst:
            self._lines[-1] += data
        else:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            self._in_inst = False
        elif tag in ("td", "th") and self._cell is not None:
            text = "\n".join(self._lines) if self._lines else "".join(self._cell)
            self.rows[-1].append(text)
            self._cell = None
        elif tag == "table":
            self._done = True


def parse_table(markup: str) -> pd.DataFrame:
    parser = TableParser()
    parser.feed(markup)
    header, *rows = parser.rows
    return pd.DataFrame(rows, columns=header)


def walk(node: Any) -> Iterator[Any]:
    """Every element and block of the tree in page order."""
    for child in getattr(node, "children", {}).values():
        yield child
        yield from walk(child)


def compare_table(at: AppTest) -> pd.DataFrame:
    markup = [element.value for element in at.html if "inca-compare" in element.value]
    assert len(markup) == 1, "expected exactly one comparison table"
    return parse_table(markup[0])


def assert_same_table(shown: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(shown.columns) == list(expected.columns)
    assert shown.astype(str).values.tolist() == expected.astype(str).values.tolist()


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [exception.value for exception in at.exception]
    return at


def new_app(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if query:
        at.query_params.update(query)
    return at


def all_product_keys() -> list[str]:
    return [product.key for product in catalog.products()]


# --- the compare page ----------------------------------------------------------------------------

def test_default_compare_page_shows_the_datasets_amounts(loaded_db: Database) -> None:
    at = run(new_app())
    assert not at.error and not at.warning
    assert sorted(all_product_keys()) == sorted(facts.product_insurer())  # every product of the dataset
    facts.assert_page_table(compare_table(at), all_product_keys(), DEFAULT_CODES)
    assert at.query_params == {"p": ",".join(all_product_keys()), "c": ",".join(DEFAULT_CODES)}
    # 원문 closed by default (issue 16): one button per coverage, and no snippet text is sent until opened
    assert [at.button(key=f"evidence_{code}").label.startswith("근거자료 (원문) 보기") for code in DEFAULT_CODES] \
        == [True] * len(DEFAULT_CODES)
    page = "\n".join(element.value for element in at.html)
    assert "<pre>" not in page
    snippets = {text for key in all_product_keys() for code in DEFAULT_CODES for card in facts.cards_for(key, code)
                for text in facts.snippets_of(card.insurer, card.raw_name) if len(text) >= 20}
    assert len(snippets) > 100
    assert not [text for text in snippets if html.escape(text, quote=False) in page or text in page]


def test_explanations_and_evidence_are_verbatim(loaded_db: Database) -> None:
    chosen, codes = ["samsung_health_v1", "hanwha_health_v1"], ["A4210", "A4200_1"]
    at = run(new_app({"p": ",".join(chosen), "c": ",".join(codes)}))
    page = "\n".join(element.value for element in at.html)
    shown = {code: [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", block, re.S)]
             for code, block in re.findall(r'<div class="inca-expl" data-code="([^"]+)">(.*?)</div>', page, re.S)}
    assert list(shown) == codes
    for code in codes:
        # one sentence per raw coverage (one for a product without it), products in the chosen order
        expected = [(key, card) for key in chosen for card in (facts.cards_for(key, code) or [None])]
        assert len(shown[code]) == len(expected)
        for sentence, (key, card) in zip(shown[code], expected, strict=True):
            assert sentence.startswith(facts.label(key))
            assert not forbidden_language.find_violations(sentence)
            if card is not None and card.status == "CONFIRMED":
                assert f"{card.value_text}으로" in sentence or f"{card.value_text}로" in sentence
    assert "<pre>" not in page  # 원문 closed until asked for (issue 16)
    at.button(key=f"evidence_{codes[0]}").click()
    run(at)
    assert at.button(key=f"evidence_{codes[0]}").label == "근거자료 닫기"
    page = "\n".join(element.value for element in at.html)
    blocks = [html.unescape(block) for block in re.findall(r"<pre>(.*?)</pre>", page, re.S)]
    opened = [text for key in chosen for card in facts.cards_for(key, codes[0])
              for text in facts.snippets_of(card.insurer, card.raw_name)]
    assert opened and set(blocks) == set(opened)  # every snippet of that coverage verbatim, only those
    others = [text for key in chosen for card in facts.cards_for(key, codes[1])
              for text in facts.snippets_of(card.insurer, card.raw_name) if text not in opened]
    assert others and not set(others) & set(blocks)
    at.button(key=f"evidence_{codes[1]}").click()
    run(at)
    page = "\n".join(element.value for element in at.html)
    blocks = [html.unescape(block) for block in re.findall(r"<pre>(.*?)</pre>", page, re.S)]
    assert set(blocks) == set(opened) | set(others)
    at.button(key=f"evidence_{codes[0]}").click()  # closed again: its snippets are gone from the page
    run(at)
    page = "\n".join(element.value for element in at.html)
    assert {html.unescape(block) for block in re.findall(r"<pre>(.*?)</pre>", page, re.S)} == set(others)


def test_selection_change_keeps_the_chosen_order(loaded_db: Database) -> None:
    at = run(new_app())
    chosen = ["samsung_health_v1", "db_health_v1", "kb_health_v1"]  # not alphabetical
    codes = ["A4101", "A4200_1", "A4104_1"]
    at.multiselect(key="sel_products").set_value(chosen)
    at.multiselect(key="sel_codes").set_value(codes)
    run(at)
    facts.assert_page_table(compare_table(at), chosen, codes)
    assert list(compare_table(at).columns[2:]) == ["삼성화재", "DB손해보험", "KB손해보험"]
    assert at.query_params == {"p": ",".join(chosen), "c": ",".join(codes)}


def test_url_opens_the_same_comparison_and_follows_changes(loaded_db: Database) -> None:
    at = run(new_app({"p": "kb_health_v1,samsung_health_v1,lotte_health_v1", "c": "A4104_1,A4101"}))
    assert at.multiselect(key="sel_products").value == ["kb_health_v1", "samsung_health_v1", "lotte_health_v1"]
    assert at.multiselect(key="sel_codes").value == ["A4104_1", "A4101"]
    facts.assert_page_table(compare_table(at), ["kb_health_v1", "samsung_health_v1", "lotte_health_v1"],
                            ["A4104_1", "A4101"])
    at.multiselect(key="sel_codes").select("A4105")
    run(at)
    assert at.query_params["c"] == "A4104_1,A4101,A4105"
    assert at.query_params["p"] == "kb_health_v1,samsung_health_v1,lotte_health_v1"


def test_invalid_url_values_are_named_and_dropped(loaded_db: Database) -> None:
    at = run(new_app({"p": "samsung_health_v1,nope_v9,[x](https://example.com)", "c": "a4200_1,Z9999,not-a-code"}))
    warnings = " ".join(warning.value for warning in at.warning)
    assert "\\[x\\]\\(https\\:" in warnings  # user input is escaped: no link can be injected
    warnings = warnings.replace("\\", "")
    assert "nope_v9" in warnings and "Z9999" in warnings and "not-a-code" in warnings
    assert not at.error
    facts.assert_page_table(compare_table(at), ["samsung_health_v1"], ["A4200_1"])
    assert at.query_params == {"p": "samsung_health_v1", "c": "A4200_1"}


def test_url_values_are_normalised_and_control_characters_dropped(loaded_db: Database) -> None:
    decomposed = unicodedata.normalize("NFD", "삼성화재")
    at = run(new_app({"p": f"{decomposed}，ＫＢ,lotte\x00x", "c": "ａ４２００＿１,A4101\x1b"}))
    warnings = " ".join(warning.value for warning in at.warning).replace("\\", "")
    # named with the control character escaped (md() escapes the backslash, removed above), never a traceback
    assert "lottex00x" in warnings and "A4101x1b" in warnings
    assert not any(unicodedata.category(char) == "Cc" for char in warnings)
    assert not at.error
    assert at.query_params == {"p": "samsung_health_v1,kb_health_v1", "c": "A4200_1"}


def test_url_with_nothing_valid_falls_back_to_defaults(loaded_db: Database) -> None:
    at = run(new_app({"p": "unknown", "c": "A0000"}))
    assert len(at.warning) == 2
    facts.assert_page_table(compare_table(at), all_product_keys(), DEFAULT_CODES)


def test_empty_selection_asks_for_a_choice(loaded_db: Database) -> None:
    at = run(new_app())
    at.multiselect(key="sel_products").set_value([])
    run(at)
    assert not [element for element in at.html if "inca-compare" in element.value]
    assert any("비교표가 표시됩니다" in info.value for info in at.info)


def test_category_button_adds_its_coverages(loaded_db: Database) -> None:
    at = run(new_app({"c": "A4200_1"}))
    at.multiselect(key="sel_categories").set_value(["사망"])
    run(at)
    at.button[0].click()
    run(at)
    assert at.multiselect(key="sel_codes").value == ["A4200_1", "A1100", "A1300"]


def test_unmatched_coverages_are_listed_per_product(loaded_db: Database) -> None:
    """Each product's uncoded coverages behind its own button: none sent while closed (issue 16), the
    opened ones verbatim, in the chosen product order."""
    at = run(new_app({"p": "kb_health_v1,db_health_v1", "c": "A4101"}))
    kb, db_ = facts.unmatched("kb_health_v1"), facts.unmatched("db_health_v1")
    assert kb and db_
    assert [at.button(key=f"unmatched_{key}").label for key in ("kb_health_v1", "db_health_v1")] == \
        [f"KB손해보험 · {len(kb)}건", f"DB손해보험 · {len(db_)}건"]
    assert not [element for element in at.html if "inca-unmatched" in element.value]
    at.button(key="unmatched_db_health_v1").click()
    run(at)
    at.button(key="unmatched_kb_health_v1").click()
    run(at)
    tables = [parse_table(element.value) for element in at.html if "inca-unmatched" in element.value]
    shown = pd.concat(tables)
    assert shown["보험사 담보명"].tolist() == [card.raw_name for card in kb + db_]
    assert shown["금액 (가입설계서 표기)"].tolist() == [card.shown for card in kb + db_]
    at.button(key="unmatched_kb_health_v1").click()  # closes again: only DB's list is sent
    run(at)
    tables = [parse_table(element.value) for element in at.html if "inca-unmatched" in element.value]
    assert pd.concat(tables)["보험사 담보명"].tolist() == [card.raw_name for card in db_]


def test_audit_footer_names_the_lineage(loaded_db: Database) -> None:
    at = run(new_app())
    footer = at.caption[-1].value.replace("\\", "")
    assert "PASS" in footer and "freeze/pre-10b2g2-20251229-024400" in footer and "c6fad903c478" in footer
    assert "INTACT" in footer


# --- exports -------------------------------------------------------------------------------------

@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """The bytes each download button was given, by file extension."""
    captured: dict[str, bytes] = {}
    original = DeltaGenerator.download_button

    def record(self: DeltaGenerator, label: str, data: Any, file_name: str | None = None, *args: Any,
               **kwargs: Any) -> Any:
        name = str(file_name)
        key = "conditions_csv" if name.endswith("_conditions.csv") else name.rsplit(".", 1)[-1]
        captured[key] = data() if callable(data) else data  # deferred: built on click
        return original(self, label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", record)
    return captured


def test_exports_are_exactly_the_shown_table(loaded_db: Database, downloads: dict[str, bytes]) -> None:
    chosen, codes = ["samsung_health_v1", "hanwha_health_v1", "db_health_v1"], ["A4210", "A4103", "A4104_1"]
    at = run(new_app({"p": ",".join(chosen), "c": ",".join(codes)}))
    shown = compare_table(at)
    facts.assert_page_table(shown, chosen, codes)
    data = downloads["csv"]
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel opens Korean text correctly
    # the shown table, plus the evidence_check column (issue 13: 한화 A4103 is flagged)
    csv = exports.read_csv(data)
    assert csv.columns[-1] == exports.EVIDENCE_CHECK and csv[exports.EVIDENCE_CHECK].str.contains("원문 확인 필요").sum() == 1
    assert_same_table(csv.drop(columns=[exports.EVIDENCE_CHECK]), shown)
    workbook = pd.read_excel(io.BytesIO(downloads["xlsx"]), sheet_name=None, dtype=str, keep_default_na=False)
    assert list(workbook) == ["비교표", "상세", "지급 조건", "감사"]
    assert_same_table(workbook["비교표"].drop(columns=[exports.EVIDENCE_CHECK]), shown)
    detail = workbook["상세"]
    assert set(detail["status"]) <= set(STATUS_LABELS)
    # one row per code, product and raw coverage, in the chosen orders
    expected = [card.shown if card else facts.NOT_AVAILABLE_TEXT for code in codes for key in chosen
                for card in (facts.cards_for(key, code) or [None])]
    assert detail["display_text"].tolist() == expected
    assert "000만원" in detail["value_text"].tolist()  # text stays text: never turned into the number 0
    # the detail sheet carries each proposal snippet verbatim though the page read the cells only (issue 16)
    proposals = [card.proposal_snippet or "" for code in codes for key in chosen for card in facts.cards_for(key, code)]
    assert any(proposals)
    shown_snippets = detail.loc[detail["status"] == "CONFIRMED", "evidence_snippet"].tolist()
    assert shown_snippets == [card.proposal_snippet for code in codes for key in chosen
                              for card in facts.cards_for(key, code) if card.status == "CONFIRMED"]
    # the conditions sheet and its CSV hold the same rows: every chosen code x product x slot, in the chosen orders
    sheet = workbook["지급 조건"].fillna("").astype(str)
    assert_same_table(exports.read_csv(downloads["conditions_csv"]), sheet)
    assert set(sheet["status"]) <= {"FOUND", "CONFLICT", "NOT_FOUND", "NOT_AVAILABLE"}  # NOT_AVAILABLE: no such coverage
    assert list(dict.fromkeys(sheet["coverage_code"])) == codes
    assert list(dict.fromkeys(sheet["product_key"])) == chosen


# --- catalog and status --------------------------------------------------------------------------

def test_status_counts_partition_each_insurers_coverages(loaded_db: Database) -> None:
    frame = catalog.status_counts()
    assert frame["insurer_key"].tolist() == sorted(frame["insurer_key"])
    assert int(frame[["confirmed", "unconfirmed", "unmatched"]].to_numpy().sum()) == 297
    assert int(frame["unmatched"].sum()) == 79
    chart = status_view.completeness_chart(frame).to_dict()
    assert chart["encoding"]["x"]["sort"] == frame["insurer"].tolist()  # key order, never by a count


def test_search_suggests_codes_and_adds_them_as_rows(loaded_db: Database) -> None:
    from core import search

    at = run(new_app({"p": "samsung_health_v1,kb_health_v1", "c": "A1100"}))
    at.text_input(key="compare_search_query").input("뇌졸중 진단금")
    run(at)
    expected = search.find_coverages("뇌졸중 진단금", k=5)
    shown = "\n".join(element.value for element in at.markdown)
    assert all(match.code.replace("_", "\\_") in shown for match in expected)
    at.button(key="compare_search_add_0").click()
    run(at)
    assert at.multiselect(key="sel_codes").value == ["A1100", expected[0].code]
    assert list(compare_table(at)["코드"]) == ["A1100", expected[0].code]


def test_search_without_letters_is_explained(loaded_db: Database) -> None:
    at = run(new_app())
    at.text_input(key="compare_search_query").input("!!!")
    run(at)
    assert any("검색어" in element.value for element in at.info)


def catalog_codes(at: AppTest) -> list[str]:
    return [code for element in at.html if "inca-catalog" in element.value
            for code in parse_table(element.value)["코드"]]


def test_catalog_lists_every_coverage_and_filters(loaded_db: Database) -> None:
    at = new_app()
    run(at)
    at.switch_page("views/catalog.py")
    run(at)
    shown = catalog_codes(at)  # page by page (INCA_CATALOG_PAGE_ROWS a page), every code exactly once
    while len(shown) < len(catalog.coverages()):
        at.number_input(key="catalog_page").increment()
        run(at)
        shown += catalog_codes(at)
    assert sorted(shown) == sorted(coverage.code for coverage in catalog.coverages())
    at.text_input(key="catalog_search").input("유사 암")  # spaces ignored
    run(at)
    found = catalog_codes(at)
    assert "A4210" in found and "A4200_1" in found and "A1100" not in found
    at.text_input(key="catalog_search").input("")
    at.multiselect(key="catalog_categories").set_value(["사망"])
    run(at)
    assert catalog_codes(at) == ["A1100", "A1300"]
    at.text_input(key="catalog_search_query").input("암 진단금")
    run(at)
    assert "A4200\\_1" in "\n".join(element.value for element in at.markdown)


def test_status_page_shows_intact_lock(loaded_db: Database) -> None:
    at = new_app()
    run(at)
    at.switch_page("views/status.py")
    run(at)
    badges = [element.value for element in at.html if "inca-badge" in element.value]
    assert 'data-state="INTACT"' in badges[0]
    assert not at.error
    assert at.get("vega_lite_chart"), "the completeness chart is drawn"
    counts = at.table[0].value
    assert "amount_fact" in counts["테이블"].tolist() and set(counts["일치"]) == {"✓"}
    # what the lock covers, by name (the evidence snippets and names too, not only the amounts)
    scope = next(element.value for element in at.html if "잠금 범위" in element.value)
    for relation in ("amount_fact", "evidence_ref", "insurer", "coverage_canonical", "audit_runs", "condition_phrase"):
        assert relation in scope
    # the settings the server runs with, as the server itself reports them (issue 16.4)
    with psycopg.connect(db.psycopg_conninfo(loaded_db.admin), autocommit=True) as conn:
        shown = {name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]
                 for name in ("shared_buffers", "work_mem")}
    database = next(element.value for element in at.html if "서버 설정" in element.value)
    for name, value in shown.items():
        assert f"{name} {value}" in database


@pytest.fixture
def broken_db(fresh_loaded_db: Database) -> Database:
    with psycopg.connect(db.psycopg_conninfo(fresh_loaded_db.admin), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # superuser bypass of the lock triggers
        conn.execute("UPDATE amount_fact SET value_text = '1억원' WHERE amount_id = "
                     "(SELECT amount_id FROM amount_fact WHERE status = 'CONFIRMED' LIMIT 1)")
    return fresh_loaded_db


def test_broken_lock_is_shown_on_status_and_above_the_table(broken_db: Database) -> None:
    at = run(new_app())
    elements = list(walk(at.main))
    alert = next(i for i, element in enumerate(elements) if getattr(element, "type", None) == "error"
                 and "BROKEN" in element.value)
    table_at = next(i for i, element in enumerate(elements) if getattr(element, "type", None) == "html"
                    and "inca-compare" in element.value)
    assert alert < table_at
    at.switch_page("views/status.py")
    run(at)
    assert 'data-state="BROKEN"' in next(element.value for element in at.html if "inca-badge" in element.value)
    assert any("BROKEN" in error.value for error in at.error)


# --- failures the user can cause -------------------------------------------------------------------

@pytest.mark.parametrize("page", [None, "views/catalog.py", "views/status.py"])
def test_database_down_is_a_clear_error_on_every_page(page: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", DOWN_URL)
    monkeypatch.delenv("INCA_ADMIN_URL", raising=False)
    at = run(new_app())
    if page:
        at.switch_page(page)
        run(at)
    assert at.error, "an st.error explains the failure"
    message = at.error[0].value
    assert "데이터베이스에 연결할 수 없습니다" in message and "127" in message
    assert "s3cret-pw" not in message
    assert any(button.label == "다시 시도" for button in at.button)


def test_malformed_setting_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@h/db")
    at = run(new_app())
    assert "설정 값이 올바르지 않습니다" in at.error[0].value and "DATABASE\\_URL" in at.error[0].value


def test_retry_after_the_database_is_back(loaded_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    good = loaded_db.env()
    monkeypatch.setenv("DATABASE_URL", DOWN_URL)
    at = run(new_app())
    assert at.error
    monkeypatch.setenv("DATABASE_URL", good["DATABASE_URL"])
    next(button for button in at.button if button.label == "다시 시도").click()
    run(at)
    assert not at.error
    facts.assert_page_table(compare_table(at), all_product_keys(), DEFAULT_CODES)


def test_next_rerun_works_after_the_server_dropped_every_connection(loaded_db: Database, server: PgServer) -> None:
    at = run(new_app())
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:  # what a restart does to pooled connections
        # each backend gone (5 s at most) before the rerun, as a restarted server's are before it accepts again
        conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                     "pg_backend_pid()", (loaded_db.name,))
    at.multiselect(key="sel_codes").set_value(["A4102", "A4209"])  # not cached: needs a new connection
    run(at)
    assert not at.error
    facts.assert_page_table(compare_table(at), all_product_keys(), ["A4102", "A4209"])


def test_configured_empty_database_explains_how_to_load(fresh_db: Database) -> None:
    at = run(new_app())
    assert any("적재되지 않았습니다" in warning.value for warning in at.warning)
    assert any("python -m core load" in code.value for code in at.code)
    assert not [element for element in at.html if "inca-compare" in element.value]
    at.switch_page("views/status.py")
    run(at)
    assert 'data-state="UNLOADED"' in next(element.value for element in at.html if "inca-badge" in element.value)


def test_first_start_on_embedded_database_loads_once(server: PgServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    if os.environ.get("INCA_TEST_SERVER_URL", "").strip():
        pytest.skip("the first-start load applies to the embedded server only")
    from core import embedded

    # The session's embedded server is the one the app would start (INCA_DATA_DIR=.inca-test);
    # its project database is emptied here, and left empty again (as the server fixture made it).
    def empty_project_database() -> None:
        db.dispose_all()
        server.drop(embedded.DATABASE_NAME)
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{embedded.DATABASE_NAME}"')  # constant name

    empty_project_database()
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("INCA_ADMIN_URL", raising=False)
    try:
        at = run(new_app())
        states = [block for block in walk(at.main) if getattr(block, "type", None) == "status"]
        assert states and states[0].state == "complete" and "적재 완료" in states[0].label
        facts.assert_page_table(compare_table(at), all_product_keys(), DEFAULT_CODES)
        at2 = run(new_app())  # a second session: no second load
        assert not [block for block in walk(at2.main) if getattr(block, "type", None) == "status"]
    finally:
        empty_project_database()


# --- wording -------------------------------------------------------------------------------------

def test_ui_text_states_facts_only(loaded_db: Database) -> None:
    """Every generated text (titles, captions, labels, alerts) passes the forbidden-language check."""
    at = new_app()
    run(at)
    texts: list[str] = []
    for page in (None, "views/catalog.py", "views/status.py"):
        if page:
            at.switch_page(page)
            run(at)
        for element in walk(at.main):
            kind = getattr(element, "type", None)
            if kind in ("title", "subheader", "header", "caption", "markdown", "info", "warning", "error", "success"):
                texts.append(str(element.value))
            elif kind in ("expander", "status"):
                texts.append(element.label)
            elif kind in ("button", "multiselect", "text_input", "download_button"):
                texts += [element.label, getattr(element, "placeholder", "") or "", element.help or ""]
    texts += [element.value for element in at.html if "inca-legend" in element.value]
    violations = {text: forbidden_language.find_violations(text) for text in texts}
    assert {text: found for text, found in violations.items() if found} == {}


def test_dashboard_source_strings_state_facts_only() -> None:
    """Every Korean string literal in dashboard/ (labels, messages, captions) passes the same check."""
    found = {}
    for path in sorted((PROJECT / "dashboard").rglob("*.py")):
        for literal in re.findall(r'"([^"\n]*[가-힣][^"\n]*)"', path.read_text(encoding="utf-8")):
            if forbidden_language.find_violations(literal):
                found[f"{path.name}: {literal}"] = forbidden_language.find_violations(literal)
    assert found == {}


# --- 지급 조건 (condition slots) -----------------------------------------------------------------

def test_conditions_section_for_the_default_selection(loaded_db: Database) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert any(element.value == "지급 조건" for element in at.subheader)
    tables = [element.value for element in at.html if "<table class=\"inca-table inca-conditions\"" in element.value]
    products = [product.label for product in catalog.products()][:params.DEFAULT_PRODUCT_LIMIT]
    assert len(tables) == len(DEFAULT_CODES)
    for markup in tables:
        assert list(parse_table(markup).columns) == ["조건", *products]  # product columns in the chosen order
    page = "\n".join(tables)
    assert "원문에서 찾지 못함" in page and "없음<" not in page.replace("해당 담보 없음<", "")
    # independent read: a FOUND phrase of the default selection printed in its raw name, straight from SQL
    with psycopg.connect(loaded_db.admin.set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
        phrases = conn.execute(
            "SELECT cp.phrase, ci.coverage_name_raw FROM condition_phrase cp JOIN condition_slot cs USING (instance_id, slot) "
            "JOIN coverage_instance ci USING (instance_id) WHERE cs.status = 'FOUND' AND cp.source_kind = 'raw_name' "
            "AND ci.coverage_code = ANY(%s)", (DEFAULT_CODES,)).fetchall()
    assert phrases
    for phrase, raw_name in phrases:
        assert phrase in raw_name and f'<span class="text">{html.escape(phrase)}</span>' in page


def test_conditions_section_shows_one_page_of_many_coverages(loaded_db: Database,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Past INCA_CONDITIONS_PAGE_COVERAGES the section renders one page of the chosen coverages, in the
    chosen order, and every coverage is reached by page (issue 16: a rerun's HTML stays bounded)."""
    monkeypatch.setenv("INCA_CONDITIONS_PAGE_COVERAGES", "3")  # core.config re-reads a changed environment
    chosen = ["A4105", "A4101", "A4200_1", "A4104_1", "A4210", "A4102", "A4103"]  # not in code order
    at = run(new_app({"p": "kb_health_v1,samsung_health_v1", "c": ",".join(chosen)}))

    def shown() -> list[str]:  # the section's coverage headings, `**A4105 · 뇌졸중진단비**`
        headings = [element.value.replace("\\", "") for element in at.markdown]
        return [match.group(1) for heading in headings if (match := re.fullmatch(r"\*\*(\S+) · .*\*\*", heading))]

    tables = [element for element in at.html if "<table class=\"inca-table inca-conditions\"" in element.value]
    assert len(tables) == 3 and shown() == chosen[:3]
    seen = shown()
    for page in (1, 2):
        at.selectbox(key="conditions_page").set_value(page)
        run(at)
        seen += shown()
    assert seen == chosen  # every coverage once, in the chosen order


def test_conditions_sources_open_per_coverage_verbatim(loaded_db: Database) -> None:
    """The conditions table is read without the snippets its phrases cite (issue 16); 원문 보기 opens
    one coverage's cited texts verbatim (checked against the dataset files), and only that coverage's."""
    chosen = all_product_keys()
    with psycopg.connect(loaded_db.admin.set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
        cited = conn.execute(
            "SELECT ci.coverage_code, i.insurer_key, ci.coverage_name_raw, e.snippet FROM condition_phrase cp "
            "JOIN condition_slot cs USING (instance_id, slot) JOIN evidence_ref e ON e.evidence_id = cp.evidence_id "
            "JOIN coverage_instance ci ON ci.instance_id = cp.instance_id JOIN insurer i ON i.insurer_id = ci.insurer_id "
            "WHERE cs.status <> 'NOT_FOUND' AND ci.coverage_code = ANY(%s)", (DEFAULT_CODES,)).fetchall()
    by_code: dict[str, set[str]] = {}
    for code, insurer, raw_name, snippet in cited:
        assert snippet in facts.snippets_of(insurer, raw_name)  # the dataset's own text
        by_code.setdefault(code, set()).add(snippet)
    code = max(by_code, key=lambda c: len(by_code[c]))
    at = run(new_app({"p": ",".join(chosen), "c": ",".join(DEFAULT_CODES)}))
    page = "\n".join(element.value for element in at.html)
    assert not [text for texts in by_code.values() for text in texts if html.escape(text, quote=False) in page]
    at.button(key=f"conditions_sources_{code}").click()
    run(at)
    page = "\n".join(element.value for element in at.html)
    blocks = {html.unescape(block) for block in re.findall(r"<pre>(.*?)</pre>", page, re.S)}
    assert by_code[code] <= blocks  # every snippet a phrase of that coverage cites, verbatim
    others = {text for other, texts in by_code.items() if other != code for text in texts} - by_code[code]
    assert not others & blocks
