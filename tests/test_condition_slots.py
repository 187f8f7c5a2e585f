"""Condition slots locked like the amounts (schema 011): derived and audited by the load, refused at
run time, added to an older database by `python -m core upgrade`, and carried by the comparison."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

import core
from core import catalog, compare, db, forbidden_language
from core.condition_slots import ConditionPhrase, SlotConditions, sentence
from core.conditions import SLOTS
from core.conditions.extract import conditions_for_card, read_evidence_pack
from core.errors import AuditFailed, SchemaMissing, SelectionError
from core.ops import conditions_load, loader, migrate, upgrade
from core.ops.cli import main
from core.status import collect
from tests.conftest import PROJECT, Database

DATASET = PROJECT / "data" / "dataset"

# Every stored slot by natural key, independent of random ids (two databases compare equal).
_STORED_SQL = """
    SELECT i.insurer_key, ci.coverage_name_raw, coalesce(ci.coverage_code, ''), cs.slot, cs.status,
           coalesce((SELECT array_agg(ARRAY[cp.phrase, cp.source_kind, coalesce(cp.doc_type, ''),
                                            coalesce(cp.page::text, ''), cp.start_pos::text, cp.end_pos::text,
                                            coalesce(e.snippet, '')] ORDER BY cp.ordinal)
                     FROM condition_phrase cp LEFT JOIN evidence_ref e ON e.evidence_id = cp.evidence_id
                     WHERE cp.instance_id = cs.instance_id AND cp.slot = cs.slot), '{}')
    FROM condition_slot cs
    JOIN coverage_instance ci ON ci.instance_id = cs.instance_id
    JOIN insurer i ON i.insurer_id = ci.insurer_id
    ORDER BY 1, 2, 3, 4
