"""Condition slots locked like the amounts (schema 011): derived and audited by the load, refused at
run time, added to an older database by `python -m core upgrade`, and carried by the comparison."""

from __future__ import annotations

import json
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


def test_the_audit_refuses_every_kind_of_bad_row(loaded_db: Database) -> None:
    """Each rule of the condition audit, on rows changed inside an audited transaction that is rolled back."""
    with db.admin_engine().connect() as conn:
        transaction = conn.begin()
        try:
            loader.open_audited(conn)
            conditions_load.audit(conn)  # the loaded rows pass
            run = conn.exec_driver_sql
            raw_phrase = run("SELECT instance_id, slot, ordinal FROM condition_phrase "
                             "WHERE source_kind = 'raw_name' AND char_length(phrase) > 1 LIMIT 1").one()
            snippet_phrases = run("SELECT instance_id, slot, ordinal, evidence_id FROM condition_phrase "
                                  "WHERE source_kind = 'evidence' LIMIT 2").all()
            other = run("SELECT evidence_id FROM evidence_ref WHERE instance_id <> %(i)s LIMIT 1",
                        {"i": snippet_phrases[1][0]}).scalar_one()
            empty = run("SELECT cs.instance_id, cs.slot FROM condition_slot cs WHERE cs.status = 'NOT_FOUND' "
                        "AND cs.instance_id NOT IN (%(a)s, %(b)s, %(c)s) LIMIT 3",
                        {"a": raw_phrase[0], "b": snippet_phrases[0][0], "c": snippet_phrases[1][0]}).all()
            found = run("SELECT instance_id, slot FROM condition_slot WHERE status = 'FOUND' "
                        "AND instance_id NOT IN (%(a)s, %(b)s, %(c)s, %(d)s, %(e)s, %(f)s) LIMIT 1",
                        {"a": raw_phrase[0], "b": snippet_phrases[0][0], "c": snippet_phrases[1][0],
                         "d": empty[0][0], "e": empty[1][0], "f": empty[2][0]}).one()
            key = "instance_id = %(i)s AND slot = %(s)s"
            # a raw-name phrase and a snippet phrase one character off their text (same length)
            for i, s, o, *_ in (raw_phrase, snippet_phrases[0]):
                run(f"UPDATE condition_phrase SET phrase = 'x' || substr(phrase, 2) WHERE {key} AND ordinal = %(o)s",
                    {"i": i, "s": s, "o": o})
            # a snippet phrase citing another coverage's snippet
            run(f"UPDATE condition_phrase SET evidence_id = %(e)s WHERE {key} AND ordinal = %(o)s",
                {"i": snippet_phrases[1][0], "s": snippet_phrases[1][1], "o": snippet_phrases[1][2], "e": other})
            run(f"DELETE FROM condition_slot WHERE {key}", {"i": empty[0][0], "s": empty[0][1]})  # four slots
            run(f"UPDATE condition_slot SET status = 'FOUND' WHERE {key}", {"i": empty[1][0], "s": empty[1][1]})
            run(f"UPDATE condition_slot SET status = 'CONFLICT' WHERE {key}", {"i": empty[2][0], "s": empty[2][1]})
            run(f"DELETE FROM condition_phrase WHERE {key}", {"i": found[0], "s": found[1]})
            run(f"UPDATE condition_slot SET status = 'NOT_FOUND' WHERE {key}", {"i": found[0], "s": found[1]})
            phrase_count = run("SELECT count(*) FROM condition_phrase WHERE instance_id = %(i)s AND slot = %(s)s",
                               {"i": snippet_phrases[0][0], "s": snippet_phrases[0][1]}).scalar_one()
            run(f"UPDATE condition_slot SET status = 'NOT_FOUND' WHERE {key}",
                {"i": snippet_phrases[0][0], "s": snippet_phrases[0][1]})
            with pytest.raises(AuditFailed, match="condition audit failed") as refused:
                conditions_load.audit(conn)
        finally:
            transaction.rollback()
    failures = refused.value.failures
    assert sum("is not its source text" in failure for failure in failures) == 3, failures
    assert sum(": 4 condition slots, expected 5" in failure for failure in failures) == 1, failures
    assert sum(": status FOUND with 0 phrases" in failure for failure in failures) == 1, failures
    assert sum(": status CONFLICT with 0 phrases" in failure for failure in failures) == 1, failures
    # the FOUND slot made NOT_FOUND without its phrases is consistent again; the one keeping them is not
    assert [f for f in failures if ": status NOT_FOUND with " in f] == [
        f for f in failures if f.endswith(f": status NOT_FOUND with {phrase_count} phrases")], failures
    assert sum(": status NOT_FOUND with " in failure for failure in failures) == 1, failures
    assert len(failures) == 7, failures


