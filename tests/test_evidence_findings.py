"""Evidence findings wired into the lock: the load records them, `upgrade` adds them to an older
database, every view shows them, and none of it changes a value, a status or the fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

import core
from core import db, forbidden_language
from core.data_quality import MARKER, NOTICE
from core.evidence_consistency import check_fact
from core.ops import findings_load, loader, upgrade
from tests.conftest import Database
from tests.test_store import admin_conn, copy_dataset, reader_conn, remanifest, run_cli

HANWHA = "hanwha_health_v1"
FLAGGED = {("A3300_1", "상해 후유장해(3-100%)"), ("A4103", "뇌졸중 진단비"), ("A4105", "허혈성심장질환 진단비")}


def _facts(database: Database) -> list[tuple]:
    with admin_conn(database) as conn:
        return conn.execute(
            "SELECT p.product_key, ci.coverage_code, ci.coverage_name_raw, af.status, af.value_text "
            "FROM amount_fact af JOIN coverage_instance ci USING (instance_id) JOIN product p USING (product_id) "
            "ORDER BY 1, 2, 3").fetchall()


def _fingerprint(database: Database) -> str:
    with admin_conn(database) as conn:
        return conn.execute("SELECT inca_amount_fact_fingerprint()").fetchone()[0]


def _finding_rows(database: Database) -> list[tuple]:
    with admin_conn(database) as conn:
        return conn.execute(
            "SELECT p.product_key, ci.coverage_code, ci.coverage_name_raw, f.kind, f.value_text, f.context, f.detail "
            "FROM evidence_finding f JOIN coverage_instance ci USING (instance_id) JOIN product p USING (product_id) "
            "ORDER BY 1, 2, 3, 4").fetchall()


def test_real_data_flags_exactly_the_three_hanwha_facts(loaded_db: Database) -> None:
    frame = core.findings()
    assert set(zip(frame["coverage_code"], frame["coverage_name_raw"], strict=True)) == FLAGGED
    assert set(frame["product_key"]) == {HANWHA}
    assert set(frame["value_text"]) == {"000만원"}
    assert set(frame["kind"]) == {"digit_before", "inside_longer_amount"}
    assert all("1,\n000만원" in context for context in frame["context"])
    assert all(source.startswith("한화손해보험 · 가입설계서") for source in frame["snippet_source"])
    # the locked values and statuses are untouched, and the lock is INTACT
    with admin_conn(loaded_db) as conn:
        rows = conn.execute(
            "SELECT af.status, af.value_text FROM evidence_finding f JOIN amount_fact af USING (amount_id)").fetchall()
    assert set(rows) == {("CONFIRMED", "000만원")}
    report = json.loads(run_cli("status", "--json", env=loaded_db.env()).stdout)
    assert report["lock"]["state"] == "INTACT"
    assert report["data_quality"]["findings"] == 3
    assert report["data_quality"]["dataset_sha256"] and len(report["data_quality"]["dataset_sha256"]) == 64
    assert all(row["matches"] for row in report["counts"])
    text_report = run_cli("status", env=loaded_db.env()).stdout
    assert "findings:  3 evidence finding(s)" in text_report
    assert f"dataset:   {report['data_quality']['dataset_sha256']}" in text_report


def test_comparison_carries_the_findings_without_changing_cells(loaded_db: Database) -> None:
    cmp = core.compare([HANWHA, "samsung_health_v1"], ["A3300_1", "A4103", "A4105", "A4200_1"])
    for code, raw in FLAGGED:
        (instance,) = cmp.cell(code, HANWHA).instances
        assert instance.raw_name == raw and instance.value_text == "000만원" and instance.status == "CONFIRMED"
        assert {f.kind for f in cmp.finding_for(code, HANWHA, raw)} == {"digit_before", "inside_longer_amount"}
    for (code, key), cell in cmp.cells.items():
        for instance in cell.instances:
            if (code, instance.raw_name) not in FLAGGED or key != HANWHA:
                assert cmp.finding_for(code, key, instance.raw_name) == ()
    long = cmp.to_long_frame()
    flagged = long[long["evidence_check"].notna()]
    assert set(zip(flagged["coverage_code"], flagged["coverage_name_raw"], strict=True)) == FLAGGED
    assert set(flagged["value_text"]) == {"000만원"}
    # named by insurer rather than product key: the same findings
    assert core.compare(["hanwha"], ["A4103"]).finding_for("A4103", HANWHA, "뇌졸중 진단비")


def test_notice_and_marker_pass_the_language_check() -> None:
    assert forbidden_language.find_violations(NOTICE) == []
    assert forbidden_language.find_violations(MARKER) == []
    assert not any(ch.isdigit() for ch in NOTICE + MARKER)  # states no amount of its own


def test_finding_rows_are_locked(loaded_db: Database) -> None:
    with admin_conn(loaded_db) as conn:
        for statement in ("UPDATE evidence_finding SET context = 'x'", "DELETE FROM evidence_finding",
                          "TRUNCATE evidence_finding"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="inca lock"):
                conn.execute(statement)
    with reader_conn(loaded_db) as conn:
        assert conn.execute("SELECT count(*) FROM evidence_finding").fetchone()[0] == 6
        with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
            conn.execute("DELETE FROM evidence_finding")


def test_a_finding_changed_behind_the_triggers_breaks_the_lock_not_the_amounts(fresh_loaded_db: Database) -> None:
    with admin_conn(fresh_loaded_db) as conn:
        conn.execute("ALTER TABLE evidence_finding DISABLE TRIGGER evidence_finding_lock")
        conn.execute("DELETE FROM evidence_finding WHERE kind = 'inside_longer_amount'")
        conn.execute("ALTER TABLE evidence_finding ENABLE TRIGGER evidence_finding_lock")
    result = run_cli("status", "--json", env=fresh_loaded_db.env())
    report = json.loads(result.stdout)
    assert result.returncode != 0 and report["lock"]["state"] == "BROKEN"  # findings are locked content
    assert any("evidence_finding" in mismatch for mismatch in report["lock"]["mismatches"]), report["lock"]
    assert report["lock"]["recorded_fingerprint"] == report["lock"]["live_fingerprint"]  # the amounts are fine


def _strip_findings(database: Database) -> None:
    """What a database loaded by the previous version looks like: no findings and no full lock record
    (the previous version recorded only the amount fingerprint)."""
    with admin_conn(database) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # a superuser, behind the triggers
        conn.execute("DELETE FROM evidence_finding")
        conn.execute("DELETE FROM lock_record")
        conn.execute("DELETE FROM lock_seal")
        conn.execute("UPDATE audit_runs SET counts = counts - 'evidence_finding' - 'lock_seal'")


def test_upgrade_adds_the_same_findings_to_an_older_database_and_is_idempotent(fresh_loaded_db: Database) -> None:
    as_loaded, facts, fingerprint = _finding_rows(fresh_loaded_db), _facts(fresh_loaded_db), _fingerprint(fresh_loaded_db)
    _strip_findings(fresh_loaded_db)
    assert _finding_rows(fresh_loaded_db) == []
    first = run_cli("upgrade", env=fresh_loaded_db.env())
    assert first.returncode == 0, first.stderr
    assert "evidence_findings" in first.stdout and "amount fingerprint unchanged" in first.stdout
    assert _finding_rows(fresh_loaded_db) == as_loaded  # identical to what the load wrote
    assert _facts(fresh_loaded_db) == facts and _fingerprint(fresh_loaded_db) == fingerprint
    with admin_conn(fresh_loaded_db) as conn:
        runs = conn.execute("SELECT kind, status, fingerprint, dataset_sha256 IS NOT NULL FROM audit_runs "
                            "WHERE kind = 'upgrade'").fetchall()
        total_runs = conn.execute("SELECT count(*) FROM audit_runs").fetchone()[0]
    assert runs == [("upgrade", "PASS", fingerprint, True)]
    second = upgrade.upgrade()
    assert not second.changed and second.audit_run_id is None
    with admin_conn(fresh_loaded_db) as conn:
        assert conn.execute("SELECT count(*) FROM audit_runs").fetchone()[0] == total_runs
    assert _finding_rows(fresh_loaded_db) == as_loaded and _fingerprint(fresh_loaded_db) == fingerprint
    report = json.loads(run_cli("status", "--json", env=fresh_loaded_db.env()).stdout)
    assert report["ok"] and report["lock"]["state"] == "INTACT"
    assert report["data_quality"]["findings"] == 3 and report["lock"]["scope"] == "full"
    assert all(row["matches"] for row in report["counts"]), report["counts"]


def test_upgrade_of_a_database_already_holding_the_findings_is_a_no_op(fresh_loaded_db: Database) -> None:
    result = run_cli("upgrade", env=fresh_loaded_db.env())
    assert result.returncode == 0 and "nothing changed" in result.stdout


def test_upgrade_of_an_unloaded_database_says_so(fresh_db: Database) -> None:
    result = run_cli("upgrade", env=fresh_db.env())
    assert result.returncode != 0 and "never loaded" in result.stderr and "Traceback" not in result.stderr


def _edit_card(root: Path, insurer: str, coverage_name_raw: str, edit) -> None:
    path = root / "cards" / f"{insurer}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        card = json.loads(line)
        if card["coverage_name_raw"] == coverage_name_raw:
            edit(card)
            lines[number] = json.dumps(card, ensure_ascii=False)
            break
    else:
        raise AssertionError(f"no card {coverage_name_raw} in {insurer}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _first_confirmed(root: Path, insurer: str) -> dict:
    for line in (root / "cards" / f"{insurer}.jsonl").read_text(encoding="utf-8").splitlines():
        card = json.loads(line)
        amount = card["amount"]
        if amount["status"] == "CONFIRMED" and "," in (amount["value_text"] or "") and \
                amount["value_text"] in amount["evidence_ref"]["snippet"]:
            return card
    raise AssertionError("no CONFIRMED card")


def test_another_truncation_in_a_modified_dataset_is_flagged_and_kept_as_given(fresh_db: Database,
                                                                             tmp_path: Path) -> None:
    root = copy_dataset(tmp_path)
    card = _first_confirmed(root, "samsung")
    value = card["amount"]["value_text"]  # e.g. 3,000만원; its last characters survive a lost prefix
    truncated = value[-5:]
    assert truncated != value

    def truncate(card: dict) -> None:
        card["amount"]["value_text"] = truncated

    _edit_card(root, "samsung", card["coverage_name_raw"], truncate)
    remanifest(root)
    loader.load(root)
    rows = [row for row in _finding_rows(fresh_db) if row[2] == card["coverage_name_raw"]]
    assert "digit_before" in {row[3] for row in rows}  # the digits and comma lost before it are still printed
    assert all(row[4] == truncated for row in rows)
    facts = {(row[0], row[2]): row[3:] for row in _facts(fresh_db)}
    assert facts[("samsung_health_v1", card["coverage_name_raw"])] == ("CONFIRMED", truncated)
    assert core.status.collect().lock_state == "INTACT"


def test_the_load_checks_each_distinct_fact_once_and_finds_what_every_fact_gives(loaded_db: Database) -> None:
    """findings_load.compute (distinct triples checked once) == check_fact over every CONFIRMED fact."""
    with db.admin_engine().connect() as conn:
        facts = conn.exec_driver_sql(
            "SELECT af.amount_id, af.instance_id, af.evidence_id, af.value_text, e.snippet, ci.coverage_name_raw "
            "FROM amount_fact af JOIN evidence_ref e ON e.evidence_id = af.evidence_id "
            "JOIN coverage_instance ci ON ci.instance_id = af.instance_id WHERE af.status = 'CONFIRMED'").all()
        plain = sorted(((a, i, e, f.kind, f.value_text, f.context, f.detail)
                        for a, i, e, value, snippet, name in facts for f in check_fact(value, snippet, name)),
                       key=lambda row: (str(row[0]), row[3]))
        assert plain and findings_load.compute(conn) == plain
