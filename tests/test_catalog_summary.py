"""Schema 006's catalog summaries: equal to the base tables, unwritable at run time, refreshed by the load."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator

import pandas as pd
import psycopg
import pytest
from sqlalchemy.engine import URL

from bench import market
from core import catalog, db
from core.ops import loader, migrate
from tests.conftest import Database, PgServer, point_env_at

VIEWS = loader.SUMMARY_VIEWS
REAL_FACTS, REAL_UNMATCHED = 297, 79

# Every coverage instance with what the summaries group it by, straight from the locked tables.
_INSTANCES_SQL = """
    SELECT ci.coverage_code, i.insurer_key, i.name_ko, ci.coverage_name_raw, af.status, ci.product_id
    FROM coverage_instance ci
    JOIN insurer i ON i.insurer_id = ci.insurer_id
    LEFT JOIN amount_fact af ON af.instance_id = ci.instance_id
"""


def admin_conn(url: URL) -> psycopg.Connection:
    return psycopg.connect(db.psycopg_conninfo(url), autocommit=True)


def expected_summaries(conn: psycopg.Connection) -> tuple[set[tuple[object, ...]], set[tuple[object, ...]]]:
    """(catalog_raw_name rows, insurer_status_count rows), aggregated in Python from every instance."""
    products: dict[tuple[object, ...], set[object]] = defaultdict(set)
    instances: Counter[tuple[object, ...]] = Counter()
    for code, insurer_key, insurer_name, raw_name, status, product_id in conn.execute(_INSTANCES_SQL):
        key = (code, insurer_key, insurer_name, raw_name, status)
        products[key].add(product_id)
        instances[key] += 1
    raw = {(*key, len(products[key]), instances[key]) for key in instances}
    per_insurer = {key: [name, 0, 0, 0] for key, name in conn.execute("SELECT insurer_key, name_ko FROM insurer")}
    for (code, insurer_key, _name, _raw_name, status), count in instances.items():
        column = 3 if code is None else {"CONFIRMED": 1, "UNCONFIRMED": 2}.get(str(status))
        if column is not None:
            per_insurer[insurer_key][column] += count
    return raw, {(key, *values) for key, values in per_insurer.items()}


def stored_summaries(conn: psycopg.Connection) -> tuple[set[tuple[object, ...]], set[tuple[object, ...]]]:
    raw = conn.execute("SELECT coverage_code, insurer_key, insurer_name, coverage_name_raw, status, products, instances"
                       " FROM catalog_raw_name").fetchall()
    counts = conn.execute("SELECT insurer_key, insurer_name, confirmed, unconfirmed, unmatched"
                          " FROM insurer_status_count").fetchall()
    assert len(raw) == len(set(raw)) and len(counts) == len(set(counts))
    return set(raw), set(counts)


def catalog_results() -> tuple[pd.DataFrame, list[catalog.RawName], list[catalog.RawName], pd.DataFrame]:
    return catalog.coverage_table(), catalog.raw_names(), catalog.raw_names("A4200_1"), catalog.status_counts()


def assert_same_results(left: tuple[object, ...], right: tuple[object, ...]) -> None:
    pd.testing.assert_frame_equal(left[0], right[0])  # type: ignore[arg-type]
    assert left[1] == right[1] and left[2] == right[2]
    pd.testing.assert_frame_equal(left[3], right[3])  # type: ignore[arg-type]


# --- the real dataset ------------------------------------------------------------------------------

def test_summaries_equal_the_aggregation_of_the_base_tables(loaded_db: Database) -> None:
    with admin_conn(loaded_db.admin) as conn:
        expected_raw, expected_counts = expected_summaries(conn)
        assert stored_summaries(conn) == (expected_raw, expected_counts)
    assert sum(row[-1] for row in expected_raw) == REAL_FACTS


def test_catalog_reads_one_row_per_distinct_name(loaded_db: Database) -> None:
    frame = catalog.coverage_table()
    assert list(frame.columns) == list(catalog.COVERAGE_TABLE_COLUMNS)  # value_text is gone: amounts are per product
    named = frame.dropna(subset=["coverage_name_raw"])
    assert not named.duplicated(["coverage_code", "insurer", "coverage_name_raw", "status"]).any()
    assert int(named["products"].sum()) == REAL_FACTS - REAL_UNMATCHED  # every product carries each name once here
    assert set(frame["coverage_code"]) == {coverage.code for coverage in catalog.coverages()}
    assert frame["products"].dtype == "Int64"
    names = catalog.raw_names()
    in_order = [(n.coverage_code, n.insurer_name, n.raw_name, n.status, n.products) for n in names]
    assert list(named[["coverage_code", "insurer", "coverage_name_raw", "status", "products"]].itertuples(
        index=False, name=None)) == in_order  # same rows, same (code, insurer key, name, status) order
    one = catalog.raw_names("A4200_1")
    assert one == [name for name in names if name.coverage_code == "A4200_1"] and one
    assert [(n.insurer_key, n.raw_name, n.status) for n in one] == sorted((n.insurer_key, n.raw_name, n.status)
                                                                           for n in one)
    counts = catalog.status_counts()
    assert int(counts[["confirmed", "unconfirmed", "unmatched"]].to_numpy().sum()) == REAL_FACTS
    assert int(counts["unmatched"].sum()) == REAL_UNMATCHED


def test_summaries_are_select_only_for_the_reader(loaded_db: Database) -> None:
    with admin_conn(loaded_db.admin) as conn:
        grants = conn.execute(
            "SELECT c.relname, c.relkind::text, array_agg(a.privilege_type ORDER BY a.privilege_type)"
            " FROM pg_class c, aclexplode(c.relacl) a WHERE c.relname = ANY(%s)"
            " AND a.grantee = 'inca_read'::regrole GROUP BY 1, 2 ORDER BY 1", (list(VIEWS),)).fetchall()
        maintain = conn.execute("SELECT bool_or(has_table_privilege('inca_reader', v, 'MAINTAIN'))"
                                " FROM unnest(%s::text[]) AS v", (list(VIEWS),)).fetchone()
    assert grants == [(view, "m", ["SELECT"]) for view in sorted(VIEWS)]
    assert maintain == (False,)


# What each write meets once the session is not read-only: privileges (SELECT only, not the owner), or
# for TRUNCATE the object itself ("is not a table"), whoever asks.
WRITES = {
    "REFRESH MATERIALIZED VIEW {view}": psycopg.errors.InsufficientPrivilege,
    "INSERT INTO {view} SELECT * FROM {view} LIMIT 1": psycopg.errors.InsufficientPrivilege,
    "UPDATE {view} SET insurer_key = insurer_key": psycopg.errors.InsufficientPrivilege,
    "DELETE FROM {view}": psycopg.errors.InsufficientPrivilege,
    "TRUNCATE {view}": psycopg.errors.WrongObjectType,
}


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("statement", WRITES)
def test_the_reader_cannot_refresh_or_write_the_summaries(loaded_db: Database, view: str, statement: str) -> None:
    sql = statement.format(view=view)  # constant names
    with psycopg.connect(db.psycopg_conninfo(loaded_db.reader), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # the session is read-only first ...
            conn.execute(sql)
        conn.execute("SET default_transaction_read_only = off")  # ... and without it, the database refuses
        with pytest.raises(WRITES[statement]):
            conn.execute(sql)
        assert conn.execute(f"SELECT count(*) > 0 FROM {view}").fetchone() == (True,)


@pytest.mark.parametrize("statement", list(WRITES)[1:])
def test_not_even_the_owner_can_write_rows_into_a_summary(loaded_db: Database, statement: str) -> None:
    with admin_conn(loaded_db.admin) as conn, pytest.raises(psycopg.errors.WrongObjectType):
        conn.execute(statement.format(view="catalog_raw_name"))


# --- the load and the migration --------------------------------------------------------------------

def test_a_load_refreshes_the_summaries(fresh_db: Database) -> None:
    with db.admin_engine().begin() as conn:
        migrate.apply(conn)
    with admin_conn(fresh_db.admin) as conn:
        assert stored_summaries(conn) == (set(), set())  # created over the empty tables
    assert loader.load().changed
    with admin_conn(fresh_db.admin) as conn:
        expected = expected_summaries(conn)
        assert stored_summaries(conn) == expected and len(expected[1]) == 8
        analyzed = conn.execute("SELECT count(*) FROM pg_stat_all_tables WHERE relname = ANY(%s)"
                                " AND last_analyze IS NOT NULL", (list(VIEWS),)).fetchone()
    assert analyzed == (len(VIEWS),)  # the load's ANALYZE covers them: the planner knows their size


def test_a_database_loaded_before_schema_006_reads_live_then_migrates(fresh_loaded_db: Database) -> None:
    summarised = catalog_results()
    with admin_conn(fresh_loaded_db.admin) as conn:  # the state of a database loaded with schema 005
        conn.execute("DROP MATERIALIZED VIEW insurer_status_count, catalog_raw_name")
        conn.execute("DELETE FROM schema_migrations WHERE version = 6")
    assert_same_results(catalog_results(), summarised)  # the reader cannot migrate: the same rows, computed live
    with db.admin_engine().begin() as conn:  # `python -m core migrate`: WITH DATA, from the loaded rows
        assert [m.version for m in migrate.apply(conn)] == [6]
    with admin_conn(fresh_loaded_db.admin) as conn:
        assert stored_summaries(conn) == expected_summaries(conn)
    assert_same_results(catalog_results(), summarised)


# --- a market: several products and variants per insurer -------------------------------------------

@pytest.fixture
def tiny_market(server: PgServer) -> Iterator[str]:
    name = server.create("inca_bench_summary")
    point_env_at(server, name)
    assert loader.load_bundle(market.generate("tiny", seed=8, progress=False), db.admin_engine()).changed
    yield name
    db.dispose_all()
    server.drop(name)


def test_summaries_of_a_market_count_products_and_variants(tiny_market: str, server: PgServer) -> None:
    with admin_conn(server.url(tiny_market)) as conn:
        expected_raw, expected_counts = expected_summaries(conn)
        assert stored_summaries(conn) == (expected_raw, expected_counts)
        instances, products = conn.execute("SELECT count(*), count(DISTINCT product_id) FROM coverage_instance").fetchone()
    assert max(row[5] for row in expected_raw) > 1 and max(row[6] for row in expected_raw) > max(row[5] for row in
                                                                                                  expected_raw)
    frame = catalog.coverage_table()
    matched = {row for row in expected_raw if row[0] is not None}
    assert len(frame.dropna(subset=["coverage_name_raw"])) == len(matched) < instances / 3
    assert int(frame["products"].sum()) == sum(row[5] for row in matched)
    assert list(frame[["coverage_code", "insurer", "coverage_name_raw", "status"]].itertuples(index=False, name=None)
                ) == [(n.coverage_code, n.insurer_name, n.raw_name, n.status) for n in catalog.raw_names()]
    counts = catalog.status_counts()
    assert int(counts[["confirmed", "unconfirmed", "unmatched"]].to_numpy().sum()) == instances
    assert products == 12
