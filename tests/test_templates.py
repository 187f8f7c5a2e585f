"""The dashboard's HTML templates, rendered as pure functions (no database, no Streamlit).

Every value a page shows reaches the HTML through an autoescaped Jinja2 template: markup in a raw
name, an amount or a snippet must arrive as text, and the product columns keep the chosen order.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import jinja2
import pandas as pd
import pytest

from core.catalog import Coverage, Product
from core.comparison import CONFIRMED, NOT_AVAILABLE, UNCONFIRMED, AuditLineage, Cell, Comparison, Evidence, Instance
from dashboard.lib import catalog_view, table

HOSTILE = "<script>alert('x')</script> & \"q\" 'a'"
ESCAPED = html.escape(HOSTILE, quote=True).replace("&#x27;", "&#39;").replace("&quot;", "&#34;")


class Collect(HTMLParser):
    """Start tags and text nodes: a <script> element would show up as a start tag."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [value or "" for _, value in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(markup: str) -> Collect:
    collector = Collect()
    collector.feed(markup)
    collector.close()
    return collector


def product(key: str, label: str) -> Product:
    return Product(key=key, name=f"{label} 상품 {HOSTILE}", insurer_key=key.split("_")[0], insurer_name=label,
                   product_code=None, version=None, effective_date=None, variants=(), label=label)


def instance(raw_name: str, status: str, value_text: str | None, snippet: str) -> Instance:
    return Instance(raw_name, status, value_text, "가입설계서", "PRIMARY", Evidence("가입설계서", 3, snippet),
                    (Evidence("약관", 9, snippet), Evidence("약관", 10, "둘째 원문"), Evidence("상품요약서", None, snippet)))


# products deliberately not in key or label order: the table must keep this order
PRODUCTS = (product("zeta_health_v1", "제타"), product("alpha_health_v1", "알파"), product("mid_health_v1", "중간"))
COVERAGES = (Coverage("A4210", f"유사암 {HOSTILE}", "암", ()), Coverage("A4200_1", "암진단비", "암", ()))


def hostile_comparison() -> Comparison:
    cells = {
        ("A4210", "zeta_health_v1"): Cell("A4210", "zeta_health_v1", (instance(f"raw {HOSTILE}", CONFIRMED, f"600만원 {HOSTILE}",
                                                                             f"원문\n{HOSTILE}\n  600만원"),)),
        ("A4210", "alpha_health_v1"): Cell("A4210", "alpha_health_v1", (
            instance(f"갑 {HOSTILE}", CONFIRMED, "1,000만원", HOSTILE), instance("을 & 병", UNCONFIRMED, None, HOSTILE))),
        ("A4210", "mid_health_v1"): Cell("A4210", "mid_health_v1", ()),
        ("A4200_1", "zeta_health_v1"): Cell("A4200_1", "zeta_health_v1", (instance("암", CONFIRMED, "3천만원", "3천만원"),)),
        ("A4200_1", "alpha_health_v1"): Cell("A4200_1", "alpha_health_v1", ()),
        ("A4200_1", "mid_health_v1"): Cell("A4200_1", "mid_health_v1", (instance("암", CONFIRMED, "3,000만원", "x"),)),
    }
    audit = AuditLineage("run", "PASS", "freeze", "commit", "INTACT", True, None, "ok")
    return Comparison(PRODUCTS, COVERAGES, cells, {}, audit)


def assert_no_markup_from_values(markup: str) -> None:
    found = parsed(markup)
    assert "script" not in found.tags
    assert HOSTILE not in markup  # never verbatim: only in its escaped form
    assert ESCAPED in markup
    assert any(HOSTILE in text for text in found.text + found.attributes)  # and it reads back as the text itself


