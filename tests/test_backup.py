"""Backups against the real server: round trip, corrupt files, restore safety, retention and health."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL

from core import db
from core.errors import BackupError, DatabaseUnavailable
from core.ops import backup
from tests.conftest import PROJECT, Database, PgServer, point_env_at

NOW = datetime.now(UTC).replace(microsecond=0)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # stdin is not a TTY here, like cron: restore must refuse without --yes.
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, cwd=PROJECT,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, timeout=120)


def leftovers(server: PgServer) -> set[str]:
    """Databases a verification or a failed restore must never leave behind."""
    return {name for name in server.databases()
            if name.startswith(backup.SCRATCH_PREFIX) or ("_restore_" in name and "_before_restore_" not in name)}


def fingerprint_and_counts(url: URL) -> tuple[str, list[tuple[object, ...]]]:
    with psycopg.connect(db.psycopg_conninfo(url), autocommit=True) as conn:
        fingerprint = conn.execute("SELECT inca_amount_fact_fingerprint()").fetchone()
        counts = conn.execute("SELECT (SELECT count(*) FROM amount_fact), (SELECT count(*) FROM evidence_ref), "
                              "(SELECT count(*) FROM coverage_instance), (SELECT count(*) FROM audit_runs)").fetchall()
    assert fingerprint is not None
    return str(fingerprint[0]), counts


@pytest.fixture
def backup_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "backups"
    monkeypatch.setenv("INCA_BACKUP_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, server: PgServer, loaded_db_session: Database) -> Path:
    """One real, verified backup of the loaded database; tests copy it instead of dumping again."""
    point_env_at(server, loaded_db_session.name)
    result = backup.backup(tmp_path_factory.mktemp("reference"))
    backup.verify_backup(result.path)
    return result.path


def clone(source: Path, folder: Path, created_at: datetime, verified: str | None = "ok",
          verified_at: datetime | None = None) -> Path:
    """A copy of a real backup that claims another creation time (the manifest is the source of truth)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"inca-{created_at:%Y%m%dT%H%M%SZ}.dump"
    shutil.copyfile(source, target)
    manifest = json.loads(backup.manifest_path(source).read_text(encoding="utf-8"))
    manifest.update(file=target.name, created_at=created_at.isoformat())
    backup.manifest_path(target).write_text(json.dumps(manifest), encoding="utf-8")
    if verified is not None:
        record = {"at": (verified_at or created_at).isoformat(), "outcome": verified, "seconds": 0.5,
                  "reason": "test record"}
        backup.verify_path(target).write_text(json.dumps({"file": target.name, "verifications": [record]}))
    return target


# --- round trip -----------------------------------------------------------------------------------

