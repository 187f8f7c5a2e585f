"""Downloads of exactly what the compare page shows.

- CSV: the wide table as displayed (`Comparison.to_frame()`: code, name, one column per product in
  the chosen order, each cell's display text), UTF-8 with a BOM so Excel opens Korean correctly, plus
  `evidence_check` (the cells whose value disagrees with its own snippet, with the marker; issue 13).
- XLSX (XlsxWriter): sheet "비교표" is that same wide table; sheet "상세" is the long form
  (`to_long_frame()`: one row per cell and raw coverage with its status column, value_text and
  evidence); sheet "지급 조건" is `conditions_frame()` (one row per coverage x condition slot x product,
  phrases verbatim with their sources; also offered alone as a CSV); sheet "감사" is the audit
  lineage. Every value is written as text, never converted
  to a number or a formula.
"""

from __future__ import annotations

import io
from dataclasses import asdict

import pandas as pd

from core.comparison import Comparison
from core.data_quality import MARKER

CSV_MIME = "text/csv"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_XLSX_OPTIONS = {"strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False}


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, lineterminator="\r\n").encode("utf-8-sig")


def read_csv(data: bytes) -> pd.DataFrame:
    """The inverse of `csv_bytes` (tests and notebooks): every cell back as the text shown."""
    return pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", dtype=str, keep_default_na=False)


EVIDENCE_CHECK = "evidence_check"


def with_evidence_check(cmp: Comparison) -> pd.DataFrame:
    """The wide table as displayed plus `evidence_check`: per row, the flagged products' cells named with
    the marker (issue 13); empty when none. The cells themselves stay the display text, verbatim."""
    frame = cmp.to_frame()
    notes = []
    for coverage, cells in cmp.rows():
        flagged = [f"{product.label} · {instance.raw_name}: {MARKER}"
                   for product, cell in zip(cmp.products, cells, strict=True) for instance in cell.instances
                   if cmp.finding_for(coverage.code, product.key, instance.raw_name)]
        notes.append("\n".join(flagged))
    frame[EVIDENCE_CHECK] = notes
    return frame


def _write(writer: pd.ExcelWriter, frame: pd.DataFrame, sheet: str, widths: dict[int, int]) -> None:
    frame.to_excel(writer, sheet_name=sheet, index=False)
    worksheet = writer.sheets[sheet]
    wrap = writer.book.add_format({"text_wrap": True, "valign": "top"})
    for column in range(len(frame.columns)):
        worksheet.set_column(column, column, widths.get(column, 18), wrap)
    worksheet.freeze_panes(1, 0)


def xlsx_bytes(cmp: Comparison) -> bytes:
    """The workbook; its 상세 sheet carries every snippet verbatim, so a cells-only comparison (the
    dashboard's) reads them here, when the download is asked for (Comparison.with_every_snippet)."""
    cmp = cmp.with_every_snippet()
    buffer = io.BytesIO()
    audit = pd.DataFrame([{"항목": key, "값": "" if value is None else str(value)} for key, value in asdict(cmp.audit).items()])
    with pd.ExcelWriter(buffer, engine="xlsxwriter", engine_kwargs={"options": _XLSX_OPTIONS}) as writer:
        _write(writer, with_evidence_check(cmp), "비교표", {0: 11, 1: 22})
        _write(writer, cmp.to_long_frame(), "상세", {12: 60})
        _write(writer, cmp.conditions_frame(), "지급 조건", {10: 30, 11: 18, 12: 60})
        _write(writer, audit, "감사", {0: 26, 1: 70})
    return buffer.getvalue()


def file_stem(cmp: Comparison) -> str:
    return f"inca_compare_{len(cmp.products)}products_{len(cmp.coverages)}coverages"
