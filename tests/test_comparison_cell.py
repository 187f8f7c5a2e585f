"""The comparison cells (schema 012): one row per coverage instance, materialized by the audited load, read
by compare(..., include_evidence=False); locked like the tables; added to an older database by
`python -m core migrate` + `python -m core upgrade`; an older database (schema 011) still compares."""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

import core
from core import catalog, comparison, condition_slots, db
from core.ops import loader, migrate, upgrade
from core.ops.cli import main
from core.status import collect
from dashboard.lib import params
from tests import dataset_facts as facts
from tests.conftest import Database

COLUMNS = ("product_key, coverage_code, coverage_name_raw, status, value_text, source_doc_type, source_priority, "
           "proposal_doc_type, proposal_page, proposal_source_file, snippet_count, variant, slot_statuses, "
           "slot_phrases")
# Before schema 012 compare read every cell from the tables themselves, per instance (six index probes):
# that read, over every instance, coded or not, is what the view must hold row for row.
#: the view's columns with every printed amount replaced (a tampered copy)
TAMPERED = COLUMNS.replace("value_text", "CASE WHEN status = 'CONFIRMED' THEN 'X-tampered' END AS value_text", 1)
LIVE_SQL = comparison._sql(False, comparison._CODES_FILTER[(True, True)], slots=True)


def admin_conn(database: Database) -> psycopg.Connection:
    return psycopg.connect(db.psycopg_conninfo(database.admin))


