"""The catalog page: canonical coverages with each chosen insurer's own name(s) and their status.

Bounded per rerun at any market size (issue 16): one page of codes (INCA_CATALOG_PAGE_ROWS) and the
insurer columns the analyst chose, in the chosen order (at most INCA_CATALOG_MAX_INSURERS); every
code stays reachable through the page number and the search (code, canonical name or any insurer's
raw name), and a count column says how many insurers carry each code. The view lives in the URL
(dashboard.lib.catalog_params), so it can be shared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import streamlit as st

from core import catalog, config, selection
from core.comparison import NOT_AVAILABLE, NOT_AVAILABLE_TEXT
from dashboard.lib import catalog_index, catalog_params, data, search_box, table
from dashboard.lib.catalog_index import CatalogRow
from dashboard.lib.text import md

SEARCH_KEY, CATEGORIES_KEY, INSURERS_KEY, PAGE_KEY = ("catalog_search", "catalog_categories", "catalog_insurers",
                                                      "catalog_page")
STORED_KEY = "catalog_view"  # survives page switches (widget state does not)
#: how many insurers the "matched in a column you did not choose" note names before "외 n곳"
HIDDEN_NAMED = 10


def filter_table(frame: pd.DataFrame, query: str, categories: Sequence[str]) -> pd.DataFrame:
    """Rows of the canonical coverages whose code, canonical name or any raw name contains `query`
    (spaces and case ignored), limited to `categories` when some are chosen (notebooks; the page
    searches its cached index, catalog_index.CatalogIndex.search, by the same rule)."""
    codes = set(catalog_index.build(frame).search(query, categories).codes)
    return frame[frame["coverage_code"].isin(codes)]


def catalog_rows(frame: pd.DataFrame, insurers: Sequence[str]) -> list[CatalogRow]:
    """One row per canonical coverage (category then code order), one cell per insurer (given order)."""
    index = catalog_index.build(frame)
    return index.rows(index.codes, insurers)


def rows_html(rows: list[CatalogRow], insurers: Sequence[str]) -> str:
    """The catalog table of `rows`, one column per insurer name (given order)."""
    return table.render("catalog.html.j2", css_class="inca-catalog", columns=len(insurers), insurers=insurers,
                        rows=rows, not_available=NOT_AVAILABLE, not_available_text=NOT_AVAILABLE_TEXT)


def catalog_html(frame: pd.DataFrame, insurers: Sequence[str]) -> str:
    """The catalog table of `frame`'s codes, one column per insurer (key order)."""
    return rows_html(catalog_rows(frame, insurers), insurers)


def semantic_search_slot() -> None:
    """담보 검색 (pgvector): canonical codes whose stored names are nearest to what the analyst typed."""
    with st.expander("담보 검색 · 보험사 담보명이나 평소 쓰는 말로 표준 코드 찾기", expanded=False):
        search_box.render("catalog_search")


def _first_page() -> None:
    """A changed filter starts again at page 1 (a callback: widget state may change only before the rerun)."""
    st.session_state[PAGE_KEY] = 1


def _init_widgets(index: catalog_index.CatalogIndex, present: Sequence[str], max_insurers: int) -> bool:
    """On a session's first run of the page (or back from another page): URL, then the view kept from
    earlier, then the defaults. True when it ran (the URL's page number is then checked against the pages)."""
    if SEARCH_KEY in st.session_state and PAGE_KEY in st.session_state:
        return False
    parsed = catalog_params.parse(st.query_params.get_all, present, index.insurers, max_insurers)
    for problem in parsed.problems:  # URL values are user input: escaped, shown as plain text
        st.warning(md(problem), icon=":material/warning:")
    keys = [key for key, _ in index.insurers]
    stored = st.session_state.get(STORED_KEY)
    if stored is not None:  # kept from another database (settings changed): only what still exists
        stored = catalog_params.View(stored.query, tuple(c for c in stored.categories if c in present),
                                     tuple(k for k in stored.insurers if k in keys)[:max_insurers], stored.page)
    start = catalog_params.initial(parsed, stored, keys[:max_insurers])
    st.session_state[SEARCH_KEY] = start.query
    st.session_state[CATEGORIES_KEY] = list(start.categories)
    st.session_state[INSURERS_KEY] = list(start.insurers)
    st.session_state[PAGE_KEY] = start.page
    return True


