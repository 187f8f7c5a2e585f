"""Evidence findings shown everywhere (dashboard table, status page, exports, /compare), values verbatim."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pandas as pd
import psycopg

from core import db
from core.comparison import compare
from core.data_quality import MARKER, NOTICE
from dashboard.lib import exports
from tests.conftest import Database
from tests.test_api import api, cells_by_product, client, post  # noqa: F401  (module fixtures)
from tests.test_dashboard import assert_same_table, compare_table, new_app, run

HANWHA = "hanwha_health_v1"
SAMSUNG = "samsung_health_v1"
FLAGGED_CODES = ["A3300_1", "A4103", "A4105"]
CODES = [*FLAGGED_CODES, "A4200_1"]


def _cells_html(markup: str) -> dict[tuple[str, int], str]:
    """(row code, column index) -> the <td> markup of the comparison table (a tiny, table-shaped split)."""
    found = {}
    for row in markup.split("<tr data-code=")[1:]:
        code = row.split('"')[1]
        for index, td in enumerate(row.split("<td")[3:]):
            found[(code, index)] = td.split("</td>")[0]
    return found


def test_flagged_cells_show_the_marker_next_to_the_verbatim_value(loaded_db: Database) -> None:
    at = run(new_app({"p": f"{HANWHA},{SAMSUNG}", "c": ",".join(CODES)}))
    expected = compare([HANWHA, SAMSUNG], CODES)
    assert_same_table(compare_table(at), expected.to_frame())  # the values as shown are exactly the stored ones
    markup = next(element.value for element in at.html if "inca-compare" in element.value)
    cells = _cells_html(markup)
    for code in CODES:
        for index, key in enumerate([HANWHA, SAMSUNG]):
            td = cells[(code, index)]
            flagged = key == HANWHA and code in FLAGGED_CODES
            assert (MARKER in td) is flagged, (code, key)
            if flagged:
                assert "000만원</div>" in td and td.index("000만원") < td.index(MARKER)
    assert markup.count(NOTICE) == 1  # the fixed sentence, once, below the table
    assert markup.count('data-flag="evidence"') == 3


def test_unflagged_selection_shows_no_marker_or_notice(loaded_db: Database) -> None:
    at = run(new_app({"p": SAMSUNG, "c": "A4200_1"}))
    markup = next(element.value for element in at.html if "inca-compare" in element.value)
    assert MARKER not in markup and NOTICE not in markup


def test_status_page_lists_the_findings_with_their_snippets(loaded_db: Database) -> None:
    at = new_app()
    run(at)
    at.switch_page("views/status.py")
    run(at)
    assert "데이터 품질" in [element.value for element in at.subheader]
    findings = [element.value for element in at.html if element.value.startswith('<div class="inca-finding"')]
    assert len(findings) == 3
    assert {code for code in FLAGGED_CODES if any(f'data-code="{code}"' in f for f in findings)} == set(FLAGGED_CODES)
    snippets = [element.value for element in at.html if element.value.startswith("<pre>")]
    assert sum("1,\n000만원" in snippet for snippet in snippets) == 3
    kv = next(element.value for element in at.html if "데이터셋 매니페스트 digest" in element.value)
    with psycopg.connect(db.psycopg_conninfo(loaded_db.reader)) as conn:
        digest = conn.execute("SELECT dataset_sha256 FROM audit_runs WHERE kind = 'load'").fetchone()[0]
    assert digest in kv


def test_exports_carry_an_evidence_check_column(loaded_db: Database) -> None:
    cmp = compare([HANWHA, SAMSUNG], CODES)
    wide = exports.read_csv(exports.csv_bytes(exports.with_evidence_check(cmp)))
    assert list(wide.columns) == [*cmp.to_frame().columns, exports.EVIDENCE_CHECK]
    checks = dict(zip(wide["코드"], wide[exports.EVIDENCE_CHECK], strict=True))
    assert all(MARKER in checks[code] for code in FLAGGED_CODES) and checks["A4200_1"] == ""
    assert_same_table(wide.drop(columns=[exports.EVIDENCE_CHECK]), cmp.to_frame().astype(str))
    sheets = pd.read_excel(io.BytesIO(exports.xlsx_bytes(cmp)), sheet_name=None, dtype=str)
    detail = sheets["상세"]
    flagged = detail[detail["evidence_check"].notna()]
    assert sorted(flagged["coverage_code"]) == sorted(FLAGGED_CODES)
    assert set(flagged["value_text"]) == {"000만원"} and set(flagged["insurer"]) == {"한화손해보험"}
    assert sheets["비교표"][exports.EVIDENCE_CHECK].notna().sum() == 3


def test_compare_api_has_the_field_for_the_three_only(client: httpx.Client) -> None:  # noqa: F811
    response = post(client, {"products": [{"insurer": "hanwha"}, {"insurer": "samsung"}],
                             "target_coverages": [{"coverage_code": c} for c in CODES]})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    seen = []
    for code in CODES:
        for key, cell in cells_by_product(answer, code).items():
            for instance in cell["instances"]:
                if instance["evidence_findings"] is not None:
                    seen.append((code, key))
                    assert instance["value_text"] == "000만원" and instance["status"] == "CONFIRMED"
                    assert {f["kind"] for f in instance["evidence_findings"]} == {"digit_before", "inside_longer_amount"}
                    assert all("000만원" in f["context"] and f["marker"] == MARKER and f["notice"] == NOTICE
                               for f in instance["evidence_findings"])
    assert sorted(seen) == sorted((code, HANWHA) for code in FLAGGED_CODES)