def test_comparison_table_escapes_every_value_and_keeps_the_product_order() -> None:
    markup = table.comparison_html(hostile_comparison())
    assert_no_markup_from_values(markup)
    assert re.findall(r'<th data-product="([^"]+)"', markup) == ["zeta_health_v1", "alpha_health_v1", "mid_health_v1"]
    header = re.findall(r"<th[^>]*>([^<]*)</th>", markup)
    assert header == ["코드", "담보명", "제타", "알파", "중간"]
    # each row: code, name, then one cell per product in the same order, styled by status only
    first = re.search(r'<tr data-code="A4210">(.*?)</tr>', markup, re.S).group(1)
    assert re.findall(r'<td data-status="([A-Z_]+)"', first) == [CONFIRMED, "MIXED", NOT_AVAILABLE]
    assert f"600만원 {ESCAPED}" in first and f'<span class="raw">갑 {ESCAPED}</span>: 1,000만원' in first
    assert "을 &amp; 병</span>: 금액 미기재" in first


def test_evidence_snippets_are_escaped_verbatim() -> None:
    cmp = hostile_comparison()
    markup = table.evidence_html(cmp, COVERAGES[0])
    assert_no_markup_from_values(markup)
    assert f"<pre>원문\n{ESCAPED}\n  600만원</pre>" in markup  # line breaks and spaces kept
    assert re.findall(r'data-product="([^"]+)"', markup) == ["zeta_health_v1", "alpha_health_v1", "alpha_health_v1"]
    assert "다른 문서의 원문 3건 (약관 · 상품요약서)" in markup


def test_other_fragments_escape_their_values() -> None:
    fragments = [
        table.explanations_html(COVERAGES[0], [f"문장 {HOSTILE}"]),
        table.products_html([f"제타 — {HOSTILE}"]),
        table.static_table_html([f"열 {HOSTILE}"], [[(f"이름 {HOSTILE}", None)], [(HOSTILE, UNCONFIRMED)]]),
        table.badge_html("OK", HOSTILE),
        table.key_values_html([(HOSTILE, HOSTILE), ("없음", None)]),
    ]
    for markup in fragments:
        assert_no_markup_from_values(markup)
    assert "<td>—</td>" in fragments[-1]


def test_catalog_escapes_raw_names_and_keeps_the_insurer_order() -> None:
    frame = pd.DataFrame({
        "coverage_code": ["A4210", "A4210", "A4200_1"], "canonical_name": [f"유사암 {HOSTILE}", f"유사암 {HOSTILE}", "암"],
        "category": ["암", "암", "암"], "insurer": ["제타", "알파", None],
        "coverage_name_raw": [f"raw {HOSTILE}", "을", None], "status": [CONFIRMED, UNCONFIRMED, None],
        "products": [2, 1, None]})
    markup = catalog_view.catalog_html(frame, ["제타", "알파"])
    assert_no_markup_from_values(markup)
    assert re.findall(r"<th>([^<]*)</th>", markup) == ["코드", "표준 담보명", "보험사 수", "제타", "알파"]
    assert re.findall(r'<tr data-code="([^"]+)"', markup) == ["A4200_1", "A4210"]  # code order
    assert 'title="확인 · 상품 2개"' in markup
    # how many insurers carry each code (a count of insurers, never an amount), in code order
    assert re.findall(r'<td class="carried">([^<]*)</td>', markup) == ["0 / 2", "2 / 2"]


def test_templates_refuse_a_misspelt_variable() -> None:
    with pytest.raises(jinja2.UndefinedError):
        table.render("badge.html.j2", state="OK", small=False)  # `text` missing


def test_stylesheet_is_loaded_once_from_its_file() -> None:
    assert table.STYLE.startswith("<style>") and table.STYLE.rstrip().endswith("</style>")
    assert table.STYLESHEET.read_text(encoding="utf-8") in table.STYLE
    assert ".s-NOT_AVAILABLE" in table.STYLE and "inca-badge" in table.STYLE


def test_no_escape_can_be_switched_off_or_bypassed() -> None:
    """Templates never mark a value safe or turn autoescaping off, and no dashboard module writes tags
    into a string itself (the only HTML in Python is the stylesheet wrapper)."""
    for path in table.TEMPLATES.glob("*.j2"):
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"\|\s*safe\b|autoescape\s+false|Markup", source), path.name
    for path in (table.TEMPLATES.parent / "lib").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        tags = re.findall(r"""["']<(?!style>)/?[a-z][a-z0-9]*[\s>]""", source)
        assert not tags, (path.name, tags)
