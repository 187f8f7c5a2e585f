"""Issue 17: the lock covers every locked relation; any change behind the triggers turns it BROKEN everywhere.

Each case tampers with a freshly loaded database as the superuser (or the owner), after a first INTACT
request has been served (so a cached proof exists), then checks the very next request: status BROKEN
(exit non-zero), /health 503, /compare refusing. The tampering session forces its statistics out
(pg_stat_force_next_flush) so "the next request" is well defined: a session that keeps its statistics
pending is seen within the server's flush interval (docs/operations.md, "What the lock covers").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from core import db
from core.status import collect
from tests.conftest import PROJECT, READER, Database, PgServer, point_env_at

GUIDE = {"products": [{"insurer": "삼성화재"}, {"insurer": "메리츠화재"}], "target_coverages": [{"coverage_code": "A4200_1"}]}
REPLICA = "SET session_replication_role = replica"
ONE_CONFIRMED = "(SELECT amount_id FROM amount_fact WHERE status = 'CONFIRMED' ORDER BY amount_id LIMIT 1)"


def _sql(*statements: str) -> list[str]:
    return list(statements)


# (case id, statements run by the superuser on an autocommit connection)
TAMPER: list[tuple[str, list[str]]] = [
    # update, behind the triggers (replica role), one per locked table
    ("update-insurer-name", _sql(REPLICA, "UPDATE insurer SET name_ko = name_ko || ' ' WHERE insurer_key = 'hyundai'")),
    ("update-product-name", _sql(REPLICA, "UPDATE product SET product_name = 'X' WHERE product_id = "
                                          "(SELECT min(product_id::text)::uuid FROM product)")),
    ("update-variant", _sql(REPLICA, "UPDATE product_variant SET variant_name = 'X' WHERE variant_id = "
                                     "(SELECT min(variant_id::text)::uuid FROM product_variant)")),
    ("update-document-title", _sql(REPLICA, "UPDATE document SET title = 'X' WHERE document_id = "
                                            "(SELECT min(document_id::text)::uuid FROM document)")),
    ("update-canonical-name", _sql(REPLICA, "UPDATE coverage_canonical SET canonical_name = 'X' "
                                            "WHERE coverage_code = 'A4200_1'")),
    ("update-instance-raw-name", _sql(REPLICA, "UPDATE coverage_instance SET coverage_name_raw = 'X' WHERE instance_id = "
                                               "(SELECT min(instance_id::text)::uuid FROM coverage_instance)")),
    ("update-supporting-snippet", _sql(REPLICA, "UPDATE evidence_ref SET snippet = 'X' WHERE evidence_id = "
                                                "(SELECT min(evidence_id::text)::uuid FROM evidence_ref "
                                                "WHERE doc_type = '약관')")),
    ("update-evidence-source-file", _sql(REPLICA, "UPDATE evidence_ref SET source_file = 'x.pdf' WHERE evidence_id = "
                                                  "(SELECT min(evidence_id::text)::uuid FROM evidence_ref)")),
    ("update-amount", _sql(REPLICA, f"UPDATE amount_fact SET value_text = '9억원' WHERE amount_id = {ONE_CONFIRMED}")),
    ("update-alias", _sql(REPLICA, "UPDATE coverage_alias SET alias_text = 'X' WHERE alias_id = "
                                   "(SELECT min(alias_id::text)::uuid FROM coverage_alias)")),
    ("update-audit-freeze-tag", _sql(REPLICA, "UPDATE audit_runs SET freeze_tag = 'freeze/other'")),
    ("update-audit-commit", _sql(REPLICA, "UPDATE audit_runs SET git_commit = repeat('0', 40) WHERE kind = 'original'")),
    ("update-lock-record", _sql(REPLICA, "UPDATE lock_record SET digest = repeat('0', 64) WHERE relname = 'document'")),
    # insert, delete, truncate
    ("insert-insurer", _sql(REPLICA, "INSERT INTO insurer (insurer_key, name_ko, insurer_type) VALUES ('zz', 'X', '손해')")),
    ("insert-evidence", _sql(REPLICA, "INSERT INTO evidence_ref (instance_id, doc_type, snippet) "
                                      "SELECT instance_id, '약관', 'X' FROM coverage_instance LIMIT 1")),
    ("delete-six-evidence-rows", _sql(REPLICA, "DELETE FROM evidence_ref WHERE evidence_id IN (SELECT evidence_id FROM "
                                               "evidence_ref WHERE doc_type = '약관' ORDER BY evidence_id LIMIT 6)")),
    ("delete-lock-seal", _sql(REPLICA, "DELETE FROM lock_seal", "DELETE FROM lock_record")),
    ("truncate-alias", _sql(REPLICA, "TRUNCATE coverage_alias")),
    # a materialized view replaced by another with the same name
    ("replace-summary-view", _sql(
        "ALTER MATERIALIZED VIEW insurer_status_count RENAME TO insurer_status_count_old",
        "CREATE MATERIALIZED VIEW insurer_status_count AS SELECT insurer_key, 'X'::text AS insurer_name, confirmed, "
        "unconfirmed, unmatched FROM insurer_status_count_old",
        "GRANT SELECT ON insurer_status_count TO inca_read")),
    # the comparison cells (schema 012) replaced by a copy with one amount changed: what compare's table reads
    ("replace-comparison-cells", _sql(
        "ALTER MATERIALIZED VIEW comparison_cell RENAME TO comparison_cell_old",
        "CREATE MATERIALIZED VIEW comparison_cell AS SELECT product_key, coverage_code, coverage_name_raw, status, "
        "CASE WHEN status = 'CONFIRMED' THEN '9억원' ELSE value_text END AS value_text, source_doc_type, "
        "source_priority, proposal_doc_type, proposal_page, proposal_source_file, snippet_count, variant, "
        "slot_statuses, slot_phrases FROM comparison_cell_old",
        "GRANT SELECT ON comparison_cell TO inca_read")),
    # triggers disabled by the superuser
    ("triggers-disabled", _sql("ALTER TABLE document DISABLE TRIGGER ALL", "UPDATE document SET title = 'X'",
                               "ALTER TABLE document ENABLE TRIGGER ALL")),
    # statistics reset after a write: the counters no longer show it, the reset itself moves the witness
    ("statistics-reset", _sql(REPLICA, f"UPDATE amount_fact SET value_text = '9억원' WHERE amount_id = {ONE_CONFIRMED}",
                              "SELECT pg_stat_reset()")),
    ("table-statistics-reset", _sql(REPLICA, "UPDATE insurer SET name_ko = 'X' WHERE insurer_key = 'db'",
                                    "SELECT pg_stat_reset_single_table_counters('insurer'::regclass)")),
    # the owner rewrites a column: no tuple counter moves, only the file number (the comparison cells of
    # schema 012 depend on the column, so PostgreSQL refuses the rewrite until the owner drops them; the
    # owner then rebuilds them from their migration, over the rewritten amounts)
    ("owner-table-rewrite", _sql(
        "DROP MATERIALIZED VIEW comparison_cell",
        "ALTER TABLE amount_fact ALTER COLUMN value_text TYPE text USING CASE WHEN status = 'CONFIRMED' "
        "THEN '5,000만원' ELSE value_text END",
        (PROJECT / "core" / "schema" / "012_comparison_cell.sql").read_text(encoding="utf-8"))),
]


def tamper(database: Database, statements: list[str]) -> None:
    with psycopg.connect(db.psycopg_conninfo(database.admin), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.execute("SELECT pg_stat_force_next_flush()")  # this session's counters reach the server now


@pytest.fixture(scope="module")
def loaded_template(server: PgServer) -> Iterator[str]:
    """One audited load per module; each test gets a byte copy (CREATE DATABASE … TEMPLATE, ~0.2 s)."""
    from core.ops import loader

    name = server.create("inca_tamper_tpl")
    point_env_at(server, name)
    loader.load()
    db.dispose_all()
    yield name
    server.drop(name)


@pytest.fixture
def fresh_loaded_db(server: PgServer, loaded_template: str) -> Iterator[Database]:
    """A private copy of the loaded database (a copy starts with no statistics: its first view runs the full proof)."""
    name = f"inca_tamper_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{loaded_template}"')  # generated names, not input
    point_env_at(server, name)
    yield Database(name, server.url(name, READER), server.url(name))
    db.dispose_all()
    server.drop(name)


@pytest.fixture
def api() -> Iterator[TestClient]:
    from api.server import app

    with TestClient(app) as client:  # in-process, against the environment conftest points at the database
        yield client


def assert_broken_everywhere(api: TestClient) -> None:
    health = api.get("/health")
    assert health.status_code == 503 and health.json()["error"] == "lock broken", health.text
    answer = api.post("/compare", json=GUIDE)
    assert answer.status_code == 503 and answer.json()["error"] == "lock broken", answer.text
    report = collect(include_backups=False)
    assert report.lock_state == "BROKEN" and not report.ok


@pytest.mark.parametrize(("case", "statements"), TAMPER, ids=[case for case, _ in TAMPER])
def test_tampering_turns_the_lock_broken_on_the_next_request(fresh_loaded_db: Database, api: TestClient,
                                                               case: str, statements: list[str]) -> None:
    assert api.get("/health").status_code == 200 and api.post("/compare", json=GUIDE).status_code == 200  # a proof is cached
    tamper(fresh_loaded_db, statements)
    assert_broken_everywhere(api)


def test_intact_lock_covers_every_locked_relation_and_reuses_the_load_proof(fresh_loaded_db: Database) -> None:
    from core import lock

    with db.read() as conn:
        state = lock.read_lock(conn)
        assert state.intact and state.scope == "full" and state.proof == "full proof"  # a copy has no statistics
        registered = sorted(conn.exec_driver_sql("SELECT relname FROM inca_locked_relation").scalars())
        again = lock.read_lock(conn)
    assert list(state.covers) == registered and "evidence_ref" in registered and "coverage_alias_vector" in registered
    assert again.proof == "witness unchanged since the last full proof"


def test_forged_guard_is_refused_and_the_lock_stays_intact(fresh_loaded_db: Database, api: TestClient) -> None:
    with psycopg.connect(db.psycopg_conninfo(fresh_loaded_db.admin)) as conn:
        conn.execute("SELECT set_config('inca.audited_load', pg_current_xact_id()::text, true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="inca lock"):
            conn.execute("UPDATE amount_fact SET value_text = '9억원' WHERE status = 'CONFIRMED'")
    assert api.get("/health").status_code == 200


def test_reading_role_cannot_open_the_gate(fresh_loaded_db: Database) -> None:
    with psycopg.connect(db.psycopg_conninfo(fresh_loaded_db.reader)) as conn, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT inca_open_audited_load()")
    report = collect(include_backups=False)
    assert report.database.reader_owns_nothing is True


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=PROJECT, timeout=120)


@pytest.mark.parametrize("case", ["owner-table-rewrite", "delete-six-evidence-rows"])
def test_cli_status_exits_non_zero(fresh_loaded_db: Database, case: str) -> None:
    tamper(fresh_loaded_db, dict(TAMPER)[case])
    result = run_cli("status", "--json", env=fresh_loaded_db.env())
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["lock"]["state"] == "BROKEN" and report["lock"]["mismatches"]


def test_dashboard_shows_the_red_banner_on_the_next_run(fresh_loaded_db: Database) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT / "dashboard" / "app.py"), default_timeout=60).run()
    assert not any("BROKEN" in error.value for error in at.error)
    tamper(fresh_loaded_db, dict(TAMPER)["owner-table-rewrite"])
    at.run()
    assert any("BROKEN" in error.value for error in at.error)


def test_upgrade_records_the_full_lock_of_an_earlier_load(fresh_loaded_db: Database) -> None:
    """A database loaded before schema 008 (no record) says so, and `upgrade` records it, once."""
    tamper(fresh_loaded_db, [REPLICA, "DELETE FROM lock_record", "DELETE FROM lock_seal",
                             "UPDATE audit_runs SET counts = counts - 'lock_seal'"])
    before = collect(include_backups=False)
    assert before.lock.scope == "amount_fact only" and before.lock_state == "INTACT"
    assert any("python -m core upgrade" in problem for problem in before.problems)
    first = run_cli("upgrade", env=fresh_loaded_db.env())
    assert first.returncode == 0 and "lock recorded" in first.stdout, first.stderr
    second = run_cli("upgrade", env=fresh_loaded_db.env())
    assert second.returncode == 0 and "nothing changed" in second.stdout
    after = collect(include_backups=False)
    assert after.lock_state == "INTACT" and after.lock.scope == "full" and after.ok, after.problems


def test_a_full_proof_digests_each_locked_relation_once(loaded_db: Database) -> None:
    """`(f(x)).*` would call the digest once per output column: every row of every relation read twice."""
    from sqlalchemy import text

    from core import lock

    with db.admin_engine().connect() as conn:
        conn.execute(text("SET LOCAL track_functions = 'all'"))
        relations = list(conn.execute(text("SELECT relname FROM inca_locked_relation")).scalars())
        digests = lock.relation_digests(conn, [*relations, "no_such_relation"])
        calls = conn.execute(text("SELECT calls FROM pg_stat_xact_user_functions "
                                  "WHERE funcname = 'inca_relation_digest'")).scalar_one()
    assert set(digests) == set(relations)
    assert calls == len(relations)


def test_kept_lookups_are_never_used_once_the_witness_moved(fresh_loaded_db: Database) -> None:
    """compare() keeps its catalog lookups and findings per request while the lock's witness is unchanged
    (core/unwritten.py): the same request again reads none of them; after a write behind the triggers it
    reads them again, in the same snapshot as the cells, and shows what the database now holds."""
    import core
    from core import comparison

    comparison.KEPT.clear()
    first = core.compare(["samsung"], ["A4200_1"])
    # products and coverages by the names given, findings by those names and (an insurer was named) by the
    # resolved product keys
    assert comparison.KEPT.hits == 0 and comparison.KEPT.misses == 4
    again = core.compare(["samsung"], ["A4200_1"])
    assert comparison.KEPT.hits == 4 and comparison.KEPT.misses == 4
    assert again.products == first.products and again.coverages == first.coverages
    assert again.findings == first.findings and again.audit.lock_state == "INTACT"
    tamper(fresh_loaded_db, [REPLICA, "UPDATE product SET product_name = '바뀐 이름' WHERE product_key = 'samsung_health_v1'",
                             "UPDATE coverage_canonical SET canonical_name = '바뀐 담보' WHERE coverage_code = 'A4200_1'"])
    after = core.compare(["samsung"], ["A4200_1"])
    assert [product.name for product in after.products] == ["바뀐 이름"]
    assert [coverage.name for coverage in after.coverages] == ["바뀐 담보"]
    assert after.audit.lock_state == "BROKEN" and comparison.KEPT.hits == 4 and comparison.KEPT.misses == 8


def test_kept_lookups_belong_to_one_database(fresh_loaded_db: Database, server: PgServer, loaded_template: str) -> None:
    """Two byte copies of one load hold the same audit runs and seal: what one database's reads kept is
    never used for the other (the witness names the database and the URL it was read through)."""
    import core
    from core import comparison

    comparison.KEPT.clear()
    first = core.compare(["samsung"], ["A4200_1"])
    name = f"inca_tamper_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{loaded_template}"')  # generated names, not input
    try:
        point_env_at(server, name)
        other = core.compare(["samsung"], ["A4200_1"])
        assert comparison.KEPT.hits == 0 and comparison.KEPT.misses == 8
        assert other.audit.audit_run_id == first.audit.audit_run_id  # the same load
        core.compare(["samsung"], ["A4200_1"])
        assert comparison.KEPT.hits == 4  # the other database's own results, kept for it
    finally:
        db.dispose_all()
        server.drop(name)