"""


def admin_conn(database: Database) -> psycopg.Connection:
    return psycopg.connect(database.admin.set(drivername="postgresql").render_as_string(hide_password=False))


def reader_conn(database: Database) -> psycopg.Connection:
    return psycopg.connect(database.reader.set(drivername="postgresql").render_as_string(hide_password=False))


def stored(database: Database) -> list[tuple[Any, ...]]:
    with admin_conn(database) as conn:
        return [tuple(row) for row in conn.execute(_STORED_SQL).fetchall()]


def test_every_phrase_is_its_source_text_at_its_position(loaded_db: Database) -> None:
    rows = stored(loaded_db)
    assert len(rows) == 297 * len(SLOTS)
    phrases = 0
    for _insurer, raw_name, _code, _slot, status, found in rows:
        assert (status == "NOT_FOUND") == (not found)
        for phrase, kind, _doc, _page, start, end, snippet in found:
            source = raw_name if kind == "raw_name" else snippet
            assert source[int(start):int(end)] == phrase
            phrases += 1
    assert phrases > 100


def test_stored_slots_equal_the_extractor_over_the_dataset_files(loaded_db: Database) -> None:
    """The load read its own rows back; reading the dataset files instead gives the same phrases."""
    import json

    pack = read_evidence_pack(DATASET)
    expected = {}
    for path in sorted((DATASET / "cards").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            card = json.loads(line)
            results = conditions_for_card(card, pack.get((card["insurer"], card["coverage_name_raw"]), []))
            for slot, result in results.items():
                expected[(card["insurer"], card["coverage_name_raw"], card["coverage_code"] or "", slot)] = (
                    result.status, Counter(p.text for p in result.phrases))
    got = {row[:4]: (row[4], Counter(p[0] for p in row[5])) for row in stored(loaded_db)}
    assert got == expected


def test_raw_name_phrase_is_stored_with_its_raw_name_source(loaded_db: Database) -> None:
    rows = [row for row in stored(loaded_db) if any(p[1] == "raw_name" for p in row[5])]
    assert rows
    for row in rows:
        for phrase in (p for p in row[5] if p[1] == "raw_name"):
            assert phrase[0] in row[1] and phrase[2] == "" and phrase[6] == ""


@pytest.mark.parametrize("statement", [
    "UPDATE condition_phrase SET phrase = phrase",
    "DELETE FROM condition_slot",
    "TRUNCATE condition_phrase",
])
def test_writes_outside_the_load_are_refused(loaded_db: Database, statement: str) -> None:
    with reader_conn(loaded_db) as conn, pytest.raises(psycopg.Error) as refused:
        conn.execute(statement)
    assert refused.value.sqlstate in ("25006", "42501")  # read-only transaction / no privilege
    with admin_conn(loaded_db) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege, match="inca lock"):
        conn.execute(statement)


def test_a_changed_phrase_makes_the_lock_broken(fresh_loaded_db: Database) -> None:
    before = collect(include_backups=False)
    assert before.lock_state == core.INTACT and {"condition_slot", "condition_phrase"} <= set(before.lock.covers)
    with admin_conn(fresh_loaded_db) as conn:  # behind the triggers: a superuser bypasses them
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE condition_phrase SET phrase = 'x' || substr(phrase, 2) WHERE ordinal = 0 AND slot = 'payout_limit'")
    db.dispose_all()
    after = collect(include_backups=False)
    assert after.lock_state == "BROKEN" and not after.ok
    assert any("condition_phrase" in mismatch for mismatch in after.lock.mismatches), after.lock.mismatches
    with db.admin_engine().connect() as conn:  # and the load's own audit query names the tampered phrases
        assert conn.execute(conditions_load._AUDIT_SQL, {"slots": len(SLOTS)}).first() is not None


def test_a_phrase_that_is_not_its_source_fails_the_load(fresh_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    real = conditions_load.extract_conditions

    def shifted(raw_name: str, snippets: Any) -> Any:  # every span one character off its phrase
        return {slot: replace(result, phrases=tuple(replace(p, start=p.start + 1, end=p.end + 1) for p in result.phrases))
                for slot, result in real(raw_name, snippets).items()}

    monkeypatch.setattr(conditions_load, "extract_conditions", shifted)
    with pytest.raises(AuditFailed, match="condition audit failed"):
        loader.load()
    with db.admin_engine().connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM amount_fact")).scalar_one() == 0


def test_upgrade_adds_the_slots_to_a_database_loaded_before_011(fresh_db: Database, loaded_db_session: Database,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # the previous version: schema up to 010, a load that derives no slots
    old = [m for m in migrate.migrations() if m.version <= 10]
    monkeypatch.setattr(migrate, "migrations", lambda: old)
    with pytest.raises(SchemaMissing, match="never loaded"):
        upgrade.upgrade()
    monkeypatch.setattr(conditions_load, "derive_and_audit", lambda conn: {})
    result = loader.load()
    monkeypatch.undo()
    with db.admin_engine().connect() as conn:
        assert conn.execute(text("SELECT to_regclass('condition_slot')")).scalar_one() is None
    # status names the one way forward instead of reading an older schema with per-version SQL
    before = core.status.collect()
    assert not before.ok and before.problems == [
        f"schema v10, this version needs v{migrate.latest_version()}: run `python -m core migrate` then "
        "`python -m core upgrade` with the owner connection"]

    assert main(["upgrade"]) == 0
    with db.admin_engine().connect() as conn:
        fingerprint = conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one()
        runs = conn.execute(text("SELECT count(*) FROM audit_runs WHERE kind = 'upgrade'")).scalar_one()
    assert fingerprint == result.fingerprint and runs == 1
    assert stored(fresh_db) == stored(loaded_db_session)
    again = upgrade.upgrade()
    assert not again.changed and again.message.startswith("up to date")
    with db.admin_engine().connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_runs WHERE kind = 'upgrade'")).scalar_one() == 1
    report = core.status.collect()
    assert report.lock.state == core.INTACT and not report.problems, report.problems
    cmp = compare(["heungkuk_health_v1"], ["A4102"])
    assert any(s.status == "FOUND" for _c, cells in cmp.conditions() for i in cells[0].instances for s in i.slots)


def test_comparison_carries_the_slots_in_the_chosen_order(loaded_db: Database) -> None:
    keys = [p.key for p in catalog.products()][::-1]
    cmp = compare(keys, ["A4102", "A4200_1"])
    conditions = cmp.conditions()
    assert [c.code for c, _ in conditions] == ["A4102", "A4200_1"]
    for coverage, cells in conditions:
        assert [cell.product.key for cell in cells] == keys
        for cell, amount_cell in zip(cells, (cmp.cell(coverage.code, k) for k in keys), strict=True):
            assert [i.raw_name for i in cell.instances] == [i.raw_name for i in amount_cell.instances]
            for instance in cell.instances:
                assert [s.slot for s in instance.slots] == list(SLOTS)
    frame = cmp.conditions_frame()
    instances = sum(max(1, len(cmp.cell(c.code, k).instances)) for c in cmp.coverages for k in keys)
    assert len(frame) == instances * len(SLOTS)
    assert list(frame[frame.slot == "renewal"].product_key.drop_duplicates()) == keys
    assert set(frame.status.dropna()) <= {"FOUND", "CONFLICT", "NOT_FOUND", "NOT_AVAILABLE"}
    assert (frame[frame.status == "NOT_FOUND"].status_label == "원문에서 찾지 못함").all()
    assert not frame.status_label.str.contains("없음$").any() or (frame.status == "NOT_AVAILABLE").any()


def test_every_generated_sentence_passes_the_check(loaded_db: Database) -> None:
    """Over every instance of the dataset (coded or not), every slot's sentence."""
    count = 0
    for product in catalog.products():
        frame = core.conditions_of(product.key)
        for (raw_name, slot), group in frame.groupby(["coverage_name_raw", "slot"], sort=False):
            phrases = tuple(ConditionPhrase(t, "evidence", "약관", 1, 0, len(t), t) for t in group.phrase.dropna())
            text_ = sentence(product.insurer_name, raw_name, SlotConditions(slot, group.status.iloc[0], phrases))
            assert forbidden_language.find_violations(text_) == [], text_
            count += 1
    assert count == 297 * len(SLOTS)
    found = sentence("삼성화재", "유사암 진단비(갑상선암)", SlotConditions("payout_limit", "FOUND", (
        ConditionPhrase("최초 1회한", "raw_name", None, None, 0, 6, "최초 1회한"),)))
    assert found == "삼성화재의 유사암 진단비(갑상선암)는 지급 횟수·한도 조건이 원문에 ‘최초 1회한’으로 기재되어 있습니다."
    missing = sentence("KB손해보험", "질병사망", SlotConditions("entry_age", "NOT_FOUND", ()))
    assert missing == "KB손해보험의 질병사망은 가입나이 조건이 원문에서 확인되지 않았습니다."


def test_conditions_of_lists_one_product(loaded_db: Database) -> None:
    frame = core.conditions_of("heungkuk")
    raw_names = set(frame.coverage_name_raw)
    with db.admin_engine().connect() as conn:
        expected = set(conn.execute(text(
            "SELECT ci.coverage_name_raw FROM coverage_instance ci JOIN product p USING (product_id) "
            "WHERE p.product_key = 'heungkuk_health_v1'")).scalars())
    assert raw_names == expected
    found = frame[frame.status == "FOUND"]
    assert not found.empty and found.phrase.notna().all() and found.source.notna().all()
    assert re.fullmatch(r"(약관|사업방법서|상품요약서|가입설계서) p\.\d+|가입설계서 담보명", found.source.iloc[0])
    with pytest.raises(SelectionError, match="unknown product"):
        core.conditions_of("nobody")
