"""The catalog page: every canonical coverage with each insurer's own name(s) and their status."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import pandas as pd
import streamlit as st

from core import catalog
from core.comparison import NOT_AVAILABLE, NOT_AVAILABLE_TEXT
from dashboard.lib import data, search_box, table

SEARCH_KEY, CATEGORIES_KEY = "catalog_search", "catalog_categories"
_SPACE = re.compile(r"\s+")


def _squash(value: object) -> str:
    return _SPACE.sub("", str(value)).lower()


def filter_table(frame: pd.DataFrame, query: str, categories: Sequence[str]) -> pd.DataFrame:
    """Rows of the canonical coverages whose code, canonical name or any raw name contains `query`
    (spaces and case ignored), limited to `categories` when some are chosen."""
    if categories:
        frame = frame[frame["category"].isin(list(categories))]
    needle = _squash(query)
    if not needle:
        return frame

    def found(column: str) -> pd.Series:
        # Each distinct value squashed once: ~66,000 rows at a million facts, far fewer distinct names.
        values = frame[column].dropna().unique()
        return frame[column].isin([value for value in values if needle in _squash(value)])

    # A needle has no whitespace, so it never spans two fields: testing them one by one is the same.
    matched = found("coverage_code") | found("canonical_name") | found("coverage_name_raw")
    return frame[frame["coverage_code"].isin(set(frame.loc[matched, "coverage_code"]))]


def _title(status: str, products: object) -> str:
    # The summary lists each name once per status: say how many products it stands for (a count of
    # products, never an amount).
    label = table.status_label(status)
    count = 0 if pd.isna(products) else int(products)  # numpy or Python int from the frame
    return f"{label} · 상품 {count}개" if count > 1 else label


# Plain tuples, unpacked by the template's loops (Jinja's attribute lookups cost a call per value).
Name = tuple[str, str, str]  # one insurer's own name for a code: status (styling), title (what it stands for), name
CatalogRow = tuple[str, str, list[list[Name]]]  # code, canonical name, names per insurer (empty: none carries it)


def catalog_rows(frame: pd.DataFrame, insurers: Sequence[str]) -> list[CatalogRow]:
    """One row per canonical coverage (code order), one cell per insurer (given order) with its raw names."""
    # One pass over plain column lists into (code, insurer) cells, rather than a boolean mask per code and
    # insurer (15,000 masks for 300 codes x 50 insurers at market scale) or itertuples over Arrow-backed
    # strings; rows keep the frame's order. Names repeat (once per status), so each line is built once.
    canonical: dict[str, str] = {}
    cells: dict[tuple[str, str], list[Name]] = defaultdict(list)
    built: dict[tuple[object, ...], Name] = {}
    columns = [frame[name].tolist() for name in ("coverage_code", "canonical_name", "insurer", "coverage_name_raw",
                                                 "status", "products")]
    for code, name, insurer, raw_name, status, products in zip(*columns, strict=True):
        canonical.setdefault(code, name)
        if not isinstance(insurer, str):  # NA: a code no product carries
            continue
        key = (raw_name, status, products)
        line = built.get(key)
        if line is None:
            line = built[key] = (status, _title(status, products), raw_name)
        cells[(code, insurer)].append(line)
    return [(code, canonical[code], [cells.get((code, insurer), []) for insurer in insurers])
            for code in sorted(canonical)]


def catalog_html(frame: pd.DataFrame, insurers: Sequence[str]) -> str:
    """The catalog table of `frame`'s codes, one column per insurer (key order)."""
    return table.render("catalog.html.j2", css_class="inca-catalog", columns=len(insurers), insurers=insurers,
                        rows=catalog_rows(frame, insurers), not_available=NOT_AVAILABLE,
                        not_available_text=NOT_AVAILABLE_TEXT)


def semantic_search_slot() -> None:
    """담보 검색 (pgvector): canonical codes whose stored names are nearest to what the analyst typed."""
    with st.expander("담보 검색 · 보험사 담보명이나 평소 쓰는 말로 표준 코드 찾기", expanded=False):
        search_box.render("catalog_search")


def render() -> None:
    st.title("담보 목록")
    st.html(table.STYLE)
    key = data.db_key()
    frame = data.coverage_table(key)
    insurers = list(dict.fromkeys(product.insurer_name for product in data.products(key)))
    semantic_search_slot()
    left, right = st.columns([2, 1], gap="large")
    query = left.text_input("검색", key=SEARCH_KEY,
                            placeholder="코드, 표준 담보명 또는 보험사 담보명 (예: 유사암, A4210, 뇌졸중)")
    found = set(frame["category"].unique())  # once: rebuilt per category it cost ~1 s a rerun at market scale
    present = [c for c in catalog.CATEGORY_ORDER if c in found]
    categories = right.multiselect("분류", present, key=CATEGORIES_KEY, placeholder="전체 분류")
    shown = filter_table(frame, query, categories)
    st.caption(f"표준 담보 {shown['coverage_code'].nunique()}개 / 전체 {frame['coverage_code'].nunique()}개 · "
               "칸마다 보험사 자신의 담보명 (회색 기울임: 가입설계서에 금액 미기재, 취소선: 해당 담보 없음)")
    if shown.empty:
        st.info("검색 조건에 맞는 담보가 없습니다.")
        return
    for category in catalog.CATEGORY_ORDER:
        rows = shown[shown["category"] == category]
        if rows.empty:
            continue
        st.subheader(f"{category} · {rows['coverage_code'].nunique()}개")
        st.html(catalog_html(rows, insurers))
