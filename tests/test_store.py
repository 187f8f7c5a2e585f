"""The store: schema, audited load, the lock the database enforces, status and its errors."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from core import config, db
from core.errors import AuditFailed, ConfigError, DatasetError, SchemaMissing
from core.lock import LockState
from core.ops import dataset, load_audit, loader, migrate
from core.status import DatabaseInfo, collect
from tests.conftest import PROJECT, Database, PgServer

DATASET = PROJECT / "data" / "dataset"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, env=full_env,
                          cwd=PROJECT, timeout=120)


def admin_conn(database: Database) -> psycopg.Connection:
    return psycopg.connect(db.psycopg_conninfo(database.admin), autocommit=True)


def reader_conn(database: Database) -> psycopg.Connection:
    return psycopg.connect(db.psycopg_conninfo(database.reader), autocommit=True)


# --- load and status ---------------------------------------------------------------------------

def test_status_json_reports_loaded_counts_and_intact_lock(loaded_db: Database) -> None:
    result = run_cli("status", "--json", env=loaded_db.env())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    counts = {row["table"]: row["live"] for row in report["counts"]}
    assert counts["amount_fact"] == 297
    assert counts["amount_fact_confirmed"] == 222
    assert counts["amount_fact_unconfirmed"] == 75
    assert counts["coverage_canonical"] == 48
    assert counts["coverage_instance_unmatched"] == 79
    assert all(row["matches"] for row in report["counts"])
    assert report["lock"]["state"] == "INTACT"
    assert report["lock"]["audit_status"] == "PASS"
    assert report["lock"]["freeze_tag"] == "freeze/pre-10b2g2-20251229-024400"
    assert report["lock"]["git_commit"].startswith("c6fad90")
    assert report["lock"]["recorded_fingerprint"] == report["lock"]["live_fingerprint"]
    assert report["database"]["read_only_transaction"] is True
    assert report["database"]["reader_select_only"] is True
    assert report["database"]["pgvector_version"]


def test_load_records_original_and_own_audit(loaded_db: Database) -> None:
    with admin_conn(loaded_db) as conn:
        runs = conn.execute("SELECT kind, audit_name, status, rows_audited, fingerprint IS NOT NULL, based_on IS NOT NULL"
                            " FROM audit_runs ORDER BY kind DESC").fetchall()
    assert runs == [("original", "step7_amount_gt_audit", "PASS", 240, False, False),
                    ("load", "inca_load_audit", "PASS", 297, True, True)]


def test_every_confirmed_value_is_in_its_proposal_snippet(loaded_db: Database) -> None:
    with reader_conn(loaded_db) as conn:
        rows = conn.execute("SELECT af.value_text, e.snippet, e.doc_type FROM amount_fact af "
                            "JOIN evidence_ref e ON e.evidence_id = af.evidence_id WHERE af.status = 'CONFIRMED'").fetchall()
    assert len(rows) == 222
    for value_text, snippet, doc_type in rows:
        assert doc_type == "가입설계서"
        assert "".join(value_text.split()) in "".join(snippet.split())


def test_stored_values_equal_the_dataset_cards_verbatim(loaded_db: Database) -> None:
    cards = [json.loads(line) for path in sorted((DATASET / "cards").glob("*.jsonl"))
             for line in path.read_text(encoding="utf-8").splitlines()]
    with reader_conn(loaded_db) as conn:
        stored = set(conn.execute(
            "SELECT i.insurer_key, ci.coverage_name_raw, ci.coverage_code, af.status, af.value_text FROM amount_fact af "
            "JOIN coverage_instance ci USING (instance_id) JOIN insurer i USING (insurer_id)").fetchall())
    expected = {(c["insurer"], c["coverage_name_raw"], c["coverage_code"], c["amount"]["status"], c["amount"]["value_text"])
                for c in cards}
    assert stored == expected


def test_second_load_changes_nothing(loaded_db: Database) -> None:
    before = collect()
    result = run_cli("load", env=loaded_db.env())
    assert result.returncode == 0, result.stderr
    assert "nothing changed" in result.stdout
    after = collect()
    assert after.lock.recorded_fingerprint == before.lock.recorded_fingerprint
    assert after.counts == before.counts


def test_fingerprint_depends_on_content_not_uuids(fresh_loaded_db: Database, loaded_db_session: Database) -> None:
    with admin_conn(fresh_loaded_db) as one, admin_conn(loaded_db_session) as two:
        first = one.execute("SELECT inca_amount_fact_fingerprint()").fetchone()
        second = two.execute("SELECT inca_amount_fact_fingerprint()").fetchone()
        ids_one = {r[0] for r in one.execute("SELECT amount_id FROM amount_fact")}
        ids_two = {r[0] for r in two.execute("SELECT amount_id FROM amount_fact")}
    assert first == second
    assert not ids_one & ids_two


def test_migrations_are_idempotent_and_recorded(loaded_db: Database) -> None:
    engine = db.admin_engine()
    with engine.begin() as conn:
        assert migrate.apply(conn) == []
        assert migrate.applied_version(conn) == migrate.latest_version()


# --- the lock ----------------------------------------------------------------------------------

READER_WRITES = [
    "INSERT INTO amount_fact (instance_id, status) SELECT instance_id, 'UNCONFIRMED' FROM coverage_instance LIMIT 1",
    "UPDATE amount_fact SET value_text = '9억원' WHERE status = 'CONFIRMED'",
    "DELETE FROM amount_fact",
    "TRUNCATE amount_fact CASCADE",
    "UPDATE audit_runs SET status = 'PASS'",
]


@pytest.mark.parametrize("statement", READER_WRITES)
def test_reading_role_cannot_write(loaded_db: Database, statement: str) -> None:
    with reader_conn(loaded_db) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(statement)
        # Even a session that turns read-only off lacks the privilege.
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


OWNER_WRITES = [
    "UPDATE amount_fact SET value_text = '9억원' WHERE status = 'CONFIRMED'",
    "DELETE FROM amount_fact WHERE status = 'UNCONFIRMED'",
    "TRUNCATE amount_fact CASCADE",
    "INSERT INTO audit_runs (kind, audit_name, status, freeze_tag, git_commit, generated_at, rows_audited)"
    " VALUES ('load', 'fake', 'PASS', 'x', 'y', now(), 0)",
    "UPDATE evidence_ref SET snippet = 'changed'",
    "UPDATE coverage_instance SET coverage_name_raw = 'x'",
]


@pytest.mark.parametrize("statement", OWNER_WRITES)
def test_owner_writes_outside_the_audited_load_are_refused(loaded_db: Database, statement: str) -> None:
    with admin_conn(loaded_db) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="inca lock"):
            conn.execute(statement)
        # A session-level flag does not open the lock: it is bound to the loader's transaction id.
        conn.execute("SET inca.audited_load = '1'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="inca lock"):
            conn.execute(statement)


def test_tampering_behind_the_triggers_breaks_the_lock(fresh_loaded_db: Database) -> None:
    with admin_conn(fresh_loaded_db) as conn:
        conn.execute("SET session_replication_role = replica")  # superuser bypass of triggers
        conn.execute("UPDATE amount_fact SET value_text = '1억원' WHERE amount_id = "
                     "(SELECT amount_id FROM amount_fact WHERE status = 'CONFIRMED' LIMIT 1)")
    result = run_cli("status", "--json", env=fresh_loaded_db.env())
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["lock"]["state"] == "BROKEN"
    assert report["lock"]["recorded_fingerprint"] != report["lock"]["live_fingerprint"]
    assert any("BROKEN" in problem for problem in report["problems"])
    human = run_cli("status", env=fresh_loaded_db.env())
    assert human.returncode == 1 and "lock:      BROKEN" in human.stdout


# --- a failing load leaves the database as it was ----------------------------------------------

def copy_dataset(tmp_path: Path) -> Path:
    target = tmp_path / "dataset"
    shutil.copytree(DATASET, target)
    return target


def remanifest(root: Path) -> None:
    """Accept edited files (as a maintainer would), so the audit, not the checksum, must catch them."""
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"] = dataset.file_digests(root)
    (root / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")


def assert_empty(database: Database) -> None:
    with admin_conn(database) as conn:
        exists = conn.execute("SELECT to_regclass('amount_fact') IS NOT NULL").fetchone()[0]
        if exists:
            assert conn.execute("SELECT count(*) FROM amount_fact").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM audit_runs").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM insurer").fetchone()[0] == 0


def test_missing_dataset_file_fails_cleanly(fresh_db: Database, tmp_path: Path) -> None:
    root = copy_dataset(tmp_path)
    (root / "cards" / "kb.jsonl").unlink()
    result = run_cli("load", env={**fresh_db.env(), "INCA_DATASET_DIR": str(root)})
    assert result.returncode == DatasetError.exit_code
    assert "dataset file missing" in result.stderr and "kb.jsonl" in result.stderr
    assert "Traceback" not in result.stderr
    assert_empty(fresh_db)


def test_edited_dataset_file_fails_its_checksum(fresh_db: Database, tmp_path: Path) -> None:
    root = copy_dataset(tmp_path)
    path = root / "cards" / "samsung.jsonl"
    path.write_text(path.read_text(encoding="utf-8").replace("1,000만원", "2,000만원", 1), encoding="utf-8")
    with pytest.raises(DatasetError, match="differs from the manifest checksum"):
        loader.load(root)
    assert_empty(fresh_db)


def test_malformed_json_line_is_named(fresh_db: Database, tmp_path: Path) -> None:
    root = copy_dataset(tmp_path)
    path = root / "cards" / "meritz.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4][:40]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    remanifest(root)
    with pytest.raises(DatasetError, match=r"meritz\.jsonl: line 5 is not valid JSON"):
        loader.load(root)
    assert_empty(fresh_db)


def test_value_not_in_snippet_fails_the_audit_and_loads_nothing(fresh_db: Database, tmp_path: Path) -> None:
    root = copy_dataset(tmp_path)
    path = root / "cards" / "samsung.jsonl"
    cards = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    victim = next(card for card in cards if card["amount"]["status"] == "CONFIRMED")
    victim["amount"]["value_text"] = "7,777만원"
    path.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in cards) + "\n", encoding="utf-8")
    remanifest(root)
    with pytest.raises(AuditFailed) as failure:
        loader.load(root)
    assert any(victim["coverage_name_raw"] in line and "7,777만원" in line for line in failure.value.failures)
    assert_empty(fresh_db)


def test_unconfirmed_with_a_value_fails_the_audit(fresh_db: Database, tmp_path: Path) -> None:
    root = copy_dataset(tmp_path)
    path = root / "cards" / "hanwha.jsonl"
    cards = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    victim = next(card for card in cards if card["amount"]["status"] == "UNCONFIRMED")
    victim["amount"]["value_text"] = "1천만원"  # a guessed amount must never be stored as unconfirmed
    path.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in cards) + "\n", encoding="utf-8")
    remanifest(root)
    with pytest.raises(AuditFailed, match="UNCONFIRMED but carries an amount"):
        loader.load(root)
    assert_empty(fresh_db)


def _facts_sharing_a_value(rows: list[tuple]) -> tuple[int, int]:
    """Positions of two CONFIRMED facts printed with the same value_text (their snippets both hold it)."""
    seen: dict[str, int] = {}
    for position, row in enumerate(rows):
        if row[2] == "CONFIRMED":
            if row[3] in seen:
                return seen[row[3]], position
            seen[row[3]] = position
    raise AssertionError("the dataset has no two facts with the same printed amount")


def test_proposal_evidence_of_another_coverage_fails_the_pre_audit() -> None:
    bundle = dataset.read_bundle(PROJECT / "data" / "dataset")
    facts = bundle.rows["amount_fact"]
    first, second = _facts_sharing_a_value(facts)
    assert loader.pre_audit(bundle) == []
    moved = list(facts[first])
    moved[6] = facts[second][6]  # the other fact's proposal snippet: it holds the same amount text
    facts[first] = tuple(moved)
    failures = loader.pre_audit(bundle)
    assert len(failures) == 1 and failures[0].endswith("its proposal evidence belongs to another coverage")


def test_proposal_evidence_of_another_coverage_fails_the_post_audit(fresh_loaded_db: Database) -> None:
    with admin_conn(fresh_loaded_db) as conn:
        rows = conn.execute("SELECT amount_id, instance_id, status, value_text, NULL, NULL, evidence_id "
                            "FROM amount_fact ORDER BY amount_id").fetchall()
        first, second = _facts_sharing_a_value(rows)
        conn.execute("BEGIN")
        conn.execute("SELECT inca_open_audited_load()")
        assert load_audit.written_evidence_failures(conn) == ([], [])
        conn.execute("UPDATE amount_fact SET evidence_id = %s WHERE amount_id = %s", (rows[second][6], rows[first][0]))
        failing, mismatches = load_audit.written_evidence_failures(conn)
        conn.execute("ROLLBACK")
    assert [(amount_id, reason) for amount_id, _instance, reason in failing] == [
        (rows[first][0], "its proposal evidence belongs to another coverage")]
    assert mismatches == []


def test_database_constraints_reject_bad_facts_even_inside_the_load(fresh_loaded_db: Database) -> None:
    with admin_conn(fresh_loaded_db) as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT inca_open_audited_load()")
        with pytest.raises(psycopg.errors.CheckViolation, match="amount_fact_confirmed_has_value"):
            conn.execute("UPDATE amount_fact SET evidence_id = NULL WHERE status = 'CONFIRMED'")
        conn.execute("ROLLBACK")
        conn.execute("BEGIN")
        conn.execute("SELECT inca_open_audited_load()")
        with pytest.raises(psycopg.errors.CheckViolation, match="amount_fact_unconfirmed_has_no_value"):
            conn.execute("UPDATE amount_fact SET value_text = '1만원' WHERE status = 'UNCONFIRMED'")
        conn.execute("ROLLBACK")
        conn.execute("BEGIN")
        conn.execute("SELECT inca_open_audited_load()")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE evidence_ref SET page = 0 WHERE page IS NOT NULL")
        conn.execute("ROLLBACK")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("BEGIN; SELECT inca_open_audited_load(); "
                         "INSERT INTO coverage_canonical (coverage_code, canonical_name) VALUES ('a4200', 'x')")
        conn.execute("ROLLBACK")


# --- errors a user can cause -------------------------------------------------------------------

def test_database_without_schema_is_reported(fresh_db: Database) -> None:
    result = run_cli("status", env=fresh_db.env())
    assert result.returncode != 0
    assert "no inca schema" in result.stdout
    assert "Traceback" not in result.stderr


def test_unreachable_server_is_one_line_without_password() -> None:
    env = {"DATABASE_URL": "postgresql://analyst:s3cret-pw@127.0.0.1:1/inca", "INCA_ADMIN_URL": ""}
    result = run_cli("load", env=env)
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0
    assert "unreachable" in result.stderr and "s3cret-pw" not in result.stderr + result.stdout
    report = run_cli("status", "--json", env=env)
    assert report.returncode == 1
    body = json.loads(report.stdout)
    assert body["reachable"] is False
    assert "s3cret-pw" not in report.stdout
    # the same keys as a healthy report (None where unread), and the lock says why it is unknown
    assert set(body["database"]) == {item.name for item in dataclasses.fields(DatabaseInfo)}
    assert set(body["lock"]) == {item.name for item in dataclasses.fields(LockState)}
    assert body["lock"]["state"] == "UNKNOWN" and "unreachable" in body["lock"]["reason"]
    assert body["database"]["url"] and body["database"]["server_version"] is None


@pytest.mark.parametrize("url", ["not a url", "mysql://u:p@h/db", "postgresql://u:p@h:99999/db", "postgresql://u:p@h:5432"])
def test_malformed_url_is_a_config_error(url: str) -> None:
    result = run_cli("status", env={"DATABASE_URL": url, "INCA_ADMIN_URL": ""})
    # a configuration error, not an unhealthy report: exit 2 with the one line, like load
    assert result.returncode == ConfigError.exit_code
    assert "DATABASE_URL" in result.stderr and "Traceback" not in result.stderr
    loaded = run_cli("load", env={"DATABASE_URL": url, "INCA_ADMIN_URL": ""})
    assert loaded.returncode == ConfigError.exit_code
    assert "Traceback" not in loaded.stderr and "DATABASE_URL" in loaded.stderr


def test_wrong_password_is_reported(server: PgServer, loaded_db: Database) -> None:
    """Password checking is enabled for one role only, so the rest of the suite keeps trust auth."""
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS inca_pw_test")
        conn.execute("CREATE ROLE inca_pw_test LOGIN PASSWORD 'right-password'")
        hba_path = conn.execute("SHOW hba_file").fetchone()[0]
        original = Path(hba_path).read_text()
        Path(hba_path).write_text("local all inca_pw_test scram-sha-256\n" + original)
        conn.execute("SELECT pg_reload_conf()")
    try:
        wrong = loaded_db.reader.set(username="inca_pw_test", password="wrong-password")
        result = run_cli("load", env={"DATABASE_URL": wrong.render_as_string(hide_password=False), "INCA_ADMIN_URL": ""})
        assert result.returncode == 3
        assert "wrong user name or password" in result.stderr
        assert "wrong-password" not in result.stderr
    finally:
        Path(hba_path).write_text(original)
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("DROP ROLE inca_pw_test")


def test_status_flags_a_reader_that_could_refresh_a_summary(fresh_loaded_db: Database) -> None:
    assert collect(include_backups=False).database.reader_select_only is True
    with admin_conn(fresh_loaded_db) as conn:
        conn.execute("GRANT MAINTAIN ON catalog_raw_name TO inca_read")  # PostgreSQL 17+: REFRESH allowed
    report = collect(include_backups=False)
    assert report.database.reader_select_only is False
    assert any("can write, own or refresh" in problem for problem in report.problems)


def test_schema_missing_error_from_reads(fresh_db: Database) -> None:
    with pytest.raises(SchemaMissing), db.read() as conn:
        conn.execute(text("SELECT count(*) FROM amount_fact"))


def test_a_reader_without_select_gets_one_clear_line(fresh_loaded_db: Database) -> None:
    import core

    with admin_conn(fresh_loaded_db) as conn:
        conn.execute("REVOKE SELECT ON evidence_ref FROM inca_read")
    with pytest.raises(ConfigError, match=r"may not read some table \(permission denied for table evidence_ref"):
        core.compare(["samsung"], ["A4200_1"])  # through the pipeline: the driver's error unwrapped
    with pytest.raises(ConfigError, match="inca_read"), db.read() as conn:
        conn.execute(text("SELECT count(*) FROM evidence_ref"))  # through SQLAlchemy


def test_compare_on_an_empty_database_says_what_to_do(fresh_db: Database) -> None:
    import core

    # compare() queries through a psycopg pipeline: its driver errors arrive unwrapped by SQLAlchemy
    with pytest.raises(SchemaMissing, match="python -m core load"):
        core.compare(["samsung"], ["A4200_1"])
    with db.admin_engine().begin() as conn:  # the schema, no load
        migrate.apply(conn)
    with pytest.raises(core.SelectionError, match="python -m core load"):
        core.compare(["samsung"], ["A4200_1"])


# --- settings ----------------------------------------------------------------------------------

def test_libpq_urls_are_accepted_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    url = config.parse_database_url("postgres://reader:pw@/inca?host=/tmp/sock", "DATABASE_URL")
    assert url.drivername == "postgresql+psycopg"
    assert url.query["host"] == "/tmp/sock"
    assert "pw" not in config.mask(url)
    monkeypatch.setenv("DATABASE_URL", "postgresql://reader:pw@db:5432/inca")
    monkeypatch.delenv("INCA_ADMIN_URL", raising=False)
    reader, admin = config.configured_urls() or (None, None)
    assert reader == admin  # the owner connection falls back to DATABASE_URL


def test_production_refuses_weak_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCA_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://reader:short@db:5432/inca")
    monkeypatch.delenv("INCA_ADMIN_URL", raising=False)
    with pytest.raises(ConfigError, match="at least 20 characters") as error:
        config.configured_urls()
    assert "short" not in str(error.value)
    monkeypatch.setenv("DATABASE_URL", "postgresql://reader:" + "x" * 32 + "@db:5432/inca")
    assert config.configured_urls() is not None


def test_reading_role_cannot_create_a_temporary_table(loaded_db: Database) -> None:
    """Asking for a read-write transaction leaves the reader nothing to write, not even TEMP (schema 009)."""
    with reader_conn(loaded_db) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute("SET TRANSACTION READ WRITE")  # allowed: a session setting, not a privilege
        conn.execute("CREATE TEMP TABLE scratch (x int)")
    with reader_conn(loaded_db) as conn:
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TEMPORARY TABLE scratch AS SELECT 1")
