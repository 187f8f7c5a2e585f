"""Smoke tests of the market generator (bench/market.py) and the bulk load path at a tiny size."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import core
from bench import market, restore_floor
from core import db, lock
from core.ops import loader, migrate
from core.status import collect
from tests.conftest import PgServer, point_env_at

CODE_FORMAT = re.compile(r"^[A-Z]\d{4}(_\d+)?$")


@pytest.fixture(scope="module")
def tiny_bundle() -> market.LoadBundle:
    return market.generate("tiny", seed=8, progress=False)


@pytest.fixture
def tiny_db(server: PgServer, tiny_bundle: market.LoadBundle) -> Iterator[str]:
    name = server.create("inca_bench_test")
    point_env_at(server, name)
    result = loader.load_bundle(tiny_bundle, db.admin_engine())
    assert result.changed and "audit PASS" in result.message
    yield name
    db.dispose_all()
    server.drop(name)


def test_tiny_market_has_the_real_ratios(tiny_bundle: market.LoadBundle) -> None:
    held = tiny_bundle.in_memory()
    rows = held.rows
    facts, instances = rows["amount_fact"], rows["coverage_instance"]
    assert 2_000 < len(facts) < 5_000
    unmatched = sum(1 for row in instances if row[4] is None) / len(instances)
    confirmed = sum(1 for row in facts if row[2] == "CONFIRMED") / len(facts)
    assert 0.22 < unmatched < 0.32 and 0.70 < confirmed < 0.80
    assert all(CODE_FORMAT.match(row[0]) for row in rows["coverage_canonical"])
    # 3 supporting snippets per instance, plus the proposal snippet of each CONFIRMED fact
    assert len(rows["evidence_ref"]) == 3 * len(instances) + sum(1 for row in facts if row[2] == "CONFIRMED")
    assert loader.pre_audit(tiny_bundle) == []
    assert held.expected_counts["amount_fact"] == len(facts) and held.lineage["rows_audited"] == len(facts)
    assert set(tiny_bundle.lineage) >= {"audit_name", "status", "freeze_tag", "git_commit", "generated_at",
                                        "rows_audited", "value_mismatches", "type_mismatches", "insurers"}


def test_generator_is_deterministic(tiny_bundle: market.LoadBundle) -> None:
    again = market.generate("tiny", seed=8, progress=False).in_memory()
    held = tiny_bundle.in_memory()  # a second pass over the same stream: the same rows again
    assert again.rows["amount_fact"][:200] == held.rows["amount_fact"][:200]
    assert again.rows["evidence_ref"][-50:] == held.rows["evidence_ref"][-50:]


def test_bench_refuses_databases_that_are_not_bench_databases() -> None:
    for name in ("inca", "postgres", "inca_bench_x; DROP", "Inca_bench_1m"):
        with pytest.raises(SystemExit):
            market._check_bench_name(name)


def test_tiny_market_loads_audited_and_locked(tiny_db: str, tiny_bundle: market.LoadBundle) -> None:
    report = collect(fresh=True, include_backups=False)
    assert report.ok and report.lock_state == lock.INTACT
    assert all(row.matches for row in report.counts)
    live = {row.table: row.live for row in report.counts}
    assert live["amount_fact"] == sum(1 for _row in tiny_bundle.table("amount_fact"))
    products = [p.key for p in core.catalog.products()][:3]
    codes = [c.code for c in core.catalog.coverages()][:12]
    comparison = core.compare(products, codes)
    assert comparison.audit.lock_intact
    assert [p.key for p in comparison.products] == products
    shown = sum(len(cell.instances) for cell in comparison.cells.values())
    assert shown > 0 and comparison.unmatched  # every product has coverages without a code


def test_bulk_load_leaves_the_schema_of_a_plain_migration(tiny_db: str, server: PgServer) -> None:
    """Keys, foreign keys and indexes dropped for COPY are all back, defined exactly as the schema files say."""
    def definitions(database: str) -> set[tuple[str, ...]]:
        with psycopg.connect(server.conninfo(database), autocommit=True) as conn:
            constraints = conn.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
                "WHERE connamespace = 'public'::regnamespace").fetchall()
            indexes = conn.execute("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                                   ).fetchall()
        return {tuple(map(str, row)) for row in constraints + indexes}

    plain = server.create("inca_bench_plain")
    try:
        point_env_at(server, plain)
        with db.admin_engine().begin() as conn:
            migrate.apply(conn)
        assert definitions(plain) == definitions(tiny_db)
    finally:
        db.dispose_all()
        server.drop(plain)


def test_page_views_reuse_the_load_proof_until_a_write_shows(tiny_db: str, server: PgServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with db.read() as conn:
        full = lock.read_lock(conn, fresh=True)
        assert full.intact and full.verify_seconds is not None
        again = lock.read_lock(conn)  # nothing written since: the proof is kept, not recomputed
        assert again.intact and again.verified_at == full.verified_at
    with psycopg.connect(server.conninfo(tiny_db), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # superuser bypass of the lock triggers
        conn.execute("UPDATE amount_fact SET value_text = '9억원' WHERE amount_id = "
                     "(SELECT amount_id FROM amount_fact WHERE status = 'CONFIRMED' LIMIT 1)")
    deadline = time.monotonic() + 5  # the writer's statistics reach the server when its session ends
    while True:
        with db.read() as conn:
            state = lock.read_lock(conn)
        if state.state == lock.BROKEN or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert state.state == lock.BROKEN


def test_the_load_floor_restores_the_very_content_the_load_locked(tiny_db: str, server: PgServer,
                                                                  tmp_path: Path) -> None:
    """bench/restore_floor.py: pg_restore of the loaded database into an empty one, then the lock digests,
    which must be the ones the load recorded; the floor database and the dump are gone afterwards."""
    bench_server = market.BenchServer(server.admin)
    floor = restore_floor.measure("test", server=bench_server, source=tiny_db, work_dir=tmp_path)
    with psycopg.connect(server.conninfo(tiny_db), autocommit=True) as conn:
        recorded = conn.execute("SELECT count(*) FROM lock_record WHERE digest IS NOT NULL").fetchone()[0]
    assert floor["relations"] == recorded and floor["digested_rows"] > 0
    assert floor["restore_seconds"] > 0 and floor["digest_seconds"] > 0 and floor["dump_bytes"] > 0
    assert not bench_server.exists(restore_floor.floor_database("test")) and list(tmp_path.iterdir()) == []
    assert "load / floor" in restore_floor.note(floor, load_seconds=2 * floor["floor_seconds"])


def test_the_load_floor_refuses_a_restore_that_differs_from_the_lock(tiny_db: str, server: PgServer,
                                                                     tmp_path: Path) -> None:
    """A floor that does not hold the locked content floors nothing: a changed row fails the measurement."""
    with psycopg.connect(server.conninfo(tiny_db), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # superuser bypass of the lock triggers
        conn.execute("UPDATE amount_fact SET value_text = '9억원' WHERE amount_id = "
                     "(SELECT amount_id FROM amount_fact WHERE status = 'CONFIRMED' ORDER BY amount_id LIMIT 1)")
    with pytest.raises(SystemExit, match="amount_fact"):
        restore_floor.measure("test", server=market.BenchServer(server.admin), source=tiny_db, work_dir=tmp_path)