def test_backup_verify_restore_round_trip(fresh_loaded_db: Database, server: PgServer, backup_dir: Path) -> None:
    before = fingerprint_and_counts(fresh_loaded_db.admin)
    env = fresh_loaded_db.env()
    made = run_cli("backup", env=env)
    assert made.returncode == 0, made.stderr
    dumps = list(backup_dir.glob("inca-*.dump"))
    assert len(dumps) == 1 and backup.manifest_path(dumps[0]).exists()
    manifest = backup.read_manifest(dumps[0])
    assert manifest["fingerprint"] == before[0] and manifest["lock"]["state"] == "INTACT"
    assert manifest["counts"]["amount_fact"] == 297 and manifest["schema_version"] >= 3
    assert manifest["sha256"] == backup.sha256_file(dumps[0])

    verified = backup.verify_backup()  # no FILE: the newest (the CLI form is exercised in the failure tests)
    assert verified.ok and verified.path == dumps[0]
    assert backup.read_verifications(dumps[0])[-1]["outcome"] == "ok"
    assert backup.health().state == backup.OK

    with psycopg.connect(db.psycopg_conninfo(fresh_loaded_db.admin), autocommit=True) as conn:  # a hardened ACL
        conn.execute(f'REVOKE CONNECT ON DATABASE "{fresh_loaded_db.name}" FROM PUBLIC')
        conn.execute(f'GRANT CONNECT ON DATABASE "{fresh_loaded_db.name}" TO inca_reader')
    db.dispose_all()  # the restore terminates every session on the live database, ours included
    restored = run_cli("restore", dumps[0].name, "--yes", env=env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "lock:      INTACT" in restored.stdout
    previous = f"{fresh_loaded_db.name}_before_restore_"
    kept = [name for name in server.databases() if name.startswith(previous)]
    try:
        assert len(kept) == 1 and kept[0] in restored.stdout
        assert fingerprint_and_counts(fresh_loaded_db.admin) == before
        assert fingerprint_and_counts(server.url(kept[0])) == before  # nothing lost: the old one is intact
        with psycopg.connect(server.conninfo()) as conn:  # the hardened database ACL was carried over
            acl = conn.execute("SELECT coalesce(r.rolname, 'PUBLIC'), a.privilege_type FROM pg_database d, "
                               "aclexplode(d.datacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
                               "WHERE d.datname = %s", (fresh_loaded_db.name,)).fetchall()
        assert ("inca_reader", "CONNECT") in acl and ("PUBLIC", "CONNECT") not in acl
        assert ("PUBLIC", "TEMPORARY") not in acl  # schema 009: readers get no TEMP
        with psycopg.connect(db.psycopg_conninfo(fresh_loaded_db.reader), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM amount_fact").fetchone() == (297,)  # the reader still reads
            conn.execute("SET default_transaction_read_only = off")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):  # ... and only reads: the grants came along
                conn.execute("DELETE FROM amount_fact")
        with psycopg.connect(db.psycopg_conninfo(fresh_loaded_db.admin), autocommit=True) as conn, \
                pytest.raises(psycopg.errors.InsufficientPrivilege, match="inca lock"):
            conn.execute("DELETE FROM amount_fact")
        assert not leftovers(server)
    finally:
        for name in kept:
            server.drop(name)


# --- damaged backups ------------------------------------------------------------------------------

def flip_byte(dump: Path) -> None:
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))


def truncate(dump: Path) -> None:
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])


def drop_manifest(dump: Path) -> None:
    backup.manifest_path(dump).unlink()


@pytest.mark.parametrize(("damage", "message"), [(flip_byte, "checksum mismatch: "), (truncate, "checksum mismatch: "),
                                                 (drop_manifest, "manifest missing: ")])
def test_damaged_backup_fails_verify_and_restore(damage: Callable[[Path], None], message: str, reference: Path,
                                                 fresh_db: Database, server: PgServer, backup_dir: Path) -> None:
    dump = clone(reference, backup_dir, NOW)
    damage(dump)
    commands = [("verify-backup", str(dump))]
    if damage is flip_byte:  # each subprocess costs ~2 s: the other cases run restore in-process below
        commands.append(("restore", dump.name, "--yes"))
    for args in commands:
        result = run_cli(*args, env=fresh_db.env())
        assert result.returncode == BackupError.exit_code, result.stderr
        assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr and dump.name in result.stderr
    with pytest.raises(BackupError, match=f"^{message}"):
        backup.restore(dump)
    assert not leftovers(server)
    assert backup.read_verifications(dump)[-1]["outcome"] == "failed"
    assert backup.health().state == backup.FAILING


def test_consistent_manifest_over_broken_content_fails_pg_restore(reference: Path, fresh_db: Database,
                                                                  server: PgServer, backup_dir: Path) -> None:
    """Someone 'fixed' the checksum of a truncated file: the test restore still catches it."""
    dump = clone(reference, backup_dir, NOW)
    truncate(dump)
    manifest = json.loads(backup.manifest_path(dump).read_text())
    manifest.update(size_bytes=dump.stat().st_size, sha256=backup.sha256_file(dump))
    backup.manifest_path(dump).write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="pg_restore failed"):
        backup.verify_backup(dump)
    assert not leftovers(server)
    with pytest.raises(BackupError, match="pg_restore failed"):
        backup.restore(dump)
    assert not leftovers(server)
    health = backup.health()
    assert health.state == backup.FAILING and "verification" in health.reason


def test_restored_content_is_compared_with_the_manifest(reference: Path, fresh_db: Database, server: PgServer,
                                                        backup_dir: Path) -> None:
    dump = clone(reference, backup_dir, NOW)
    manifest = json.loads(backup.manifest_path(dump).read_text())
    manifest["fingerprint"] = "0" * 64
    manifest["counts"]["amount_fact"] = 296
    backup.manifest_path(dump).write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="restored content differs from the manifest: amount_fact: 297 rows restored"):
        backup.verify_backup(dump)
    assert not leftovers(server)


