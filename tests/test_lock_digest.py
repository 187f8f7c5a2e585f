"""Schema 013 keeps the lock's digest byte for byte: each relation's digest is the SHA-256 of its row
hashes sorted as bytes (schema 008), however the server plans the sort.

The oracle sorts and combines the row hashes here, in Python, from the rows of a loaded database; the
row hash itself (one SHA-256 over the row's canonical JSON) is the same SQL expression 008 defined.
"""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from core import db
from core.ops import migrate
from tests.conftest import Database

_COLUMNS = """
    SELECT string_agg(CASE WHEN t.typname = 'vector' THEN format('encode(sha256(vector_send(r.%%I)), %%L)', a.attname, 'hex')
                           ELSE format('r.%%I', a.attname) END, ', ' ORDER BY a.attnum)
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
"""


def _python_digest(conn: psycopg.Connection, relation: str) -> tuple[int, str]:
    columns = conn.execute(_COLUMNS, (relation,)).fetchone()[0]
    # the relation name comes from inca_locked_relation and the column list from pg_attribute (quoted by
    # format %I): never input
    hashes = [bytes(row[0]) for row in conn.execute(
        f"SELECT sha256(convert_to(json_build_array({columns})::text, 'UTF8')) FROM {relation} r")]
    return len(hashes), hashlib.sha256(b"".join(sorted(hashes))).hexdigest()


def test_every_locked_relation_digests_as_schema_008_defined(loaded_db: Database) -> None:
    with psycopg.connect(db.psycopg_conninfo(loaded_db.admin)) as conn:
        conn.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
                     "SET extra_float_digits = 1")
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == migrate.latest_version() >= 13
        relations = [row[0] for row in conn.execute("SELECT relname FROM inca_locked_relation ORDER BY relname")]
        recorded = dict(conn.execute(
            "SELECT r.relname, r.digest FROM lock_record r JOIN lock_seal s USING (audit_run_id) WHERE r.digest IS NOT NULL"))
        assert {"evidence_ref", "amount_fact", "condition_slot", "comparison_cell", "coverage_alias_vector"} <= set(relations)
        for relation in relations:
            rows, digest = conn.execute("SELECT row_count, digest FROM inca_relation_digest(%s::regclass)",
                                        (relation,)).fetchone()
            assert (rows, digest) == _python_digest(conn, relation), relation
            assert recorded[relation] == digest, relation


@pytest.mark.parametrize(("work_mem", "workers"), [("64kB", 0), ("64kB", 2), ("512MB", 0), ("512MB", 2)])
def test_the_digest_does_not_depend_on_sort_memory_or_parallel_workers(loaded_db: Database, work_mem: str,
                                                                       workers: int) -> None:
    """A sort on disk or in memory, serial or merged from parallel workers: the same digest (the function
    sets its own sort memory; here a copy of it runs at another, on tables small enough that the planner
    goes parallel only when told every table is worth it)."""
    with psycopg.connect(db.psycopg_conninfo(loaded_db.admin)) as conn:
        conn.execute("SELECT set_config('max_parallel_workers_per_gather', %s, false)", (str(workers),))
        conn.execute("SET min_parallel_table_scan_size = 0")
        definition = conn.execute("SELECT pg_get_functiondef('inca_relation_digest(regclass)'::regprocedure)"
                                  ).fetchone()[0]
        copied = definition.replace("work_mem TO '512MB'", f"work_mem TO '{work_mem}'").replace(
            "public.inca_relation_digest(", "pg_temp.digest_at(")
        assert copied != definition
        conn.execute(copied)
        for relation in ("evidence_ref", "amount_fact", "coverage_alias_vector"):
            ours = conn.execute("SELECT * FROM pg_temp.digest_at(%s::regclass)", (relation,)).fetchone()
            assert ours == _python_digest(conn, relation), relation
        conn.execute("SET parallel_setup_cost = 0")
        conn.execute("SET parallel_tuple_cost = 0")
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN SELECT string_agg(h, ''::bytea ORDER BY h) FROM (SELECT sha256(convert_to("
            "json_build_array(r.snippet)::text, 'UTF8')) AS h FROM evidence_ref r ORDER BY h) s"))
        assert ("Gather Merge" in plan) == (workers > 0), plan