def _hidden_note(found: catalog_index.Found, chosen: Sequence[str], names: dict[str, str]) -> str | None:
    """Insurers whose own name matched the search but are not columns: said, so no match is silent."""
    shown = {names[key] for key in chosen}
    hidden = sorted({insurer for insurers in found.by_raw_name.values() for insurer in insurers} - shown)
    if not hidden:
        return None
    more = f" 외 {len(hidden) - HIDDEN_NAMED}곳" if len(hidden) > HIDDEN_NAMED else ""
    return ("검색어가 담긴 담보명이 열로 고르지 않은 보험사에도 있습니다: "
            + ", ".join(hidden[:HIDDEN_NAMED]) + more + " (보험사 열에 추가하면 보입니다)")


def render() -> None:
    st.title("담보 목록")
    st.html(table.STYLE)
    settings = config.settings()
    page_rows, max_insurers = settings.catalog_page_rows, settings.catalog_max_insurers
    key = data.db_key()
    index = data.coverage_index(key)
    names = dict(index.insurers)
    found_categories = set(index.category.values())
    present = [c for c in catalog.CATEGORY_ORDER if c in found_categories]
    from_url = _init_widgets(index, present, max_insurers)
    semantic_search_slot()
    left, middle, right = st.columns([2, 1, 2], gap="medium")
    query = left.text_input("검색", key=SEARCH_KEY, on_change=_first_page, max_chars=selection.MAX_VALUE_LENGTH,
                            placeholder="코드, 표준 담보명 또는 보험사 담보명 (예: 유사암, A4210, 뇌졸중)")
    categories = middle.multiselect("분류", present, key=CATEGORIES_KEY, on_change=_first_page,
                                    placeholder="전체 분류")
    chosen = right.multiselect(f"보험사 열 (고른 순서대로, {max_insurers}곳까지)", list(names), key=INSURERS_KEY,
                               format_func=names.__getitem__, max_selections=max_insurers, placeholder="보험사 선택")
    found = data.catalog_search(key, query, tuple(categories))
    pages = max(1, math.ceil(len(found.codes) / page_rows))
    if st.session_state[PAGE_KEY] > pages:  # before the widget exists: the URL's or a stale page number
        if from_url:
            st.warning(f"URL의 {st.session_state[PAGE_KEY]}페이지는 없어서 마지막 페이지({pages})를 보여 줍니다.",
                       icon=":material/warning:")
        st.session_state[PAGE_KEY] = pages
    page_column, count_column = st.columns([1, 5], vertical_alignment="bottom")
    page = int(page_column.number_input(f"페이지 (전체 {pages}쪽)", min_value=1, max_value=pages, step=1,
                                        key=PAGE_KEY))
    view = catalog_params.View(query, tuple(categories), tuple(chosen), page)
    st.session_state[STORED_KEY] = view
    if not catalog_params.same(st.query_params.get_all, view):
        st.query_params.from_dict(view.to_params())
    codes = found.codes[(page - 1) * page_rows:page * page_rows]
    first = (page - 1) * page_rows + 1 if codes else 0
    count_column.caption(
        f"표준 담보 {first}–{first + len(codes) - 1 if codes else 0}번째 / 검색 결과 {len(found.codes)}개 / "
        f"전체 {len(index.codes)}개 · 보험사 열 {len(chosen)} / {len(names)}곳 · 칸마다 보험사 자신의 담보명 "
        "(회색 기울임: 가입설계서에 금액 미기재, 취소선: 해당 담보 없음) · 보험사 수: 그 담보를 가진 보험사 / 전체")
    note = _hidden_note(found, chosen, names) if query.strip() else None
    if note:
        st.caption(md(note))
    if not codes:
        st.info("검색 조건에 맞는 담보가 없습니다.")
        return
    if not chosen:
        st.info("보험사 열을 고르면 보험사마다 자신의 담보명이 보입니다.", icon=":material/info:")
    columns = [names[key] for key in chosen]
    start = 0
    while start < len(codes):  # the page's codes are in category order: one table per category
        category = index.category[codes[start]]
        end = start
        while end < len(codes) and index.category[codes[end]] == category:
            end += 1
        st.subheader(category)
        st.html(rows_html(index.rows(codes[start:end], columns), columns))
        start = end