def test_restore_without_yes_and_without_a_terminal_refuses(reference: Path, fresh_db: Database, server: PgServer,
                                                             backup_dir: Path) -> None:
    dump = clone(reference, backup_dir, NOW)
    result = run_cli("restore", str(dump), env=fresh_db.env())
    assert result.returncode == BackupError.exit_code
    assert "needs confirmation" in result.stderr and "--yes" in result.stderr and "Traceback" not in result.stderr
    assert not leftovers(server)
    with psycopg.connect(db.psycopg_conninfo(fresh_db.admin)) as conn:  # still the empty database
        assert conn.execute("SELECT to_regclass('amount_fact')").fetchone() == (None,)


def test_backup_of_an_empty_database_is_refused(fresh_db: Database, backup_dir: Path) -> None:
    with pytest.raises(BackupError, match="nothing to back up"):
        backup.backup()
    assert not backup_dir.exists() or not list(backup_dir.iterdir())


def test_failed_dump_leaves_no_file(loaded_db: Database, backup_dir: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A pg_dump dying half-way (disk full) leaves neither a dump nor a manifest, not even a temporary file."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_dump").write_text('#!/bin/sh\ncase "$1" in --version) echo "pg_dump (PostgreSQL) 99.0"; exit 0;; esac\n'
                                  'for a; do case "$a" in --file=*) echo partial > "${a#--file=}";; esac; done\n'
                                  'echo "pg_dump: error: could not write to output file: No space left on device" >&2\n'
                                  "exit 1\n")
    (fake / "pg_dump").chmod(0o755)
    monkeypatch.setenv("INCA_PG_BIN", str(fake))
    with pytest.raises(BackupError, match=r"pg_dump failed \(pg_dump exit 1\): could not write .*No space left"):
        backup.backup()
    assert list(backup_dir.iterdir()) == []


def test_missing_file_is_one_clear_line(backup_dir: Path) -> None:
    with pytest.raises(BackupError, match="no backup in"):
        backup.resolve(None)
    with pytest.raises(BackupError, match=r"backup file not found: nope\.dump"):
        backup.resolve("nope.dump")


# --- client programs and passwords ----------------------------------------------------------------

def test_client_program_must_match_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INCA_PG_BIN", raising=False)
    assert backup.client_program("pg_dump", 18).parent == backup._bundled_bin()
    with pytest.raises(BackupError, match="no pg_dump for PostgreSQL 99 found: install postgresql-client-99 "
                                          "or set INCA_PG_BIN"):
        backup.client_program("pg_dump", 99)
    old = next((p.parent for p in backup._candidates("pg_dump") if (backup._program_major(p) or 99) < 18), None)
    if old is not None:  # Debian's pg_dump 15 on these machines
        monkeypatch.setenv("INCA_PG_BIN", str(old))
        with pytest.raises(BackupError, match=r"INCA_PG_BIN=.* has pg_dump 1\d, the server is PostgreSQL 18"):
            backup.client_program("pg_dump", 18)


@pytest.fixture
def password_role(server: PgServer) -> Iterator[tuple[str, str]]:
    """A superuser that must give its password (scram for this role only; the suite keeps trust auth)."""
    role, password = "inca_backup_pw", "backup-secret-pw-1234567890"
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
        original = hba.read_text()
        hba.write_text(f"local all {role} scram-sha-256\n" + original)
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield role, password
    finally:
        hba.write_text(original)
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(f"DROP ROLE {role}")


