"""The compare page's 지급 조건 section: each chosen coverage's condition slots, products as columns.

Rendered with small autoescaped Jinja2 templates (dashboard/lib/templates/conditions*.html.j2).
Phrases are shown exactly as stored with their source; statuses are styled by status only (CONFLICT
marked 문서 상충 with every phrase, NOT_FOUND muted 원문에서 찾지 못함). The 원문 opens in a dialog per
coverage, so closed evidence costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import streamlit as st

from core import condition_slots, config
from core.catalog import Coverage
from core.comparison import Comparison
from core.conditions import LABELS, SLOTS
from dashboard.lib import data, exports
from dashboard.lib.text import md

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                          autoescape=True, undefined=jinja2.StrictUndefined)

STYLE = """
<style>
table.inca-conditions .phrase + .phrase { margin-top: 0.2rem; }
table.inca-conditions .src { font-size: 0.78rem; color: #4b5563; }
.s-NOT_FOUND, .s-NOT_STORED { color: #9ca3af; font-style: italic; }
.s-CONFLICT-mark { display: inline-block; font-size: 0.78rem; font-weight: 600; color: #b54708;
  border: 1px solid #b54708; border-radius: 3px; padding: 0 0.3rem; margin-bottom: 0.2rem; }
.inca-cond-sentence { margin: 0.1rem 0; font-size: 0.9rem; }
</style>
"""


_SLOT_ROWS = [(slot, LABELS[slot]) for slot in SLOTS]


def conditions_html(coverage: Coverage, cells: Sequence[condition_slots.CellConditions]) -> str:
    # each instance's slots by name, looked up per row (a filter over its slots per row and product
    # was most of the section's rendering time)
    columns = [(cell, [(instance, {slot.slot: slot for slot in instance.slots}) for instance in cell.instances])
               for cell in cells]
    return _ENV.get_template("conditions.html.j2").render(
        coverage=coverage, columns=columns, slots=_SLOT_ROWS,
        not_available=condition_slots.NOT_AVAILABLE_TEXT, not_stored=condition_slots.NOT_STORED_TEXT)


def sources_html(coverage: Coverage, cells: Sequence[condition_slots.CellConditions]) -> str:
    """The fixed sentences and every cited text (raw name or snippet) once, in product order."""
    sentences: list[str] = []
    sources: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for cell in cells:
        for instance in cell.instances:
            subject = instance.raw_name if len(cell.instances) > 1 else coverage.name
            for slot in instance.slots:
                sentences.append(condition_slots.sentence(cell.product.insurer_name, subject, slot))
                for phrase in slot.phrases:
                    key = (cell.product.key, phrase.source, phrase.source_text)
                    if key not in seen:
                        seen.add(key)
                        sources.append({"insurer": cell.product.insurer_name, "label": phrase.source,
                                        "raw_name": instance.raw_name, "text": phrase.source_text})
    return _ENV.get_template("conditions_sources.html.j2").render(sentences=sentences, sources=sources)


@st.dialog("지급 조건 원문", width="large")
def _sources_dialog(coverage: Coverage, cells: Sequence[condition_slots.CellConditions]) -> None:
    st.caption(f"{coverage.code} · {coverage.name} — 설명은 정해진 문장이고, 원문은 문서 그대로입니다.")
    st.html(sources_html(coverage, cells))


#: session key: which page of the chosen coverages the 지급 조건 section shows
PAGE_KEY = "conditions_page"


def pages(codes: Sequence[str], size: int) -> list[tuple[str, ...]]:
    """The chosen codes in the chosen order, `size` at a time."""
    return [tuple(codes[start:start + size]) for start in range(0, len(codes), size)]


def _shown_codes(cmp: Comparison) -> tuple[str, ...]:
    """The coverages whose conditions this rerun renders: all of them while they fit in
    INCA_CONDITIONS_PAGE_COVERAGES, else one page chosen here (issue 16: at 10 x 50 the whole section
    was 840 KB of HTML per rerun). The exports keep every coverage."""
    chunks = pages([coverage.code for coverage in cmp.coverages], config.settings().conditions_page_coverages)
    if len(chunks) <= 1:
        return chunks[0] if chunks else ()
    if not 0 <= (st.session_state.get(PAGE_KEY) or 0) < len(chunks):  # fewer coverages chosen since
        st.session_state[PAGE_KEY] = 0
    total = len(cmp.coverages)

    def label(index: int) -> str:
        first = index * len(chunks[0]) + 1
        return f"{first}–{first + len(chunks[index]) - 1}번째 담보 ({chunks[index][0]} … {chunks[index][-1]})"

    index = st.selectbox(f"선택한 담보 {total}개 중 조건을 볼 담보 (선택한 순서대로)", range(len(chunks)), key=PAGE_KEY,
                         format_func=label)
    return chunks[index]


def conditions_section(cmp: Comparison, lock: str = "") -> None:
    """The table per coverage from the slots read with the cells (a phrase and its source label); the
    texts they cite are read for one coverage when its 원문 opens (issue 16: closed 원문 costs nothing)."""
    head, csv_col = st.columns([7, 1], vertical_alignment="bottom")
    head.subheader("지급 조건")
    csv_col.download_button("조건 CSV", lambda: exports.csv_bytes(cmp.conditions_frame()),
                            file_name=f"{exports.file_stem(cmp)}_conditions.csv", mime=exports.CSV_MIME,
                            icon=":material/download:", key="download_conditions_csv", on_click="ignore",
                            help="지급 조건 표 (담보 × 조건 × 상품 한 줄씩, 문구는 원문 그대로)")
    st.caption("대기기간·면책, 감액, 지급 횟수·한도, 갱신, 가입나이를 문서에 적힌 그대로 보여 줍니다. "
               "원문에서 찾지 못한 조건은 조건이 없다는 뜻이 아닙니다.")
    st.html(STYLE)
    for coverage, cells in cmp.conditions(sources=False, codes=_shown_codes(cmp)):
        st.markdown(f"**{md(coverage.code)} · {md(coverage.name)}**")
        st.html(conditions_html(coverage, cells))
        if st.button("원문 보기", key=f"conditions_sources_{coverage.code}", icon=":material/description:"):
            _sources_dialog(coverage, data.condition_sources(data.db_key(), tuple(p.key for p in cmp.products),
                                                             coverage.code, lock, cmp))