def _normalised(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # the live read's string_agg has no ORDER BY (index order in practice); the view's is in slot order
    statuses = row[12]
    return (*row[:12], None if statuses is None else ",".join(sorted(statuses.split(","))), row[13])


def view_rows(database: Database) -> Counter[tuple[Any, ...]]:
    with admin_conn(database) as conn:
        return Counter(_normalised(tuple(row)) for row in conn.execute(f"SELECT {COLUMNS} FROM comparison_cell"))


def live_rows(database: Database) -> Counter[tuple[Any, ...]]:
    every = [product.key for product in catalog.products()]
    with admin_conn(database) as conn:
        return Counter(_normalised(tuple(row)) for row in conn.execute(LIVE_SQL, {"product_keys": every, "codes": []}))


def test_the_view_holds_the_live_cells_read_for_every_instance(loaded_db: Database) -> None:
    view, live = view_rows(loaded_db), live_rows(loaded_db)
    assert view == live
    # one row per coverage instance, and the amounts are the dataset's own (the independent oracle)
    with admin_conn(loaded_db) as conn:
        assert sum(view.values()) == conn.execute("SELECT count(*) FROM coverage_instance").fetchone()[0]
        insurer_of = dict(conn.execute("SELECT p.product_key, i.insurer_key FROM product p "
                                       "JOIN insurer i USING (insurer_id)").fetchall())
    assert Counter((insurer_of[row[0]], row[2], row[1], row[3], row[4]) for row in view.elements()) == Counter(
        (card.insurer, card.raw_name, card.code, card.status, card.value_text) for card in facts.cards())
    # every snippet counted: between the files' distinct texts and all of them (the load keeps an exact
    # repeat within one document type once; the live read above counts exactly)
    for row in view:
        files = facts.snippets_of(insurer_of[row[0]], row[2])
        assert len(set(files)) <= row[10] <= len(files), row
    assert any(row[13] for row in view) and all(row[12] for row in view)  # slots stored for every instance


def test_rows_are_stored_in_product_and_code_order(loaded_db: Database) -> None:
    with admin_conn(loaded_db) as conn:
        stored = [tuple(row) for row in conn.execute("SELECT product_key, coverage_code FROM comparison_cell "
                                                     "ORDER BY ctid").fetchall()]
    assert stored == sorted(stored, key=lambda key: (key[0], key[1] is None, key[1] or ""))


def test_compare_reads_the_view_and_a_replaced_view_breaks_the_lock(fresh_loaded_db: Database) -> None:
    keys, codes = [p.key for p in catalog.products()], list(params.DEFAULT_CODES)
    before = core.compare(keys, codes, include_evidence=False)
    assert before.audit.lock_intact and "comparison_cell" in collect(include_backups=False).lock.covers
    with psycopg.connect(db.psycopg_conninfo(fresh_loaded_db.admin), autocommit=True) as conn:
        conn.execute("ALTER MATERIALIZED VIEW comparison_cell RENAME TO comparison_cell_old")
        conn.execute(f"CREATE MATERIALIZED VIEW comparison_cell AS SELECT {TAMPERED} FROM comparison_cell_old")
        conn.execute("GRANT SELECT ON comparison_cell TO inca_read")
    db.dispose_all()  # new connections: the view is found again by name
    after = core.compare(keys, codes, include_evidence=False)
    shown = {i.value_text for cell in after.cells.values() for i in cell.instances if i.status == "CONFIRMED"}
    assert shown == {"X-tampered"}  # the table is what the view holds ...
    assert not after.audit.lock_intact and after.audit.lock_state == "BROKEN"  # ... and the lock says it changed
    report = collect(include_backups=False)
    assert not report.ok and any("comparison_cell" in m for m in report.lock.mismatches), report.lock.mismatches
    # the full read (every snippet) reads the tables, never the view
    full = {i.value_text for c in core.compare(keys, codes).cells.values() for i in c.instances}
    assert "X-tampered" not in full and len(full) > 2


def test_reading_role_may_only_select_the_view(loaded_db: Database) -> None:
    with psycopg.connect(db.psycopg_conninfo(loaded_db.reader)) as conn:
        assert conn.execute("SELECT count(*) FROM comparison_cell").fetchone()[0] > 0
        conn.rollback()
        conn.execute("SET TRANSACTION READ WRITE")  # even when it asks for a writing transaction
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for materialized view comparison_cell"):
            conn.execute("REFRESH MATERIALIZED VIEW comparison_cell")


def _cells(cmp: comparison.Comparison) -> dict[tuple[str, str], Any]:
    return {key: [(*i[:5], i.proposal_evidence, i.snippet_count) for i in cell.instances]
            for key, cell in cmp.cells.items()}


def test_a_database_loaded_at_schema_011_compares_then_upgrades(fresh_db: Database, loaded_db_session: Database,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    codes = list(params.DEFAULT_CODES)
    old = [m for m in migrate.migrations() if m.version <= 11]  # the previous version: no comparison cells
    monkeypatch.setattr(migrate, "migrations", lambda: old)
    monkeypatch.setattr(loader, "CELL_VIEWS", ())
    loaded = loader.load()
    monkeypatch.undo()
    with db.admin_engine().connect() as conn:
        assert conn.execute(text("SELECT to_regclass('comparison_cell')")).scalar_one() is None
    keys = [p.key for p in catalog.products()]
    # compare on the 011 schema reads the tables themselves: the same table as a current database shows
    on_011 = core.compare(keys, codes, include_evidence=False)
    assert on_011.audit.lock_intact
    full = core.compare(keys, codes)
    assert on_011.to_frame().equals(full.to_frame()) and on_011.conditions_frame().equals(full.conditions_frame())

    assert main(["migrate"]) == 0  # 012 fills the view from the locked rows; the lock does not cover it yet
    between = collect(include_backups=False)
    assert between.lock.intact and between.lock.not_covered == ("comparison_cell",)
    assert view_rows(fresh_db) == live_rows(fresh_db)
    assert main(["upgrade"]) == 0
    report = collect(include_backups=False)
    assert report.lock.intact and not report.lock.not_covered and "comparison_cell" in report.lock.covers
    assert not report.problems, report.problems
    with db.admin_engine().connect() as conn:
        assert conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one() == loaded.fingerprint
    assert view_rows(fresh_db) == live_rows(fresh_db)
    db.dispose_all()
    upgraded = core.compare(keys, codes, include_evidence=False)
    assert _cells(upgraded) == _cells(on_011) and upgraded.slots == on_011.slots
    assert upgrade.upgrade().message.startswith("up to date")


def test_the_view_carries_the_stored_condition_slots(loaded_db: Database) -> None:
    """Every coded instance's slots decoded from the view are the stored ones (their own read, CONDITIONS_SQL),
    without the cited snippet texts (a phrase of the raw name cites the raw name, known without a read)."""
    keys = [p.key for p in catalog.products()]
    with admin_conn(loaded_db) as conn:
        rows = conn.execute(f"SELECT {COLUMNS} FROM comparison_cell WHERE coverage_code IS NOT NULL").fetchall()
    with db.read() as conn:
        stored = condition_slots.fetch(conn, keys, comparison._CODES_FILTER[(True, False)], None)
    assert stored is not None and rows
    taken: Counter[tuple[str, str, str]] = Counter()
    phrases = 0
    for row in sorted(rows, key=lambda r: (r[3], r[11] or "")):  # the index's (status, variant) order
        key = (row[1], row[0], row[2])
        decoded = condition_slots.instance_conditions(row[2], (row[12], row[13]))
        want = stored[key][taken[key]]
        taken[key] += 1
        assert decoded.slots == tuple(slot._replace(phrases=tuple(
            p._replace(source_text=p.source_text if p.source_kind == "raw_name" else None) for p in slot.phrases))
            for slot in want.slots)
        phrases += sum(len(slot.phrases) for slot in decoded.slots)
    assert phrases > 50


def test_an_upgrade_that_derives_the_slots_refreshes_the_view(fresh_db: Database, loaded_db_session: Database,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A database loaded before schema 011: migrating fills the view without slots (there are none yet);
    the upgrade derives them and recomputes the view in its transaction, then records the lock."""
    from core.ops import conditions_load

    old = [m for m in migrate.migrations() if m.version <= 10]
    monkeypatch.setattr(migrate, "migrations", lambda: old)
    monkeypatch.setattr(conditions_load, "derive_and_audit", lambda conn: {})
    monkeypatch.setattr(loader, "CELL_VIEWS", ())
    loader.load()
    monkeypatch.undo()
    assert main(["upgrade"]) == 0
    assert view_rows(fresh_db) == live_rows(fresh_db) == live_rows(loaded_db_session)
    assert all(row[12] for row in view_rows(fresh_db))
    report = collect(include_backups=False)
    assert report.lock.intact and "comparison_cell" in report.lock.covers and not report.problems