def test_password_reaches_pg_dump_only_through_the_environment(
        password_role: tuple[str, str], loaded_db: Database, backup_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    role, password = password_role
    calls: list[list[str]] = []
    real_run = subprocess.run

    def spy(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(list(args))
        return real_run(args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(backup.subprocess, "run", spy)
    admin = loaded_db.admin.set(username=role, password=password)
    monkeypatch.setenv("INCA_ADMIN_URL", admin.render_as_string(hide_password=False))
    db.dispose_all()
    result = backup.backup()
    assert result.manifest["lock"]["state"] == "INTACT"
    dumps = [args for args in calls if args[0].endswith("pg_dump") and "--version" not in args]
    assert dumps and all(password not in " ".join(args) for args in dumps)
    assert any(f"user={role}" in arg for arg in dumps[0])
    assert password not in backup.manifest_path(result.path).read_text()
    monkeypatch.setenv("INCA_ADMIN_URL", admin.set(password="wrong-password-0987").render_as_string(hide_password=False))
    db.dispose_all()
    with pytest.raises(DatabaseUnavailable, match="wrong user name or password") as failure:
        backup.backup()
    assert "wrong-password-0987" not in str(failure.value)


# --- retention ------------------------------------------------------------------------------------

def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00")


def test_prune_keeps_daily_weekly_and_the_newest_verified(reference: Path, backup_dir: Path) -> None:
    # 2025-03-19 is a Wednesday (ISO week 12); 03-16 a Sunday (week 11).
    dated = {"a": at("2025-03-19", 12), "b": at("2025-03-19", 10), "c": at("2025-03-18"), "d": at("2025-03-17"),
             "e": at("2025-03-16"), "f": at("2025-03-09"), "g": at("2025-03-02"), "h": at("2025-01-15"),
             "i": at("2025-01-10")}
    verified = {"a": "failed", "h": "ok", "i": "ok"}
    files = {key: clone(reference, backup_dir, when, verified.get(key)) for key, when in dated.items()}
    stray = backup_dir / "inca-20250101T000000Z.dump"
    stray.write_bytes(b"no manifest")  # not ours to judge: left alone
    expected_kept = {"a", "c", "d", "e", "h"}

    plan = backup.prune(keep_daily=3, keep_weekly=2, dry_run=True)
    assert {key for key, path in files.items() if path.name in plan.kept} == expected_kept
    assert plan.kept[files["h"].name] == ["newest verified"]
    assert plan.kept[files["a"].name] == ["daily", "weekly", "newest"]
    assert all(path.exists() for path in files.values())  # dry run

    result = run_cli("prune", "--keep-daily", "3", "--keep-weekly", "2")
    assert result.returncode == 0, result.stderr
    assert {key for key, path in files.items() if path.exists()} == expected_kept
    for key in set(files) - expected_kept:
        assert f"deleted  {files[key].name}" in result.stdout
        assert not backup.manifest_path(files[key]).exists() and not backup.verify_path(files[key]).exists()
    assert stray.exists() and "skipped" in result.stdout

    plan = backup.prune(keep_daily=0, keep_weekly=0)
    assert set(plan.kept) == {files["a"].name, files["h"].name}  # the newest, and the newest verified
    assert files["h"].exists() and not files["c"].exists()


def test_prune_defaults_come_from_settings(reference: Path, backup_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for days in range(5):
        clone(reference, backup_dir, at("2025-03-19") - timedelta(days=days), verified=None)
    monkeypatch.setenv("INCA_BACKUP_KEEP_DAILY", "2")
    monkeypatch.setenv("INCA_BACKUP_KEEP_WEEKLY", "0")
    assert len(backup.prune().kept) == 2 and len(list(backup_dir.glob("*.dump"))) == 2
    with pytest.raises(BackupError, match="0 or more"):
        backup.prune(keep_daily=-1)


# --- health -----------------------------------------------------------------------------------------

def test_health_without_backups_is_failing(backup_dir: Path) -> None:
    health = backup.health()
    assert health.state == backup.FAILING and "no backup yet" in health.reason
    assert health.to_dict()["backups"] == []


@pytest.mark.parametrize(("age_hours", "verified", "state", "words"), [
    (1, "ok", backup.OK, "restore verified"),
    (30, "ok", backup.WARNING, "30 h old (objective 24 h)"),
    (72, "ok", backup.FAILING, "72 h old"),
    (1, None, backup.WARNING, "no backup has passed a restore verification"),
    (1, "failed", backup.FAILING, "latest restore verification"),
])
def test_health_states(reference: Path, backup_dir: Path, age_hours: int, verified: str | None, state: str,
                       words: str) -> None:
    clone(reference, backup_dir, NOW - timedelta(hours=age_hours), verified)
    health = backup.health()
    assert health.state == state, health.reason
    assert words in health.reason
    assert health.backups[0]["sha_ok"] is True


def test_health_old_verification_and_bad_checksum(reference: Path, backup_dir: Path) -> None:
    older = clone(reference, backup_dir, NOW - timedelta(days=40), "ok")
    newest = clone(reference, backup_dir, NOW - timedelta(hours=1), None)
    health = backup.health()
    assert health.state == backup.WARNING and "40 days ago (objective 31 days)" in health.reason
    flip_byte(older)
    health = backup.health()
    assert health.state == backup.WARNING and "older backup file(s) fail their checksum" in health.reason
    flip_byte(newest)
    health = backup.health()
    assert health.state == backup.FAILING and f"newest backup {newest.name} fails its checksum" in health.reason
    frame = backup.health_frame()
    assert list(frame.columns) == ["created_at", "size_bytes", "file", "checksum", "verification", "verified_at"]
    assert list(frame["file"]) == [older.name, newest.name]  # oldest first, for a size-over-time chart
    assert list(frame["checksum"]) == ["mismatch", "mismatch"] and str(frame["created_at"].dt.tz) == "UTC"


def test_status_strict_follows_backup_health(loaded_db: Database, backup_dir: Path) -> None:
    failing = run_cli("status", "--strict", env=loaded_db.env())
    assert failing.returncode == 1 and "backups:   FAILING  no backup yet" in failing.stdout
    backup.verify_backup(backup.backup().path)
    healthy = run_cli("status", "--strict", "--json", env=loaded_db.env())
    assert healthy.returncode == 0, healthy.stdout
    assert json.loads(healthy.stdout)["backups"]["state"] == "OK"


# --- issue 17: a backup is only good when its lock was ----------------------------------------------

def _tamper(database: Database) -> None:
    with psycopg.connect(db.psycopg_conninfo(database.admin), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # superuser bypass of the lock triggers
        conn.execute("UPDATE document SET title = 'X'")


def test_backup_of_a_broken_database_fails_and_writes_nothing(fresh_loaded_db: Database, backup_dir: Path) -> None:
    _tamper(fresh_loaded_db)
    result = run_cli("backup", env={**fresh_loaded_db.env(), "INCA_BACKUP_DIR": str(backup_dir)})
    assert result.returncode != 0 and "backup refused: the lock is BROKEN" in result.stderr
    assert "document: content differs" in result.stderr and "Traceback" not in result.stderr
    assert not any(backup_dir.iterdir())


def test_verify_fails_a_backup_whose_manifest_says_broken(reference: Path, fresh_db: Database, server: PgServer,
                                                          backup_dir: Path) -> None:
    dump = clone(reference, backup_dir, NOW)
    manifest = json.loads(backup.manifest_path(dump).read_text())
    manifest["lock"].update(state="BROKEN", reason="document: content differs from its recorded digest")
    backup.manifest_path(dump).write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="taken while the lock was BROKEN"):
        backup.verify_backup(dump)
    assert not leftovers(server)


def test_swapped_dump_with_a_rewritten_checksum_fails(reference: Path, fresh_loaded_db: Database, server: PgServer,
                                                      backup_dir: Path, tmp_path: Path) -> None:
    other = backup.backup(tmp_path / "other").path  # another audited load: same amounts, other rows' ids
    dump = clone(reference, backup_dir, NOW)
    shutil.copyfile(other, dump)
    manifest = json.loads(backup.manifest_path(dump).read_text())
    manifest.update(size_bytes=dump.stat().st_size, sha256=backup.sha256_file(dump))
    backup.manifest_path(dump).write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match=r"restored content differs from the digest in the manifest|lock record differs"):
        backup.verify_backup(dump)
    # restore verifies in its scratch database before renaming anything: the live database is untouched
    with psycopg.connect(db.psycopg_conninfo(fresh_loaded_db.admin)) as conn:
        before = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
    with pytest.raises(BackupError, match="differs"):
        backup.restore(dump, verify=False)
    with psycopg.connect(db.psycopg_conninfo(fresh_loaded_db.admin)) as conn:
        after = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
    assert before == after and not leftovers(server)
    assert not [name for name in server.databases() if "_before_restore_" in name or "_restore_" in name]
