"""Static HTML tables: the comparison cannot be sorted by amount because nothing here can be sorted.

st.dataframe (Streamlit 1.67) lets every user sort any column by clicking its header and has no
option to turn that off (only column selection disables it, which changes the widget's meaning), so
tables that hold amounts are plain <table> elements passed to st.html. Every value goes through
html.escape; styling depends on the status only, never on the amount.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.catalog import Coverage
from core.comparison import NOT_AVAILABLE, NOT_AVAILABLE_TEXT, STATUS_LABELS, Cell, Comparison, Instance
from core.data_quality import MARKER, NOTICE
from dashboard.lib.text import esc

TABLE_CLASS = "inca-compare"

STYLE = """
<style>
[data-testid="stMainBlockContainer"] { padding-top: 3rem; }
.inca-wrap { overflow-x: auto; margin: 0.25rem 0 0.5rem 0; }
table.inca-table { border-collapse: collapse; width: 100%; font-size: 0.92rem; line-height: 1.45; }
table.inca-table th, table.inca-table td { border: 1px solid #e3e6ea; padding: 0.45rem 0.6rem; vertical-align: top;
  text-align: left; }
table.inca-table thead th { background: #f5f7fa; font-weight: 600; }
table.inca-table td.code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem;
  white-space: nowrap; color: #374151; }
table.inca-table td.name { min-width: 9rem; }
table.inca-fixed { table-layout: fixed; }
table.inca-fixed col.code { width: 6.5rem; }
table.inca-fixed col.name { width: 11rem; }
table.inca-table .inst { white-space: pre-wrap; }
table.inca-table .inst + .inst { margin-top: 0.3rem; padding-top: 0.3rem; border-top: 1px dashed #e3e6ea; }
table.inca-table .raw { color: #4b5563; font-size: 0.82rem; }
.s-UNCONFIRMED { color: #6b7280; font-style: italic; }
.s-NOT_AVAILABLE { color: #b3b8bf; text-decoration: line-through; }
.inca-flag { color: #b54708; font-size: 0.82rem; font-weight: 600; }
.inca-notice { font-size: 0.85rem; color: #b54708; margin: 0.2rem 0 0.5rem 0; }
.inca-legend { font-size: 0.85rem; color: #4b5563; }
.inca-legend span.item { margin-right: 1.4rem; }
.inca-products { font-size: 0.85rem; color: #4b5563; margin: 0; padding-left: 1.3rem; }
.inca-expl h4 { margin: 0.6rem 0 0.2rem 0; font-size: 1.05rem; }
.inca-expl ol { margin: 0 0 0.3rem 0; padding-left: 1.3rem; }
.inca-ev { margin-bottom: 0.9rem; }
.inca-ev .head { font-weight: 600; }
.inca-ev .src { font-size: 0.8rem; color: #4b5563; margin-top: 0.3rem; }
.inca-ev .src b { color: #1f2937; }
.inca-ev pre { white-space: pre-wrap; word-break: break-word; background: #f6f8fa; border: 1px solid #e3e6ea;
  border-radius: 4px; padding: 0.5rem 0.7rem; margin: 0.2rem 0 0.4rem 0; font-size: 0.85rem; }
.inca-ev details summary { cursor: pointer; font-size: 0.85rem; color: #374151; }
.inca-badge { display: inline-block; padding: 0.5rem 1.4rem; border-radius: 8px; font-size: 2rem; font-weight: 700;
  letter-spacing: 0.05em; color: #fff; }
.inca-badge.INTACT, .inca-badge.OK { background: #1f7a3a; }
.inca-badge.BROKEN, .inca-badge.FAILING, .inca-badge.DOWN { background: #b42318; }
.inca-badge.UNLOADED, .inca-badge.WARNING { background: #b54708; }
.inca-badge.UNKNOWN { background: #6b7280; }
.inca-badge.small { font-size: 1.1rem; padding: 0.25rem 0.8rem; }
.inca-kv { border-collapse: collapse; font-size: 0.9rem; }
.inca-kv th { text-align: left; color: #4b5563; font-weight: 500; padding: 0.2rem 1rem 0.2rem 0; vertical-align: top;
  white-space: nowrap; }
.inca-kv td { padding: 0.2rem 0; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem;
  word-break: break-all; }
</style>
"""


def _lines(cell: Cell) -> list[tuple[str, str, str | None]]:
    """(status, display text, raw name shown before it) per line; display_text joins exactly these."""
    if not cell.instances:
        return [(NOT_AVAILABLE, NOT_AVAILABLE_TEXT, None)]
    if len(cell.instances) == 1:
        only = cell.instances[0]
        return [(only.status, only.display_text, None)]
    return [(instance.status, instance.display_text, instance.raw_name) for instance in cell.instances]


def cell_html(cell: Cell, flagged: Sequence[bool] = ()) -> str:
    """`flagged[i]`: line i has evidence findings; it gets MARKER next to it, outside its value (unchanged)."""
    parts = []
    for number, (status, shown, raw_name) in enumerate(_lines(cell)):
        prefix = f'<span class="raw">{esc(raw_name)}</span>: ' if raw_name is not None else ""
        parts.append(f'<div class="inst s-{status}" data-status="{status}">{prefix}{esc(shown)}</div>')
        if number < len(flagged) and flagged[number]:
            parts.append(marker_html())
    return f'<td data-status="{esc(cell.status)}">{"".join(parts)}</td>'


def comparison_html(cmp: Comparison) -> str:
    """The side-by-side table: coverages in the chosen order, products as columns in the chosen order."""
    head = ['<th>코드</th>', '<th>담보명</th>']
    head += [f'<th data-product="{esc(p.key)}" title="{esc(p.name)}">{esc(p.label)}</th>' for p in cmp.products]
    rows = []
    for coverage, cells in cmp.rows():
        tds = [f'<td class="code">{esc(coverage.code)}</td>', f'<td class="name">{esc(coverage.name)}</td>']
        tds += [cell_html(cell, flags(cmp, cell)) for cell in cells]
        rows.append(f'<tr data-code="{esc(coverage.code)}">{"".join(tds)}</tr>')
    return fixed_table(TABLE_CLASS, head, rows) + notice_html(cmp)


# --- evidence findings (issue 13): a marker next to a flagged value, the fixed notice below the table --

def flags(cmp: Comparison, cell: Cell) -> list[bool]:
    """Per instance of the cell: does it have evidence findings?"""
    return [bool(cmp.finding_for(cell.coverage_code, cell.product_key, i.raw_name)) for i in cell.instances]


def marker_html() -> str:
    return f'<div class="inca-flag" data-flag="evidence">{esc(MARKER)}</div>'


def notice_html(cmp: Comparison) -> str:
    """The fixed sentence, once, when a shown cell is flagged (it states no amount of its own)."""
    shown = any(any(flags(cmp, cell)) for _, cells in cmp.rows() for cell in cells)
    return f'<div class="inca-notice" data-notice="evidence">{esc(MARKER)}: {esc(NOTICE)}</div>' if shown else ""


def fixed_table(css_class: str, head: Sequence[str], rows: Sequence[str]) -> str:
    """Code and name columns, then equal-width columns (fixed layout: no product column stands out)."""
    columns = '<col class="code"><col class="name">' + "<col>" * (len(head) - 2)
    return (f'<div class="inca-wrap"><table class="inca-table inca-fixed {esc(css_class)}"><colgroup>{columns}</colgroup>'
            f'<thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def static_table_html(columns: Sequence[str], rows: Sequence[Sequence[tuple[str, str | None]]],
                      css_class: str = "") -> str:
    """A plain table; each cell is (text, status or None) so amounts get the same status styling."""
    head = "".join(f"<th>{esc(column)}</th>" for column in columns)
    body = []
    for row in rows:
        tds = []
        for value, status in row:
            if status is None:
                tds.append(f'<td><div class="inst">{esc(value)}</div></td>')
            else:
                tds.append(f'<td data-status="{esc(status)}"><div class="inst s-{esc(status)}">{esc(value)}</div></td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    return (f'<div class="inca-wrap"><table class="inca-table {esc(css_class)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def legend_html() -> str:
    return ('<div class="inca-legend">'
            '<span class="item">금액은 가입설계서에 적힌 그대로입니다.</span>'
            '<span class="item"><span class="s-UNCONFIRMED">금액 미기재</span>: '
            '담보는 있으나 가입설계서에 금액이 적혀 있지 않음</span>'
            '<span class="item"><span class="s-NOT_AVAILABLE">해당 담보 없음</span>: 상품에 이 담보가 없음</span></div>')


def products_html(lines: Sequence[str]) -> str:
    return '<ol class="inca-products">' + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ol>"


def explanations_html(coverage: Coverage, sentences: Sequence[str]) -> str:
    items = "".join(f"<li>{esc(sentence)}</li>" for sentence in sentences)
    return (f'<div class="inca-expl" data-code="{esc(coverage.code)}"><h4>{esc(coverage.code)} · {esc(coverage.name)}</h4>'
            f"<ol>{items}</ol></div>")


def _snippet(label: str, source: str, snippet: str) -> str:
    return f'<div class="src"><b>{esc(label)}</b> · {esc(source)}</div><pre>{esc(snippet)}</pre>'


def _instance_evidence(insurer: str, instance: Instance) -> str:
    parts = []
    if instance.proposal_evidence is not None:
        evidence = instance.proposal_evidence
        parts.append(_snippet("원문", evidence.source(insurer), evidence.snippet))
    else:
        parts.append('<div class="src">가입설계서 원문 없음</div>')
    if instance.supporting_evidence:
        docs = " · ".join(dict.fromkeys(evidence.doc_type for evidence in instance.supporting_evidence))
        inner = "".join(_snippet("원문", e.source(insurer), e.snippet) for e in instance.supporting_evidence)
        parts.append(f"<details><summary>다른 문서의 원문 {len(instance.supporting_evidence)}건 ({esc(docs)})</summary>"
                     f"{inner}</details>")
    return "".join(parts)


def evidence_html(cmp: Comparison, coverage: Coverage) -> str:
    """Every snippet behind one row, verbatim in <pre>, product by product in the chosen order."""
    blocks = []
    for product in cmp.products:
        cell = cmp.cell(coverage.code, product.key)
        if not cell.instances:
            blocks.append(f'<div class="inca-ev"><div class="head">{esc(product.label)} · '
                          f'<span class="s-NOT_AVAILABLE">{esc(NOT_AVAILABLE_TEXT)}</span></div></div>')
            continue
        for instance in cell.instances:
            head = (f'{esc(product.label)} · {esc(instance.raw_name)} · '
                    f'<span class="s-{esc(instance.status)}">{esc(instance.display_text)}</span>')
            if cmp.finding_for(coverage.code, product.key, instance.raw_name):
                head += f' <span class="inca-flag">{esc(MARKER)}</span> <span class="inca-notice">{esc(NOTICE)}</span>'
            blocks.append(f'<div class="inca-ev" data-product="{esc(product.key)}"><div class="head">{head}</div>'
                          f"{_instance_evidence(product.insurer_name, instance)}</div>")
    return "".join(blocks)


def badge_html(state: str, text: str | None = None, small: bool = False) -> str:
    size = " small" if small else ""
    return f'<div><span class="inca-badge {esc(state)}{size}" data-state="{esc(state)}">{esc(text or state)}</span></div>'


def key_values_html(pairs: Sequence[tuple[str, object]]) -> str:
    rows = "".join(f"<tr><th>{esc(key)}</th><td>{esc('—' if value is None else value)}</td></tr>" for key, value in pairs)
    return f'<table class="inca-kv">{rows}</table>'


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)
