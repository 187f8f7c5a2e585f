"""Static HTML tables: the comparison cannot be sorted by amount because nothing here can be sorted.

st.dataframe (Streamlit 1.67) lets every user sort any column by clicking its header and has no
option to turn that off (only column selection disables it, which changes the widget's meaning), so
tables that hold amounts are plain <table> elements passed to st.html. They come from the Jinja2
templates in dashboard/templates, rendered with autoescaping on: every value is escaped by
construction, so no call site can forget it. Styling (dashboard/static/inca.css) depends on the
status only, never on the amount.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from core.catalog import Coverage
from core.comparison import NOT_AVAILABLE, NOT_AVAILABLE_TEXT, STATUS_LABELS, Cell, Comparison, Instance
from core.data_quality import MARKER, NOTICE

TABLE_CLASS = "inca-compare"
_DASHBOARD = Path(__file__).resolve().parent.parent
TEMPLATES = _DASHBOARD / "templates"
STYLESHEET = _DASHBOARD / "static" / "inca.css"


class _LayoutLoader(jinja2.FileSystemLoader):
    """Templates are indented for reading; each line is stripped and the lines joined, so layout
    whitespace never lands inside a cell (values reach the output only through `{{ }}`, untouched)."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        return "".join(line.strip() for line in source.splitlines()), filename, uptodate


_ENV = jinja2.Environment(
    loader=_LayoutLoader(TEMPLATES),
    # True for every template here (.html.j2) and for strings: escaping is never opt-in.
    autoescape=jinja2.select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
    undefined=jinja2.StrictUndefined,  # a misspelt variable is an error, not an empty cell
    auto_reload=False,
)

#: the page stylesheet, read once per process (st.html keeps a <style>-only fragment out of the layout)
STYLE = f"<style>\n{STYLESHEET.read_text(encoding='utf-8')}</style>\n"


def render(template: str, **values: Any) -> str:
    """`template` rendered with `values`; a pure function of its arguments."""
    return _ENV.get_template(template).render(**values)


# The templates get plain tuples and unpack them in their loops (see comparison.html.j2 for why).
#: status, text shown, raw name before it (several instances), flagged by an evidence finding (issue 13)
Line = tuple[str, str, str | None, bool]


def _lines(cell: Cell, flagged: Sequence[bool] = ()) -> list[Line]:
    """display_text joins exactly these lines; `flagged[i]`: instance i has evidence findings (issue 13)."""
    if not cell.instances:
        return [(NOT_AVAILABLE, NOT_AVAILABLE_TEXT, None, False)]
    marks = [bool(flag) for flag in flagged] + [False] * (len(cell.instances) - len(flagged))
    if len(cell.instances) == 1:
        only = cell.instances[0]
        return [(only.status, only.display_text, None, marks[0])]
    return [(instance.status, instance.display_text, instance.raw_name, mark)
            for instance, mark in zip(cell.instances, marks, strict=True)]


def flags(cmp: Comparison, cell: Cell) -> list[bool]:
    """Per instance of the cell: does it have evidence findings (the value itself is never changed)?"""
    return [bool(cmp.finding_for(cell.coverage_code, cell.product_key, i.raw_name)) for i in cell.instances]


def comparison_html(cmp: Comparison) -> str:
    """The side-by-side table: coverages in the chosen order, products as columns in the chosen order;
    a flagged value gets MARKER after it and the fixed NOTICE once below the table."""
    rows = [(coverage.code, coverage.name, [(cell.status, _lines(cell, flags(cmp, cell))) for cell in cells])
            for coverage, cells in cmp.rows()]
    flagged = any(mark for _code, _name, cells in rows for _status, lines in cells for *_, mark in lines)
    return render("comparison.html.j2", css_class=TABLE_CLASS, columns=len(cmp.products),
                  products=[(product.key, product.name, product.label) for product in cmp.products], rows=rows,
                  marker=MARKER, notice=NOTICE if flagged else None)


def static_table_html(columns: Sequence[str], rows: Sequence[Sequence[tuple[str, str | None]]],
                      css_class: str = "") -> str:
    """A plain table; each cell is (text, status or None) so amounts get the same status styling."""
    return render("static_table.html.j2", columns=columns, rows=rows, css_class=css_class)


def legend_html() -> str:
    return render("legend.html.j2")


def products_html(lines: Sequence[str]) -> str:
    return render("products.html.j2", lines=lines)


def explanations_html(coverage: Coverage, sentences: Sequence[str]) -> str:
    return render("explanations.html.j2", coverage=coverage, sentences=sentences)


def _evidence(insurer: str, instance: Instance, flagged: bool = False) -> tuple[object, ...]:
    proposal = instance.proposal_evidence
    supporting = [(evidence.source(insurer), evidence.snippet) for evidence in instance.supporting_evidence]
    documents = " · ".join(dict.fromkeys(evidence.doc_type for evidence in instance.supporting_evidence))
    return (instance.raw_name, instance.status, instance.display_text,
            None if proposal is None else (proposal.source(insurer), proposal.snippet), supporting, documents, flagged)


def evidence_html(cmp: Comparison, coverage: Coverage) -> str:
    """Every snippet behind one row, verbatim in <pre>, product by product in the chosen order."""
    blocks = [(product.key, product.label,
               [_evidence(product.insurer_name, instance,
                          bool(cmp.finding_for(coverage.code, product.key, instance.raw_name)))
                for instance in cmp.cell(coverage.code, product.key).instances])
              for product in cmp.products]
    return render("evidence.html.j2", blocks=blocks, not_available=NOT_AVAILABLE, not_available_text=NOT_AVAILABLE_TEXT,
                  marker=MARKER, notice=NOTICE)


def badge_html(state: str, text: str | None = None, small: bool = False) -> str:
    return render("badge.html.j2", state=state, text=text or state, small=small)


def key_values_html(pairs: Sequence[tuple[str, object]]) -> str:
    return render("key_values.html.j2", pairs=pairs)


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)
