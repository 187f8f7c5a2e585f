"""core.compare against the real loaded database, checked cell by cell against the dataset files."""

from __future__ import annotations

import itertools
import json
import random
from collections import defaultdict

import pytest
import yaml

import core
from core import catalog, comparison
from core.comparison import MIXED, NOT_AVAILABLE_TEXT, UNCONFIRMED_TEXT
from dashboard.lib import params
from tests import dataset_facts as facts
from tests.conftest import PROJECT, Database

DATASET = PROJECT / "data" / "dataset"


def dataset_facts() -> tuple[dict[tuple[str, str], list[tuple[str, str, str | None]]], dict[str, list[str]]]:
    """From the files (not the database): {(product_key, code): [(raw, status, value)]} and unmatched raw names."""
    metadata = yaml.safe_load((DATASET / "metadata" / "products.yml").read_text(encoding="utf-8"))
    product_of = {p["insurer_key"]: p["product_key"] for p in metadata["products"]}
    facts: dict[tuple[str, str], list[tuple[str, str, str | None]]] = defaultdict(list)
    unmatched: dict[str, list[str]] = defaultdict(list)
    for path in sorted((DATASET / "cards").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            card = json.loads(line)
            product = product_of[card["insurer"]]
            if card["coverage_code"] is None:
                unmatched[product].append(card["coverage_name_raw"])
            else:
                facts[(product, card["coverage_code"])].append(
                    (card["coverage_name_raw"], card["amount"]["status"], card["amount"]["value_text"]))
    return facts, unmatched


FACTS, UNMATCHED = dataset_facts()


def test_random_selections_equal_the_stored_facts(loaded_db: Database) -> None:
    products = [p.key for p in catalog.products()]
    codes = [c.code for c in catalog.coverages()]
    rng = random.Random(20251229)
    for _ in range(15):
        chosen = rng.sample(products, rng.randint(1, len(products)))
        wanted = rng.sample(codes, rng.randint(1, 12))
        comparison = core.compare(chosen, wanted)
        assert [p.key for p in comparison.products] == chosen
        assert [c.code for c in comparison.coverages] == wanted
        for code in wanted:
            for product in chosen:
                cell = comparison.cell(code, product)
                expected = sorted(FACTS.get((product, code), []))
                got = sorted((i.raw_name, i.status, i.value_text) for i in cell.instances)
                assert got == expected, (product, code)
                if not expected:
                    assert cell.status == core.NOT_AVAILABLE
                    assert cell.display_text == NOT_AVAILABLE_TEXT


def test_every_code_when_none_given(loaded_db: Database) -> None:
    comparison = core.compare(["hanwha", "samsung"])
    codes_present = sorted({code for (product, code) in FACTS if product in ("hanwha_health_v1", "samsung_health_v1")})
    assert [c.code for c in comparison.coverages] == codes_present


@pytest.mark.parametrize("order", list(itertools.permutations(["samsung", "meritz", "db"])))
def test_product_order_is_kept_everywhere(loaded_db: Database, order: tuple[str, ...]) -> None:
    comparison = core.compare(list(order), ["A4200_1", "A4101"])
    labels = [p.label for p in comparison.products]
    frame = comparison.to_frame()
    assert list(frame.columns[2:]) == labels
    long = comparison.to_long_frame()
    assert list(dict.fromkeys(long["product_key"])) == [p.key for p in comparison.products]
    sentences = [e.product_key for e in comparison.explanations() if e.coverage_code == "A4200_1"]
    assert sentences == [p.key for p in comparison.products]


def test_values_are_shown_exactly_as_printed(loaded_db: Database) -> None:
    comparison = core.compare(["samsung", "kb", "hanwha"], ["A4200_1", "A3300_1"])
    frame = comparison.to_frame().set_index("코드")
    # 3,000만원 and 3천만원 stay distinct strings: nothing is parsed into a number.
    assert frame.loc["A4200_1", "삼성화재"] == "3,000만원"
    assert frame.loc["A4200_1", "KB손해보험"] == "3천만원"
    assert frame.loc["A4200_1", "한화손해보험"] == UNCONFIRMED_TEXT
    # Hanwha's "000만원" is a known extraction quirk: shown as stored, never "fixed".
    assert frame.loc["A3300_1", "한화손해보험"] == "000만원"


def test_several_raw_coverages_are_all_shown(loaded_db: Database) -> None:
    comparison = core.compare(["samsung"], ["A4104_1"])
    cell = comparison.cell("A4104_1", "samsung_health_v1")
    expected = FACTS[("samsung_health_v1", "A4104_1")]
    assert len(cell.instances) == len(expected) > 1
    for raw, _status, value in expected:
        assert f"{raw}: {value}" in cell.display_text
    sentences = [e for e in comparison.explanations() if e.product_key == "samsung_health_v1"]
    assert sorted(e.raw_name for e in sentences) == sorted(raw for raw, _, _ in expected)
    assert all(e.raw_name in e.sentence for e in sentences)


def test_mixed_status_cells_keep_each_status() -> None:
    """The dataset has no such cell today; a future one must not be summarised into one status."""
    confirmed = core.Instance("A 진단비", core.CONFIRMED, "1천만원", "가입설계서", "PRIMARY", None, ())
    unconfirmed = core.Instance("B 진단비", core.UNCONFIRMED, None, None, None, None, ())
    cell = core.Cell("A4101", "x", (confirmed, unconfirmed))
    assert cell.status == MIXED
    assert cell.display_text == f"A 진단비: 1천만원\nB 진단비: {UNCONFIRMED_TEXT}"
    assert core.Cell("A4101", "x", (unconfirmed,)).status == core.UNCONFIRMED
    assert core.Cell("A4101", "x", ()).status == core.NOT_AVAILABLE


def test_unmatched_coverages_by_product(loaded_db: Database) -> None:
    comparison = core.compare(["lotte", "samsung"], ["A1100"])
    frame = comparison.unmatched_frame()
    for product in ("lotte_health_v1", "samsung_health_v1"):
        assert sorted(frame.loc[frame["product_key"] == product, "coverage_name_raw"]) == sorted(UNMATCHED[product])
    assert list(dict.fromkeys(frame["product_key"])) == ["lotte_health_v1", "samsung_health_v1"]


def test_unmatched_coverages_without_evidence_equal_the_comparisons(loaded_db: Database) -> None:
    order = ["삼성화재", "lotte", "kb_health_v1", "hanwha", "meritz", "db", "hyundai", "heungkuk"]
    frame = core.unmatched_coverages(order)
    assert frame.equals(core.compare(order, ["A1100"]).unmatched_frame())
    keys = list(dict.fromkeys(frame["product_key"]))
    assert keys == [p.key for p in core.compare(order, ["A1100"]).products if p.key in UNMATCHED]
    for product in keys:  # against the card files, not the database
        assert sorted(frame.loc[frame["product_key"] == product, "coverage_name_raw"]) == sorted(UNMATCHED[product])
    with pytest.raises(core.SelectionError, match="nosuch"):
        core.unmatched_coverages(["samsung", "nosuch"])
    # the dashboard's form: the list from the cells' own snapshot, without evidence (insurer names resolved)
    listed = core.compare(order, ["A1100"], with_unmatched=comparison.UNMATCHED_LIST)
    assert listed.unmatched_frame().equals(frame)
    assert all(not i.supporting_evidence and i.proposal_evidence is None
               for found in listed.unmatched.values() for i in found)


def test_every_snippet_arrives_once_and_the_proposal_holds_the_amount(loaded_db: Database) -> None:
    expected = json.loads((DATASET / "manifest.json").read_text(encoding="utf-8"))["expected_counts"]
    comparison = core.compare([p.key for p in catalog.products()])
    instances = [i for cell in comparison.cells.values() for i in cell.instances]
    instances += [i for found in comparison.unmatched.values() for i in found]
    assert len(instances) == expected["coverage_instance"]
    assert sum(len(i.supporting_evidence) + (i.proposal_evidence is not None) for i in instances) == \
        expected["evidence_ref"]
    for instance in instances:
        if instance.status == core.CONFIRMED:
            assert instance.proposal_evidence is not None and instance.proposal_evidence.doc_type == "가입설계서"
            assert "".join(instance.value_text.split()) in "".join(instance.proposal_evidence.snippet.split())
        else:
            assert instance.proposal_evidence is None
        assert instance.proposal_evidence not in instance.supporting_evidence
        kinds = [e.doc_type for e in instance.supporting_evidence]
        assert kinds == sorted(kinds)  # grouped by document, in stored order


def test_evidence_travels_verbatim(loaded_db: Database) -> None:
    comparison = core.compare(["samsung"], ["A1100"])
    instance = comparison.cell("A1100", "samsung_health_v1").instances[0]
    assert instance.proposal_evidence is not None
    assert instance.proposal_evidence.snippet == "질병 사망\n1,000만원"
    assert instance.proposal_evidence.source("삼성화재") == "삼성화재 · 가입설계서 · p.3"
    assert {e.doc_type for e in instance.supporting_evidence} == {"약관", "사업방법서", "상품요약서"}


def test_explanations_for_the_whole_dataset_pass_the_check(loaded_db: Database) -> None:
    comparison = core.compare([p.key for p in catalog.products()])
    explanations = comparison.explanations()
    expected = sum(max(1, len(cell.instances)) for cell in comparison.cells.values())
    assert len(explanations) == expected
    for explanation in explanations:
        assert core.find_violations(explanation.sentence) == []
        if explanation.status == core.CONFIRMED:
            cell = comparison.cell(explanation.coverage_code, explanation.product_key)
            values = [i.value_text for i in cell.instances if i.raw_name == explanation.raw_name]
            assert f"{values[0]}으로" in explanation.sentence or f"{values[0]}로" in explanation.sentence


def test_audit_lineage(loaded_db: Database) -> None:
    audit = core.compare(["db"], ["A1100"]).audit
    assert audit.lock_state == "INTACT" and audit.lock_intact
    assert audit.freeze_tag == "freeze/pre-10b2g2-20251229-024400"
    assert audit.git_commit.startswith("c6fad90")
    assert audit.audit_status == "PASS" and audit.audit_run_id


def test_named_products_are_the_full_catalogs(loaded_db: Database) -> None:
    every = catalog.products()
    for product in every:
        for name in (product.key, product.insurer_key, product.insurer_name):
            expected = [p for p in every if name in (p.key, p.insurer_key, p.insurer_name)]
            assert catalog.products([f" {name} "]) == expected
    assert catalog.products(["nosuch"]) == []
    assert catalog.products("samsung") == [p for p in every if p.insurer_key == "samsung"]
    assert catalog.products(["samsung", "메리츠화재"]) == [p for p in every if p.insurer_key in ("meritz", "samsung")]


def test_one_snapshot_for_selection_lock_and_cells(loaded_db: Database) -> None:
    from sqlalchemy import text

    from core import comparison, db, selection

    with db.read() as conn:
        comparison._fetch(conn, selection.request(["samsung_health_v1"], ["A4200_1"]), False)
        # READ COMMITTED would give each pipelined statement its own snapshot
        assert conn.execute(text("SELECT current_setting('transaction_isolation')")).scalar_one() == "repeatable read"


def test_insurer_keys_and_korean_names_resolve(loaded_db: Database) -> None:
    by_key = core.compare(["samsung", "KB손해보험"], ["A1100"])
    assert [p.key for p in by_key.products] == ["samsung_health_v1", "kb_health_v1"]


@pytest.mark.parametrize(
    ("products", "codes", "message", "suggestion"),
    [
        (["samsnug"], ["A1100"], "unknown product or insurer 'samsnug'", "samsung"),
        (["samsung"], ["A4200_9"], "unknown coverage code 'A4200_9'", "A4200_"),
        (["samsung"], ["암진단비"], "codes look like", "A4200_1"),
        ([], ["A1100"], "하나 이상", None),
        (["samsung"], [], "하나 이상", None),
        (["samsung", "samsung_health_v1"], ["A1100"], "listed twice", None),
    ],
)
def test_selection_errors_name_the_bad_value(loaded_db: Database, products: list[str], codes: list[str],
                                             message: str, suggestion: str | None) -> None:
    with pytest.raises(core.SelectionError, match=message) as error:
        core.compare(products, codes)
    if suggestion:
        assert any(s.startswith(suggestion) for s in error.value.suggestions), error.value.suggestions


def test_too_many_products_is_refused(loaded_db: Database) -> None:
    with pytest.raises(core.SelectionError, match="최대"):
        core.compare(["samsung"] * 51, ["A1100"])


# --- evidence on demand (issue 16) ----------------------------------------------------------------

def _texts(instance: comparison.Instance) -> list[str]:
    proposal = [instance.proposal_evidence.snippet] if instance.proposal_evidence else []
    return proposal + [evidence.snippet for evidence in instance.supporting_evidence]


def test_cells_only_comparison_has_the_same_cells_and_no_snippet_text(loaded_db: Database) -> None:
    keys, codes = [p.key for p in catalog.products()], list(params.DEFAULT_CODES)
    full = core.compare(keys, codes)
    cells = core.compare(keys, codes, include_evidence=False)
    assert full.evidence_included and not cells.evidence_included
    assert cells.to_frame().equals(full.to_frame())
    assert cells.conditions_frame().equals(full.conditions_frame())
    assert cells.findings == full.findings
    counted = 0
    for key, cell in cells.cells.items():
        for lean, whole in zip(cell.instances, full.cells[key].instances, strict=True):
            assert lean[:5] == whole[:5]  # raw name, status, value_text, source type and priority
            assert lean.supporting_evidence == ()
            assert lean.snippet_count == whole.snippet_count == len(_texts(whole))
            if whole.proposal_evidence is None:
                assert lean.proposal_evidence is None
            else:  # the source stays citable without the text
                assert lean.proposal_evidence.snippet is None
                assert lean.proposal_evidence._replace(snippet=whole.proposal_evidence.snippet) == whole.proposal_evidence
                assert lean.proposal_evidence.source("x") == whole.proposal_evidence.source("x")
                counted += 1
    assert counted
    # on demand, per coverage, the full comparison's instances exactly; and every snippet for the exports
    for code in codes:
        assert cells.evidence_for(code).cells == {**cells.cells, **{k: v for k, v in full.cells.items() if k[0] == code}}
    assert cells.with_every_snippet().cells == full.cells


def test_every_dataset_snippet_is_reachable_on_demand(loaded_db: Database) -> None:
    products = catalog.products()
    cells = core.compare([p.key for p in products], list(params.DEFAULT_CODES), include_evidence=False)
    checked = 0
    for code in params.DEFAULT_CODES:
        found = comparison.evidence([p.key for p in products], code)
        for product in products:
            expected = [(card.raw_name, card.insurer) for card in facts.cards()
                        if card.code == code and facts.product_insurer()[product.key] == card.insurer]
            got = found.get(product.key, ())
            assert sorted(i.raw_name for i in got) == sorted(raw for raw, _ in expected)
            assert [i.raw_name for i in got] == [i.raw_name for i in cells.cell(code, product.key).instances]
            for instance in got:
                files = facts.snippets_of(facts.product_insurer()[product.key], instance.raw_name)
                # verbatim, every one and nothing else (the load keeps an exact repeat of a snippet once)
                assert set(_texts(instance)) == set(files)
                checked += len(files)
    assert checked > 100


def test_evidence_of_one_product_and_unknown_names(loaded_db: Database) -> None:
    found = comparison.evidence("samsung_health_v1", "a4200_1")
    assert list(found) == ["samsung_health_v1"] and found["samsung_health_v1"]
    assert comparison.evidence(["no_such_product"], "A4200_1") == {}


def test_evidence_that_is_not_the_cells_own_is_refused(loaded_db: Database) -> None:
    cells = core.compare(["samsung_health_v1", "kb_health_v1"], ["A4200_1"], include_evidence=False)
    with pytest.raises(comparison.EvidenceChanged, match="A4200_1"):
        cells.with_evidence("A4200_1", {})  # as if a load had removed them since the table was read
    found = comparison.evidence(["kb_health_v1"], "A4200_1")  # samsung's instances missing
    with pytest.raises(comparison.EvidenceChanged, match="삼성화재"):
        cells.with_evidence("A4200_1", found)
    # the long frame (the workbook's detail sheet) of a cells-only comparison carries every snippet
    long = cells.to_long_frame()
    assert long["evidence_snippet"].equals(core.compare(["samsung_health_v1", "kb_health_v1"],
                                                        ["A4200_1"]).to_long_frame()["evidence_snippet"])
    assert long["evidence_snippet"].notna().all()


def test_cells_only_statements_have_the_columns_read_by_position(loaded_db: Database) -> None:
    """compare reads cells-only rows as plain tuples by position (comparison.CELLS_COLUMNS): both cells-only
    statements, the comparison cells' and the live tables', must select those columns in that order."""
    from core import db

    codes = comparison._CODES_FILTER[(False, True)]
    params = {"product_keys": ["samsung_health_v1"], "codes": ["A4200_1"]}
    with db.read() as conn:
        driver = conn.connection.driver_connection
        for cells_view in (True, False):
            cursor = driver.execute(comparison._sql(False, codes, slots=True, cells_view=cells_view), params)
            names = [column.name for column in cursor.description]
            assert tuple(names[:len(comparison.CELLS_COLUMNS)]) == comparison.CELLS_COLUMNS, cells_view
            assert len(names) == len(comparison.CELLS_COLUMNS) + comparison.condition_slots.SLOT_COLUMN_COUNT
            assert cursor.fetchall()