def test_a_phrase_that_is_not_its_source_fails_the_load(fresh_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    real = conditions_load.combine

    def shifted(own_sources: Any, hits: Any) -> Any:  # every span one character off its phrase
        return tuple((status, tuple((index, a + 1, b + 1, phrase) for index, a, b, phrase in found))
                     for status, found in real(own_sources, hits))

    monkeypatch.setattr(conditions_load, "combine", shifted)
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
    monkeypatch.setattr(loader, "CELL_VIEWS", ())  # nor the comparison cells (schema 012)
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


# Every stored slot of some products under some codes, per instance, read straight from the tables
# (independent of core's SQL): (product key, code, raw name, amount status, variant) -> slot -> (status, phrases).
_SLOTS_OF_SQL = """
    SELECT p.product_key, ci.coverage_code, ci.coverage_name_raw, af.status, coalesce(ci.variant_id::text, ''),
           cs.slot, cs.status,
           coalesce((SELECT array_agg(ARRAY[cp.phrase, cp.source_kind, coalesce(cp.doc_type, ''),
                                            coalesce(cp.page::text, ''), cp.start_pos::text, cp.end_pos::text,
                                            coalesce(e.snippet, ci.coverage_name_raw)] ORDER BY cp.ordinal)
                     FROM condition_phrase cp LEFT JOIN evidence_ref e ON e.evidence_id = cp.evidence_id
                     WHERE cp.instance_id = cs.instance_id AND cp.slot = cs.slot), '{}')
    FROM condition_slot cs
    JOIN coverage_instance ci ON ci.instance_id = cs.instance_id
    JOIN amount_fact af ON af.instance_id = ci.instance_id
    JOIN product p ON p.product_id = ci.product_id
    WHERE p.product_key = ANY(%(keys)s) AND ci.coverage_code = ANY(%(codes)s)
"""


def _stored_slots(database: Database, keys: list[str], codes: list[str]) -> dict[tuple[str, str, str], list[Any]]:
    """(code, product key, raw name) -> per instance in (amount status, variant) order, its slots as
    {slot: (status, [(text, kind, doc_type, page, start, end, source_text)])}."""
    by_instance: dict[tuple[str, ...], dict[str, Any]] = {}
    with admin_conn(database) as conn:
        for key, code, raw, status, variant, slot, slot_status, phrases in conn.execute(
                _SLOTS_OF_SQL, {"keys": keys, "codes": codes}).fetchall():
            shown = [] if slot_status == "NOT_FOUND" else [
                (p[0], p[1], p[2] or None, int(p[3]) if p[3] else None, int(p[4]), int(p[5]), p[6]) for p in phrases]
            by_instance.setdefault((code, key, raw, status, variant), {})[slot] = (slot_status, shown)
    found: dict[tuple[str, str, str], list[Any]] = {}
    for instance in sorted(by_instance, key=lambda k: (k[3], k[4])):
        found.setdefault(instance[:3], []).append(by_instance[instance])
    return found


def _as_read(cmp: Any, sources: bool) -> dict[tuple[str, str, str], list[Any]]:
    found: dict[tuple[str, str, str], list[Any]] = {}
    for coverage, cells in cmp.conditions(sources=sources):
        for cell in cells:
            for instance in cell.instances:
                found.setdefault((coverage.code, cell.product.key, instance.raw_name), []).append(
                    {s.slot: (s.status, [tuple(p) for p in s.phrases]) for s in instance.slots})
    return found


def test_slots_read_with_the_cells_are_the_stored_ones(loaded_db: Database) -> None:
    """compare() reads each instance's slots in its cells statement (issue 16): the same slots, statuses
    and phrases as the tables hold, cited texts verbatim, with and without the snippets."""
    keys = [p.key for p in catalog.products()][::-1]
    codes = sorted({c.code for c in catalog.coverages()})[:40]
    expected = _stored_slots(loaded_db, keys, codes)
    assert sum(len(s[1]) for found in expected.values() for i in found for s in i.values()) > 50  # phrases
    full, cells = compare(keys, codes), compare(keys, codes, include_evidence=False)
    assert _as_read(full, sources=True) == expected
    assert _as_read(cells, sources=True) == expected  # the cited texts read on demand
    without = _as_read(cells, sources=False)  # the table's read: a snippet's text not read yet
    assert without == {key: [{slot: (status, [(*p[:6], p[6] if p[1] == "raw_name" else None) for p in phrases])
                              for slot, (status, phrases) in instance.items()} for instance in found]
                       for key, found in expected.items()}
    assert any(p[1] == "evidence" for found in without.values() for i in found for s in i.values() for p in s[1])
    one = cells.conditions_for(codes[0])
    assert [cell.product.key for cell in one] == keys
    assert {(codes[0], cell.product.key, i.raw_name) for cell in one for i in cell.instances} == {
        key for key in expected if key[0] == codes[0]}
    assert cells.conditions_frame().equals(full.conditions_frame())


def test_cited_texts_that_no_longer_match_the_table_are_refused(loaded_db: Database) -> None:
    """The cited texts are read in their own snapshot: slots that differ from the ones shown (a load in
    between) raise EvidenceChanged instead of pairing new texts with the old table."""
    from core.comparison import EvidenceChanged

    cmp = compare([p.key for p in catalog.products()], sorted({c.code for c in catalog.coverages()})[:40],
                  include_evidence=False)
    assert cmp.slots is not None
    key, rows = next((key, rows) for key, rows in cmp.slots.by_cell.items() if any(r[1] for r in rows))  # a phrase
    altered = [list(row) for row in rows]
    changed = next(row for row in altered if row[1])
    phrases = json.loads(changed[1])
    phrases[0][1] = "다른 문구"  # the first phrase's text
    changed[1] = json.dumps(phrases)
    other = replace(cmp, slots=cmp.slots._replace(by_cell={**cmp.slots.by_cell, key: tuple(map(tuple, altered))}))
    with pytest.raises(EvidenceChanged, match="reload the page"):
        other.conditions()
    assert other.conditions(sources=False)  # the table itself is what was read
