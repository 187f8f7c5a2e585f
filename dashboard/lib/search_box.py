"""담보 검색: list canonical codes for an insurer's or analyst's own coverage name (core.search).

Shared by the compare page (each suggestion can be added to the rows) and the catalog page (it
narrows the table). Suggestions are names and codes only, never amounts, and never change a mapping.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core import search
from core.errors import IncaError
from dashboard.lib import data
from dashboard.lib.text import md

PLACEHOLDER = "보험사 담보명이나 평소 쓰는 말 (예: 암 진단금, 뇌졸중 진단비, 유사암 수술)"


@st.cache_data(ttl=data.TTL, show_spinner=False, max_entries=256)
def _find(key: str, query: str) -> list[search.CoverageMatch]:
    return search.find_coverages(query, k=5)


def suggestions(key: str, *, label: str = "담보 검색") -> list[search.CoverageMatch]:
    """The text box and its suggestions (empty when nothing was typed or the text has nothing to match)."""
    query = st.text_input(label, key=f"{key}_query", placeholder=PLACEHOLDER, max_chars=search.MAX_QUERY_CHARS)
    if not query.strip():
        return []
    try:
        return _find(data.db_key(), query)
    except IncaError as error:  # nothing to match in the text, an empty index, a database hiccup: say why
        st.info(md(str(error)), icon=":material/info:")
        return []


def _source(match: search.CoverageMatch) -> str:
    if match.matched_insurer_name:
        return f"{match.matched_insurer_name}의 담보명 「{match.matched_alias}」"
    return f"표준 담보명 「{match.matched_alias}」"


def render(key: str, on_add: Callable[[str], None] | None = None, chosen: frozenset[str] = frozenset()) -> None:
    """Suggestions as rows: code · canonical name · which stored name matched (+ an add button)."""
    matches = suggestions(key)
    for index, match in enumerate(matches):
        text_column, button_column = st.columns([5, 1], vertical_alignment="center")
        text_column.markdown(f"`{md(match.code)}` **{md(match.name)}** · {md(match.category)}  \n"
                             f":gray[{md(_source(match))} · 이름 유사도 {match.score:.2f}]")
        if on_add is not None:
            button_column.button("추가됨" if match.code in chosen else "행에 추가", key=f"{key}_add_{index}",
                                 on_click=on_add, args=(match.code,), disabled=match.code in chosen)
    if matches:
        st.caption("검색 결과는 이름이 비슷한 표준 담보 목록이며, 담보 연결은 바뀌지 않습니다.")
